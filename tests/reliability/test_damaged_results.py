"""Derived and damaged files of a results folder are rebuilt, never trusted.

Before: a deleted `summaries.jsonl` was not regenerated on rerun ("computed 0,
reused 2") and the report's table became dashes; a truncated one was refused;
a truncated curve file broke every rerun, because the series counted as
finished while its file existed. Now summaries are rebuilt from the stored
curves, and a series whose curve file does not read back is recomputed. The
manifest records each stored file's size and SHA-256, so damage that still reads
back (a flipped bit in a number) is caught too.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
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


def _flip_readable_byte(path, label):
    """Flips one bit of `path` such that the file still reads back, with other
    numbers: damage that reading it back cannot see."""
    raw = path.read_bytes()
    good = storage.read_curves(path)[label]
    for i in range(len(raw)):
        damaged = bytearray(raw)
        damaged[i] ^= 0x01
        path.write_bytes(bytes(damaged))
        try:
            curves = storage.read_curves(path)[label]
        except Exception:
            continue
        if not np.array_equal(curves.cumulative_regret, good.cumulative_regret):
            return raw
    raise AssertionError("no byte flip reads back with other numbers")


def test_the_manifest_records_size_and_checksum_of_stored_files(first):
    source, _ = first
    stored = manifest.read(source)
    names = [
        "config.toml",
        storage.SUMMARIES,
        *(e.curves for e in stored.agents),
    ]
    for name in names:
        data = (source / name).read_bytes()
        check = stored.checksums[name]
        assert check.size == len(data)
        assert check.sha256 == hashlib.sha256(data).hexdigest()


def test_a_curve_file_that_still_reads_back_is_recomputed(first, tmp_path):
    """Before: damage was found only by reading the file back, so a flipped
    bit inside a number went unseen and the wrong curve was reused."""
    source, _ = first
    out = tmp_path / "out"
    run_experiment(parse_config(CONFIG), out, progress=False)
    curve = out / manifest.read(out).entry("LinUCB").curves
    original = _flip_readable_byte(curve, "LinUCB")
    assert curve.stat().st_size == len(original)
    result = run_experiment(parse_config(CONFIG), out, progress=False)
    assert [a.label for a in result.agents if not a.skipped] == ["LinUCB"]
    assert curve.read_bytes() == original
    assert numbers(out) == numbers(source)


def test_a_summaries_file_with_a_changed_number_is_rebuilt(tmp_path):
    out = tmp_path / "out"
    run_experiment(parse_config(CONFIG), out, progress=False)
    path = out / storage.SUMMARIES
    summaries = path.read_bytes()
    lines = path.read_text().splitlines()
    record = json.loads(lines[0])
    record["final_regret"] += 1.0  # still valid JSON, one number wrong
    path.write_text("\n".join([json.dumps(record), *lines[1:]]) + "\n")
    result = run_experiment(parse_config(CONFIG), out, progress=False)
    assert result.computed == ()
    assert path.read_bytes() == summaries


def test_a_manifest_without_checksums_falls_back_to_reading_back(first, tmp_path):
    """Folders of earlier versions have no checksums: they are still used, and
    a curve file that does not read back is recomputed as before."""
    source, _ = first
    out = tmp_path / "out"
    run_experiment(parse_config(CONFIG), out, progress=False)
    raw = storage.read_manifest(out)
    del raw["checksums"]
    storage.write_manifest(out, raw)
    assert manifest.read(out).checksums == {}
    assert run_experiment(parse_config(CONFIG), out, progress=False).computed == ()
    raw = storage.read_manifest(out)
    del raw["checksums"]
    storage.write_manifest(out, raw)
    curve = out / manifest.read(out).entry("LinUCB").curves
    curve.write_bytes(curve.read_bytes()[:100])
    result = run_experiment(parse_config(CONFIG), out, progress=False)
    assert [a.label for a in result.agents if not a.skipped] == ["LinUCB"]
    assert numbers(out) == numbers(source)


def test_the_report_names_a_damaged_curve_file(tmp_path, capsys):
    from experiments import cli

    out = tmp_path / "out"
    run_experiment(parse_config(CONFIG), out, progress=False)
    name = manifest.read(out).entry("LinUCB").curves
    _flip_readable_byte(out / name, "LinUCB")
    assert cli.main(["report", str(out)]) == cli.EXIT_CONFIG_ERROR
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: series 'LinUCB': {name} does not hold what was written (its "
        "SHA-256 differs); rerun `bandits run` with the same config and --out to "
        "recompute it"
    )
