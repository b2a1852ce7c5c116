"""The off-policy estimator benchmark study on a tiny config: records, resume,
summary, figures, and config errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bandits import ope
from experiments.studies import ope_benchmark

TINY = """
name = "tiny"
log_sizes = [400]
replicates = 40
truth_events = 40000
streams_per_replicate = 4
folds = 2

[[logging]]
label = "uniform"
kind = "uniform"

[[logging]]
label = "softmax"
kind = "softmax"
temperature = 1.0

[[envs]]
id = "Linear-v0"
params = { num_arms = 3, dim = 4 }
reward_model = "context"

  [[envs.targets]]
  label = "LinUCB"
  name = "linucb"
  train_rounds = 100
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ope")
    config = folder / "tiny.toml"
    config.write_text(TINY)
    out = folder / "out"
    assert ope_benchmark.main(["--config", str(config), "--out", str(out)]) == 0
    return config, out


def test_every_estimator_is_scored_for_every_cell(tiny_run):
    _, out = tiny_run
    records = [json.loads(line) for line in (out / "results.jsonl").open()]
    assert len(records) == 2 * len(ope.ESTIMATORS)
    assert {r["logger"] for r in records} == {"uniform", "softmax"}
    for r in records:
        assert r["replicates"] == 40 and r["log_size"] == 400
        assert r["rmse"] >= abs(r["bias"]) - 1e-12
        assert 0.0 <= r["coverage"] <= 1.0
        # the true value is known far better than any estimator at n = 400
        assert r["truth_se"] < 0.2 * r["sd"]
    ips = [r for r in records if r["estimator"] == "ips"]
    # IPS is unbiased: within 4 standard errors of its 40 replicates
    assert all(abs(r["bias"]) < 4 * r["bias_se"] for r in ips), ips
    assert (out / "summary.md").read_text().count("| ips |") == 2
    assert (out / "rmse-Linear-v0-LinUCB.png").stat().st_size > 0
    assert (out / "coverage-Linear-v0-LinUCB.png").stat().st_size > 0


