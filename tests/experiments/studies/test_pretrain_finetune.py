"""Smoke run of the pretrain/fine-tune study, and its config checks.

The smoke run uses `--quick` (a small env, 300 rounds, 2 seeds, a one-block
width-16 transformer) with 1,000 logged events and three of the config's agents
(pretrained transformer, warm LinUCB, random), so it compiles few programs.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import envs
from agents import pretrain as pretraining
from agents import transformer as tf
from bandits.validation import BanditConfigError
from envs import logged
from experiments import cli
from experiments.config.loader import load_config
from experiments.execute.executors import LocalExecutor
from experiments.store.stages import Stage
from experiments.studies import pretrain_finetune
from experiments.studies.pretrain_finetune import Args, main, select
from experiments.studies.pretrain_finetune_cells import study_cells
from experiments.studies.pretrain_finetune_config import load_study
from tests.experiments.modules import run_module

AGENTS = ["Transformer pretrained + TS", "LinUCB (warm)", "Random"]
TRANSFORMER_ON_REC = (
    '[[envs]]\nid = "ContextualRec-v0"\n[[agents]]\nname = "transformer"\n'
)


def _run(*args: str):
    return run_module("experiments.studies.pretrain_finetune", *args)


@pytest.mark.slow
def test_quick_run_writes_tables_checkpoints_and_plots(tmp_path, capsys, monkeypatch):
    """In this process (`main` is what the command line calls)."""
    args = ["--quick", "--events", "1000", "--out", str(tmp_path), "--agents"]
    assert main([*args, *AGENTS]) == 0
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert [r["agent"] for r in rows] == AGENTS
    for row in rows:
        assert row["horizon"] == 300 and row["seeds"] == 2
        for band in (row["final_regret"], row["early_regret"], row["ctr"]):
            assert band["low"] <= band["mean"] <= band["high"]
        assert row["early_regret"]["mean"] <= row["final_regret"]["mean"]
    held = {r["agent"]: r["held_out"] for r in rows}
    assert held["Random"] is None
    for name in AGENTS[:2]:
        metrics = held[name]
        assert 0.0 <= metrics["roc_auc"] <= 1.0 and metrics["log_loss"] > 0
    folder = tmp_path / "ContextualRec-v0"
    data = logged.load(folder / "logs.parquet")
    assert len(data) == 1000
    assert (folder / "checkpoint_unweighted.npz").exists()
    assert not list(folder.glob("*.partial.npz"))  # the progress file goes
    assert (folder / "pretrain_unweighted.png").stat().st_size > 0
    assert (folder / "regret.png").stat().st_size > 0
    assert "| Transformer pretrained + TS |" in (tmp_path / "summary.md").read_text()
    # The agents ran on the platform, from the study's files.
    platform = (folder / "config.toml").read_text()
    assert 'checkpoint = "checkpoint_unweighted.npz"' in platform
    assert 'warm_start = "train.parquet"' in platform
    assert (folder / "results" / "manifest.json").is_file()
    assert len(logged.load(folder / "train.parquet")) == 900  # before the holdout
    # Each warm or pretrained agent's held-out metrics are a stage of their own.
    stamps = sorted(p.name for p in (folder / "held_out").glob("*.json"))
    assert len(stamps) == 2 and stamps[0].startswith("LinUCB-warm")
    # A rerun resumes: every agent is already done, nothing is recomputed.
    capsys.readouterr()

    def not_again(*args):
        raise AssertionError("held-out metrics computed again")

    monkeypatch.setattr(pretrain_finetune, "held_out_metrics", not_again)
    assert main([*args, *AGENTS]) == 0
    again = json.loads((tmp_path / "summary.json").read_text())
    assert {r["agent"]: r["held_out"] for r in again} == held
    assert "regret@T" not in capsys.readouterr().out
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 3


def test_unknown_agent_label_is_rejected_before_running(tmp_path):
    done = _run("--quick", "--out", str(tmp_path), "--agents", "Nobody")
    assert done.returncode != 0
    assert "unknown agent label" in done.stderr and "'Random'" in done.stderr
    assert not (tmp_path / "results.jsonl").exists()


def test_packaged_config_lists_the_issue_agents_and_envs():
    study = load_study("pretrain_finetune")
    assert study.horizon == 20_000 and study.seeds >= 16
    assert [e for e, _ in study.envs] == [
        "ContextualRec-v0",
        "ContextualRec-ColdStart-v0",
        "ContextualRec-Drift-v0",
    ]
    labels = {s.label for s in study.agents}
    for needed in (
        "Transformer pretrained + TS",
        "Transformer scratch + TS",
        "LinUCB",
        "LinUCB (warm)",
        "NeuralTS",
        "NeuralTS (warm)",
        "Popularity",
        "Random",
    ):
        assert needed in labels
    quick = select(study, Args(quick=True))
    assert quick.horizon == 300 and len(quick.envs) == 1
    np.testing.assert_equal(quick.model["width"], 16)


def test_bad_config_raises(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[run]\nhorizon = 10\n[logs]\npolicy = "greedy"\n')
    with pytest.raises(BanditConfigError, match=r"logs\.policy"):
        load_study(str(path))
    path.write_text('[[agents]]\nlabel = "x"\nname = "nonexistent"\n')
    # The platform's agent-table parser reports it (listing the known agents).
    with pytest.raises(BanditConfigError, match=r"agents\[0\]\.name: unknown agent"):
        load_study(str(path))
    path.write_text('[[agents]]\nname = "transformer"\nmodel = { depth2 = 1 }\n')
    with pytest.raises(BanditConfigError, match="unknown key"):
        load_study(str(path))
    path.write_text('[[agents]]\nname = "random"\nenvs = ["Nope-v0"]\n')
    with pytest.raises(BanditConfigError, match="unknown env"):
        load_study(str(path))
    path.write_text('[[agents]]\nkind = "random"\n')
    with pytest.raises(BanditConfigError, match="unknown key 'kind'"):
        load_study(str(path))  # the platform's key: name
    path.write_text('[[agents]]\nname = "linucb"\nwarm_start = "none.parquet"\n')
    with pytest.raises(BanditConfigError, match=r"agents\[0\]\.warm_start: file"):
        load_study(str(path))  # a path is checked by the platform's parser
    path.write_text('[[agents]]\nname = "random"\nenvs = ["ContextualRec-v0"]\n')
    assert load_study(str(path)).agents[0].envs == ("ContextualRec-v0",)
    # Numbers are checked by type and range before anything runs.
    for text, field in (
        ('[run]\nhorizon = "x"\n', r"run\.horizon must be a positive integer"),
        ("[logs]\nholdout = 1.5\n", r"logs\.holdout"),
        ("[pretrain]\nlearning_rate = 0\n", r"pretrain\.learning_rate"),
        (
            "[model]\nwide_cross = -1\n" + TRANSFORMER_ON_REC,
            r"model\.wide_cross must be an integer >= 0",
        ),
        (  # the library's rule, with the env's item features
            "[model]\nwide_cross = 99\n" + TRANSFORMER_ON_REC,
            r"model\.wide_cross must be <= arm_features",
        ),
        (
            TRANSFORMER_ON_REC + "model = { heads = 3 }\n",
            r"model\.width must be divisible by heads \(3\)",
        ),
        (
            TRANSFORMER_ON_REC + "model = { depth = 0 }\n",
            r"agents\[0\]\.model\.depth must be a positive integer",
        ),
        (
            TRANSFORMER_ON_REC.replace("ContextualRec-v0", "Linear-v0"),
            r"agents\[0\]: a transformer reads a recommendation env's items",
        ),
        (  # checked on the study's envs even with no transformer to train
            '[model]\nwidth = "x"\n[[envs]]\nid = "ContextualRec-v0"\n',
            r"model\.width must be a positive integer",
        ),
        ("[pretrain]\nssl_weight = -1\n", r"pretrain\.ssl_weight must be"),
        ("[pretrain]\nseed = -1\n", r"pretrain\.seed must be an integer >= 0"),
        ("[logs]\nnum_streams = 0\n", r"logs\.num_streams must be a positive"),
        (
            '[[agents]]\nname = "transformer"\npretrain = { epochs = 0 }\n',
            r"agents\[0\]\.pretrain\.epochs must be a positive integer",
        ),
    ):
        path.write_text(text)
        with pytest.raises(BanditConfigError, match=field):
            load_study(str(path))
    path.write_text('study = "in_context"\n')
    with pytest.raises(BanditConfigError, match="study must be 'pretrain_finetune'"):
        load_study(str(path))
    path.write_text("[run\nhorizon = 10\n")
    with pytest.raises(BanditConfigError, match="is not valid TOML"):
        load_study(str(path))
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(BanditConfigError, match="cannot read config"):
        load_study(str(path))
    # Found as every config is (`sources.read_source`): a folder, a missing name.
    with pytest.raises(BanditConfigError, match="is not a file"):
        load_study(str(tmp_path))
    with pytest.raises(BanditConfigError, match="not found: no such file, and not a "):
        load_study("no_such_config")


def test_run_table_is_the_platforms_plus_the_studys_keys(tmp_path):
    """`[run]` goes through the platform's parser: its keys and checks hold
    here, those the study sets itself are refused naming why, and the written
    platform config carries the user's settings."""
    path = tmp_path / "run.toml"
    path.write_text(
        '[run]\nhorizon = 50\nseeds = [3, 7]\nchunk_size = 1\nseed_key = "direct"\n'
        'early_steps = 10\n[[envs]]\nid = "ContextualRec-v0"\n'
        '[[agents]]\nname = "random"\n'
    )
    study = load_study(str(path))
    assert (study.horizon, study.seeds, study.run.seeds) == (50, 2, (3, 7))
    assert (study.run.chunk_size, study.run.seed_key, study.early_steps) == (
        1,
        "direct",
        10,
    )
    path.write_text("[run]\nseeds = 3\n")  # the study's defaults fill the rest
    default = load_study(str(path))
    assert (default.horizon, default.run.seeds, default.early_steps) == (
        20_000,
        (0, 1, 2),
        2_000,
    )
    assert not default.run.resample_params
    path.write_text('[run]\ninstances = "held_out"\n[logs]\ninstances = 2\n')
    assert load_study(str(path)).run.resample_params
    for text, message in (
        ("curve_points = 5", r"run\.curve_points is set by the study: every step"),
        ("prediction_seeds = 1", r"run\.prediction_seeds is set by the study"),
        ("resample_params = true", r"run\.resample_params is set by the study"),
        ("curves = 5", r"unknown key 'curves'"),
        ("seeds = [1, 1]", r"run\.seeds lists seed\(s\) \[1\] more than once"),
        ('chunk_size = "big"', r"run\.chunk_size must be a positive integer or"),
        ("early_steps = 0", r"run\.early_steps must be a positive integer"),
    ):
        path.write_text(f"[run]\n{text}\n")
        with pytest.raises(BanditConfigError, match=message):
            load_study(str(path))
    # The platform config written for a cell runs what the table says.
    env = envs.make_env("ContextualRec-v0")
    (cell,) = study_cells(study)
    text = pretrain_finetune.platform_config(cell, study.agents, env, study)
    (target := tmp_path / "platform.toml").write_text(text)
    run = load_config(str(target)).run
    assert (run.horizon, run.seeds, run.chunk_size, run.seed_key) == (
        50,
        (3, 7),
        1,
        "direct",
    )
    assert (run.curve_points, run.prediction_seeds, run.resample_params) == (
        50,
        0,
        False,
    )


