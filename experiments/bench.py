"""`bandits bench`: run the pytest benchmarks and compare with the last saved run.

The benchmarks are `pytest-benchmark` tests under `tests/benchmarks/` of a source
checkout (the same run as `make bench`); every run is saved as JSON under
`.benchmarks/<machine>/NNNN_*.json` (`--benchmark-autosave`). `--compare` prints,
for every benchmark in both the new run and the latest earlier one, the median
time before and after and the change, and the same for the ratios benchmarks
record in `extra_info` (e.g. `sweep_vs_separate_warm`).

Timings on a shared machine are noisy: compare runs of the same machine, and
read the in-run ratios (measured against a reference in the same run) before the
absolute times.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from bandits.validation import BanditConfigError

BENCHMARKS = Path("tests") / "benchmarks"
DEFAULT_STORAGE = ".benchmarks"


class BenchRow(NamedTuple):
    """One benchmark (or one recorded ratio) in two runs."""

    name: str
    kind: str  # "median s" or "ratio"
    before: float | None
    after: float | None

    @property
    def change(self) -> float | None:
        """after / before - 1 (positive: slower time, or a larger ratio)."""
        if self.before in (None, 0) or self.after is None:
            return None
        return self.after / self.before - 1


def find_root(root: str | Path | None = None) -> Path:
    """The checkout whose `tests/benchmarks` to run: `root`, the current folder,
    or the folder above the installed `experiments` package."""
    candidates = (
        [Path(root)] if root else [Path.cwd(), Path(__file__).resolve().parent.parent]
    )
    for candidate in candidates:
        if (candidate / BENCHMARKS).is_dir():
            return candidate
    raise BanditConfigError(
        f"no {BENCHMARKS} folder in {', '.join(str(c) for c in candidates)}: "
        "`bandits bench` runs the benchmarks of a source checkout (pass --root)"
    )


def saved_runs(storage: str | Path) -> list[Path]:
    """Saved benchmark runs (JSON), oldest first (by their recorded datetime)."""
    storage = Path(storage)
    if not storage.is_dir():
        return []
    runs = []
    for path in storage.glob("*/*.json"):
        try:
            stamp = str(json.loads(path.read_text(encoding="utf-8")).get("datetime"))
        except (OSError, json.JSONDecodeError, AttributeError):
            continue
        runs.append((stamp, path.name, path))
    return [path for _, _, path in sorted(runs)]


def load_run(path: str | Path) -> dict[str, dict[str, Any]]:
    """name -> {"median": seconds, "extra_info": {...}} of a saved run."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise BanditConfigError(f"{path} is not valid JSON: {err}") from None
    out = {}
    for bench in data.get("benchmarks", []):
        stats = bench.get("stats") or {}
        out[str(bench.get("fullname") or bench.get("name"))] = {
            "median": stats.get("median"),
            "extra_info": bench.get("extra_info") or {},
        }
    return out


def compare_runs(before: str | Path, after: str | Path) -> list[BenchRow]:
    """Benchmarks of `after` next to the same benchmarks of `before`."""
    old, new = load_run(before), load_run(after)
    rows = []
    for name, bench in new.items():
        previous = old.get(name, {})
        rows.append(
            BenchRow(name, "median s", previous.get("median"), bench.get("median"))
        )
        for key, value in bench["extra_info"].items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                earlier = previous.get("extra_info", {}).get(key)
                earlier = earlier if isinstance(earlier, int | float) else None
                rows.append(BenchRow(f"{name} [{key}]", "value", earlier, value))
    return rows


def format_rows(rows: Sequence[BenchRow], before: Path, after: Path) -> str:
    """A plain-text table of `compare_runs`."""

    def number(value: float | None) -> str:
        return "–" if value is None else f"{value:.4g}"

    cells = [["Benchmark", "Kind", "Before", "After", "Change"]]
    for row in rows:
        change = "–" if row.change is None else f"{row.change:+.1%}"
        cells.append(
            [row.name, row.kind, number(row.before), number(row.after), change]
        )
    widths = [max(len(c[i]) for c in cells) for i in range(5)]
    lines = [f"before: {before}", f"after:  {after}", ""]
    for i, line in enumerate(cells):
        lines.append(
            "  ".join(
                c.ljust(w) if j < 2 else c.rjust(w)
                for j, (c, w) in enumerate(zip(line, widths, strict=True))
            )
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def pytest_command(storage: str | Path, keyword: str | None = None) -> list[str]:
    """The pytest command line of `make bench` (saving the run under `storage`)."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(BENCHMARKS),
        "--benchmark-only",
        "--benchmark-autosave",
        f"--benchmark-storage=file://{Path(storage).resolve()}",
        "--benchmark-columns=min,median,mean,rounds",
        "-p",
        "no:xdist",
    ]
    if keyword:
        command += ["-k", keyword]
    return command


def bench(
    *,
    compare: bool = False,
    run: bool = True,
    root: str | Path | None = None,
    storage: str | Path | None = None,
    keyword: str | None = None,
) -> int:
    """Runs the benchmarks (unless `run=False`) and optionally compares.

    Returns:
      The exit status: pytest's, or 0 after a comparison.
    """
    root = find_root(root)
    storage = Path(storage) if storage else root / DEFAULT_STORAGE
    earlier = saved_runs(storage)
    if run:
        status = subprocess.call(pytest_command(storage, keyword), cwd=root)
        if status != 0:
            return status
    if not compare:
        return 0
    runs = saved_runs(storage)
    if run:
        new = [r for r in runs if r not in earlier]
        if not new or not earlier:
            print("no earlier saved benchmark run to compare with")
            return 0
        before, after = earlier[-1], new[-1]
    else:
        if len(runs) < 2:
            raise BanditConfigError(
                f"--compare without running needs two saved runs in {storage}; "
                f"found {len(runs)}"
            )
        before, after = runs[-2], runs[-1]
    print(format_rows(compare_runs(before, after), before, after), end="")
    return 0
