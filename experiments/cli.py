"""The `bandits` command line: run experiments, re-render reports, compare, bench.

    bandits run [CONFIG] [--out DIR] [--overwrite] [--quiet] [--chunk-size N]
                [--executor local|dask] [--scheduler ADDRESS] [--workers N]
    bandits report DIR
    bandits compare DIR_A DIR_B [--out DIR]
    bandits bench [--compare] [--no-run] [-k EXPR] [--root DIR] [--storage DIR]
    bandits list

CONFIG is a TOML file or the name of a packaged config (default: "quickstart").
Bad input ends with a one-line `error: ...` on stderr and exit status 2. A series
(a grid point) whose agent state becomes NaN/inf does not stop the others: they
are stored and reported, and the run ends with one `error:` line naming each
failed series with its first bad seed and step, and exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import logging
import os
import shlex
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bandits.validation import BanditConfigError

EXIT_CONFIG_ERROR = 2
EXIT_RUN_ERROR = 1


def entry() -> int:
    """The `bandits` console script (and `python -m experiments.cli`): `main`,
    then the local worker processes end at once (idle by then, they hold
    nothing unstored; their orderly exit, JAX's teardown in each, would add
    half a second to every command), and so does this process (`end_now`).
    Code that calls `main` itself keeps its warm workers for the next run.
    A SIGTERM (`kill`, `timeout`) ends the command as Ctrl-C does: one line,
    exit status 130, finished results kept, workers stopped."""
    return run_command(main)


def run_command(command: Callable[[], int]) -> int:
    """Runs a command's `main` (`bandits`, every `python -m
    experiments.studies.*`) as `entry` describes: SIGTERM handled as Ctrl-C,
    an interruption that `command` does not report itself reported in one
    line (exit status 130), the workers stopped, the process ended once its
    output is flushed."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        status = command()
    except KeyboardInterrupt:
        print("interrupted; finished results are stored, rerun to resume",
              file=sys.stderr)  # fmt: skip
        status = 130
    finally:
        executors = sys.modules.get("experiments.execute.executors")
        if executors is not None:
            executors.stop_workers()
    end_now(status)
    return status  # not reached: for callers that replace `end_now`


def _interrupt(signum: int, frame: Any) -> None:
    del signum, frame
    raise KeyboardInterrupt


def end_now(status: int) -> None:
    """Ends the command with `status` once its output is flushed, skipping the
    interpreter's teardown (JAX's backends, the process pool's threads: about
    0.4 s of a short run on two cores). Nothing is lost: by the time `main`
    returns, every result file is written, closed and renamed into place, the
    folder lock is released, and the worker processes are stopped."""
    for stream in (sys.stdout, sys.stderr):
        # A reader gone, a stream closed: nothing more can reach it.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    logging.shutdown()
    os._exit(status)


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
    except RuntimeError as err:
        from experiments.execute.executors import RunFailedError

        if not isinstance(err, RunFailedError):
            raise  # a bug: keep the traceback
        print(f"error: {err}", file=sys.stderr)
        return EXIT_RUN_ERROR
    except BrokenPipeError:  # `bandits list | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as err:  # a full disk, a folder made read-only mid-run
        where = f" ({err.filename})" if err.filename else ""
        print(
            f"error: {err.strerror or err}{where}; finished chunks are stored, "
            "rerun to resume",
            file=sys.stderr,
        )
        return EXIT_RUN_ERROR
    except KeyboardInterrupt:
        print(
            "interrupted; finished chunks are stored, rerun to resume", file=sys.stderr
        )
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bandits",
        description="Contextual bandit experiments: simulate agents, store regret "
        "curves, render reports.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_run(sub)
    _add_report_and_compare(sub)
    _add_bench_and_list(sub)
    return parser


def _add_run(sub) -> None:
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
    run.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="do not keep compiled programs on disk (default: kept in "
        "$BANDITS_COMPILE_CACHE or ~/.cache/bandits/jax, reused by later runs)",
    )
    run.add_argument(
        "--chunk-size",
        type=int,
        metavar="N",
        help="seeds per compiled batch and stored chunk (overrides run.chunk_size; "
        "part of the config hash)",
    )
    run.add_argument(
        "--executor",
        choices=("local", "dask"),
        default="local",
        help="where chunks run: worker processes on this machine (default) or a "
        "Dask cluster",
    )
    run.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="Dask scheduler address, e.g. tcp://10.0.0.5:8786 (with --executor dask)",
    )
    run.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="local worker processes (default: one per core)",
    )
    run.add_argument(
        "--connect-timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds to wait for the Dask scheduler and a first worker (default 5)",
    )
    run.set_defaults(handler=_run)