def test_bandits_run_hands_a_config_of_this_layout_to_the_study(tmp_path, monkeypatch):
    """The four packaged configs of this layout say `study =
    "pretrain_finetune"`: `bandits run NAME` runs the study with the config as
    it is, into `--out` (or `results/<name>`), its platform runs on the
    command's executor, `--quiet` without progress."""
    seen = {}

    def study_run(args, executor=None, progress=None):
        seen.update(args=args, executor=executor, progress=progress)
        return 0

    monkeypatch.setattr(pretrain_finetune, "_run", study_run)
    out = tmp_path / "lm"
    argv = ["run", "large_models", "--out", str(out), "--overwrite", "--quiet"]
    assert cli.main([*argv, "--workers", "1"]) == 0
    assert seen["args"] == Args(out=str(out), config="large_models", overwrite=True)
    assert isinstance(seen["executor"], LocalExecutor)
    assert seen["executor"].workers == 1 and seen["progress"] is False
    # --chunk-size goes to the online runs' [run] (`select` applies it).
    assert cli.main([*argv, "--workers", "1", "--chunk-size", "3"]) == 0
    assert seen["args"].chunk_size == 3
    study = select(load_study("large_models"), seen["args"])
    assert study.run.chunk_size == 3 and study.run.seeds == tuple(range(16))
    for name in ("pretrain_finetune", "large_models_cold", "large_models_scaling"):
        assert load_study(name).agents  # the `study` key is the study's own


