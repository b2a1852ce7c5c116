"""Agents that start from data on the platform: `warm_start` (logged events),
`checkpoint` (a pretrained transformer) and `feature_map` in `[[agents]]`.

The reference for a warm-started LinUCB is the same warm start done by hand
(`agents.warm_start.warm_start`) and `bandits.run` with the same seeds in the
same batch shape (the chunk size), in the same process and program: the stored
cumulative regret is then equal bit for bit (`assert_array_equal`).
"""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest

import agents
import bandits
import envs
from agents import pretrain
from agents import transformer as tf
from agents.warm_start import warm_start
from bandits import metrics
from bandits.validation import BanditConfigError
from envs import logged
from experiments.config.loader import build, load_config
from experiments.execute.runner import run_experiment
from experiments.store import storage
from tests.experiments.modules import InProcessExecutor

HORIZON = 60
SEEDS = 2
LINEAR = {"num_arms": 4, "dim": 3}
REC = {"num_items": 30, "num_users": 40, "num_candidates": 5, "history_length": 3}


@pytest.fixture(autouse=True)
def _one_device(monkeypatch):
    # A task refuses a process with several devices (bit-identity across
    # executors); the test process may hold two CPU devices.
    monkeypatch.setattr(jax, "local_device_count", lambda: 1)


def _logs(path, env_id="Linear-v0", params=LINEAR, events=200, seed=3):
    env, env_params = envs.make(env_id, **params)
    data = logged.generate(
        jax.random.key(seed), env, env_params, logged.uniform(), events, num_streams=4
    )
    logged.save(data, path)
    return data


def _config(
    folder, agent_lines: str, env_id="Linear-v0", params=LINEAR, file="config.toml"
):
    inline = ", ".join(f"{k} = {v}" for k, v in params.items())
    text = (
        f'name = "warm"\n[env]\nid = "{env_id}"\nparams = {{ {inline} }}\n'
        f"[run]\nhorizon = {HORIZON}\nseeds = {SEEDS}\nprediction_seeds = 0\n"
        f"{agent_lines}"
    )
    path = folder / file
    path.write_text(text)
    return path


WARM_LINUCB = """
[[agents]]
name = "linucb"
label = "LinUCB warm"
hyperparameters = { alpha = 0.5 }
warm_start = "logs/events.parquet"
"""


@pytest.fixture
def warm_folder(tmp_path):
    (tmp_path / "logs").mkdir()
    _logs(tmp_path / "logs" / "events.parquet")
    return tmp_path


def _run(config_path, out):
    config = load_config(config_path)
    return config, run_experiment(
        config, out, executor=InProcessExecutor(), progress=False
    )


def _stored_regret(out, label):
    return storage.read_curves(next((out / "curves").glob("*.parquet")))[
        label
    ].cumulative_regret


def test_warm_linucb_equals_warm_start_by_hand_and_bandits_run(warm_folder):
    config, _ = _run(_config(warm_folder, WARM_LINUCB), warm_folder / "out")
    env, params = envs.make("Linear-v0", **LINEAR)
    by_hand = warm_start(
        agents.linucb(num_arms=4, dim=3, alpha=0.5),
        str(warm_folder / "logs" / "events.parquet"),
    )
    trajectory = bandits.run(
        env, by_hand, horizon=HORIZON, seeds=list(config.run.seeds), params=params
    )
    stored = _stored_regret(warm_folder / "out", "LinUCB warm")
    assert stored.shape == (SEEDS, HORIZON)  # every step kept at T = 60
    np.testing.assert_array_equal(stored, metrics.cumulative_regret(trajectory))
    cold = bandits.run(
        env,
        agents.linucb(num_arms=4, dim=3, alpha=0.5),
        horizon=HORIZON,
        seeds=list(config.run.seeds),
        params=params,
    )
    # The warm start changes the run (else the test above would prove nothing).
    assert not np.array_equal(stored, metrics.cumulative_regret(cold))


def test_resume_reuses_and_a_changed_file_recomputes(warm_folder):
    path = _config(warm_folder, WARM_LINUCB)
    out = warm_folder / "out"
    _, first = _run(path, out)
    assert first.ran == ["LinUCB warm"]
    _, again = _run(path, out)
    assert again.ran == [] and again.skipped == ["LinUCB warm"]
    # The config stored with the results names the file by its absolute path,
    # so it reruns from there (its hash is the same config's).
    stored = load_config(out / "config.toml")
    assert stored.hash() == load_config(path).hash()
    assert (
        str(warm_folder / "logs" / "events.parquet")
        in (out / "config.toml").read_text()
    )
    before = _stored_regret(out, "LinUCB warm")
    # Moving the unchanged file elsewhere (same bytes) still reuses.
    shutil.copy(warm_folder / "logs" / "events.parquet", warm_folder / "copy.parquet")
    moved = _config(
        warm_folder, WARM_LINUCB.replace("logs/events", "copy"), file="moved.toml"
    )
    _, third = _run(moved, out)
    assert third.ran == []
    # New logs under the same name: the series is computed again, with them.
    _logs(warm_folder / "logs" / "events.parquet", seed=4)
    config, fourth = _run(path, out)
    assert fourth.ran == ["LinUCB warm"]
    assert not np.array_equal(before, _stored_regret(out, "LinUCB warm"))
    assert (
        config.canonical()["agents"][0]["warm_start"]["sha256"]
        != (load_config(moved).canonical()["agents"][0]["warm_start"]["sha256"])
    )


