"""One run at a time per results folder.

Two `bandits run` into the same `--out` were both accepted; the final manifest
could list no agents and a series could vanish. The runner now holds an OS-level
lock on the folder (`experiments.store.lock`): a second run is refused before it
touches anything, naming the holder, and a lock left by a killed process does
not block the next run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bandits import BanditConfigError
from experiments import cli
from experiments.config.loader import parse_config
from experiments.execute.runner import run_experiment
from experiments.store import lock

CONFIG = {
    "name": "locked",
    "env": {"id": "Linear-v0", "params": {"num_arms": 3, "dim": 2}},
    "run": {"horizon": 20, "seeds": 2, "prediction_seeds": 0},
    "agents": [{"name": "random"}],
}
TOML = """
name = "locked"
[env]
id = "Linear-v0"
params = { num_arms = 3, dim = 2 }
[run]
horizon = 20
seeds = 2
prediction_seeds = 0
[[agents]]
name = "random"
"""


def test_a_second_run_into_a_folder_in_use_is_refused(tmp_path):
    out = tmp_path / "out"
    with lock.exclusive(out, command="bandits run first.toml"):
        with pytest.raises(BanditConfigError) as info:
            run_experiment(parse_config(CONFIG), out, progress=False)
        before = sorted(p.name for p in out.iterdir())
    message = str(info.value)
    assert f"pid {os.getpid()}" in message and "bandits run first.toml" in message
    assert "in use by another run" in message
    assert before == [lock.LOCK_FILE]  # nothing of the refused run was written
    assert not (out / lock.LOCK_FILE).exists()  # released and removed


def test_the_cli_refuses_with_one_line_and_exit_code_2(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text(TOML)
    out = tmp_path / "out"
    with lock.exclusive(out):
        code = cli.main(["run", str(config), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == cli.EXIT_CONFIG_ERROR
    assert err.startswith("error: output folder") and "\n" not in err


HOLDER = """
import sys, time
from pathlib import Path
from experiments.store import lock
with lock.exclusive(Path(sys.argv[1]), command="holder"):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with (
            pytest.raises(BanditConfigError, match=f"pid {holder.pid}"),
            lock.exclusive(out),
        ):
            pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        assert (out / lock.LOCK_FILE).exists()  # the dead holder's file stays
        result = run_experiment(parse_config(CONFIG), out, progress=False)
        assert [a.label for a in result.agents] == ["random"]
        assert not (out / lock.LOCK_FILE).exists()
    finally:
        holder.kill()


def test_an_impossible_output_folder_is_a_named_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(BanditConfigError, match="cannot use output folder"):
        run_experiment(parse_config(CONFIG), blocker / "sub", progress=False)
    assert blocker.read_text() == "not a folder"


def test_a_folder_holding_only_a_stale_lock_counts_as_empty(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    Path(out / lock.LOCK_FILE).write_text("{}")
    result = run_experiment(parse_config(CONFIG), out, progress=False)
    assert (result.output / "summaries.jsonl").is_file()
