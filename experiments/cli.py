"""The `bandits` command line: run experiments, re-render reports, list components.

    bandits run [CONFIG] [--out DIR] [--overwrite] [--quiet]
    bandits report DIR
    bandits list

CONFIG is a TOML file or the name of a packaged config (default: "quickstart").
Bad input ends with a one-line `error: ...` on stderr and exit status 2; an agent
whose state becomes NaN/inf ends with exit status 1 (finished agents are kept).
"""

from __future__ import annotations

import argparse
import inspect
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bandits.validation import BanditConfigError

EXIT_CONFIG_ERROR = 2
EXIT_RUN_ERROR = 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `bandits` console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except BanditConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except FloatingPointError as err:  # bandits.NonFiniteAgentStateError
        print(f"error: {err}", file=sys.stderr)
        return EXIT_RUN_ERROR
    except KeyboardInterrupt:
        print(
            "interrupted; finished agents are stored, rerun to resume", file=sys.stderr
        )
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bandits",
        description="Contextual bandit experiments: simulate agents, store regret "
        "curves, render reports.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run a TOML config and write results and a report",
        description="Run every agent of a config, store results, render the report. "
        "Rerunning the same config into the same folder skips finished agents.",
    )
    run.add_argument(
        "config",
        nargs="?",
        default="quickstart",
        metavar="CONFIG",
        help="a TOML file or a packaged config name (default: quickstart)",
    )
    run.add_argument(
        "--out", metavar="DIR", help="results folder (overrides run.output)"
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="replace results of a different config in the folder",
    )
    run.add_argument("--quiet", action="store_true", help="no progress display")
    run.set_defaults(handler=_run)

    report = sub.add_parser(
        "report",
        help="re-render the report of a results folder",
        description="Re-render report.md, report.html and the plots from stored files.",
    )
    report.add_argument("directory", metavar="DIR", help="a results folder")
    report.set_defaults(handler=_report)

    list_ = sub.add_parser(
        "list",
        help="list environments and agents with their parameters",
        description="List registered environments and agents with parameters and "
        "defaults.",
    )
    list_.set_defaults(handler=_list)
    return parser


def _run(args: argparse.Namespace) -> int:
    from experiments.config import load_config
    from experiments.runner import run_experiment

    config = load_config(args.config)
    result = run_experiment(
        config,
        args.out,
        overwrite=args.overwrite,
        progress=not args.quiet,
        command=_command_from(args),
    )
    if result.skipped:
        print(f"reused stored results of: {', '.join(result.skipped)}")
    print(f"results: {result.output}")
    print(f"report:  {result.report.html}")
    print(f"         {result.report.markdown}")
    return 0


def _command_from(args: argparse.Namespace) -> str:
    parts = ["bandits", "run", args.config]
    if args.out:
        parts += ["--out", args.out]
    if args.overwrite:
        parts.append("--overwrite")
    return " ".join(shlex.quote(p) for p in parts)


def _report(args: argparse.Namespace) -> int:
    from bandits import report

    directory = Path(args.directory)
    if not directory.is_dir():
        raise BanditConfigError(f"results folder {args.directory!r} does not exist")
    files = report.render(directory)
    print(f"report: {files.html}")
    print(f"        {files.markdown}")
    return 0


def _list(args: argparse.Namespace) -> int:
    del args
    import agents
    import envs
    from experiments.config import FROM_ENV

    print("Environments ([env] id, params = {...}):")
    for env_id, entry in envs.registered().items():
        print(f"  {env_id}  {entry.description}")
        params = envs.hyperparameters(env_id)
        print("      " + _params_text(params, {}))
    print()
    print("Agents ([[agents]] name, hyperparameters = {...}):")
    for name, entry in agents.registered().items():
        print(f"  {name}  {entry.description}")
        params = agents.hyperparameters(name)
        print("      " + _params_text(params, {k: "from env" for k in FROM_ENV}))
    return 0


def _params_text(params: dict[str, Any], notes: dict[str, str]) -> str:
    if not params:
        return "(no parameters)"
    parts = []
    for key, default in params.items():
        if key in notes:
            parts.append(f"{key} ({notes[key]})")
        elif default is inspect.Parameter.empty:
            parts.append(f"{key} (required)")
        else:
            parts.append(f"{key} = {_toml(default)}")
    return ", ".join(parts)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if value is None:
        return "(none)"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


if __name__ == "__main__":
    sys.exit(main())
