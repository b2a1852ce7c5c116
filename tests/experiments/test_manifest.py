"""The typed manifest: one definition for the runner, the report and compare."""

from __future__ import annotations

import json

import pytest

from bandits import BanditConfigError
from experiments.store import manifest, storage
from experiments.store.manifest import Cost, Manifest, SeriesEntry

ENTRY = {
    "label": "LinUCB alpha=0.1",
    "name": "linucb",
    "agent_label": "LinUCB alpha=0.1",
    "base_label": "LinUCB",
    "entry": 0,
    "setting": "",
    "setting_index": 0,
    "grid": {"alpha": 0.1},
    "env_grid": {},
    "hyperparameters": {"num_arms": 3, "dim": 4, "alpha": 0.1},
    "program": "sweep x3",
    "curves": "curves/0000-LinUCB.parquet",
    "finished": "2026-12-03T00:00:00+00:00",
    "chunks": 2,
    "compile_time_s": 1.5,
    "compile_time_total_s": 1.5,
    "run_time_s": 0.25,
    "wall_time_s": 2.0,
    "rounds_per_s": 1000.0,
    "peak_memory_bytes": 10,
    "memory_increase_bytes": 1,
    "prediction": {"reward_type": "gaussian", "contexts": 10, "metrics": {}},
}


def test_an_entry_round_trips_with_its_keys_in_order():
    entry = SeriesEntry.from_json(ENTRY)
    assert entry is not None
    assert entry.cost.rounds_per_s == 1000.0 and entry.grid == {"alpha": 0.1}
    assert list(entry.to_json().items()) == list(ENTRY.items())
    fields = entry.summary_fields()
    assert "label" not in fields and "curves" not in fields
    assert fields["hyperparameters"]["alpha"] == 0.1


def test_a_manifest_round_trips_through_the_folder(tmp_path):
    written = Manifest(
        config_hash="abc",
        config={"env": {"id": "Linear-v0"}, "run": {"horizon": 60, "seeds": [0, 1]}},
        title="t",
        agents=(SeriesEntry.from_json(ENTRY),),
        setup={"Horizon": "60"},
        last_run={"computed_chunks": ["a"]},
    )
    manifest.write(tmp_path, written)
    assert manifest.read(tmp_path) == written
    assert written.horizon == 60 and written.env == {"id": "Linear-v0"}
    assert written.entry("LinUCB alpha=0.1").program == "sweep x3"
    assert written.entry("nobody") is None


def test_a_partial_or_old_manifest_reads_with_defaults(tmp_path):
    raw = {"title": "old", "agents": [{"label": "A"}]}
    (tmp_path / storage.MANIFEST).write_text(json.dumps(raw))
    read = manifest.read(tmp_path)
    assert read.title == "old" and read.horizon is None and read.env is None
    assert [e.label for e in read.agents] == ["A"]
    assert read.agents[0].cost == Cost() and read.agents[0].prediction is None


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"agents": [{"label": "A"}, "not an entry"]}, "agents[1] must be"),
        ({"agents": [{"x": 1}]}, "agents[0] has no 'label'"),
        ({"agents": [{"label": 3}]}, "agents[0].label has the wrong type (int)"),
        ({"agents": [{"label": "A", "chunks": "2"}]}, "agents[0].chunks"),
        ({"agents": [{"label": "A", "grid": [1]}]}, "agents[0].grid"),
        ({"agents": [{"label": "A", "setting_index": True}]}, "setting_index"),
        ({"agents": {"label": "A"}}, "manifest.json.agents has the wrong type"),
        ({"files": ["a", 3]}, "files[1] must be a string"),
    ],
)
def test_a_hand_edited_manifest_with_wrong_types_is_refused(tmp_path, raw, field):
    (tmp_path / storage.MANIFEST).write_text(json.dumps(raw))
    with pytest.raises(BanditConfigError) as info:
        manifest.read(tmp_path)
    assert field in str(info.value)


def test_a_manifest_that_is_not_an_object_is_refused(tmp_path):
    (tmp_path / storage.MANIFEST).write_text("[1, 2]")
    with pytest.raises(BanditConfigError, match="JSON object"):
        manifest.read(tmp_path)


def test_cost_of_chunks_sums_and_maxes():
    chunk = {
        "compile_s": 2.0,
        "run_s": 1.0,
        "wall_s": 3.0,
        "rounds": 500,
        "peak_memory_bytes": 7,
        "memory_increase_bytes": 2,
    }
    cost = Cost.of_chunks([chunk, {**chunk, "compile_s": 0.0, "peak_memory_bytes": 9}])
    assert cost == Cost(2.0, 2.0, 2.0, 6.0, 500.0, 9, 2)
