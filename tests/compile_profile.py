"""Where the suite's compile time goes: a pytest plugin and its summary.

    BANDITS_TEST_CACHE=$(mktemp -d) .venv/bin/python -m pytest -n 2 \\
        -p tests.compile_profile --compile-profile=/tmp/profile tests
    .venv/bin/python -m tests.compile_profile /tmp/profile

The plugin records JAX's tracing, lowering and XLA compile durations
(`jax.monitoring` events; a program loaded from the persistent cache counts
its loading time) per test, in each pytest process, and writes them as JSON
lines into the folder (one file per xdist worker). Programs compiled in
subprocesses (the CLI tests, worker pools) are not seen. The summary prints
the totals, the compiled functions and the test modules that cost most.
"""

from __future__ import annotations

import collections
import json
import os
import sys
from pathlib import Path

_rows: list[tuple[str, str, str, float]] = []
_current = ["<collection>"]
PREFIX = "/jax/core/compile/"


def pytest_addoption(parser):
    parser.addoption(
        "--compile-profile",
        metavar="DIR",
        help="write JAX trace/lower/compile durations per test into DIR",
    )


def pytest_configure(config):
    if config.getoption("--compile-profile"):
        import jax.monitoring

        jax.monitoring.register_event_duration_secs_listener(_record)


def _record(event: str, duration: float, **kwargs) -> None:
    if event.startswith(PREFIX):
        name = kwargs.get("fun_name", "?")
        _rows.append((_current[0], event[len(PREFIX) :], name, duration))


def pytest_runtest_setup(item):
    _current[0] = item.nodeid


def pytest_sessionfinish(session):
    folder = session.config.getoption("--compile-profile")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    lines = "".join(json.dumps(row) + "\n" for row in _rows)
    (Path(folder) / f"{worker}.jsonl").write_text(lines)


def summary(folder: Path, top: int = 15) -> str:
    """The totals and the costliest functions and test modules of a profile."""
    rows = []
    for path in sorted(folder.glob("*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines()]
    by_event: collections.Counter[str] = collections.Counter()
    by_function: collections.Counter[str] = collections.Counter()
    by_module: collections.Counter[str] = collections.Counter()
    count: collections.Counter[str] = collections.Counter()
    for test, event, name, seconds in rows:
        by_event[event] += seconds
        if event == "backend_compile_duration":
            by_function[name] += seconds
            count[name] += 1
            by_module[test.split("::")[0]] += seconds
    out = [f"{event}: {seconds:.0f} s" for event, seconds in by_event.items()]
    out.append(f"XLA compiles (or cache loads): {sum(count.values())}")
    out.append("\nXLA compile seconds by function (count):")
    out += [f"{s:8.1f} {count[f]:6d}  {f}" for f, s in by_function.most_common(top)]
    out.append("\nXLA compile seconds by test module:")
    out += [f"{s:8.1f}  {m}" for m, s in by_module.most_common(top)]
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        sys.exit("usage: python -m tests.compile_profile PROFILE_DIR")
    print(summary(Path(sys.argv[1])))
