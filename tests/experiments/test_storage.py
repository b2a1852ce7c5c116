"""Result storage: Parquet and JSON Lines round trips, downsampling, atomic writes."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from bandits import metrics
from bandits.types import Trajectory
from bandits.validation import BanditConfigError
from experiments.store import storage


def fake_trajectory(num_seeds: int, horizon: int, seed: int = 0) -> Trajectory:
    """A (S, T) trajectory with random regret, rewards and optimal flags."""
    rng = np.random.default_rng(seed)
    optimal = rng.random((num_seeds, horizon)) < 0.3
    regret = np.where(optimal, 0.0, rng.random((num_seeds, horizon))).astype(np.float32)
    best = np.ones((num_seeds, horizon), np.float32)
    return Trajectory(
        action=rng.integers(0, 5, (num_seeds, horizon)).astype(np.int32),
        reward=rng.normal(size=(num_seeds, horizon)).astype(np.float32),
        expected_reward=best - regret,
        optimal_expected_reward=best,
        regret=regret,
        optimal=optimal,
    )


def test_curve_steps_keeps_every_step_up_to_the_limit():
    np.testing.assert_array_equal(storage.curve_steps(7, 10), np.arange(1, 8))
    np.testing.assert_array_equal(storage.curve_steps(10, 10), np.arange(1, 11))


def test_curve_steps_downsamples_log_and_linear():
    steps = storage.curve_steps(1_000_000, 200)
    assert steps.size <= 200
    assert steps[0] == 1 and steps[-1] == 1_000_000
    assert np.all(np.diff(steps) > 0)
    # Log spacing keeps the first rounds densely...
    assert {1, 2, 3, 4, 5} <= set(steps.tolist())
    # ...and linear spacing covers the tail: no gap wider than T / (#linear - 1).
    assert np.max(np.diff(steps)) <= 1_000_000 / 99 + 1


def test_curve_steps_needs_two_points():
    with pytest.raises(BanditConfigError, match="max_points must be >= 2"):
        storage.curve_steps(100, 1)


def test_curves_match_hand_computed_cumulative_sums():
    trajectory = fake_trajectory(3, 40)
    curves = storage.curves_from_trajectory(trajectory, [5, 6, 7])
    regret = np.cumsum(np.asarray(trajectory.regret, np.float64), axis=1)
    np.testing.assert_array_equal(curves.cumulative_regret, regret)
    np.testing.assert_array_equal(
        curves.cumulative_optimal, np.cumsum(trajectory.optimal, axis=1)
    )
    np.testing.assert_allclose(
        curves.optimal_fraction[:, -1], np.mean(trajectory.optimal, axis=1)
    )
    np.testing.assert_array_equal(curves.seeds, [5, 6, 7])


def test_parquet_round_trip(tmp_path):
    trajectory = fake_trajectory(3, 50)
    curves = storage.curves_from_trajectory(trajectory, [0, 1, 2])
    path = storage.write_curves(tmp_path / "a.parquet", "agent <a>", curves)
    back = storage.read_curves(path)
    assert list(back) == ["agent <a>"]
    got = back["agent <a>"]
    np.testing.assert_array_equal(got.seeds, curves.seeds)
    np.testing.assert_array_equal(got.steps, curves.steps)
    np.testing.assert_array_equal(got.cumulative_regret, curves.cumulative_regret)
    np.testing.assert_array_equal(got.cumulative_optimal, curves.cumulative_optimal)
    # Rewards are stored as float32: relative error <= 2^-24 per value.
    np.testing.assert_allclose(
        got.cumulative_reward, curves.cumulative_reward, rtol=1e-6, atol=1e-5
    )
    table = pq.read_table(path)
    assert table.column_names == storage.CURVE_SCHEMA.names
    assert table.num_rows == 3 * 50


def test_downsampled_curves_hold_the_exact_values_at_kept_steps(tmp_path):
    trajectory = fake_trajectory(2, 500)
    curves = storage.curves_from_trajectory(trajectory, [0, 1], max_points=20)
    assert curves.steps.size <= 20
    full = np.cumsum(np.asarray(trajectory.regret, np.float64), axis=1)
    np.testing.assert_array_equal(curves.cumulative_regret, full[:, curves.steps - 1])
    storage.write_curves(tmp_path / "d.parquet", "x", curves)
    back = storage.read_curves(tmp_path / "d.parquet")["x"]
    np.testing.assert_array_equal(back.steps, curves.steps)


def test_read_curves_from_a_folder_keeps_file_order(tmp_path):
    for index, label in enumerate(["zeta", "alpha"]):
        curves = storage.curves_from_trajectory(fake_trajectory(2, 5, index), [0, 1])
        storage.write_curves(
            tmp_path / storage.curve_file_name(index, label), label, curves
        )
    assert list(storage.read_curves(tmp_path)) == ["zeta", "alpha"]


def test_curve_file_names_are_safe():
    assert storage.curve_file_name(3, "<b>x</b>&/../y") == "003-b-x-b-y.parquet"
    assert storage.curve_file_name(0, "///") == "000-agent.parquet"
    assert (
        storage.curve_file_name(1, "LinUCB alpha=0.1") == "001-LinUCB-alpha=0.1.parquet"
    )


def test_jsonl_round_trip(tmp_path):
    trajectory = fake_trajectory(4, 30)
    records = storage.seed_records("A", trajectory, [0, 1, 2, 3])
    records.append(storage.agent_record("A", trajectory, rounds_per_s=12.5))
    path = storage.write_summaries(tmp_path / storage.SUMMARIES, records)
    assert storage.read_summaries(tmp_path) == records
    assert storage.read_summaries(path) == records
    lines = path.read_text().splitlines()
    assert len(lines) == 5 and all(json.loads(line) for line in lines)

    seeds = [r for r in records if r["kind"] == "seed"]
    final = np.cumsum(np.asarray(trajectory.regret, np.float64), axis=1)[:, -1]
    np.testing.assert_allclose([r["final_regret"] for r in seeds], final)
    aggregate = records[-1]
    summary = metrics.summarize("A", trajectory)
    assert aggregate["final_regret_low"] == summary.final_regret_low
    assert aggregate["final_regret_high"] == summary.final_regret_high
    assert aggregate["confidence"] == 0.95
    assert aggregate["rounds_per_s"] == 12.5


def test_json_refuses_nan(tmp_path):
    with pytest.raises(ValueError):
        storage.write_jsonl(tmp_path / "x.jsonl", [{"a": float("nan")}])
    assert not (tmp_path / "x.jsonl").exists()


def test_malformed_jsonl_names_the_line(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"a": 1}\n{oops\n')
    with pytest.raises(BanditConfigError, match=r"s\.jsonl:2 is not valid JSON"):
        storage.read_jsonl(path)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    path = storage.atomic_write_text(tmp_path / "f.txt", "old")

    def fail(tmp):
        tmp.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        storage.atomic_write(path, fail)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_manifest_round_trip_and_missing_manifest(tmp_path):
    with pytest.raises(BanditConfigError, match=r"manifest\.json not found"):
        storage.read_manifest(tmp_path)
    manifest = {"config_hash": "abc", "agents": [{"label": "A", "x": np.float32(1.5)}]}
    storage.write_manifest(tmp_path, manifest)
    assert storage.read_manifest(tmp_path) == {
        "config_hash": "abc",
        "agents": [{"label": "A", "x": 1.5}],
    }


def test_log_spacing_keeps_only_log_spaced_steps():
    steps = storage.curve_steps(1_000_000, 100, spacing="log")
    assert steps[0] == 1 and steps[-1] == 1_000_000 and steps.size <= 100
    # Log spacing: consecutive kept steps grow by a roughly constant factor, so
    # the tail is sparse (the last gap is about T * (1 - 10**(-6/99)) ~ 13% of T).
    assert np.max(np.diff(steps)) > 100_000
    with pytest.raises(BanditConfigError, match="spacing must be one of"):
        storage.curve_steps(10, 5, spacing="linear")


def test_chunk_files_round_trip_curves_and_metadata(tmp_path):
    curves = storage.curves_from_trajectory(fake_trajectory(2, 30), [4, 5])
    meta = {"config_hash": "abc", "seeds": [4, 5], "cost": {"run_s": 0.5}}
    path = tmp_path / storage.chunk_file_name(3, 1)
    assert path.name == "0003-c0001.parquet"
    storage.write_curves(path, "A <b>", curves, meta)
    back, back_meta = storage.read_chunk(path)
    assert back_meta == meta
    np.testing.assert_array_equal(back.cumulative_regret, curves.cumulative_regret)
    np.testing.assert_array_equal(back.seeds, [4, 5])
    # A chunk file is also a plain curves file.
    assert list(storage.read_curves(path)) == ["A <b>"]
    plain = storage.write_curves(tmp_path / "plain.parquet", "A", curves)
    with pytest.raises(BanditConfigError, match="holds no chunk metadata"):
        storage.read_chunk(plain)


def test_concat_curves_stacks_seed_chunks_in_order():
    trajectory = fake_trajectory(5, 40)
    whole = storage.curves_from_trajectory(trajectory, [0, 1, 2, 3, 4], 10)
    parts = [
        storage.curves_from_trajectory(
            trajectory._replace(
                **{
                    f: getattr(trajectory, f)[rows]
                    for f in ("regret", "reward", "optimal")
                }
            ),
            seeds,
            10,
        )
        for rows, seeds in ((slice(0, 2), [0, 1]), (slice(2, 5), [2, 3, 4]))
    ]
    merged = storage.concat_curves(parts)
    for field in whole._fields:
        np.testing.assert_array_equal(getattr(merged, field), getattr(whole, field))
    other = storage.curves_from_trajectory(fake_trajectory(1, 40), [9], 20)
    with pytest.raises(BanditConfigError, match="different steps"):
        storage.concat_curves([parts[0], other])


def test_summaries_from_curves_match_summaries_from_trajectories():
    trajectory = fake_trajectory(4, 300)
    # Downsampled curves still end at step T, so final values are exact.
    curves = storage.curves_from_trajectory(trajectory, [0, 1, 2, 3], max_points=20)
    got, want = storage.curve_summary("A", curves), metrics.summarize("A", trajectory)
    assert got.agent == want.agent and got._asdict().keys() == want._asdict().keys()
    # Rewards are cumulated in float64 here and averaged directly there.
    assert got[1:] == pytest.approx(want[1:], rel=1e-6)
    from_curves = storage.curve_seed_records("A", curves)
    from_trajectory = storage.seed_records("A", trajectory, [0, 1, 2, 3])
    for a, b in zip(from_curves, from_trajectory, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == (
                b[key] if isinstance(a[key], str) else pytest.approx(b[key], rel=1e-6)
            ), key


def test_a_chunk_matches_only_its_own_config_hash(tmp_path):
    """The hash is compared as the metadata's `config_hash` value: a chunk whose
    other fields happen to hold the digest (as text) does not match."""
    curves = storage.curves_from_trajectory(fake_trajectory(2, 10), [0, 1])
    path = tmp_path / "c.parquet"
    storage.write_curves(path, "a", curves, {"config_hash": "abc", "task": "def"})
    assert storage.chunk_matches(path, "abc")
    assert not storage.chunk_matches(path, "def")
    assert not storage.chunk_matches(path, "ab")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    assert not storage.chunk_matches(tmp_path / "broken.parquet", "abc")
    with pytest.raises(BanditConfigError, match="not a readable chunk file"):
        storage.read_chunk_meta(tmp_path / "broken.parquet")
