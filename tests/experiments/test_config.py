"""Config parsing: every bad input raises BanditConfigError naming the field."""

from __future__ import annotations

import copy
import re
import tomllib

import pytest

from bandits.validation import BanditConfigError
from experiments.config.loader import (
    build,
    load_config,
    packaged_config_text,
    packaged_configs,
    parse_config,
)


def base() -> dict:
    return {
        "name": "unit",
        "env": {"id": "Linear-v0", "params": {"num_arms": 4, "dim": 3}},
        "run": {"horizon": 100, "seeds": 2},
        "agents": [
            {"name": "linucb", "label": "LinUCB", "hyperparameters": {"alpha": 1.0}},
            {"name": "lints"},
            {"name": "epsilon_greedy", "hyperparameters": {"epsilon": 0.2}},
        ],
    }


def check(data: dict):
    """Parses and builds (the two stages `load_config` runs)."""
    return build(parse_config(data))


def with_change(path: tuple, value) -> dict:
    data = copy.deepcopy(base())
    target = data
    for key in path[:-1]:
        target = target.setdefault(key, {}) if isinstance(key, str) else target[key]
    target[path[-1]] = value
    return data


def raises(data: dict, *fragments: str):
    with pytest.raises(BanditConfigError) as info:
        check(data)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    return str(info.value)


def test_valid_config_fills_shapes_from_env():
    experiment = check(base())
    assert [a.label for a in experiment.config.agents] == [
        "LinUCB",
        "lints",
        "epsilon_greedy",
    ]
    for kwargs in experiment.agent_kwargs:
        assert kwargs["num_arms"] == 4
        assert kwargs["dim"] == 3
    assert experiment.config.run.seeds == (0, 1)
    assert experiment.config.run.resample_params is False


def test_arms_features_take_the_arm_feature_dim():
    data = base()
    data["env"] = {
        "id": "LinearArmFeatures-v0",
        "params": {"num_arms": 7, "arm_dim": 5, "context_dim": 2},
    }
    data["agents"] = [{"name": "linucb", "hyperparameters": {"features": "arms"}}]
    kwargs = check(data).agent_kwargs[0]
    assert (kwargs["num_arms"], kwargs["dim"]) == (7, 5)


@pytest.mark.parametrize(
    ("path", "fragments"),
    [
        (("horizn",), ["unknown key 'horizn' in the top level", "allowed: name, env"]),
        (("env", "kind"), ["unknown key 'kind' in [env]", "allowed: id, params"]),
        (("env", "params", "arms"), ["unknown key 'arms' in env.params", "num_arms"]),
        (
            ("run", "horizn"),
            ["unknown key 'horizn' in [run]", "allowed: horizon, seeds"],
        ),
        (
            ("agents", 0, "hyper"),
            ["unknown key 'hyper' in agents[0]", "hyperparameters"],
        ),
        (
            ("agents", 1, "hyperparameters", "alhpa"),
            ["unknown hyperparameter 'alhpa' in agents[1].hyperparameters", "v, "],
        ),
        (
            ("agents", 0, "grid", "beta"),
            ["unknown hyperparameter 'beta' in agents[0].grid", "alpha"],
        ),
    ],
)
def test_unknown_keys_at_every_level(path, fragments):
    raises(with_change(path, 1), *fragments)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            ("run", "horizon"),
            "100",
            "run.horizon must be a positive integer, got '100' (str)",
        ),
        (
            ("run", "horizon"),
            1.5,
            "run.horizon must be a positive integer, got 1.5 (float)",
        ),
        (
            ("run", "horizon"),
            5.0,
            "run.horizon must be a positive integer, got 5.0 (float)",
        ),
        (
            ("run", "horizon"),
            True,
            "run.horizon must be a positive integer, got True (bool)",
        ),
        (("run", "seeds"), "2", "run.seeds must be a positive integer S"),
        (("run", "seeds"), [0, "1"], "run.seeds[1] must be an integer, got str"),
        (("run", "resample_params"), "yes", "run.resample_params must be a boolean"),
        (("run", "output"), 3, "run.output must be a string"),
        (("run", "curve_points"), 1, "run.curve_points must be >= 2"),
        (("env", "id"), 3, "env.id must be a string, got int"),
        (("env", "params"), 3, "env.params must be a table, got int"),
        (("env", "params", "num_arms"), "4", "env.params.num_arms must be an integer"),
        (("env", "params", "noise_std"), "x", "env.params.noise_std must be a number"),
        (("agents",), {"name": "linucb"}, "agents must be an array of tables"),
        (("agents",), [], "agents must list at least one agent"),
        (("agents", 0, "name"), 3, "agents[0].name must be a string, got int"),
        (("agents", 0, "label"), "", "agents[0].label must be a non-empty"),
        (("agents", 0, "label"), "a\nb", "agents[0].label must be a non-empty"),
        (
            ("agents", 0, "hyperparameters", "alpha"),
            "big",
            "agents[0].hyperparameters.alpha must be a number, got str",
        ),
        (
            ("agents", 0, "hyperparameters", "alpha"),
            float("inf"),
            "agents[0].hyperparameters.alpha must be a finite number",
        ),
        (
            ("agents", 0, "hyperparameters", "features"),
            1,
            "agents[0].hyperparameters.features must be a string, got int",
        ),
        (
            ("agents", 0, "grid"),
            {"regularization": 1.0},
            "agents[0].grid.regularization must be a non-empty",
        ),
    ],
)
def test_wrong_types_name_the_field(path, value, message):
    raises(with_change(path, value), message)


