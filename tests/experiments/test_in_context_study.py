"""Smoke test of the in-context study's command (`--quick`: a 2-arm env, H = 8,
20 pretraining steps, 4 instances), its checkpoint reuse and its config errors."""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest

import envs
from experiments import cli
from experiments.config.tables import parse_run
from experiments.config.toml_writer import toml_value
from experiments.studies import in_context as study


def test_quick_run_writes_its_files_and_reuses_the_checkpoint(tmp_path, capsys):
    out = tmp_path / "ic"
    assert study.main(["--quick", "--out", str(out)]) == 0
    for name in ("checkpoint.npz", "regret.png", "summary.json", "summary.md"):
        assert (out / name).is_file(), name
    assert not (out / study.PARTIAL_FILE).exists()  # the progress file goes
    summary = json.loads((out / "summary.json").read_text())
    labels = [row["agent"] for row in summary["rows"]]
    assert labels == ["In-context (DPT)", "LinUCB", "LinTS", "Uniform random"]
    assert all(row["instances"] == 4 and row["horizon"] == 8 for row in summary["rows"])
    assert summary["pretraining"]["tasks"] == 20 * 8
    assert summary["pretraining"]["settings"]["steps"] == 20
    config = study.load_study(study.CONFIG, quick=True)
    env, _ = envs.make(config["env"]["id"], **config["env"]["params"])
    capsys.readouterr()
    study.pretrained(config, env, out)
    assert "reusing" in capsys.readouterr().out
    # A damaged checkpoint is pretrained again (the same steps, the same model).
    checkpoint = out / "checkpoint.npz"
    whole = checkpoint.read_bytes()
    checkpoint.write_bytes(whole[: len(whole) // 2])
    _, _, record = study.pretrained(config, env, out)
    assert "pretraining anew" in capsys.readouterr().out
    assert record["tasks"] == 20 * 8
    study.pretrained(config, env, out)
    assert "reusing" in capsys.readouterr().out
    # The stage's stamp: other pretraining settings pretrain again.
    assert (out / study.CHECKPOINT_STAMP).is_file()
    other = {**config, "pretrain": {**config["pretrain"], "seed": 1}}
    _, _, record = study.pretrained(other, env, out)
    assert "made otherwise; pretraining anew" in capsys.readouterr().out
    assert record["settings"]["seed"] == 1


def test_a_bad_config_is_refused_naming_the_field(tmp_path, capsys):
    text = study.CONFIG.read_text().replace("steps = 2000", "steps = 2000.5")
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert study.main(["--config", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "pretrain.steps must be a positive integer" in capsys.readouterr().err
    # The model and the pretraining options are checked by the library's own
    # rules, for the config's env, before any compute.
    for old, new, message in (
        ("heads = 2", "heads = 3", "model.width must be divisible by heads (3)"),
        ("[model]", "[model]\nwidht = 8", "unknown key 'widht' in model"),
        ("learning_rate = 0.001", "learning_rate = 0", "pretrain.learning_rate"),
        ("seed = 0", "seed = -1", "pretrain.seed must be an integer >= 0"),
    ):
        assert old in study.CONFIG.read_text()
        path.write_text(study.CONFIG.read_text().replace(old, new, 1))
        assert study.main(["--config", str(path), "--out", str(tmp_path / "o")]) == 2
        assert message in capsys.readouterr().err
    missing = tmp_path / "missing.toml"
    assert study.main(["--config", str(missing)]) == 2
    assert f"config {str(missing)!r} not found" in capsys.readouterr().err
    other = tmp_path / "other.toml"
    other.write_text(study.CONFIG.read_text().replace('"in_context"', '"ope"', 1))
    assert study.main(["--config", str(other), "--out", str(tmp_path / "o")]) == 2
    assert "study must be 'in_context'" in capsys.readouterr().err


def test_the_run_table_is_the_platforms(tmp_path, capsys):
    """`[run]` goes through the platform's parser: its keys (a seed list,
    chunk_size) reach the written platform config, `first_seed` offsets a
    count of seeds, and keys the study sets itself are refused naming why."""
    config = study.load_study(study.CONFIG)
    config["run"] = {"horizon": 7, "seeds": [4, 9], "chunk_size": 1}
    # The written config's [run], read by the platform's parser.
    run = parse_run(tomllib.loads(study.platform_config(config))["run"])
    assert (run.horizon, run.seeds, run.chunk_size) == (7, (4, 9), 1)
    assert (run.resample_params, run.curve_points, run.prediction_seeds) == (
        True,
        7,
        0,
    )
    config["run"] = {"horizon": 7, "seeds": 3, "first_seed": 10}
    assert study.online_run(config["run"]).seeds == (10, 11, 12)
    assert study.online_run(config["run"], seeds=2).seeds == (10, 11)  # --seeds
    text = study.CONFIG.read_text()
    for old, new, message in (
        ("first_seed = 1000000", "curve_points = 3", "run.curve_points is set by"),
        ("seeds = 200", "seeds = [1, 2]", "run.first_seed offsets a count of seeds"),
        ("first_seed = 1000000", "first_seed = -1", "run.first_seed must be an"),
        ("first_seed = 1000000", "chunks = 2", "unknown key 'chunks'"),
    ):
        assert old in text
        path = tmp_path / "bad.toml"
        path.write_text(text.replace(old, new))
        assert study.main(["--config", str(path), "--out", str(tmp_path / "o")]) == 2
        assert message in capsys.readouterr().err


def test_the_baselines_are_checked_by_the_platform_parser(tmp_path, capsys):
    """`[[agents]]` and `[env]` are read as in any platform config: an unknown
    agent, hyperparameter, env or env parameter is refused at load, naming its
    path; a table of the earlier layout (`[evaluation]`, `[[baselines]]`) is
    refused naming the new one."""
    path = tmp_path / "c.toml"
    for old, new, message in (
        ('id = "Linear-v0"', 'id = "Linear-v9"', "env.id: unknown env 'Linear-v9'"),
        (
            'id = "Linear-v0"',
            'id = "Linear-v0"\ngrid = { dim = [2] }',
            "unknown key 'grid' in [env]",
        ),
        ("noise_std = 0.3", "noise_sd = 0.3", "unknown key 'noise_sd' in env.params"),
        (
            "alpha = 1.0",
            "alfa = 1.0",
            "unknown hyperparameter 'alfa' in agents[0].hyperparameters",
        ),
        ('name = "lints"', 'name = "lin_ts"', "agents[1].name: unknown agent"),
        ("[run]", "[evaluation]", "evaluation is called [run]"),
        ("[[agents]]", "[[baselines]]", "baselines is called [agents]"),
    ):
        assert old in study.CONFIG.read_text()
        path.write_text(study.CONFIG.read_text().replace(old, new))
        assert study.main(["--config", str(path), "--out", str(tmp_path / "o")]) == 2
        assert message in capsys.readouterr().err


def test_fixed_arms_config_runs_with_arm_feature_baselines(tmp_path):
    path = study.CONFIG.with_name("in_context_fixed_arms.toml")
    config = study.load_study(path, quick=True)
    # --quick keeps the config's env and its other parameters, made small
    assert config["env"]["id"] == "LinearFixedArms-v0"
    assert config["env"]["params"]["num_arms"] == 2
    assert config["env"]["params"]["shared_arms"] is True
    out = tmp_path / "fixed"
    assert study.main(["--config", str(path), "--quick", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    labels = [row["agent"] for row in summary["rows"]]
    assert labels == ["In-context (DPT)", "LinUCB", "LinTS", "Uniform random"]
    assert summary["pretraining"]["settings"]["env"] == "LinearFixedArms-v0"


def test_the_platform_run_is_bandits_run_on_the_same_instances(tmp_path):
    """The study's evaluation goes through the platform (config.toml, results/);
    its curves are those of `bandits.run` with the study's seeds and
    `resample_params=True`, for the frozen model (built from the checkpoint)
    and a baseline. Actions are integers and the arithmetic is the same
    compiled per-seed program, so the cumulative regret agrees to float32
    rounding (1e-5 relative: the platform's seed batches may differ from one
    `bandits.run` call's)."""
    import numpy as np

    import agents
    import bandits
    from bandits import metrics

    out = tmp_path / "ic"
    assert study.main(["--quick", "--out", str(out), "--seeds", "5"]) == 0
    assert (out / "config.toml").is_file()
    assert (out / "results" / "report.html").is_file()
    config = study.load_study(study.CONFIG, quick=True)
    env, _ = envs.make(config["env"]["id"], **config["env"]["params"])
    first = config["run"]["first_seed"]
    seeds = list(range(first, first + 5))
    assert study.online_run(config["run"], 5).seeds == tuple(seeds)
    stored = study.evaluate(config, out, 5)  # a rerun: read back, nothing computed
    dpt = agents.make(
        "in_context", num_arms=2, dim=2, checkpoint=str(out / "checkpoint.npz")
    )
    linucb = agents.make("linucb", num_arms=2, dim=2, alpha=1.0)
    for label, agent in (("In-context (DPT)", dpt), ("LinUCB", linucb)):
        run = bandits.run(env, agent, horizon=8, seeds=seeds, resample_params=True)
        expected = metrics.cumulative_regret(run)
        assert stored[label].shape == expected.shape == (5, 8)
        np.testing.assert_allclose(stored[label], expected, rtol=1e-5, atol=1e-5)


def test_a_rerun_computes_nothing(tmp_path, capsys):
    out = tmp_path / "ic"
    assert study.main(["--quick", "--out", str(out)]) == 0
    chunks = sorted((out / "results" / "chunks").rglob("*"))
    stamps = [p.stat().st_mtime_ns for p in chunks]
    capsys.readouterr()
    assert study.main(["--quick", "--out", str(out)]) == 0
    assert "reusing" in capsys.readouterr().out
    assert sorted((out / "results" / "chunks").rglob("*")) == chunks
    assert [p.stat().st_mtime_ns for p in chunks] == stamps
    # Another baseline setting is another platform config: refused, then
    # replaced with --overwrite.
    other = tmp_path / "other.toml"
    other.write_text(study.CONFIG.read_text().replace("alpha = 1.0", "alpha = 2.0"))
    args = ["--config", str(other), "--quick", "--out", str(out)]
    assert study.main(args) == 2
    assert "holds results of a different config" in capsys.readouterr().err
    assert study.main([*args, "--overwrite"]) == 0


@pytest.mark.slow
def test_recommendation_config_reads_item_features_not_ids(tmp_path):
    """configs/in_context_rec.toml on ContextualRec-v0 (--quick: 100 items, 4
    candidates): the model reads the 13 item features of each candidate and
    holds the id column without reading it; the baselines run beside it."""
    from agents.in_context_pretrain import load_checkpoint

    path = study.CONFIG.with_name("in_context_rec.toml")
    config = study.load_study(path, quick=True)
    assert config["env"]["params"] == {
        "num_items": 100,
        "num_users": 300,
        "num_candidates": 4,
    }
    out = tmp_path / "rec"
    assert study.main(["--config", str(path), "--quick", "--out", str(out)]) == 0
    cfg, _, _ = load_checkpoint(out / "checkpoint.npz")
    assert (cfg.num_arms, cfg.arm_dim, cfg.arm_columns) == (4, 13, 14)
    summary = json.loads((out / "summary.json").read_text())
    labels = [row["agent"] for row in summary["rows"]]
    assert labels == [
        "In-context (DPT)",
        "LinUCB, context x item crosses",
        "Uniform random",
    ]


def test_bandits_run_runs_the_config_as_the_study_command_does(tmp_path, capsys):
    """A config with `study = "in_context"` goes to the study through `bandits
    run` (pretraining, then its platform runs on the command's executor), with
    the numbers of `python -m experiments.studies.in_context` on that config."""
    quick = study.load_study(study.CONFIG, quick=True)
    del quick["output"]
    path = tmp_path / "tiny.toml"
    path.write_text("".join(f"{k} = {toml_value(v)}\n" for k, v in quick.items()))
    by_cli, by_command = tmp_path / "cli", tmp_path / "command"
    assert cli.main(["run", str(path), "--out", str(by_cli), "--quiet"]) == 0
    assert (by_cli / "checkpoint.npz").is_file()
    assert (by_cli / "results" / "manifest.json").is_file()
    assert study.main(["--config", str(path), "--out", str(by_command)]) == 0

    def rows(folder):
        return json.loads((folder / "summary.json").read_text())["rows"]

    assert rows(by_cli) == rows(by_command)
    assert rows(by_cli)[0]["agent"] == study.DPT_LABEL
    capsys.readouterr()
    # --chunk-size replaces run.chunk_size of the online runs, as for a
    # platform config: part of the config's hash (another folder), the same
    # numbers to float32 rounding (smaller seed batches).
    by_chunks = tmp_path / "chunks"
    chunked = ["run", str(path), "--out", str(by_chunks), "--chunk-size", "2"]
    assert cli.main([*chunked, "--quiet"]) == 0
    stored = json.loads((by_chunks / "results" / "manifest.json").read_text())
    assert stored["config"]["run"]["chunk_size"] == 2
    for chunked_row, row in zip(rows(by_chunks), rows(by_cli), strict=True):
        assert chunked_row["agent"] == row["agent"]
        np.testing.assert_allclose(
            chunked_row["final_regret"], row["final_regret"], rtol=1e-5
        )
    capsys.readouterr()
    chunked = ["run", str(path), "--out", str(by_cli), "--chunk-size", "0"]
    assert cli.main(chunked) == cli.EXIT_CONFIG_ERROR
    assert "--chunk-size must be >= 1" in capsys.readouterr().err
    # The packaged configs name their study (read by name, as `bandits run`
    # gives it), and `bandits list` names them.
    for name in ("in_context", "in_context_rec", "in_context_fixed_arms_per_instance"):
        assert study.load_study(name)["study"] == "in_context"
    assert cli.main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "in_context  (experiments.studies.in_context; configs: in_context, " in (
        listing
    )
    assert "large_models, large_models_cold, large_models_scaling, " in listing
