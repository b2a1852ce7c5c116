"""The study runner (`experiments.execute.cells`) on a tiny off-policy benchmark:
cells run in worker processes, are stored one file each, reused only when intact
and planned from the same spec, and `bandits run` takes a study config."""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import pytest

from bandits.validation import BanditConfigError
from experiments import cli
from experiments.config.sources import (
    packaged_config_text,
    packaged_configs,
    parse_toml,
)
from experiments.execute import cells
from experiments.execute.executors import LocalExecutor, RunFailedError
from experiments.store import lock, storage
from experiments.studies import ope_benchmark

CONFIG = """
study = "ope_benchmark"
name = "tiny_cells"
log_sizes = [200, 400]
replicates = 10
truth_events = 8000
streams_per_replicate = 4
folds = 2

[estimators]
tau = 100.0

[[logging]]
label = "uniform"
kind = "uniform"

[[envs]]
id = "Linear-v0"
params = { num_arms = 3, dim = 4 }
reward_model = "context"

  [[envs.targets]]
  label = "LinUCB"
  name = "linucb"
  train_rounds = 50
"""


def _records(folder):
    return [json.loads(line) for line in (folder / "results.jsonl").open()]


def _run(config_text, out):
    study = ope_benchmark.read(parse_toml(config_text, "test"))
    return cells.run_cells(
        "ope_benchmark", study, out, executor=LocalExecutor(1), progress=False
    )


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """The config run once through `bandits run`."""
    folder = tmp_path_factory.mktemp("cells")
    config = folder / "tiny.toml"
    config.write_text(CONFIG)
    out = folder / "out"
    assert cli.main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    return out


def test_bandits_run_stores_one_file_per_cell(first_run):
    files = sorted((first_run / cells.CELLS_DIR).glob("*.json"))
    assert len(files) == 2
    names = {json.loads(f.read_text())["name"] for f in files}
    assert names == {
        "Linear-v0 | LinUCB | uniform | n=200 x 10 | truth 8000",
        "Linear-v0 | LinUCB | uniform | n=400 x 10 | truth 8000",
    }
    records = _records(first_run)
    assert [r["log_size"] for r in records] == [200] * 8 + [400] * 8
    assert (first_run / "summary.md").read_text().count("| ips |") == 2
    assert json.loads((first_run / cells.STUDY_FILE).read_text())["study"] == (
        "ope_benchmark"
    )


def test_bandits_report_rerenders_a_study_folder(first_run, tmp_path, capsys):
    out = tmp_path / "out"
    _copy(first_run, out)
    assert cli.main(["report", str(out)]) == 0
    assert _records(out) == _records(first_run)
    assert (out / "summary.md").read_text() == (first_run / "summary.md").read_text()
    assert "summary.md" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / cells.STUDY_FILE).write_text('{"study": "ope_benchmark"}')
    assert cli.main(["report", str(empty)]) == 2
    assert "holds no cells" in capsys.readouterr().err
    assert sorted(p.name for p in empty.iterdir()) == [cells.STUDY_FILE]


def test_cell_specs_are_plain_json():
    study = ope_benchmark.read(parse_toml(CONFIG, "test"))
    for cell in ope_benchmark.cells(study):
        assert json.loads(json.dumps(cell.spec)) == cell.spec


def test_every_packaged_study_config_reads_and_plans():
    """The packaged configs that name a study pass its checks; those whose
    targets need no file from another study plan their cells."""
    found, pipelines = set(), set()
    for name in packaged_configs():
        data = parse_toml(packaged_config_text(name), name)
        if "study" not in data:
            continue
        if data["study"] in cells.PIPELINES:  # their own loaders: tests of theirs
            pipelines.add(name)
            continue
        found.add(name)
        module = cells.study_module(data["study"])
        config = module.read(data)
        if name != "ope_benchmark_transformer":  # its checkpoint: another study's
            planned = module.cells(config)
            assert planned and len({c.name for c in planned}) == len(planned)
    assert found == {
        "ope_benchmark",
        "ope_benchmark_transformer",
        "obd_ope",
        "ridge_numerics",
    }
    assert pipelines == {
        "in_context",
        "in_context_fixed_arms",
        "in_context_fixed_arms_per_instance",
        "in_context_rec",
        "pretrain_finetune",
        "large_models",
        "large_models_cold",
        "large_models_scaling",
    }