def test_missing_required_keys():
    data = base()
    del data["run"]
    raises(data, "missing key 'run' in the top level")
    data = base()
    del data["run"]["horizon"]
    raises(data, "missing key 'horizon' in [run]")
    data = base()
    del data["agents"][2]["name"]
    raises(data, "missing key 'name' in agents[2]")


def test_unknown_env_id_lists_known_envs():
    raises(
        with_change(("env", "id"), "Lineer-v0"), "env.id", "'Lineer-v0'", "Linear-v0"
    )


def test_gymnasium_style_env_id_is_accepted():
    assert check(with_change(("env", "id"), "bandits/Linear-v0")).config.env.id == (
        "Linear-v0"
    )


def test_unknown_agent_lists_known_agents():
    raises(with_change(("agents", 1, "name"), "linucbb"), "agents[1].name", "linucb")


@pytest.mark.parametrize("horizon", [0, -5])
def test_horizon_must_be_positive(horizon):
    raises(
        with_change(("run", "horizon"), horizon),
        f"run.horizon must be a positive integer, got {horizon}",
    )


@pytest.mark.parametrize(
    ("seeds", "message"),
    [
        (0, "run.seeds must be a positive integer, got 0"),
        (-3, "run.seeds must be a positive integer, got -3"),
        ([], "run.seeds must not be an empty list"),
        ([1, -1], "run.seeds[1] must be in [0, 2**32)"),
        ([1, 2, 1], "run.seeds lists seed(s) [1] more than once"),
    ],
)
def test_seeds_must_be_positive(seeds, message):
    raises(with_change(("run", "seeds"), seeds), message)


def test_explicit_seed_list_is_kept():
    assert check(with_change(("run", "seeds"), [7, 3])).config.run.seeds == (7, 3)


def test_negative_alpha_names_the_hyperparameter():
    message = raises(
        with_change(("agents", 0, "hyperparameters", "alpha"), -1.0),
        "agents[0].hyperparameters.alpha must be in [0.0, inf]",
    )
    assert message.startswith("agents[0].hyperparameters.alpha")


def test_zero_regularization_is_refused():
    raises(
        with_change(("agents", 2, "hyperparameters", "regularization"), 0.0),
        "agents[2].hyperparameters.regularization must be > 0",
    )


def test_env_value_errors_name_the_parameter():
    raises(
        with_change(("env", "params", "dim"), 0), "env.params.dim must be a positive"
    )


def test_num_arms_that_disagrees_with_the_env_is_an_error():
    raises(
        with_change(("agents", 0, "hyperparameters", "num_arms"), 5),
        "agents[0].hyperparameters.num_arms = 5 does not match the env",
        "'Linear-v0' has num_arms 4",
    )


def test_dim_that_disagrees_with_the_env_is_an_error():
    raises(
        with_change(("agents", 0, "hyperparameters", "dim"), 9),
        "agents[0].hyperparameters.dim = 9 does not match the env",
        "context dim 3",
    )


def test_matching_num_arms_is_accepted():
    data = with_change(("agents", 0, "hyperparameters", "num_arms"), 4)
    assert check(data).agent_kwargs[0]["num_arms"] == 4


