"""The pretrain/fine-tune study across instances (configs/large_models.toml):
cells of an env grid x data sizes, logs of several problem instances, online
runs on instances no log came from, and the config checks."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

import envs
from bandits.validation import BanditConfigError
from envs import logged
from experiments.execute.evaluation import _seed_instance
from experiments.studies.pretrain_finetune import Args, main, select
from experiments.studies.pretrain_finetune_cells import (
    check_disjoint,
    generate_logs,
    log_instance_keys,
    platform_instance_keys,
    split_logs,
    study_cells,
)
from experiments.studies.pretrain_finetune_config import load_study

SMALL = {"num_items": 100, "num_users": 300, "steps_per_day": 48}
SEQUENTIAL = "ContextualRec-Sequential-v0"


def _leaves_differ(a, b) -> bool:
    """Whether two problem instances differ in some array."""
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return any(not np.array_equal(np.asarray(x), np.asarray(y)) for x, y in pairs)


@pytest.mark.slow
def test_quick_large_models_run_writes_one_row_per_cell_and_agent(tmp_path, capsys):
    """The packaged config's --quick path cut to two cells (one grid parameter,
    one data size) and two agents, so the suite stays short: the full quick
    path (8 cells, 3 agents) takes about 7 minutes here."""
    from experiments.studies.pretrain_finetune_config import CONFIG_DIR

    text = (CONFIG_DIR / "large_models.toml").read_text()
    grid = (
        "grid = { sequence_strength = [0.0, 1.0], interaction_strength = [0.0, 0.5] }"
    )
    assert grid in text
    config = tmp_path / "large_models_two_cells.toml"
    config.write_text(text.replace(grid, "grid = { sequence_strength = [0.0, 1.0] }"))
    labels = ["Transformer pretrained + TS", "LinUCB (warm)"]
    out = tmp_path / "out"
    args = ["--config", str(config), "--quick", "--events", "2000", "--out", str(out)]
    args += ["--agents", *labels]
    assert main(args) == 0
    rows = json.loads((out / "summary.json").read_text())
    study = select(
        load_study(str(config)),
        Args(config=str(config), quick=True, events=2000, agents=tuple(labels)),
    )
    cells = study_cells(study)
    assert len(cells) == 2  # 2 grid points x 1 data size
    assert [(r["cell"], r["agent"]) for r in rows] == [
        (c.name, a) for c in cells for a in labels
    ]
    for row in rows:
        for band in (row["final_regret"], row["early_regret"], row["ctr"]):
            assert band["low"] <= band["mean"] <= band["high"]
        assert row["reference"] == "Transformer pretrained + TS"
        if row["agent"] == row["reference"]:
            assert "diff_final" not in row
        else:
            diff = row["diff_final"]
            assert diff["low"] <= diff["mean"] <= diff["high"]
            assert diff["high"] > diff["low"]  # an interval over 2 seeds
    summary = (out / "summary.md").read_text()
    assert "### All cells" in summary and "difference at T" in summary
    folder = out / cells[0].name
    assert "resample_params = true" in (folder / "config.toml").read_text()
    assert len(logged.load(folder / "logs.parquet")) == 2000
    # A rerun resumes: no logs, checkpoints or runs are recomputed.
    files = [folder / "logs.parquet", folder / "checkpoint_unweighted.npz"]
    stamps = [f.stat().st_mtime_ns for f in files]
    capsys.readouterr()
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "regret@T" not in printed and "logged" not in printed
    assert "pretrained" not in printed
    assert [f.stat().st_mtime_ns for f in files] == stamps
    assert json.loads((out / "summary.json").read_text()) == rows


def test_logs_of_several_instances_hold_distinct_instances():
    env = envs.make_env(SEQUENTIAL, **SMALL)
    spec = {"policy": "uniform", "seed": 7, "num_streams": 4, "instances": 3}
    spec["holdout"] = 0.25
    data = generate_logs(env, None, spec, 302)
    assert len(data) == 302 and data.metadata["instances"] == 3
    keys = log_instance_keys(env, 7, 3)
    instances = [env.sample_params(k) for k, _ in keys]
    for i in range(3):
        for j in range(i):
            assert _leaves_differ(instances[i], instances[j])
    # 101, 101, 100 events; every instance's tail is held out, streams are
    # distinct across instances.
    train, held = split_logs(data, spec, 302)
    assert (len(train), len(held)) == (76 + 76 + 75, 25 + 25 + 25)
    assert len(np.unique(data.stream)) == 12
    np.testing.assert_array_equal(np.unique(train.stream), np.arange(12))
    # Instance 1's events are the logs of its own instance, regenerated alone.
    log_key = keys[1][1]
    alone = logged.generate(
        log_key, env, instances[1], logged.uniform(), 101, num_streams=4
    )
    mine = train.take(np.flatnonzero((train.stream >= 4) & (train.stream < 8)))
    np.testing.assert_array_equal(mine.action, alone.action[:76])
    np.testing.assert_array_equal(mine.expected_rewards, alone.expected_rewards[:76])


def test_held_out_online_instances_differ_from_every_log_instance():
    env = envs.make_env(SEQUENTIAL, **SMALL)
    seeds = range(16)
    run_keys = platform_instance_keys(seeds)
    # The keys are the platform's own per-seed instance keys.
    default = env.default_params()
    for seed, key in zip(seeds, run_keys, strict=True):
        drawn = _seed_instance(env, jax.random.key(seed), default, True)[0]
        assert not _leaves_differ(drawn, env.sample_params(key))
    for instances in (1, 8):
        log_keys = [k for k, _ in log_instance_keys(env, 1234, instances)]
        check_disjoint(log_keys, run_keys)
        logs = [env.sample_params(k) for k in log_keys]
        for key in run_keys:
            online = env.sample_params(key)
            assert all(_leaves_differ(online, p) for p in logs)
    assert not _leaves_differ(logs[0], logs[0])  # the comparison can fail
    with pytest.raises(BanditConfigError, match="seed 3's instance is a log"):
        check_disjoint([run_keys[3]], run_keys)


def test_packaged_config_and_its_quick_version():
    study = load_study("large_models")
    assert study.horizon == 20_000 and study.early_steps == 2_000
    assert study.run_instances == "held_out" and study.logs["instances"] > 1
    assert study.logs["events"] == [10_000, 100_000, 1_000_000]
    assert len(study_cells(study)) == 12
    names = {s.label: s for s in study.agents}
    assert names["LinUCB (warm)"].name == "linucb_context_items"
    assert names["NeuralTS (warm)"].feature_map == "context_items"
    assert all(s.warm_start for s in study.agents if s.name != "transformer")
    assert names["Transformer pretrained + TS"].pretrained == "unweighted"
    quick = select(study, Args(config="large_models", quick=True))
    assert (quick.horizon, quick.seeds, quick.logs["events"]) == (300, 2, [2000, 4000])
    assert quick.model["width"] == 16 and len(study_cells(quick)) == 8
    # Without the new options, one cell per env in the env's folder, as before.
    today = load_study("pretrain_finetune")
    assert [c.name for c in study_cells(today)] == [e for e, _ in today.envs]
    assert today.run_instances == "logged" and "instances" not in today.logs


BAD = {
    "logs.instances = 0": ("[logs]\ninstances = 0\n", r"logs\.instances must be"),
    "logs.instances = 1.5": ("[logs]\ninstances = 1.5\n", r"logs\.instances must be"),
    "run.instances": ('[run]\ninstances = "new"\n', r"run\.instances must be one of"),
    "logged with instances": (
        '[run]\ninstances = "logged"\n[logs]\ninstances = 2\n',
        r"needs logs\.instances = 1",
    ),
    "events list": ("[logs]\nevents = [1000, 0]\n", r"logs\.events must be a positive"),
    "events empty": ("[logs]\nevents = []\n", r"logs\.events must be a positive"),
    "grid parameter": (
        f'[[envs]]\nid = "{SEQUENTIAL}"\ngrid = {{ sequence_strenght = [0.0] }}\n',
        r"unknown parameter 'sequence_strenght' in envs\[0\]\.grid",
    ),
    "grid values": (
        f'[[envs]]\nid = "{SEQUENTIAL}"\ngrid = {{ sequence_strength = 1.0 }}\n',
        r"envs\[0\]\.grid\.sequence_strength must be a non-empty array",
    ),
    "env key": (f'[[envs]]\nid = "{SEQUENTIAL}"\ngird = 1\n', "unknown key 'gird'"),
    "env settings": (
        f'[[envs]]\nid = "{SEQUENTIAL}"\nsettings = []\n',
        r"unknown key 'settings' in envs\[0\]",
    ),
    "env id": ('[[envs]]\nid = "Nope-v0"\n', r"envs\[0\]\.id: unknown env 'Nope-v0'"),
    "grid and params": (
        f'[[envs]]\nid = "{SEQUENTIAL}"\nparams = {{ sequence_strength = 1.0 }}\n'
        "grid = { sequence_strength = [0.0] }\n",
        r"envs\[0\]\.grid\.sequence_strength: 'sequence_strength' is set in both",
    ),
    "grid point": (
        f'[[envs]]\nid = "{SEQUENTIAL}"\ngrid = {{ num_items = [100, 10] }}\n',
        r"envs\[0\]\.grid point \{'num_items': 10\}: num_candidates must be",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_values_are_clear_errors_before_compute(tmp_path, case, capsys):
    text, message = BAD[case]
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(BanditConfigError, match=message):
        load_study(str(path))
    assert main(["--config", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_events_option_below_the_instances_is_rejected(tmp_path):
    study = load_study("large_models")
    with pytest.raises(BanditConfigError, match="--events 4 must be at least"):
        select(study, dataclasses.replace(Args(), events=4))


def test_model_size_config_pretrains_three_sizes_up_to_about_a_million():
    """configs/large_models_scaling.toml: one cell of the sequential preset with
    three transformer sizes (their own checkpoints) beside the warm agents; the
    parameter counts are those its header states."""
    from experiments.studies.pretrain_finetune import parameter_count

    study = load_study("large_models_scaling")
    (cell,) = study_cells(study)
    env = envs.make_env(cell.env_id, **cell.params)
    transformers = [s for s in study.agents if s.name == "transformer"]
    assert len({s.checkpoint_tag for s in transformers}) == 3
    counts = [parameter_count(s, env, study) for s in transformers]
    assert counts == [55_996, 211_676, 1_020_668]
    others = [s for s in study.agents if s.name != "transformer"]
    assert [parameter_count(s, env, study) for s in others] == [None, None]
    assert all(s.warm_start for s in others)


def test_cold_baselines_config_runs_on_the_cells_of_the_study():
    """configs/large_models_cold.toml: the same grid, run and logs settings as
    large_models.toml at 10,000 events, so its seeds draw the same held-out
    instances; its agents start from nothing."""
    cold, study = load_study("large_models_cold"), load_study("large_models")
    assert (cold.horizon, cold.seeds, cold.run_instances) == (
        study.horizon,
        study.seeds,
        study.run_instances,
    )
    assert cold.grids == study.grids
    assert {k: v for k, v in cold.logs.items() if k != "events"} == {
        k: v for k, v in study.logs.items() if k != "events"
    }
    cells = [c.name for c in study_cells(cold)]
    assert cells == [c.name for c in study_cells(study) if c.events == 10_000]
    assert all(not s.warm_start and not s.pretrained for s in cold.agents)
