"""`--overwrite` deletes only what runs wrote.

Before: in a folder holding the user's own `curves/my_data.parquet` and
`sensitivity-mine.png`, `--overwrite` deleted both, by name pattern. Now the
manifest lists every file the runs wrote, and only those go.
"""

from __future__ import annotations

import copy

from experiments.config.loader import parse_config
from experiments.execute.runner import run_experiment
from experiments.store import manifest, storage

CONFIG = {
    "name": "overwrite",
    "env": {"id": "Linear-v0", "params": {"num_arms": 3, "dim": 2}},
    "run": {"horizon": 20, "seeds": 2, "prediction_seeds": 0},
    "agents": [
        {"name": "epsilon_greedy", "label": "eps", "grid": {"epsilon": [0.1, 0.2]}},
    ],
}


def test_overwrite_keeps_the_users_files(tmp_path):
    out = tmp_path / "out"
    run_experiment(parse_config(CONFIG), out, progress=False)
    written = manifest.read(out).files
    assert "config.toml" in written and "report.md" in written
    assert any(f.startswith("sensitivity-") for f in written)
    assert any(f.startswith("curves/") for f in written)
    mine = [out / "curves" / "my_data.parquet", out / "sensitivity-mine.png"]
    for path in mine:
        path.write_bytes(b"the user's own")
    other = copy.deepcopy(CONFIG)
    other["agents"] = [{"name": "random"}]
    run_experiment(parse_config(other), out, overwrite=True, progress=False)
    for path in mine:
        assert path.read_bytes() == b"the user's own"
    # What the first run wrote and the second does not write is gone.
    gone = [f for f in written if f not in manifest.read(out).files]
    assert gone and not any((out / f).exists() for f in gone)
    assert [
        r["agent"] for r in storage.read_summaries(out) if r["kind"] == "agent"
    ] == ["random"]


def test_a_listed_path_outside_the_folder_is_never_deleted(tmp_path):
    out = tmp_path / "out"
    run_experiment(parse_config(CONFIG), out, progress=False)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    raw = storage.read_manifest(out)
    raw["files"] = [*raw["files"], "../victim.txt", str(victim)]
    storage.write_manifest(out, raw)
    other = copy.deepcopy(CONFIG)
    other["agents"] = [{"name": "random"}]
    run_experiment(parse_config(other), out, overwrite=True, progress=False)
    assert victim.read_text() == "keep"