def _add_report_and_compare(sub) -> None:
    report = sub.add_parser(
        "report",
        help="re-render the report of a results folder",
        description="Re-render report.md, report.html and the plots from stored files.",
    )
    report.add_argument("directory", metavar="DIR", help="a results folder")
    report.set_defaults(handler=_report)

    compare = sub.add_parser(
        "compare",
        help="compare the final regret of two results folders",
        description="Final regret per series in two results folders, the difference "
        "B - A with a 95% interval, and whether the intervals overlap. Writes "
        "compare.md and compare.html.",
    )
    compare.add_argument("dir_a", metavar="DIR_A", help="baseline results folder")
    compare.add_argument("dir_b", metavar="DIR_B", help="results folder to compare")
    compare.add_argument(
        "--out",
        metavar="DIR",
        help="where to write the comparison (default DIR_B/compare)",
    )
    compare.set_defaults(handler=_compare)


def _add_bench_and_list(sub) -> None:
    bench = sub.add_parser(
        "bench",
        help="run the pytest benchmarks (as `make bench`); compare with the last run",
        description="Run tests/benchmarks of a source checkout with pytest-benchmark, "
        "saving the run as JSON; --compare shows the change against the last saved "
        "run.",
    )
    bench.add_argument(
        "--compare", action="store_true", help="compare with the last saved run"
    )
    bench.add_argument(
        "--no-run",
        action="store_true",
        help="do not run; with --compare, compare the last two saved runs",
    )
    bench.add_argument("-k", dest="keyword", metavar="EXPR", help="pytest -k filter")
    bench.add_argument("--root", metavar="DIR", help="the source checkout")
    bench.add_argument(
        "--storage", metavar="DIR", help="saved runs (default ROOT/.benchmarks)"
    )
    bench.set_defaults(handler=_bench)

    list_ = sub.add_parser(
        "list",
        help="list environments and agents with their parameters",
        description="List registered environments and agents with parameters and "
        "defaults.",
    )
    list_.set_defaults(handler=_list)


def _run(args: argparse.Namespace) -> int:
    import dataclasses

    from experiments.execute import compile_cache
    from experiments.execute.executors import make_executor

    # Before anything compiles: JAX sets its cache up at the first compilation.
    compile_cache.enable(disabled=args.no_compile_cache)
    executor = make_executor(
        args.executor, args.scheduler, args.workers, args.connect_timeout
    )
    data = _start_workers_early(args, executor)
    if "study" in data:
        return _run_study(args, data, executor)
    from experiments.config.loader import load_config
    from experiments.execute.runner import SeriesFailedError, run_experiment

    try:
        config = load_config(args.config)
        if args.chunk_size is not None:
            if args.chunk_size < 1:
                raise BanditConfigError(
                    f"--chunk-size must be >= 1, got {args.chunk_size}"
                )
            run = dataclasses.replace(config.run, chunk_size=args.chunk_size)
            config = dataclasses.replace(config, run=run)
        result = run_experiment(
            config,
            args.out,
            overwrite=args.overwrite,
            progress=not args.quiet,
            command=_command_from(args),
            executor=executor,
        )
    except SeriesFailedError as err:
        _print_result(err.result)
        raise  # main prints its one error line, exit status 1
    finally:
        close = getattr(executor, "close", None)
        if close is not None:
            close()
    _print_result(result)
    return 0


def _start_workers_early(args: argparse.Namespace, executor: Any) -> dict[str, Any]:
    """Starts the local workers now, so that they import while this process
    checks the config, when the run goes into a new folder. A missing or
    malformed file is refused first. An existing folder may hold every result
    already (a rerun then only re-renders the report): its workers start when
    there is work for them. Returns the config's TOML document."""
    from experiments.config.sources import output_folder, parse_toml, read_source
    from experiments.execute.executors import LocalExecutor, prestart

    text, origin, stem = read_source(args.config)
    data = parse_toml(text, origin)
    data.setdefault("name", stem)
    run_value = data.get("run")
    run_table = run_value if isinstance(run_value, dict) else {}
    output = data.get("output") if "study" in data else run_table.get("output")
    name = data["name"]
    if (
        isinstance(executor, LocalExecutor)
        and isinstance(name, str)
        and isinstance(output, str | None)
        and not output_folder(args.out, output, name).exists()
    ):
        prestart(executor.workers)
    return data


def _run_study(args: argparse.Namespace, data: dict[str, Any], executor: Any) -> int:
    """Runs a study config (a top-level `study`): a study of cells with the
    study runner, or a study that pretrains first (`cells.PIPELINES`) with
    its module; either on `executor`."""
    from experiments.execute import cells

    study = data["study"]
    pipeline = isinstance(study, str) and study in cells.PIPELINES
    if args.chunk_size is not None and not pipeline:
        raise BanditConfigError(
            f"--chunk-size applies to regret experiments and to the online runs "
            f"of {', '.join(map(repr, cells.PIPELINES))}, not to study {study!r}"
        )
    if args.chunk_size is not None and args.chunk_size < 1:
        raise BanditConfigError(f"--chunk-size must be >= 1, got {args.chunk_size}")
    try:
        if pipeline:
            return _run_pipeline(args, data, executor)
        return _run_cells(args, data, executor)
    finally:
        close = getattr(executor, "close", None)
        if close is not None:
            close()


