"""The grid report of the pretrain/fine-tune study: the reference transformer's
verdict per cell, the 10% target, the phase table and the figures."""

from __future__ import annotations

import pytest

from experiments.studies.pretrain_finetune_report import (
    phase_table,
    summary_markdown,
    target_met,
    verdict,
    write_figures,
)

REFERENCE = "Transformer"


def _band(mean: float, half: float) -> dict[str, float]:
    return {"mean": mean, "low": mean - half, "high": mean + half}


def _row(setting: float, events: int, agent: str, regret: float, **extra) -> dict:
    steps = [1, 10, 100]
    return {
        "env": "Env-v0",
        "cell": f"Env-v0/s={setting}/events={events}",
        "setting": {"s": setting},
        "events": events,
        "agent": agent,
        "horizon": 100,
        "seeds": 4,
        "final_regret": _band(regret, 10.0),
        "early_steps": 10,
        "early_regret": _band(regret / 10, 1.0),
        "ctr": _band(0.5, 0.01),
        "held_out": None,
        "run_seconds": 1.0,
        "curve_steps": steps,
        "curve_mean": [0.0, regret / 10, regret],
        "curve_low": [0.0, regret / 10 - 1, regret - 10],
        "curve_high": [0.0, regret / 10 + 1, regret + 10],
        "reference": REFERENCE,
        **extra,
    }


def _cell(setting: float, events: int, mine: float, linucb: float, diff: dict):
    """The reference at regret `mine`, LinUCB at `linucb` with paired
    difference `diff` (LinUCB minus the reference)."""
    return [
        _row(setting, events, REFERENCE, mine, parameters=1000),
        _row(setting, events, "LinUCB", linucb, diff_final=diff, diff_early=diff),
    ]


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [(5.0, 20.0, "wins"), (-20.0, -5.0, "loses"), (-5.0, 20.0, "ties")],
)
def test_verdict_reads_the_interval_of_agent_minus_reference(low, high, expected):
    assert verdict({"mean": (low + high) / 2, "low": low, "high": high}) == expected


def test_target_needs_ten_percent_and_separate_intervals():
    diff = _band(50.0, 5.0)
    # 100 against 200: 50% lower, intervals (90, 110) and (190, 210) apart.
    assert target_met(_cell(0.0, 10, 100.0, 200.0, diff))
    # 100 against 105: the intervals overlap and the margin is under 10%.
    assert not target_met(_cell(0.0, 10, 100.0, 105.0, diff))
    # 100 against 125: apart, but 125 * 0.9 = 112.5 >= 100: met; at a 25%
    # margin it is not (125 * 0.75 = 93.75 < 100).
    assert target_met(_cell(0.0, 10, 100.0, 125.0, diff))
    assert not target_met(_cell(0.0, 10, 100.0, 125.0, diff), margin=0.25)
    # Every other agent must be beaten, not just one.
    rows = _cell(0.0, 10, 100.0, 200.0, diff)
    rows.append(_row(0.0, 10, "NeuralTS", 100.0, diff_final=_band(0.0, 5.0)))
    assert not target_met(rows)


def _grid_rows():
    return [
        *_cell(0.0, 10, 300.0, 200.0, _band(-100.0, 20.0)),  # loses
        *_cell(0.0, 100, 200.0, 210.0, _band(10.0, 30.0)),  # ties
        *_cell(1.0, 10, 250.0, 260.0, _band(10.0, 30.0)),  # ties
        *_cell(1.0, 100, 100.0, 200.0, _band(100.0, 20.0)),  # wins, target met
    ]


def test_phase_table_has_one_line_per_cell_with_verdict_and_target():
    lines = phase_table(_grid_rows())
    body = [line for line in lines if line.startswith("| s = ")]
    assert body == [
        "| s = 0.0 | 10 | loses -100.0 [-120.0, -80.0] (+50%) |",
        "| s = 0.0 | 100 | ties 10.0 [-20.0, 40.0] (-5%) |",
        "| s = 1.0 | 10 | ties 10.0 [-20.0, 40.0] (-4%) |",
        "| s = 1.0 * | 100 | wins 100.0 [80.0, 120.0] (-50%) |",
    ]
    summary = summary_markdown(_grid_rows())
    assert "### Phase diagram: Transformer against each agent" in summary
    assert "| Transformer (1,000 parameters) |" in summary


def test_grid_figures_are_written(tmp_path):
    rows = _grid_rows()
    assert write_figures(rows, tmp_path) == ["phase.png", "scaling_events.png"]
    for name in ("phase.png", "scaling_events.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_model_size_figure_needs_several_sizes(tmp_path):
    one_cell = _cell(0.0, 10, 100.0, 200.0, _band(100.0, 20.0))
    assert write_figures(one_cell, tmp_path) == []
    bigger = _row(0.0, 10, "Transformer big", 90.0, parameters=10_000)
    bigger["diff_final"] = _band(-10.0, 5.0)
    assert write_figures([*one_cell, bigger], tmp_path) == ["scaling_parameters.png"]
    assert (tmp_path / "scaling_parameters.png").stat().st_size > 0