def test_a_changed_file_recomputes_only_the_agents_that_read_it(warm_folder):
    lines = WARM_LINUCB + '\n[[agents]]\nname = "random"\nlabel = "Random"\n'
    path = _config(warm_folder, lines)
    _run(path, warm_folder / "out")
    _logs(warm_folder / "logs" / "events.parquet", seed=5)
    _, result = _run(path, warm_folder / "out")
    assert result.ran == ["LinUCB warm"] and result.skipped == ["Random"]


def _checkpoint(path, env_params=REC, env_id="ContextualRec-v0", **architecture):
    env = envs.make_env(env_id, **env_params)
    cfg = tf.config_for_env(env, width=8, depth=1, heads=2, mlp_ratio=1, **architecture)
    graphdef, params = tf.split_model(cfg)
    del graphdef
    pretrain.save_checkpoint(path, cfg, params)
    return cfg, params


TRANSFORMER = """
[[agents]]
name = "transformer"
label = "Transformer"
checkpoint = "model.npz"
hyperparameters = { exploration = "ts", finetune = false, nu = 0.5 }
"""


@pytest.mark.slow
def test_a_tiny_checkpoint_runs_as_the_transformer_it_holds(tmp_path):
    cfg, params = _checkpoint(tmp_path / "model.npz")
    path = _config(tmp_path, TRANSFORMER, "ContextualRec-v0", REC)
    config, result = _run(path, tmp_path / "out")
    assert result.ran == ["Transformer"]
    env, env_params = envs.make("ContextualRec-v0", **REC)
    agent = tf.policy(cfg, params, exploration="ts", finetune=False, nu=0.5)
    trajectory = bandits.run(
        env, agent, horizon=HORIZON, seeds=list(config.run.seeds), params=env_params
    )
    np.testing.assert_array_equal(
        _stored_regret(tmp_path / "out", "Transformer"),
        metrics.cumulative_regret(trajectory),
    )


def test_a_checkpoint_reading_history_item_ids_builds(tmp_path):
    """On `ContextualRec-Sequential-v0` the history rows carry the item id and
    the checkpoint embeds it (`history_id_column`); the platform builds the
    agent it holds (shapes only: no run)."""
    cfg, _ = _checkpoint(tmp_path / "model.npz", env_id="ContextualRec-Sequential-v0")
    assert cfg.history_id_column is not None
    path = _config(tmp_path, TRANSFORMER, "ContextualRec-Sequential-v0", REC)
    experiment = build(load_config(path))
    (spec,) = experiment.specs_by_setting[0]
    assert spec.kwargs["history_id_column"] == cfg.history_id_column
    assert experiment.agents[0].name.startswith("transformer")


def _error(tmp_path, lines, env_id="Linear-v0", params=LINEAR) -> str:
    with pytest.raises(BanditConfigError) as info:
        load_config(_config(tmp_path, lines, env_id, params))
    return str(info.value)