def test_a_rerun_reuses_every_intact_cell(first_run, tmp_path):
    out = tmp_path / "out"
    _copy(first_run, out)
    result = _run(CONFIG, out)
    assert result.computed == () and len(result.reused) == 2
    assert _records(out) == _records(first_run)


def test_damaged_and_missing_cells_are_computed_again(first_run, tmp_path):
    """A cell file whose numbers were changed fails its checksum, a truncated
    one does not parse, a deleted one is missing (a run killed before it
    finished): each is computed again, to the same records (same program, same
    machine, one device per worker)."""
    for damage in ("edit", "truncate", "delete"):
        out = tmp_path / damage
        _copy(first_run, out)
        path = sorted((out / cells.CELLS_DIR).glob("*.json"))[0]
        name = json.loads(path.read_text())["name"]
        if damage == "edit":
            cell = json.loads(path.read_text())
            cell["records"][0]["rmse"] += 1e-9
            path.write_text(json.dumps(cell))
        elif damage == "truncate":
            path.write_bytes(path.read_bytes()[:100])
        else:
            path.unlink()
        result = _run(CONFIG, out)
        assert result.computed == (name,), damage
        assert _records(out) == _records(first_run), damage


def test_a_changed_setting_computes_its_cells_again(first_run, tmp_path):
    """A setting that is not in a cell's name (Switch-DR's tau) is in its spec:
    both cells are computed again, and only Switch-DR's numbers can move."""
    out = tmp_path / "out"
    _copy(first_run, out)
    result = _run(CONFIG.replace("tau = 100.0", "tau = 2.0"), out)
    assert len(result.computed) == 2
    before, after = _records(first_run), _records(out)
    for old, new in zip(before, after, strict=True):
        if new["estimator"] != "switch_dr":
            assert old == new
    assert any(
        o != n
        for o, n in zip(before, after, strict=True)
        if n["estimator"] == "switch_dr"
    )
    stored = json.loads(sorted((out / cells.CELLS_DIR).glob("*.json"))[0].read_text())
    assert stored["spec"]["estimators"]["tau"] == 2.0


def test_a_folder_of_other_results_is_refused(tmp_path):
    experiment = tmp_path / "experiment"
    experiment.mkdir()
    (experiment / storage.MANIFEST).write_text("{}")
    with pytest.raises(BanditConfigError, match="regret experiment"):
        _run(CONFIG, experiment)
    study = ope_benchmark.read(parse_toml(CONFIG, "test"))
    with pytest.raises(BanditConfigError, match="regret experiment"):
        cells.run_cells("ope_benchmark", study, experiment, overwrite=True)
    assert sorted(p.name for p in experiment.iterdir()) == [storage.MANIFEST]
    other = tmp_path / "other"
    other.mkdir()
    (other / cells.STUDY_FILE).write_text('{"study": "obd_ope"}')
    with pytest.raises(BanditConfigError, match="study 'obd_ope'"):
        _run(CONFIG, other)
    assert not (other / cells.CELLS_DIR).exists()
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "results.jsonl").write_text('{"env": "Linear-v0"}\n')
    with pytest.raises(BanditConfigError, match="earlier version"):
        _run(CONFIG, earlier)
    assert (earlier / "results.jsonl").read_text() == '{"env": "Linear-v0"}\n'


