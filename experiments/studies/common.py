"""What every study command on the platform does around its own table: load the
config with the options' changes, keep the chosen agents, check what the study
needs, run it through the runner, and store the study's rows."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bandits.validation import BanditConfigError
from experiments.config.loader import load_config, select_agents
from experiments.config.schema import ExperimentConfig
from experiments.execute.runner import ExperimentResult, run_experiment
from experiments.store import storage


@dataclasses.dataclass(frozen=True)
class StudyRun:
    """A finished study run: its config, the runner's result and what the
    study's check returned."""

    config: ExperimentConfig
    result: ExperimentResult
    checked: Any = None


def require_grid(
    config: ExperimentConfig, parameter: str, option: str, env_id: str | None = None
) -> None:
    """Refuses a config without an [env] grid over `parameter` (or another env
    than `env_id`), naming the option that sets the grid."""
    if (env_id is not None and config.env.id != env_id) or (
        parameter not in config.env.grid
    ):
        env = f"env {env_id!r} with " if env_id is not None else ""
        raise BanditConfigError(
            f"the study needs {env}an [env] grid over {parameter} (or {option})"
        )


def run_study(
    module: str,
    args: argparse.Namespace,
    argv: Sequence[str] | None,
    overrides: Mapping[str, Any],
    check: Callable[[ExperimentConfig], Any],
) -> StudyRun | None:
    """Runs the study `module` (its options `args`, command line `argv`) through
    the platform; prints the error and returns None for a config it refuses.
    `args` needs `config`, `agents`, `out` and `quiet`."""
    try:
        config = select_agents(load_config(args.config, overrides), args.agents)
        checked = check(config)
        command = " ".join([f"python -m {module}", *(argv or [])])
        result = run_experiment(
            config, args.out, progress=not args.quiet, command=command
        )
    except BanditConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return None
    return StudyRun(config, result, checked)


def write_summary(rows: Sequence[Mapping[str, Any]], output: Path) -> Path:
    """The study's rows as `summary.json` in the results folder (atomically)."""
    path = output / "summary.json"
    storage.atomic_write_text(path, json.dumps(list(rows), indent=2) + "\n")
    return path
