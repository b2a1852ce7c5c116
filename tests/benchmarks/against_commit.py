"""Times agents of this checkout against the same agents at an earlier commit.

    python -m tests.benchmarks.against_commit --commit 2eb9b3e \\
        --modules networks neural neural_linear replay \\
        --agents neural_ts neural_ucb neural_linear --horizon 2000 --seeds 16

The named modules of `agents/` are read from the commit (`git show`), their
imports of one another pointed at a temporary package, and loaded beside
today's; everything else they import (the kernel, the other agent modules) is
today's code. Each agent runs through `bandits.run` on `Linear-v0` (K = 4,
d = 10 by default), old and new timed in turn in this process
(`interleaved_best_times`, best of `--repeats` after a warm-up, compile
excluded); the script prints both times, their ratio, the fraction of equal
actions and the largest difference of final regret over the seeds.

It needs the git history (a clone, not an archive) and a commit whose modules
still import from today's kernel.
"""

from __future__ import annotations

import argparse
import importlib
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def load_old_modules(commit: str, modules: Sequence[str], folder: Path) -> str:
    """Writes `agents/<m>.py` of `commit` for every m into a package under
    `folder`, importable beside today's `agents`; returns the package name."""
    package = "agents_at_" + re.sub(r"\W", "_", commit)
    target = folder / package
    target.mkdir(parents=True)
    (target / "__init__.py").write_text("")
    names = "|".join(map(re.escape, modules))
    for module in modules:
        text = subprocess.run(
            ["git", "show", f"{commit}:agents/{module}.py"],
            cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        text = re.sub(rf"\bagents\.({names})\b", rf"{package}.\1", text)
        (target / f"{module}.py").write_text(text)
    sys.path.insert(0, str(folder))
    return package


def factory(package: str, modules: Sequence[str], name: str):
    """The agent factory `name` from the first of `modules` that defines it."""
    for module in modules:
        found = getattr(importlib.import_module(f"{package}.{module}"), name, None)
        if found is not None:
            return found
    raise SystemExit(f"no module of {list(modules)} defines {name!r}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commit", required=True)
    parser.add_argument("--modules", nargs="+", required=True)
    parser.add_argument("--agents", nargs="+", required=True)
    parser.add_argument("--horizon", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--num-arms", type=int, default=4)
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import bandits
    import envs
    from agents import registry
    from tests.benchmarks.conftest import interleaved_best_times

    saved = dict(registry._REGISTRY)  # the old modules register their agents too
    with tempfile.TemporaryDirectory() as folder:
        package = load_old_modules(args.commit, args.modules, Path(folder))
        old = {a: factory(package, args.modules, a) for a in args.agents}
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)
    env, params = envs.make("Linear-v0", num_arms=args.num_arms, dim=args.dim)
    shape = {"num_arms": args.num_arms, "dim": args.dim}
    for name in args.agents:
        before, after = old[name](**shape), registry.make(name, **shape)

        def run_before(agent=before):
            return bandits.run(
                env, agent, horizon=args.horizon, seeds=args.seeds, params=params
            )

        def run_after(agent=after):
            return run_before(agent)

        first, second = run_before(), run_after()
        equal = float(np.mean(np.asarray(first.action) == np.asarray(second.action)))
        final = [np.asarray(t.regret).sum(axis=-1) for t in (first, second)]
        t_before, t_after = interleaved_best_times(
            [run_before, run_after], repeats=args.repeats
        )
        print(
            f"{name}: {args.commit} {t_before:.2f} s, now {t_after:.2f} s, "
            f"{t_before / t_after:.2f}x; equal actions {equal:.4f}, largest final "
            f"regret difference {np.max(np.abs(final[0] - final[1])):.3g}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
