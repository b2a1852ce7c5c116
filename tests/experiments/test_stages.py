"""A study's stage (`experiments.store.stages`): its files are kept only while
made from the same settings and intact."""

from __future__ import annotations

import json

from experiments.store.stages import Stage


def _made(folder, settings=None) -> Stage:
    stage = Stage(folder, "a.json", settings or {"n": 1, "shape": (2, 3)}, ["a", "b"])
    stage.begin()
    (folder / "a").write_bytes(b"first file")
    (folder / "b").write_bytes(b"second file")
    stage.finish({"seconds": 2.5})
    return stage


def test_a_finished_stage_is_kept_with_its_record_and_checksums(tmp_path):
    assert Stage(tmp_path, "a.json", {}, ["a"]).state() == "missing"
    stage = _made(tmp_path)
    assert stage.state() == "kept"
    assert stage.record() == {"seconds": 2.5}
    assert set(stage.checksums()) == {"a", "b"}
    # Settings compare as JSON reads them back (a tuple is a list).
    same = Stage(tmp_path, "a.json", {"shape": [2, 3], "n": 1}, ("a", "b"))
    assert same.state() == "kept"


def test_other_settings_or_a_damaged_file_or_stamp_are_not_kept(tmp_path):
    stage = _made(tmp_path)
    assert Stage(tmp_path, "a.json", {"n": 2}, ["a", "b"]).state() == "made otherwise"
    (tmp_path / "b").write_bytes(b"second filE")
    assert stage.state() == "damaged"
    _made(tmp_path)
    (tmp_path / "a").unlink()
    assert stage.state() == "damaged"
    _made(tmp_path)
    (tmp_path / "a.json").write_text("{")
    assert stage.state() == "damaged"
    assert stage.record() == {} and stage.checksums() == {}
    # A file the stamp does not name is not vouched for.
    _made(tmp_path)
    assert Stage(tmp_path, "a.json", stage.settings, ["a", "c"]).state() == "damaged"


def test_begin_removes_the_stamp_so_a_killed_stage_is_not_kept(tmp_path):
    stage = _made(tmp_path)
    stage.begin()  # a run killed while it writes the files again
    assert stage.state() == "missing"
    assert not (tmp_path / "a.json").exists()


def test_a_stamp_without_a_record_reads_as_an_empty_record(tmp_path):
    stage = _made(tmp_path)
    stamp = json.loads((tmp_path / "a.json").read_text())
    del stamp["record"]
    (tmp_path / "a.json").write_text(json.dumps(stamp))
    assert stage.state() == "kept" and stage.record() == {}
