"""Slate runs on the platform: per-position click rates, expected clicks and
NDCG@L stored with the curves, summarised with 95% intervals, reported as a
table and a figure, and kept across a resumed run.

One tiny config (LinearSlate-v0, two agents, T = 100, two seeds in chunks of
one) runs in this process; the reference is `bandits.run` on each chunk's seed
with the same batch shape (one seed), so the agents take the same actions and
the sampled clicks (0 or 1) are the same: the click rates, means of T such
values, agree exactly. NDCG and expected clicks are float32 per step and
averaged in float64 on both sides, hence compared at 1e-6 (float32 rounding).
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import bandits
from bandits import metrics
from experiments.config.loader import build, parse_config
from experiments.execute.runner import run_experiment
from experiments.report import render
from experiments.store import manifest, storage
from tests.experiments.modules import InProcessExecutor

SEEDS = (0, 1)
HORIZON = 100
CONFIG = {
    "name": "slates-tiny",
    "env": {
        "id": "LinearSlate-v0",
        "params": {"num_arms": 8, "dim": 3, "slate_size": 3},
    },
    "run": {
        "horizon": HORIZON,
        "seeds": len(SEEDS),
        "chunk_size": 1,
        "prediction_seeds": 0,
    },
    "agents": [
        {"name": "random_slate", "label": "Random slates"},
        {
            "name": "top_l_linucb",
            "label": "Top-L LinUCB",
            "hyperparameters": {"alpha": 0.5},
        },
    ],
}


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """The tiny slate config run once into a folder: (config, folder, result)."""
    patch = pytest.MonkeyPatch()
    # A task refuses a process with several devices (bit-identity across
    # executors); the test process may hold two CPU devices.
    patch.setattr(jax, "local_device_count", lambda: 1)
    config = parse_config(CONFIG)
    out = tmp_path_factory.mktemp("slates") / "out"
    result = run_experiment(config, out, executor=InProcessExecutor(), progress=False)
    yield config, out, result
    patch.undo()


def _reference(config, label: str) -> bandits.Trajectory:
    """`bandits.run` of one agent on each seed alone (the chunks' batch shape)."""
    experiment = build(config)
    (index,) = [a.index for a in config.agents if a.label == label]
    env, agent = experiment.envs[0], experiment.agents_by_setting[0][index]
    runs = [
        bandits.run(
            env,
            agent,
            horizon=HORIZON,
            seeds=[seed],
            params=env.default_params(),
            seed_key=config.run.seed_key,
        )
        for seed in SEEDS
    ]
    return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), *runs)


def _seed_lines(out, label):
    lines = storage.read_summaries(out)
    return [r for r in lines if r["kind"] == "seed" and r["agent"] == label]


@pytest.mark.parametrize("label", ["Random slates", "Top-L LinUCB"])
def test_stored_slate_summaries_equal_those_of_bandits_run(stored, label):
    config, out, _ = stored
    reference = _reference(config, label)
    lines = _seed_lines(out, label)
    assert [r["seed"] for r in lines] == list(SEEDS)
    np.testing.assert_array_equal(
        [r["click_rate"] for r in lines], metrics.click_rate_per_position(reference)
    )
    np.testing.assert_allclose(
        [r["ndcg"] for r in lines], metrics.ndcg(reference).mean(axis=-1), atol=1e-6
    )
    expected = np.asarray(reference.slate.expected_clicks, np.float64).mean(axis=1)
    np.testing.assert_allclose(
        [r["expected_clicks"] for r in lines], expected, atol=1e-6
    )
    # The summary line: the mean over seeds and its 95% interval.
    (summary,) = [
        r
        for r in storage.read_summaries(out)
        if r["kind"] == "agent" and r["agent"] == label
    ]
    band = metrics.mean_band(metrics.click_rate_per_position(reference))
    slate = summary["slate"]
    assert slate["positions"] == 3 and slate["seeds"] == len(SEEDS)
    np.testing.assert_allclose(slate["click_rate"]["mean"], band.mean, atol=1e-12)
    np.testing.assert_allclose(slate["click_rate"]["low"], band.low, atol=1e-12)
    np.testing.assert_allclose(slate["click_rate"]["high"], band.high, atol=1e-12)


def test_the_curve_file_holds_the_slate_summaries(stored):
    _, out, _ = stored
    m = manifest.read(out)
    for entry in m.agents:
        slate = storage.read_slate(out / entry.curves)
        assert slate is not None and slate["seeds"] == list(SEEDS)
        assert np.shape(slate["click_rate"]) == (len(SEEDS), 3)
        assert manifest.damage(out, m, entry.curves) is None  # checksum covers it


def test_the_report_shows_the_slate_table_and_figure(stored):
    _, out, _ = stored
    text = (out / render.REPORT_MD).read_text()
    assert "## Slates: click rate per position and NDCG" in text
    assert "| Agent | Click rate @1 | Click rate @2 | Click rate @3 | NDCG@3 |" in text
    assert f"![Click rate by slate position]({render.CLICK_RATE_PNG})" in text
    png = out / render.CLICK_RATE_PNG
    assert png.read_bytes().startswith(b"\x89PNG")
    assert render.CLICK_RATE_PNG in manifest.read(out).files
    html = (out / render.REPORT_HTML).read_text()
    assert "Click rate @3" in html


def test_a_rerun_resumes_and_rebuilds_lost_summary_lines(stored):
    config, out, first = stored
    assert len(first.computed) == 2 * len(SEEDS)  # two series, one seed a chunk
    before = (out / storage.SUMMARIES).read_text()
    again = run_experiment(config, out, executor=InProcessExecutor(), progress=False)
    assert again.computed == ()
    assert (out / storage.SUMMARIES).read_text() == before
    # Summary lines lost: rebuilt from the curve files (slate fields included).
    (out / storage.SUMMARIES).unlink()
    third = run_experiment(config, out, executor=InProcessExecutor(), progress=False)
    assert third.computed == ()
    rebuilt = [json.loads(line) for line in before.splitlines()]
    assert storage.read_summaries(out) == rebuilt