def _small_cell(events: int = 600):
    study = select(load_study("pretrain_finetune"), Args(quick=True, events=events))
    cell = study_cells(study)[0]
    env, params = envs.make(cell.env_id, **cell.params)
    return study, cell, env, params


def test_logs_are_reused_only_with_their_settings_and_intact(tmp_path, monkeypatch):
    """The logs are a stage (`logs.json`: the settings and the checksums of
    both log files): a rerun reuses them only then; a damaged log file or a
    damaged stamp makes the logs again (the same events: the same keys), and so
    do other logging settings."""
    study, cell, env, params = _small_cell()
    made = []
    real = pretrain_finetune.generate_logs

    def counted(*args):
        made.append(args)
        return real(*args)

    monkeypatch.setattr(pretrain_finetune, "generate_logs", counted)

    def prepare(study=study):
        return pretrain_finetune.prepare_logs(cell, env, params, study, tmp_path)

    train, _, stage = prepare()
    assert len(made) == 1 and stage.state() == "kept"
    stamp = json.loads((tmp_path / "logs.json").read_text())
    assert set(stamp) == {"settings", "sha256", "record"}
    assert set(stamp["sha256"]) == {"logs.parquet", "train.parquet"}
    again, _, _ = prepare()
    assert len(made) == 1
    np.testing.assert_array_equal(again.reward, train.reward)
    for damaged in ("train.parquet", "logs.parquet"):
        path = tmp_path / damaged
        path.write_bytes(path.read_bytes()[:-100])
        again, _, _ = prepare()
        np.testing.assert_array_equal(again.reward, train.reward)
    assert len(made) == 3
    np.testing.assert_array_equal(
        logged.load(tmp_path / "train.parquet").reward, train.reward
    )
    (tmp_path / "logs.json").write_text("{")
    prepare()
    assert len(made) == 4
    prepare(dataclasses.replace(study, logs={**study.logs, "seed": 99}))
    assert len(made) == 5