def test_arm_features_on_an_env_without_them_is_an_error():
    raises(
        with_change(("agents", 0, "hyperparameters", "features"), "arms"),
        "agents[0].hyperparameters.features = 'arms' needs per-arm features",
    )


def test_grid_expands_to_one_agent_per_value():
    data = with_change(
        ("agents", 0, "grid"), {"alpha": [0.1, 1.0], "regularization": [2.0]}
    )
    del data["agents"][0]["hyperparameters"]["alpha"]
    experiment = check(data)
    labels = [a.label for a in experiment.config.agents]
    assert labels[:2] == [
        "LinUCB alpha=0.1 regularization=2.0",
        "LinUCB alpha=1.0 regularization=2.0",
    ]
    assert [kw["alpha"] for kw in experiment.agent_kwargs[:2]] == [0.1, 1.0]
    assert len(experiment.agents) == 4


def test_grid_value_errors_point_into_the_grid():
    data = with_change(("agents", 0, "grid"), {"regularization": [1.0, 0.0]})
    raises(data, "agents[0].grid.regularization must be > 0")


def test_grid_and_hyperparameters_must_not_both_set_a_key():
    data = with_change(("agents", 0, "grid"), {"alpha": [0.1, 1.0]})
    raises(data, "agents[0].grid.alpha: 'alpha' is set in both")


def test_labels_must_be_unique():
    data = with_change(("agents", 1, "label"), "LinUCB")
    raises(data, "agents[1].label 'LinUCB' is already used by agents[0]")


def test_hash_tracks_results_not_location():
    config = parse_config(base())
    assert config.hash() == parse_config(base()).hash()
    moved = parse_config(with_change(("run", "output"), "elsewhere"))
    assert moved.hash() == config.hash()
    changed = parse_config(with_change(("agents", 0, "hyperparameters", "alpha"), 2.0))
    assert changed.hash() != config.hash()


def test_to_toml_round_trips():
    data = with_change(("agents", 0, "grid"), {"regularization": [1.0, 2.0]})
    data["run"]["output"] = 'out "quoted"'
    config = parse_config(data)
    again = parse_config(tomllib.loads(config.to_toml()))
    assert again.canonical() == config.canonical()
    assert again.hash() == config.hash()
    assert again.run.output == config.run.output


def test_load_config_from_file_and_package(tmp_path):
    assert "quickstart" in packaged_configs()
    path = tmp_path / "quickstart.toml"
    path.write_text(packaged_config_text("quickstart"))
    from_file = load_config(path)
    from_package = load_config("quickstart")
    assert from_file == from_package
    assert from_package.source.startswith("package:")
    assert from_file.env.id == "Linear-v0"
    assert dict(from_file.env.params) == {"num_arms": 10, "dim": 20}
    assert from_file.run.horizon == 5000
    assert from_file.run.seeds == tuple(range(32))
    assert [a.name for a in from_file.agents] == [
        "linucb",
        "lints",
        "epsilon_greedy",
        "random",
    ]
    assert dict(from_file.agents[0].hyperparameters) == {"alpha": 1.0}


def test_name_defaults_to_the_file_stem(tmp_path):
    path = tmp_path / "my_study.toml"
    path.write_text(
        '[env]\nid = "Linear-v0"\n[run]\nhorizon = 10\nseeds = 1\n'
        '[[agents]]\nname = "random"\n'
    )
    assert load_config(path).name == "my_study"