def _run_cells(args: argparse.Namespace, data: dict[str, Any], executor: Any) -> int:
    from experiments.config.sources import output_folder
    from experiments.execute import cells

    study = str(data["study"])
    config = cells.study_module(study).read(data)
    out = output_folder(args.out, data.get("output"), str(data["name"]))
    result = cells.run_cells(
        study,
        config,
        out,
        executor=executor,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(f"computed {len(result.computed)} cell(s), reused {len(result.reused)}")
    print(f"results: {out / cells.RECORDS}")
    for path in result.files:
        print(f"         {path}")
    return 0


def _run_pipeline(args: argparse.Namespace, data: dict[str, Any], executor: Any) -> int:
    from experiments.config.sources import output_folder
    from experiments.execute import cells

    output = data.get("output")
    if output is not None and not isinstance(output, str):
        raise BanditConfigError.about("output", "must be a string (a folder)")
    out = output_folder(args.out, output, str(data["name"]))
    return cells.pipeline_module(data["study"]).run_config(
        args.config,
        out,
        executor=executor,
        overwrite=args.overwrite,
        progress=not args.quiet,
        chunk_size=args.chunk_size,
    )


def _print_result(result) -> None:
    print(
        f"computed {len(result.computed)} chunk(s), reused {len(result.reused)} "
        "stored chunk(s)"
    )
    if result.skipped:
        print(f"reused stored results of: {', '.join(result.skipped)}")
    if result.failed:
        print(f"failed, not stored: {', '.join(f.label for f in result.failed)}")
    print(f"results: {result.output}")
    print(f"report:  {result.report.html}")
    print(f"         {result.report.markdown}")


def _command_from(args: argparse.Namespace) -> str:
    parts = ["bandits", "run", args.config]
    if args.out:
        parts += ["--out", args.out]
    if args.overwrite:
        parts.append("--overwrite")
    if args.chunk_size is not None:
        parts += ["--chunk-size", str(args.chunk_size)]
    if args.executor != "local":
        parts += ["--executor", args.executor, "--scheduler", args.scheduler or ""]
    return " ".join(shlex.quote(p) for p in parts)


def _report(args: argparse.Namespace) -> int:
    from experiments.report import render as report

    directory = Path(args.directory)
    if not directory.is_dir():
        raise BanditConfigError(f"results folder {args.directory!r} does not exist")
    from experiments.execute import cells

    if cells.is_study_folder(directory):
        for path in cells.render(directory):
            print(f"report: {path}")
        return 0
    files = report.render(directory)
    print(f"report: {files.html}")
    print(f"        {files.markdown}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from experiments.report import compare

    for directory in (args.dir_a, args.dir_b):
        if not Path(directory).is_dir():
            raise BanditConfigError(f"results folder {directory!r} does not exist")
    comparison = compare.compare_results(args.dir_a, args.dir_b)
    out = Path(args.out) if args.out else Path(args.dir_b) / "compare"
    markdown, page = compare.write_compare(comparison, out)
    print(compare.format_text(comparison), end="")
    print(f"comparison: {page}")
    print(f"            {markdown}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from experiments.bench import bench

    if args.no_run and not args.compare:
        raise BanditConfigError("--no-run only makes sense with --compare")
    return bench(
        compare=args.compare,
        run=not args.no_run,
        root=args.root,
        storage=args.storage,
        keyword=args.keyword,
    )


def _list(args: argparse.Namespace) -> int:
    del args
    import agents
    import envs
    from experiments.config.loader import FROM_ENV

    print("Environments ([env] id, params = {...}):")
    for env_id, entry in envs.registered().items():
        print(f"  {env_id}  {entry.description}")
        params = envs.hyperparameters(env_id)
        print("      " + _params_text(params, {}))
    print()
    print("Agents ([[agents]] name, hyperparameters = {...}):")
    for name, agent_entry in agents.registered().items():
        print(f"  {name}  {agent_entry.description}")
        params = agents.hyperparameters(name)
        notes = {k: "from env" for k in FROM_ENV}
        notes["slate_size"] = "from a slate env"
        print("      " + _params_text(params, notes))
    from experiments.config.sources import packaged_config_text, packaged_configs
    from experiments.execute import cells

    print()
    print('Studies of cells (a config with study = "..."; bandits run NAME):')
    for name, module in cells.STUDIES.items():
        print(f"  {name}  (experiments/configs/{name}.toml, {module})")
    print()
    print("Studies that pretrain before their platform runs (bandits run NAME):")
    for name, module in cells.PIPELINES.items():
        configs = sorted(
            stem
            for stem in packaged_configs()
            if _study_of(packaged_config_text(stem)) == name
        )
        print(f"  {name}  ({module}; configs: {', '.join(configs)})")
    return 0


def _study_of(text: str) -> Any:
    """The `study` of a packaged config's TOML text (None if it has none)."""
    import tomllib

    return tomllib.loads(text).get("study")


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
    sys.exit(entry())