def test_a_checkpoint_is_kept_only_with_its_settings_and_intact(tmp_path):
    """A checkpoint is a stage made from the architecture, the pretraining
    options and the exact training events (the checksum of `train.parquet`):
    another of any of them, or a damaged checkpoint, pretrains again."""
    study, _, env, _ = _small_cell()
    spec = next(s for s in study.agents if s.pretrained)
    cfg = pretrain_finetune.agent_config(spec, env, study)
    (tmp_path / "train.parquet").write_bytes(b"events")
    logs = Stage(tmp_path, "logs.json", {"events": 1}, ("train.parquet",))
    logs.finish()
    options = {"epochs": 1, "learning_rate": 0.001, "seed": 0, "ips": False}

    def stage(cfg=cfg, options=options):
        return pretrain_finetune.pretrain_stage("t", cfg, options, logs, tmp_path)

    path = tmp_path / stage().files[0]
    pretraining.save_checkpoint(path, cfg, tf.split_model(cfg, 7)[1])
    stage().finish({"seconds": 1.0})
    assert stage().state() == "kept"
    assert stage().record() == {"seconds": 1.0}
    assert stage(options={**options, "seed": 1}).state() == "made otherwise"
    assert stage(options={**options, "ips": True}).state() == "made otherwise"
    wider = dataclasses.replace(cfg, width=cfg.width * 2)
    assert stage(cfg=wider).state() == "made otherwise"
    path.write_bytes(path.read_bytes()[:200])
    assert stage().state() == "damaged"
    pretraining.save_checkpoint(path, cfg, tf.split_model(cfg, 7)[1])
    stage().finish()
    (tmp_path / "train.parquet").write_bytes(b"other events")
    logs.finish()
    assert stage().state() == "made otherwise"


@pytest.mark.parametrize("name", ["pretrain_finetune", "large_models"])
def test_every_agent_of_a_packaged_config_gets_a_platform_config(name, tmp_path):
    """The platform config written for each cell names every agent that runs
    there in a form the platform reads back (an unset architecture field of a
    transformer trained from scratch is left to the factory's default: TOML
    has no null)."""
    study = select(load_study(name), Args(quick=True))
    seen = set()
    for cell in study_cells(study):
        if (cell.env_id, repr(cell.params)) in seen:
            continue
        seen.add((cell.env_id, repr(cell.params)))
        specs = [s for s in study.agents if s.envs is None or cell.env_id in s.envs]
        env = envs.make_env(cell.env_id, **cell.params)
        folder = tmp_path / str(len(seen))
        folder.mkdir()
        text = pretrain_finetune.platform_config(cell, specs, env, study)
        for spec in specs:  # the checkpoints the study pretrains first
            if spec.pretrained:
                cfg = pretrain_finetune.agent_config(spec, env, study)
                path = folder / f"checkpoint_{spec.checkpoint_tag}.npz"
                pretraining.save_checkpoint(path, cfg, tf.split_model(cfg, 0)[1])
        if any(spec.warm_start for spec in specs):  # and the logs they replay
            _, params = envs.make(cell.env_id, **cell.params)
            logs = {**study.logs, "events": 32, "num_streams": 1}
            data = pretrain_finetune.generate_logs(env, params, logs, 32)
            logged.save(data, folder / pretrain_finetune.TRAIN_FILE)
        (folder / "config.toml").write_text(text)
        config = load_config(folder / "config.toml")
        assert [a.label for a in config.agents] == [s.label for s in specs]
