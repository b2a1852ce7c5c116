"""Derived and damaged files of a results folder are rebuilt, never trusted.

Before: a deleted `summaries.jsonl` was not regenerated on rerun ("computed 0,
reused 2") and the report's table became dashes; a truncated one was refused;
a truncated curve file broke every rerun, because the series counted as
finished while its file existed. Now summaries are rebuilt from the stored
curves, and a series whose curve file does not read back is recomputed.
"""

from __future__ import annotations

import json

import pytest

from experiments.config.loader import parse_config
from experiments.execute.runner import run_experiment
from experiments.store import manifest, storage

CONFIG = {
    "name": "damaged",
    "env": {"id": "Linear-v0", "params": {"num_arms": 3, "dim": 2}},
    "run": {"horizon": 30, "seeds": 3, "prediction_seeds": 0},
    "agents": [{"name": "linucb", "label": "LinUCB"}, {"name": "random"}],
}
NUMBERS = ("kind", "agent", "seed", "final_regret", "final_regret_mean", "seeds")


def numbers(directory):
    return [
        {k: r[k] for k in NUMBERS if k in r} for r in storage.read_summaries(directory)
    ]


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    out = tmp_path_factory.mktemp("first")
    run_experiment(parse_config(CONFIG), out, progress=False)
    return out, (out / storage.SUMMARIES).read_bytes()


@pytest.mark.parametrize("damage", ["delete", "truncate", "one series lost"])
def test_damaged_summaries_are_rebuilt_from_the_curves(first, tmp_path, damage):
    source, _ = first
    out = tmp_path / "out"
    run_experiment(parse_config(CONFIG), out, progress=False)
    path = out / storage.SUMMARIES
    original = path.read_bytes()
    assert numbers(out) == numbers(source)  # the same config: the same numbers
    if damage == "delete":
        path.unlink()
    elif damage == "truncate":
        path.write_bytes(original[: len(original) // 2])
    else:
        kept = [line for line in original.decode().splitlines() if "LinUCB" in line]
        path.write_text("\n".join(kept) + "\n")
    result = run_experiment(parse_config(CONFIG), out, progress=False)
    assert result.computed == ()  # nothing simulated again
    assert path.read_bytes() == original  # the lines the merge wrote, byte for byte
    assert "| LinUCB |" in (out / "report.md").read_text().replace("  ", " ")


def test_a_damaged_curve_file_is_recomputed(first, tmp_path):
    source, _ = first
    out = tmp_path / "out"
    run_experiment(parse_config(CONFIG), out, progress=False)
    entry = manifest.read(out).entry("LinUCB")
    curve = out / entry.curves
    curve.write_bytes(curve.read_bytes()[:100])
    result = run_experiment(parse_config(CONFIG), out, progress=False)
    assert [a.label for a in result.agents if not a.skipped] == ["LinUCB"]
    assert numbers(out) == numbers(source)
    assert json.loads((out / "manifest.json").read_text())["agents"][0]["label"] == (
        "LinUCB"
    )


def test_a_hand_edited_manifest_is_refused_by_name(first, tmp_path, capsys):
    """Before: wrong types in a hand-edited manifest were accepted and a phantom
    row appeared in the report. Now the report and a rerun name the field; an
    `--overwrite` run replaces the results."""
    from experiments import cli

    out = tmp_path / "out"
    run_experiment(parse_config(CONFIG), out, progress=False)
    raw = storage.read_manifest(out)
    raw["agents"][0]["chunks"] = "many"
    storage.write_manifest(out, raw)
    assert cli.main(["report", str(out)]) == cli.EXIT_CONFIG_ERROR
    err = capsys.readouterr().err
    assert "agents[0].chunks has the wrong type (str)" in err
    with pytest.raises(Exception, match="cannot be used") as info:
        run_experiment(parse_config(CONFIG), out, progress=False)
    assert "agents[0].chunks" in str(info.value)
    run_experiment(parse_config(CONFIG), out, overwrite=True, progress=False)
    assert manifest.read(out).agents[0].chunks == 1