def test_invalid_toml_and_missing_files(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nhorizon = 1")
    with pytest.raises(BanditConfigError, match=re.escape(f"{bad} is not valid TOML")):
        load_config(bad)
    with pytest.raises(BanditConfigError, match="not found: no such file"):
        load_config(tmp_path / "missing.toml")
    bad.write_bytes(b"\xff\xfename = 1\n")  # not UTF-8: no raw UnicodeDecodeError
    with pytest.raises(BanditConfigError, match="is not UTF-8 text"):
        load_config(bad)


# --- env grids, chunks, curve spacing, reward-model evaluation ------------------


def test_env_grid_expands_to_settings_and_builds_each():
    data = with_change(("env", "grid"), {"noise_std": [0.5, 2.0], "scale": [1.0]})
    experiment = check(data)
    settings = experiment.config.settings
    assert [s.label for s in settings] == [
        "noise_std=0.5 scale=1.0",
        "noise_std=2.0 scale=1.0",
    ]
    assert dict(settings[1].params) == {
        "num_arms": 4,
        "dim": 3,
        "noise_std": 2.0,
        "scale": 1.0,
    }
    assert [env.noise_std for env in experiment.envs] == [0.5, 2.0]
    assert len(experiment.agents_by_setting) == 2
    assert experiment.env is experiment.envs[0]


def test_an_env_grid_over_a_shape_fills_agent_shapes_per_setting():
    data = with_change(("env", "grid"), {"dim": [3, 5]})
    del data["env"]["params"]["dim"]
    experiment = check(data)
    assert [kw[0]["dim"] for kw in experiment.kwargs_by_setting] == [3, 5]


def test_an_env_grid_over_strings_is_one_series_per_value():
    from experiments.plan.planner import plan

    data = with_change(("env", "grid"), {"reward": ["gaussian", "bernoulli"]})
    del data["agents"][1:]
    experiment = check(data)
    config = experiment.config
    assert [s.label for s in config.settings] == ["reward=gaussian", "reward=bernoulli"]
    assert [e.reward for e in experiment.envs] == ["gaussian", "bernoulli"]
    the_plan = plan(experiment, config.hash())
    assert [s.label for s in the_plan.series] == [
        "LinUCB | reward=gaussian",
        "LinUCB | reward=bernoulli",
    ]
    assert [t.spec["env"]["params"]["reward"] for t in the_plan.tasks] == [
        "gaussian",
        "bernoulli",
    ]
    again = parse_config(tomllib.loads(config.to_toml()))
    assert again.settings == config.settings and again.hash() == config.hash()
    one = parse_config(with_change(("env", "grid"), {"reward": ["gaussian"]}))
    assert one.hash() != config.hash()
    raises(
        with_change(("env", "grid"), {"reward": ["gaussian", "poisson"]}),
        "env.grid.reward",
        "poisson",
    )


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ({"noise_sd": [1.0]}, "unknown parameter 'noise_sd' in env.grid"),
        ({"noise_std": []}, "env.grid.noise_std must be a non-empty array"),
        ({"noise_std": 1.0}, "env.grid.noise_std must be a non-empty array"),
        ({"noise_std": [1.0, "x"]}, "env.grid.noise_std[1] must be a number"),
        ({"noise_std": [1.0, 1.0]}, "env.grid.noise_std lists value(s) 1.0 twice"),
        ({"num_arms": [4]}, "env.grid.num_arms: 'num_arms' is set in both"),
        ({"noise_std": [0.5, -1.0]}, "env.grid.noise_std must be in [0.0, inf]"),
    ],
)
def test_env_grid_errors_name_the_field(grid, message):
    message_got = raises(with_change(("env", "grid"), grid), message)
    if "must be in" in message:  # a value error names the failing setting
        assert "(env setting noise_std=-1.0)" in message_got


def test_agent_grid_over_a_missing_hyperparameter_is_refused():
    message = raises(
        with_change(("agents", 0, "grid"), {"alpah": [0.1, 1.0]}),
        "unknown hyperparameter 'alpah' in agents[0].grid (agent 'linucb')",
    )
    assert "allowed: num_arms, dim, alpha" in message


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("chunk_size", 0, "run.chunk_size must be a positive integer, got 0"),
        ("chunk_size", "big", 'run.chunk_size must be a positive integer or "auto"'),
        ("chunk_size", 2.0, 'run.chunk_size must be a positive integer or "auto"'),
        ("curve_spacing", "linear", "run.curve_spacing must be one of"),
        ("prediction_seeds", -1, "run.prediction_seeds must be an integer >= 0"),
        (
            "prediction_contexts",
            0,
            "run.prediction_contexts must be a positive integer, got 0",
        ),
    ],
)
def test_run_options_are_checked(key, value, message):
    raises(with_change(("run", key), value), message)


def test_seed_key_is_checked_and_kept_in_the_hash():
    config = parse_config(base())
    assert config.run.seed_key == "split"
    # Absent from the canonical form by default: older configs keep their hash.
    assert "seed_key" not in config.canonical()["run"]
    direct = parse_config(with_change(("run", "seed_key"), "direct"))
    assert direct.run.seed_key == "direct" and direct.hash() != config.hash()
    again = parse_config(tomllib.loads(direct.to_toml()))
    assert again.run.seed_key == "direct" and again.hash() == direct.hash()
    assert parse_config(with_change(("run", "seed_key"), "split")) == config
    raises(with_change(("run", "seed_key"), "whole"), "run.seed_key must be one of")
    raises(with_change(("run", "seed_key"), 1), "run.seed_key must be a string")
    data = with_change(("run", "seed_key"), "direct")
    data["run"]["resample_params"] = True
    raises(data, "run.seed_key 'direct' leaves no key", "resample_params")