def test_bad_start_files_are_config_errors_naming_the_field(warm_folder):
    def agent(extra: str, name: str = "linucb") -> str:
        return f'[[agents]]\nname = "{name}"\n{extra}\n'

    message = _error(warm_folder, agent('warm_start = "nowhere.parquet"'))
    assert "agents[0].warm_start" in message and "does not exist" in message
    message = _error(warm_folder, agent('warm_start = "logs"'))
    assert "agents[0].warm_start" in message and "is not a file" in message
    (warm_folder / "text.parquet").write_text("not parquet")
    message = _error(warm_folder, agent('warm_start = "text.parquet"'))
    assert "agents[0].warm_start" in message and "Parquet" in message
    corrupt = (warm_folder / "logs" / "events.parquet").read_bytes()
    (warm_folder / "cut.parquet").write_bytes(corrupt[: len(corrupt) // 2])
    message = _error(warm_folder, agent('warm_start = "cut.parquet"'))
    assert "agents[0].warm_start" in message
    message = _error(warm_folder, agent("warm_start = 3"))
    assert "agents[0].warm_start must be a file path" in message
    # Logs of another env (5 arms) for a 4-arm env.
    _logs(warm_folder / "five.parquet", params={"num_arms": 5, "dim": 3})
    message = _error(warm_folder, agent('warm_start = "five.parquet"'))
    assert message.startswith("agents[0].warm_start: the logged column 'arms'")
    assert "(5, 0), the env's observations (4, 0)" in message


def test_logs_of_another_format_version_are_refused(warm_folder):
    import pyarrow.parquet as pq

    from bandits.files import FORMAT_KEY

    table = pq.read_table(warm_folder / "logs" / "events.parquet")
    meta = json.loads(table.schema.metadata[FORMAT_KEY])
    meta["version"] = 999
    schema = table.schema.with_metadata(
        {**table.schema.metadata, FORMAT_KEY: json.dumps(meta).encode()}
    )
    pq.write_table(table.cast(schema), warm_folder / "v999.parquet")
    lines = '[[agents]]\nname = "linucb"\nwarm_start = "v999.parquet"\n'
    message = _error(warm_folder, lines)
    assert message.startswith("agents[0].warm_start")
    assert "format version 999" in message


def test_bad_checkpoints_and_agents_are_config_errors(warm_folder):
    message = _error(warm_folder, '[[agents]]\nname = "linucb"\ncheckpoint = "x.npz"\n')
    assert "agents[0].checkpoint" in message and "does not exist" in message
    (warm_folder / "x.npz").write_bytes(b"PK\x03\x04 not a zip")
    message = _error(warm_folder, '[[agents]]\nname = "linucb"\ncheckpoint = "x.npz"\n')
    assert "agent 'linucb' cannot start from a checkpoint" in message
    message = _error(
        warm_folder, TRANSFORMER.replace("model.npz", "x.npz"), "ContextualRec-v0", REC
    )
    assert "agents[0].checkpoint" in message and "not a readable" in message
    np.savez(warm_folder / "plain.npz", weights=np.zeros(3))
    message = _error(
        warm_folder,
        TRANSFORMER.replace("model.npz", "plain.npz"),
        "ContextualRec-v0",
        REC,
    )
    assert "agents[0].checkpoint" in message
    assert "is not a transformer checkpoint" in message
    _checkpoint(warm_folder / "model.npz", {**REC, "num_candidates": 6})
    message = _error(warm_folder, TRANSFORMER, "ContextualRec-v0", REC)
    assert "agents[0].checkpoint" in message and "num_arms 6 (env: 5)" in message
    _checkpoint(warm_folder / "model.npz")  # fits the env
    wider = TRANSFORMER.replace("nu = 0.5", "nu = 0.5, width = 99")
    message = _error(warm_folder, wider, "ContextualRec-v0", REC)
    assert message.startswith("agents[0].hyperparameters.width = 99 disagrees")
    message = _error(
        warm_folder,
        '[[agents]]\nname = "neural_ts"\nfeature_map = "items"\n',
    )
    assert "agents[0].feature_map must be one of 'context_items'" in message
    message = _error(
        warm_folder, '[[agents]]\nname = "neural_ts"\nfeature_map = "context_items"\n'
    )
    assert "agents[0].feature_map" in message and "recommendation env" in message


def test_a_slate_agent_cannot_be_warm_started(warm_folder):
    lines = '[[agents]]\nname = "random_slate"\nwarm_start = "logs/events.parquet"\n'
    message = _error(
        warm_folder,
        lines,
        "LinearSlate-v0",
        {"num_arms": 4, "dim": 3, "slate_size": 2},
    )
    assert "agents[0].warm_start" in message and "slate" in message


def test_errors_come_before_any_compute(warm_folder, monkeypatch):
    """A bad file stops `load_config`: no task is built or run."""
    calls = []
    monkeypatch.setattr(
        "experiments.execute.tasks.execute_task", lambda spec: calls.append(spec)
    )
    with pytest.raises(BanditConfigError):
        load_config(_config(warm_folder, WARM_LINUCB.replace("events", "none")))
    assert calls == []


def test_warm_state_is_built_once_per_process(warm_folder, monkeypatch):
    config = load_config(_config(warm_folder, WARM_LINUCB))
    spec = build(config).specs_by_setting[0][0]
    from experiments.config import loader

    replays = []
    real = loader.build_started

    def counting(*args, **kwargs):
        replays.append(kwargs.get("replay"))
        return real(*args, **kwargs)

    monkeypatch.setattr(loader, "build_started", counting)
    loader._build_started.cache_clear()
    first = loader.build_agent(spec)
    assert loader.build_agent(spec) is first
    assert replays == [True]


def test_feature_map_builds_the_context_items_agent(tmp_path):
    lines = (
        '[[agents]]\nname = "linucb"\nlabel = "Mapped"\nfeature_map = "context_items"'
        "\nhyperparameters = { alpha = 0.3 }\n"
    )
    config = load_config(_config(tmp_path, lines, "ContextualRec-v0", REC))
    spec = build(config).specs_by_setting[0][0]
    env = envs.make_env("ContextualRec-v0", **REC)
    width = env.item_dim + env.num_categories * env.context_dim
    assert spec.kwargs["dim"] == width and spec.kwargs["features"] == "arms"
    assert config.canonical()["agents"][0]["feature_map"] == "context_items"