def test_an_unknown_study_is_refused_by_name(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text(CONFIG.replace('study = "ope_benchmark"', 'study = "os.system"'))
    assert cli.main(["run", str(config), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    every = ["in_context", "obd_ope", "ope_benchmark", "pretrain_finetune"]
    assert f"study must be one of {[*every, 'ridge_numerics']}" in err
    assert "'os.system'" in err


def test_chunk_size_is_refused_for_a_study(tmp_path, capsys):
    config = tmp_path / "tiny.toml"
    config.write_text(CONFIG)
    argv = ["run", str(config), "--out", str(tmp_path / "o"), "--chunk-size", "4"]
    assert cli.main(argv) == 2
    assert "--chunk-size applies to regret experiments" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_bad_study_config_names_the_field(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text(CONFIG.replace("folds = 2", "folds = 0"))
    assert cli.main(["run", str(config), "--out", str(tmp_path / "o")]) == 2
    assert "folds" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_the_lock_waits_for_a_short_holder(tmp_path):
    """The final write of a study run waits for another command that holds the
    folder briefly, instead of failing."""
    taken = []
    with lock.exclusive(tmp_path):

        def take():
            with lock.exclusive(tmp_path, wait_s=10.0):
                taken.append(time.monotonic())

        thread = threading.Thread(target=take)
        thread.start()
        time.sleep(0.3)
        assert not taken
        released = time.monotonic()
    thread.join(10.0)
    assert taken and taken[0] >= released
    with (
        lock.exclusive(tmp_path),
        pytest.raises(BanditConfigError, match="in use"),
        lock.exclusive(tmp_path, wait_s=0.1),
    ):
        pass


def _copy(source, target):
    target.mkdir(parents=True)
    (target / cells.CELLS_DIR).mkdir()
    for path in (source / cells.CELLS_DIR).glob("*.json"):
        (target / cells.CELLS_DIR / path.name).write_bytes(path.read_bytes())
    (target / cells.STUDY_FILE).write_bytes((source / cells.STUDY_FILE).read_bytes())


@pytest.mark.parametrize(
    "error, status, words",
    [
        (BanditConfigError("folds must be >= 1"), 2, "error: folds must be >= 1"),
        (RunFailedError("a local worker process died"), 1, "finished cells are stored"),
        (OSError(28, "No space left on device"), 1, "No space left on device"),
        (KeyboardInterrupt(), 130, "interrupted; finished cells are stored"),
    ],
)
def test_a_study_command_turns_failures_into_one_line(
    monkeypatch, capsys, error, status, words
):
    def failing(*args, **kwargs):
        raise error

    monkeypatch.setattr(cells, "run_cells", failing)
    assert cells.command("ope_benchmark", None, "unused", 1, True) == status
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1


def test_a_cell_killed_half_way_resumes_from_its_finished_replicates(
    tmp_path, monkeypatch
):
    """The OPE cell keeps each group of replicates and its truth in the cell's
    scratch folder as it finishes them: run again (after a kill), it computes
    only what is missing, and gives the same records. Run here in this process,
    with groups of 4 replicates (three groups for 10)."""
    monkeypatch.setattr(ope_benchmark, "MAX_EVENTS_IN_MEMORY", 800)
    study = ope_benchmark.read(parse_toml(CONFIG, "test"))
    cell = ope_benchmark.cells(study)[0]
    folder = cells.scratch_folder(tmp_path, cell)
    task = {"study": "ope_benchmark", "task": cell.name, "spec": dict(cell.spec),
            "scratch": str(folder)}  # fmt: skip
    (tmp_path / cells.CELLS_DIR).mkdir()
    computed = []
    estimate = ope_benchmark.estimate_replicates

    def counted(*args, **kwargs):
        computed.append(1)
        return estimate(*args, **kwargs)

    monkeypatch.setattr(ope_benchmark, "estimate_replicates", counted)
    full = cells.execute_cell(task)["records"]
    assert len(computed) == 3
    kept = sorted(p.name for p in folder.iterdir())
    assert "n200-truth.npy" in kept and "n200-group2.npy" in kept
    (folder / "n200-group2.npy").unlink()  # killed before the last group
    (folder / "n200-group1.npy").write_bytes(b"")  # and a damaged file: recomputed
    computed.clear()
    assert cells.execute_cell(task)["records"] == full
    assert len(computed) == 2
    computed.clear()
    assert cells.execute_cell(task)["records"] == full  # every group kept now
    assert computed == []
    changed = dataclasses.replace(cell, spec={**cell.spec, "folds": 3})
    assert cells.scratch_folder(tmp_path, changed) != folder
    # A worker that does not see the results folder (a Dask worker elsewhere)
    # keeps nothing, and still computes the cell.
    elsewhere = {**task, "scratch": str(tmp_path / "absent" / "cells" / folder.name)}
    assert cells.execute_cell(elsewhere)["records"] == full
    assert not (tmp_path / "absent").exists()


def test_a_finished_run_leaves_no_scratch_folders(first_run, tmp_path):
    assert not list((first_run / cells.CELLS_DIR).glob("*.partial"))
    # Killed after storing a cell and before removing its scratch folder: the
    # next run removes it.
    out = tmp_path / "out"
    _copy(first_run, out)
    study = ope_benchmark.read(parse_toml(CONFIG, "test"))
    left = cells.scratch_folder(out, ope_benchmark.cells(study)[0])
    left.mkdir()
    (left / "n200-truth.npy").write_bytes(b"")
    assert _run(CONFIG, out).computed == ()
    assert not left.exists()