def test_a_rerun_computes_nothing(tiny_run, capsys):
    config, out = tiny_run
    before = (out / "results.jsonl").read_bytes()
    assert ope_benchmark.main(["--config", str(config), "--out", str(out)]) == 0
    assert (out / "results.jsonl").read_bytes() == before
    assert "n=400" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "change, message",
    [
        (('kind = "uniform"', 'kind = "greedy"'), "logging[0].kind must be one of"),
        (("log_sizes = [400]", "log_sizes = [401]"), "log_sizes must be multiples"),
        (("replicates = 40", "replicates = [40, 40]"), "replicates must be one"),
        (('reward_model = "context"', 'reward_model = "deep"'), "reward_model must"),
        (("temperature = 1.0", "temperature = -1.0"), "temperature must be in"),
        (("folds = 2", 'folds = 2\nseed = "x"'), "seed must be an integer >= 0"),
        (("dim = 4 }", "dim = 4, noise_sd = 1.0 }"), "'noise_sd' in envs[0].params"),
        (('id = "Linear-v0"', 'id = "Linear-v9"'), "envs[0].id: unknown env"),
    ],
)
def test_config_errors_name_the_field(tmp_path, capsys, change, message):
    config = tmp_path / "bad.toml"
    config.write_text(TINY.replace(*change))
    assert ope_benchmark.main(["--config", str(config), "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "results.jsonl").exists()


REC = """
log_sizes = [80]
replicates = 4
truth_events = 800
streams_per_replicate = 4
train_rounds = 60

[[logging]]
label = "epsilon-greedy"
kind = "epsilon_greedy"
epsilon = 0.5

[[envs]]
id = "ContextualRec-v0"
reward_model = "context_items"

  [[envs.targets]]
  label = "NeuralTS"
  name = "neural_ts"
  feature_map = "context_items"
  [envs.targets.hyperparameters]
  hidden_sizes = [8]
  train_every = 20
  train_steps = 2
  propensity_samples = 50
"""


def test_a_stateful_env_with_a_mapped_neural_target(tmp_path):
    """ContextualRec-v0 (contexts depend on the stream's history) with NeuralTS
    on the context x item features as the target: its probabilities come from
    posterior draws and the true value is computed on streams as long as a
    replicate's."""
    config = tmp_path / "rec.toml"
    config.write_text(REC)
    out = tmp_path / "out"
    assert ope_benchmark.main(["--config", str(config), "--out", str(out)]) == 0
    records = [json.loads(line) for line in (out / "results.jsonl").open()]
    assert len(records) == len(ope.ESTIMATORS)
    assert all(0.0 < r["truth"] < 1.0 for r in records)  # a click probability
    assert min(r["min_propensity"] for r in records) >= 0.5 / 20 - 1e-6


def test_a_pretrained_transformer_target(tmp_path, capsys):
    """A transformer target is read from a checkpoint (here randomly
    initialised: the code path, not its value) and evaluated as saved
    (train_rounds = 0); a checkpoint of another architecture is refused."""
    import envs
    from agents import pretrain
    from agents import transformer as tf

    env, _ = envs.make("ContextualRec-v0")
    cfg = tf.config_for_env(env, width=8, depth=1, heads=1)
    _, params = tf.split_model(cfg, 0)
    checkpoint = tmp_path / "tiny.npz"
    pretrain.save_checkpoint(checkpoint, cfg, params)
    config = tmp_path / "tf.toml"
    text = (
        REC.split("  [[envs.targets]]")[0]
        + f"""
  [[envs.targets]]
  label = "Transformer"
  name = "transformer"
  checkpoint = "{checkpoint}"
  train_rounds = 0
  hyperparameters = {{ propensity_samples = 16 }}
"""
    )
    config.write_text(text.replace("train_rounds = 60\n", ""))
    out = tmp_path / "out"
    assert ope_benchmark.main(["--config", str(config), "--out", str(out)]) == 0
    records = [json.loads(line) for line in (out / "results.jsonl").open()]
    assert {r["target"] for r in records} == {"Transformer"}
    assert len(records) == len(ope.ESTIMATORS)

    other = tmp_path / "other.npz"
    wide = tf.config_for_env(envs.make_env("ContextualRec-v0", history_length=3))
    pretrain.save_checkpoint(other, wide, tf.split_model(wide, 0)[1])
    config.write_text(text.replace(str(checkpoint), str(other)))
    code = ope_benchmark.main(["--config", str(config), "--out", str(tmp_path / "x")])
    assert code == 2
    assert "pretrained for another env" in capsys.readouterr().err


def test_a_filtered_run_reproduces_the_full_run(tiny_run, tmp_path):
    """`--loggers` (like `--envs` and `--targets`) keeps each cell's seed from
    its position in the full config: the softmax cell run alone equals the one
    of the full run, bit for bit (same program, same machine)."""
    config, out = tiny_run
    alone = tmp_path / "alone"
    assert (
        ope_benchmark.main(
            ["--config", str(config), "--out", str(alone), "--loggers", "softmax"]
        )
        == 0
    )
    full = [json.loads(line) for line in (out / "results.jsonl").open()]
    records = [json.loads(line) for line in (alone / "results.jsonl").open()]
    assert records == [r for r in full if r["logger"] == "softmax"]


def test_an_unknown_logger_label_is_refused(tiny_run, tmp_path, capsys):
    config, _ = tiny_run
    argv = ["--config", str(config), "--out", str(tmp_path), "--loggers", "greedy"]
    assert ope_benchmark.main(argv) == 2
    err = capsys.readouterr().err
    assert "--loggers" in err and "'greedy'" in err and "'softmax'" in err
    assert not (tmp_path / "results.jsonl").exists()


def test_cells_of_another_config_in_the_folder_are_kept(tiny_run, tmp_path):
    """Two configs writing to one folder (the transformer target config shares
    the benchmark's folder): each run stores its own cells, and the records and
    summary list both, this config's cells first."""
    config, out = tiny_run
    folder = tmp_path / "shared"
    softmax_only = ["--loggers", "softmax"]
    assert ope_benchmark.main(["--config", str(config), "--out", str(folder),
                               *softmax_only]) == 0  # fmt: skip
    other = tmp_path / "other.toml"
    other.write_text(config.read_text().replace('label = "LinUCB"', 'label = "B"'))
    assert ope_benchmark.main(["--config", str(other), "--out", str(folder),
                               "--loggers", "uniform"]) == 0  # fmt: skip
    records = [json.loads(line) for line in (folder / "results.jsonl").open()]
    pairs = [(r["target"], r["logger"]) for r in records[:: len(ope.ESTIMATORS)]]
    assert pairs == [("B", "uniform"), ("LinUCB", "softmax")]
    assert "target B, logger uniform" in (folder / "summary.md").read_text()
    full = [json.loads(line) for line in (out / "results.jsonl").open()]
    assert records[len(ope.ESTIMATORS) :] == [
        r for r in full if r["logger"] == "softmax"
    ]


def test_coverage_carries_its_binomial_interval():
    """Wilson's 95% interval, worked by hand for 28 of 30 replicates covering:
    centre (28/30 + 1.96^2/60) / (1 + 1.96^2/30) = 0.8842, half-width
    1.96 sqrt(0.9333 * 0.0667 / 30 + 1.96^2 / 3600) / 1.1281 = 0.0974."""
    from experiments.studies.ope_benchmark_report import coverage_interval

    low, high = coverage_interval(28 / 30, 30)
    assert low == pytest.approx(0.7868, abs=2e-4)
    assert high == pytest.approx(0.9815, abs=2e-4)
    assert coverage_interval(1.0, 30)[1] == 1.0
    assert coverage_interval(0.0, 30)[0] == 0.0
    # more replicates, a narrower interval around the same rate
    assert coverage_interval(0.9, 200)[0] > coverage_interval(0.9, 30)[0]


def test_the_summary_prints_the_coverage_interval(tiny_run):
    _, out = tiny_run
    text = (out / "summary.md").read_text()
    assert "coverage (95% binomial interval)" in text
    rows = [line for line in text.splitlines() if line.startswith("| ips |")]
    coverage = rows[0].split("|")[-2].split()
    low, high = map(float, coverage[1].strip("()").split("-"))
    assert low <= float(coverage[0]) <= high


def test_the_timing_breakdown_times_every_phase(tiny_run):
    """`ope_benchmark_timing` runs the study's phases on one cell and reports
    each (the values are timings, so only their presence is checked)."""
    from experiments.studies import ope_benchmark_timing

    config, _ = tiny_run
    phases = ope_benchmark_timing.time_cell("Linear-v0", 400, 2, 4000, str(config))
    names = [name for name, _ in phases]
    assert names[:2] == [
        "train the target",
        "truth log (4,000 events) and its target probabilities",
    ]
    assert sum("replicate 1:" in name for name in names) == 4
    assert all(seconds >= 0.0 for _, seconds in phases)


def test_the_packaged_configs_parse():
    """The documented commands start from these configs: one replicate count
    per log size, and every size a multiple of the streams per replicate."""
    for name in ("ope_benchmark", "ope_benchmark_transformer"):
        study = ope_benchmark.read_study(name)
        assert len(study.replicates) == len(study.log_sizes)
        assert all(n % study.streams_per_replicate == 0 for n in study.log_sizes)
    study = ope_benchmark.read_study("ope_benchmark")
    assert dict(zip(study.log_sizes, study.replicates, strict=True)) == {
        1000: 200, 10000: 100, 100000: 30,
    }  # fmt: skip


def test_a_size_measured_twice_is_plotted_once():
    """Reruns with more replicates add records for the same size; the figure
    draws one point per size, from the record with the most replicates."""
    from experiments.studies.ope_benchmark_report import plot_points

    def record(n, reps, rmse, logger="uniform"):
        return {"log_size": n, "replicates": reps, "rmse": rmse,
                "logger": logger, "estimator": "dr"}  # fmt: skip

    rows = [
        record(1000, 200, 0.1),
        record(10**6, 5, 0.004),
        record(10**6, 10, 0.003),
        record(10**6, 30, 9.0, logger="other"),
    ]
    assert plot_points(rows, "uniform", "dr", "rmse") == [(1000, 0.1), (10**6, 0.003)]
    assert plot_points(rows, "uniform", "ips", "rmse") == []


def test_the_timing_breakdown_of_the_streamed_path(tiny_run):
    """`--streamed` times each replicate through `estimate_streamed` as one
    phase, after the same training and truth phases."""
    from experiments.studies import ope_benchmark_timing

    config, _ = tiny_run
    phases = ope_benchmark_timing.time_cell(
        "Linear-v0", 400, 1, 4000, str(config), streamed=True
    )
    names = [name for name, _ in phases]
    assert len(names) == 3
    assert names[2] == "replicate 0: streamed log, statistics, predictions, estimators"


def test_the_truths_standard_error_is_between_streams():
    """Events of one stream share a user's history, so the truth's standard
    error comes from the streams' means. Values constant within each of 4
    streams: the events' formula would claim 32 times the information; the
    streams' means give std(means) / 2. Independent values: the two agree to
    sampling error (1,000 streams, so within 10%). One stream: the events'."""
    means = np.array([0.1, 0.4, 0.2, 0.5])
    stream = np.repeat(np.arange(4), 32)
    mean, se = ope_benchmark.stream_mean_and_se(np.repeat(means, 32), stream)
    assert mean == pytest.approx(0.3)
    assert se == pytest.approx(means.std(ddof=1) / 2)

    values = np.random.default_rng(0).normal(size=10_000)
    stream = np.repeat(np.arange(1000), 10)
    _, se = ope_benchmark.stream_mean_and_se(values, stream)
    assert se == pytest.approx(values.std(ddof=1) / 100, rel=0.1)

    _, se = ope_benchmark.stream_mean_and_se(values[:10], stream[:10])
    assert se == pytest.approx(values[:10].std(ddof=1) / np.sqrt(10))