def test_auto_chunk_size_depends_on_the_config_only():
    from experiments.config.loader import auto_chunk_size

    assert auto_chunk_size(horizon=100, num_seeds=2) == 2
    assert auto_chunk_size(horizon=10_000, num_seeds=64) == 32
    assert auto_chunk_size(horizon=10_000, num_seeds=20) == 20
    # 64 MiB / (24 bytes x 10^6 rounds) = 2.8 -> 2 seeds per chunk.
    assert auto_chunk_size(horizon=1_000_000, num_seeds=64) == 2
    assert auto_chunk_size(horizon=10**9, num_seeds=64) == 1


def test_hash_covers_chunk_size_and_storage_options():
    config = parse_config(base())
    assert config.run.chunk_size is None and config.run.resolved_chunk_size == 2
    explicit = parse_config(with_change(("run", "chunk_size"), 2))
    assert explicit.hash() == config.hash()  # "auto" resolves to the same size
    for key, value in [
        ("chunk_size", 1),
        ("curve_spacing", "log"),
        ("prediction_seeds", 0),
        ("curve_points", 50),
    ]:
        assert parse_config(with_change(("run", key), value)).hash() != config.hash()
    gridded = parse_config(with_change(("env", "grid"), {"noise_std": [1.0]}))
    assert gridded.hash() != config.hash()


def test_to_toml_round_trips_env_grids_and_run_options():
    data = with_change(("env", "grid"), {"noise_std": [0.5, 2.0]})
    data["run"].update(chunk_size=3, curve_spacing="log", prediction_seeds=1)
    config = parse_config(data)
    again = parse_config(tomllib.loads(config.to_toml()))
    assert again.canonical() == config.canonical()
    assert again.settings == config.settings


# --- named env settings ------------------------------------------------------


def with_settings(settings) -> dict:
    data = base()
    data["env"]["settings"] = settings
    return data


def test_named_env_settings_are_one_setting_each_in_file_order():
    data = with_settings(
        [{"label": "noisy", "params": {"noise_std": 2.0}}, {"label": "default"}]
    )
    config = parse_config(data)
    settings = config.settings
    assert [s.label for s in settings] == ["noisy", "default"]
    assert settings[0].params["noise_std"] == 2.0
    assert "noise_std" not in settings[1].params
    experiment = build(config)
    assert [e.noise_std for e in experiment.envs] == [2.0, 1.0]
    # The stored TOML parses back to the same config (and hash).
    again = parse_config(tomllib.loads(config.to_toml()))
    assert again.env == config.env and again.hash() == config.hash()


def test_a_config_without_settings_keeps_its_hash_form():
    """Configs written before named settings existed keep their config hash:
    the canonical form has no `settings` key unless settings are given."""
    assert "settings" not in parse_config(base()).canonical()["env"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ([], "env.settings must be a non-empty array of tables"),
        ([{"params": {}}], "missing key 'label' in env.settings[0]"),
        ([{"label": ""}], "env.settings[0].label must be a non-empty"),
        ([{"label": "a"}, {"label": "a"}], "labels must be unique"),
        ([{"label": "a", "params": {"nope": 1}}], "env.settings[0].params"),
        ([{"label": "a", "colour": 1}], "colour"),
    ],
)
def test_bad_named_settings_are_refused(settings, message):
    raises(with_settings(settings), message)


def test_named_settings_and_a_grid_do_not_combine():
    data = with_settings([{"label": "a"}])
    data["env"]["grid"] = {"noise_std": [0.5, 1.0]}
    raises(data, "env.settings and env.grid cannot be combined")


def test_a_bad_value_in_a_named_setting_points_at_it():
    data = with_settings([{"label": "a", "params": {"noise_std": -1.0}}])
    with pytest.raises(BanditConfigError) as info:
        check(data)
    assert str(info.value).startswith("env.settings[0].params.noise_std must be")


# Studies with a layout of their own (read by their modules, tested there).
OWN_LAYOUT = {
    "pretrain_finetune",
    "ope_benchmark",
    "ope_benchmark_transformer",
    "obd_ope",
    "ridge_numerics",
    "in_context",
    "in_context_fixed_arms",
    "in_context_fixed_arms_per_instance",
    "in_context_rec",
    "large_models",
    "large_models_scaling",
    "large_models_cold",
}


FROM_A_STUDY = {"slate_transformer"}
"""Configs whose agents start from a checkpoint another study writes: checked
with a small checkpoint of the right shapes where they expect it."""


@pytest.mark.parametrize("name", sorted(set(packaged_configs()) - OWN_LAYOUT))
def test_every_packaged_platform_config_loads_and_validates(
    name, tmp_path, monkeypatch
):
    """Each packaged config passes the platform's checks (agent names and
    hyperparameters included, and a checkpoint's shapes against the env), so a
    documented command cannot fail on its config."""
    if name in FROM_A_STUDY:
        from tests.agents.test_transformer_slate import (
            CONFIG_CHECKPOINT,
            tiny_checkpoint,
        )

        monkeypatch.chdir(tmp_path)
        tiny_checkpoint(tmp_path / CONFIG_CHECKPOINT)
    config = load_config(name)
    assert config.agents and config.run.horizon > 0


@pytest.mark.parametrize(
    ("module", "argv", "message"),
    [
        ("ope_benchmark", ["--truth-events", "0"], "must be a positive integer, got 0"),
        ("ope_benchmark", ["--sizes", "1000", "-5"], "must be a positive integer"),
        ("pretrain_finetune", ["--seeds", "0"], "must be a positive integer, got 0"),
        ("in_context", ["--seeds", "0"], "must be a positive integer, got 0"),
        ("obd_ope", ["--seed", "-1"], "must be an integer >= 0, got -1"),
        ("wheel_showdown", ["--trials", "x"], "must be a positive integer, got 'x'"),
        ("drift_study", ["--horizon", "0"], "must be a positive integer, got 0"),
        ("uci_neural", ["--horizon", "1.5"], "must be a positive integer"),
    ],
)
def test_study_options_refuse_counts_below_one(module, argv, message, capsys):
    """A study command's counts are checked when parsed: `--seeds 0` is refused
    (argparse's usage error, exit status 2) instead of read as "not given"."""
    import importlib

    parse_args = importlib.import_module(f"experiments.studies.{module}").parse_args
    with pytest.raises(SystemExit) as stopped:
        parse_args(argv)
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "table",
    [
        {"horizon": 10, "seeds": 3},
        {"horizon": 10, "seeds": [5, 2], "chunk_size": 1, "curve_points": 4},
        {"horizon": 7, "seeds": 2, "resample_params": True, "prediction_seeds": 0},
        {"horizon": 7, "seeds": 1, "seed_key": "direct", "curve_spacing": "log"},
        {"horizon": 7, "seeds": 9, "output": "x", "prediction_contexts": 3},
    ],
)
def test_run_table_writes_what_parse_run_reads_back(table):
    """A study writes the `[run]` it parsed as a platform table
    (`tables.run_table`); the platform reads back the same settings."""
    from experiments.config.tables import parse_run, run_table

    run = parse_run(table)
    written = run_table(run)
    assert parse_run(tomllib.loads(toml_run(written))["run"]) == run
    assert set(written) <= set(table)  # defaults are left out


def toml_run(run):
    from experiments.config.toml_writer import toml_key, toml_value

    return "[run]\n" + "".join(
        f"{toml_key(k)} = {toml_value(v)}\n" for k, v in run.items()
    )


def test_parse_study_run_refuses_the_studys_keys_naming_why():
    from experiments.config.tables import parse_study_run

    fixed = {"curve_points": "every step is stored"}
    run, own = parse_study_run(
        {"seeds": 2, "early": 5}, own=("early",), fixed=fixed, defaults={"horizon": 9}
    )
    assert (run.horizon, run.seeds, own) == (9, (0, 1), {"early": 5})
    with pytest.raises(BanditConfigError, match=r"run\.curve_points is set by"):
        parse_study_run(
            {"horizon": 1, "seeds": 1, "curve_points": 2}, own=(), fixed=fixed
        )
    with pytest.raises(BanditConfigError, match="unknown key 'late'"):
        parse_study_run({"horizon": 1, "seeds": 1, "late": 2}, own=(), fixed=fixed)
    with pytest.raises(BanditConfigError, match=r"run\.horizon must be a positive"):
        parse_study_run({"horizon": 0, "seeds": 1}, own=(), fixed=fixed)
