"""Study: off-policy estimators on real traffic, the Open Bandit Dataset protocol.

Two logging policies ran side by side on the same ZOZOTOWN traffic (`envs.obd`):
uniform random and Bernoulli Thompson sampling (BTS). Each direction estimates one
policy's click rate from the other's logs and scores the estimate against the
first policy's own on-policy click rate (the mean click of its logs):

  bts_from_random   evaluation BTS, logs of uniform random (the standard one)
  random_from_bts   evaluation uniform random, logs of BTS

Actions are items; each logged impression also has a slot (position 0-2), and
the estimators work per slot: the target probability of item a on impression i is
pi(a | position_i), which sums to 1 over the items, and the logged propensity is
pi_0(a_i | position_i) (the dataset's `propensity_score`; per position, see
docs/ope.md for the evidence). BTS's pi(a | slot) comes from its Beta priors
(`prior_bts.yaml`) by Monte Carlo: each of `draws` rounds draws one Beta value per
item, ranks the items and fills the three slots with the top three
(`envs.obd.bts_position_probs`); uniform random is 1/K.

Every estimator of `bandits.ope` runs with one reward model: a shared logistic
regression (`bandits.offline.logistic_model(shared=True)`) on the features of
every (impression, item) pair at the logged slot (`envs.obd.pair_features`: the
user's one-hot categories, the user's affinity to the item, the item's features,
a one-hot of the slot), cross-fitted (`bandits.offline.cross_fit`, 3 folds as in
Open Bandit Pipeline) so no event is scored by a model that saw it. Over
`resamples` bootstrap resamples of the logs (rows drawn with replacement; the
model refitted on each) the relative error |V_hat - V| / V gives a mean and a 95%
percentile interval, printed beside the published Open Bandit Pipeline numbers for
bts_from_random on campaign all. The full logs also give each estimator's value
with its own 95% interval, and whether that interval covers V.

    python -m experiments.studies.obd_ope          # campaign all, 30 resamples
    python -m experiments.studies.obd_ope --campaigns all men women
    python -m experiments.studies.obd_ope --quick --out /tmp/obd_ope  # smoke run
    bandits run obd_ope                            # the config, as it is

The settings are `experiments/configs/obd_ope.toml`; the options replace them.
Each (campaign, direction) is a cell of the study runner
(`experiments.execute.cells`): the cells run side by side in worker processes,
each is stored as it finishes (`cells/`), and a rerun computes only the cells
it lacks or whose settings changed. Writes `summary.json` (every number, per
resample too), `summary.md` (the tables) and `obd_ope.png` (relative error by
estimator, both directions) to `--out`, from every cell in the folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from bandits import offline, ope
from bandits.files import atomic_write
from bandits.validation import BanditConfigError, non_negative_int, positive_int, real
from envs import obd
from envs.logged import LoggedData
from experiments.cli import run_command
from experiments.config import checks
from experiments.config.checks import check_keys
from experiments.config.sources import parse_toml, read_source
from experiments.execute import compile_cache
from experiments.execute.cells import Cell, command

DIRECTIONS = {
    "bts_from_random": ("bts", "random"),  # (evaluation policy, logging policy)
    "random_from_bts": ("random", "bts"),
}
ESTIMATORS = tuple(ope.ESTIMATORS)
# Open Bandit Pipeline, examples/obd/README.md (st-tech/zr-obp): evaluation BTS,
# behaviour random, campaign all, logistic regression (C = 100), 3-fold
# cross-fitting, 30 bootstrap runs, relative estimation error mean and std.
# Their Switch-DR and DRos tune tau / lambda per run (SLOPE); ours use fixed ones.
PUBLISHED = {
    "dm": (0.156876, 0.109898),
    "ips": (0.311082, 0.311170),
    "snips": (0.311795, 0.334736),
    "dr": (0.292464, 0.315485),
    "sndr": (0.302407, 0.328434),
    "switch_dr": (0.258410, 0.160598),
    "dros": (0.159520, 0.109660),
}
LABELS = {
    "dm": "DM",
    "ips": "IPS",
    "clipped_ips": "clipped IPS",
    "snips": "SNIPS",
    "dr": "DR",
    "sndr": "SNDR",
    "switch_dr": "Switch-DR",
    "dros": "DRos",
}


@dataclasses.dataclass(frozen=True)
class Args:
    """Settings of the OBD study (the config, with the options applied)."""

    out: str = "results/obd_ope"
    """Folder for the cells, summary.json, summary.md and obd_ope.png."""
    campaigns: tuple[str, ...] = ("all",)
    """Campaigns from `envs.obd.CAMPAIGNS`."""
    directions: tuple[str, ...] = tuple(DIRECTIONS)
    """Which policy is estimated from whose logs (`DIRECTIONS`)."""
    resamples: int = 30
    """Bootstrap resamples of the logs (the model is refitted on each)."""
    draws: int = 1_000_000
    """Monte Carlo rounds behind BTS's (item, slot) probabilities."""
    folds: int = 3
    """Cross-fitting folds of the reward model."""
    regularization: float = 1.0
    """L2 weight lambda of the logistic reward model (on the summed log loss)."""
    max_weight: float = 100.0
    """Clipped IPS's weight cap M."""
    tau: float = 100.0
    """Switch-DR's weight threshold."""
    shrinkage: float = 1.0
    """DRos's lambda."""
    rows: int | None = None
    """Use only the first `rows` logged events (time order); None: all."""
    seed: int = 0
    """Seed of the resamples, the folds and the Monte Carlo draws."""


_NOT_SETTINGS = ("out", "campaigns", "directions")
SETTINGS = tuple(
    f.name for f in dataclasses.fields(Args) if f.name not in _NOT_SETTINGS
)
"""The settings a cell's numbers depend on (beside its campaign and direction)."""
QUICK = {"resamples": 3, "draws": 20_000, "rows": 3_000}


# ---------------------------------------------------------------------------
# Policies and the reward model


def target_probs(
    policy: str, logs: LoggedData, campaign: str, draws: int, seed: int
) -> np.ndarray:
    """(n, K) pi(a | position_i) of the evaluation policy on every logged event."""
    n, num_items = logs.mask.shape
    if policy == "random":
        return np.full((n, num_items), 1.0 / num_items, np.float32)
    alpha, beta = obd.bts_prior(campaign)
    by_slot = obd.bts_position_probs(alpha, beta, draws=draws, seed=seed)  # (K, L)
    return by_slot[:, logs.position].T.astype(np.float32)


def reward_estimates(
    logs: LoggedData, rows: np.ndarray, key: jax.Array, args: Args
) -> np.ndarray:
    """(len(rows), K) cross-fitted click probabilities of every item at the
    logged slot, from a shared logistic model on `obd.pair_features`."""
    num_items = logs.mask.shape[1]
    model = reward_model(num_items, args.regularization)
    features = obd.pair_features(logs.take(rows))
    return np.asarray(
        offline.cross_fit(
            model, features, logs.action[rows], logs.reward[rows], key, args.folds
        )
    )


_MODELS: dict[tuple[int, float], offline.RewardModel] = {}


def reward_model(num_items: int, regularization: float) -> offline.RewardModel:
    """One model object per shape, so its jitted fit compiles once."""
    key = (num_items, regularization)
    if key not in _MODELS:
        _MODELS[key] = offline.logistic_model(
            num_items, regularization=regularization, shared=True
        )
    return _MODELS[key]


def estimate(
    logs: LoggedData, target: np.ndarray, reward_hat: np.ndarray, rows, args: Args
) -> dict[str, ope.Estimate]:
    """Every estimator on the events `rows` of the logs."""
    return ope.estimate_all(
        logs.reward[rows],
        logs.action[rows],
        logs.propensity[rows],
        target[rows],
        reward_hat,
        max_weight=args.max_weight,
        tau=args.tau,
        shrinkage=args.shrinkage,
    )


# ---------------------------------------------------------------------------
# One direction


def run_direction(campaign: str, direction: str, args: Args) -> dict[str, Any]:
    """The estimates of one direction on one campaign, on the full logs and over
    bootstrap resamples, against the evaluation policy's on-policy click rate."""
    evaluation, logging = DIRECTIONS[direction]
    start = time.perf_counter()
    logs = obd.load(logging, campaign)
    if args.rows is not None:
        logs = logs.take(np.arange(min(args.rows, len(logs))))
    truth_log = obd.load(evaluation, campaign)
    v_true = float(truth_log.reward.astype(np.float64).mean())
    n_true = len(truth_log)
    truth_se = float(np.sqrt(v_true * (1 - v_true) / n_true))
    target = target_probs(evaluation, logs, campaign, args.draws, args.seed)
    n = len(logs)
    weights = target[np.arange(n), logs.action] / logs.propensity
    key = jax.random.key(args.seed)

    everything = np.arange(n)
    full = estimate(
        logs,
        target,
        reward_estimates(logs, everything, jax.random.fold_in(key, 10**6), args),
        everything,
        args,
    )
    values: dict[str, list[float]] = {name: [] for name in ESTIMATORS}
    rng = np.random.default_rng(args.seed)
    for b in range(args.resamples):
        rows = rng.integers(0, n, n)
        reward_hat = reward_estimates(logs, rows, jax.random.fold_in(key, b), args)
        for name, result in estimate(logs, target, reward_hat, rows, args).items():
            values[name].append(float(result.value))

    rows_out = []
    for name in ESTIMATORS:
        v = np.asarray(values[name])
        error = np.abs(v - v_true) / v_true
        point = full[name]
        published = PUBLISHED.get(name) if _is_reference(campaign, direction) else None
        rows_out.append(
            {
                "estimator": name,
                "relative_error_mean": float(error.mean()),
                "relative_error_low": float(np.quantile(error, 0.025)),
                "relative_error_high": float(np.quantile(error, 0.975)),
                "relative_error_std": float(error.std(ddof=1))
                if error.size > 1
                else 0.0,
                "resample_values": [float(x) for x in v],
                "value": float(point.value),
                "low": float(point.low),
                "high": float(point.high),
                "covers_truth": bool(point.low <= v_true <= point.high),
                "published_mean": None if published is None else published[0],
                "published_std": None if published is None else published[1],
            }
        )
    return {
        "campaign": campaign,
        "direction": direction,
        "evaluation_policy": evaluation,
        "logging_policy": logging,
        "events": n,
        "truth": v_true,
        "truth_low": v_true - ope.Z_95 * truth_se,
        "truth_high": v_true + ope.Z_95 * truth_se,
        "truth_events": n_true,
        "logged_click_rate": float(logs.reward.astype(np.float64).mean()),
        "mean_weight": float(weights.mean()),
        "max_weight": float(weights.max()),
        "resamples": args.resamples,
        "draws": args.draws if evaluation == "bts" else None,
        "seconds": time.perf_counter() - start,
        "estimators": rows_out,
    }


def _is_reference(campaign: str, direction: str) -> bool:
    return campaign == "all" and direction == "bts_from_random"


# ---------------------------------------------------------------------------
# Output


def machine() -> str:
    return (
        f"{platform.machine()} {os.cpu_count()} CPUs, jax {jax.__version__} on "
        f"{jax.default_backend()}, numpy {np.__version__}"
    )


def format_tables(records: Sequence[dict[str, Any]]) -> str:
    """Markdown: one table per (campaign, direction)."""
    parts = []
    for r in records:
        parts.append(
            f"### {r['campaign']}: {r['evaluation_policy']} from "
            f"{r['logging_policy']} logs\n\n"
            f"Ground truth V = {100 * r['truth']:.3f}% (on-policy click rate of "
            f"{r['truth_events']:,} {r['evaluation_policy']} events, 95% "
            f"{100 * r['truth_low']:.3f}-{100 * r['truth_high']:.3f}%); "
            f"{r['events']:,} logged events, mean importance weight "
            f"{r['mean_weight']:.3f} (max {r['max_weight']:.1f}); "
            f"{r['resamples']} bootstrap resamples.\n"
        )
        if "settings" in r:
            settings = ", ".join(f"{k} = {v}" for k, v in r["settings"].items())
            parts[-1] += f"\nSettings: {settings}.\n"
        reference = any(e["published_mean"] is not None for e in r["estimators"])
        header = (
            "| estimator | relative error: mean | 95% interval | std | "
            "V_hat on all logs (95% interval) | covers V |"
        )
        rule = "| --- | ---: | --- | ---: | --- | --- |"
        if reference:
            header += " OBP published: mean (std) |"
            rule += " ---: |"
        lines = [header, rule]
        for e in r["estimators"]:
            line = (
                f"| {LABELS[e['estimator']]} | {e['relative_error_mean']:.3f} | "
                f"{e['relative_error_low']:.3f}-{e['relative_error_high']:.3f} | "
                f"{e['relative_error_std']:.3f} | {100 * e['value']:.3f}% "
                f"({100 * e['low']:.3f}-{100 * e['high']:.3f}%) | "
                f"{'yes' if e['covers_truth'] else 'no'} |"
            )
            if reference:
                published = (
                    "-"
                    if e["published_mean"] is None
                    else f"{e['published_mean']:.3f} ({e['published_std']:.3f})"
                )
                line += f" {published} |"
            lines.append(line)
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def plot(records: Sequence[dict[str, Any]], path: Path) -> None:
    """Mean relative error with its 95% bootstrap interval, one panel per
    (campaign, direction); Open Bandit Pipeline's published means as crosses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(records), figsize=(5.5 * len(records), 4), squeeze=False
    )
    for ax, r in zip(axes[0], records, strict=True):
        names = [e["estimator"] for e in r["estimators"]]
        x = np.arange(len(names))
        mean = np.array([e["relative_error_mean"] for e in r["estimators"]])
        low = np.array([e["relative_error_low"] for e in r["estimators"]])
        high = np.array([e["relative_error_high"] for e in r["estimators"]])
        ax.bar(x, mean, color="tab:blue", alpha=0.7, label="this project")
        ax.errorbar(x, mean, yerr=[mean - low, high - mean], fmt="none", color="black")
        published = [
            (i, e["published_mean"])
            for i, e in enumerate(r["estimators"])
            if e["published_mean"] is not None
        ]
        if published:
            px, py = zip(*published, strict=True)
            ax.scatter(px, py, marker="x", color="tab:red", zorder=3, label="OBP")
            ax.legend(loc="upper left")
        ax.set_xticks(x, [LABELS[n] for n in names], rotation=45, ha="right")
        ax.set_ylabel("relative error |V_hat - V| / V")
        ax.set_title(
            f"{r['campaign']}: {r['evaluation_policy']} from {r['logging_policy']}"
        )
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)


def report(records: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    """`summary.json`, `summary.md` and `obd_ope.png` from the records of every
    cell in the folder (`experiments.execute.cells`)."""
    records = sorted(records, key=_order)
    summary = {"machine": machine(), "records": list(records)}
    text = json.dumps(summary, indent=1)
    files = [atomic_write(out / "summary.json", lambda tmp: tmp.write_text(text))]
    page = (
        "# Open Bandit Dataset: off-policy estimators against on-policy truth\n\n"
        f"Measured on {machine()}; each table gives the settings of its cell "
        f"(`python -m experiments.studies.obd_ope` with those options).\n\n"
        f"{format_tables(records)}"
    )
    files.append(atomic_write(out / "summary.md", lambda tmp: tmp.write_text(page)))
    if records:
        plot(records, out / "obd_ope.png")
        files.append(out / "obd_ope.png")
    return files


def _order(record: dict[str, Any]) -> tuple:
    campaign, direction = record["campaign"], record["direction"]
    known = campaign in obd.CAMPAIGNS and direction in DIRECTIONS
    return (
        obd.CAMPAIGNS.index(campaign) if known else len(obd.CAMPAIGNS),
        list(DIRECTIONS).index(direction) if known else len(DIRECTIONS),
        campaign, direction,
    )  # fmt: skip


def describe(records: Sequence[dict[str, Any]]) -> str:
    """The progress line of a finished cell."""
    return f"V = {100 * records[0]['truth']:.3f}%"


# ---------------------------------------------------------------------------
# The study runner's side


def read(data: dict[str, Any]) -> Args:
    """The settings of a TOML document (`experiments/configs/obd_ope.toml`)."""
    keys = ("study", "name", "output", "campaigns", "directions", *SETTINGS)
    check_keys(data, keys, "the study config")
    values = {k: data[k] for k in (*SETTINGS, "campaigns", "directions") if k in data}
    for key in ("campaigns", "directions"):
        if key in values:
            if not isinstance(values[key], list):
                raise BanditConfigError.about(
                    key, f"must be a list, got {values[key]!r}"
                )
            values[key] = tuple(values[key])
    args = dataclasses.replace(Args(), out=str(data.get("output", Args.out)), **values)
    return checked(args)


def checked(args: Args) -> Args:
    """`args`, or a `BanditConfigError` naming the first bad field."""
    for campaign in args.campaigns:
        if campaign not in obd.CAMPAIGNS:
            raise BanditConfigError.about(
                "campaigns", f"must be among {list(obd.CAMPAIGNS)}, got {campaign!r}"
            )
    for direction in args.directions:
        if direction not in DIRECTIONS:
            raise BanditConfigError.about(
                "directions", f"must be among {list(DIRECTIONS)}, got {direction!r}"
            )
    positive_int("resamples", args.resamples)
    non_negative_int("seed", args.seed)
    positive_int("draws", args.draws)
    positive_int("folds", args.folds)
    if args.rows is not None:
        positive_int("rows", args.rows)
    for field in ("regularization", "max_weight", "tau", "shrinkage"):
        real(field, getattr(args, field), low=0.0, low_open=True)
    if args.resamples < 2:
        raise BanditConfigError.about(
            "resamples", f"must be at least 2, got {args.resamples}"
        )
    return args


def cells(args: Args) -> list[Cell]:
    """One cell per (campaign, direction)."""
    settings = {k: getattr(args, k) for k in SETTINGS}
    return [
        Cell(f"{campaign} | {direction}",
             {"campaign": campaign, "direction": direction, **settings})
        for campaign in args.campaigns
        for direction in args.directions
    ]  # fmt: skip


def run_cell(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The record of one (campaign, direction), in a worker process."""
    args = Args(**{k: spec[k] for k in SETTINGS})
    record = run_direction(spec["campaign"], spec["direction"], args)
    return [{**record, "settings": {k: spec[k] for k in SETTINGS}}]


# ---------------------------------------------------------------------------
# Command line


def parse_args(argv: Sequence[str] | None = None) -> tuple[Args, int | None, bool]:
    """(settings, --workers, --quiet): the config (`--config`, default
    `obd_ope`) with the options applied, checked."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="obd_ope")
    parser.add_argument("--out")
    parser.add_argument("--campaigns", nargs="+", choices=obd.CAMPAIGNS)
    parser.add_argument("--directions", nargs="+", choices=tuple(DIRECTIONS))
    parser.add_argument("--resamples", type=checks.positive_option)
    parser.add_argument("--draws", type=checks.positive_option)
    parser.add_argument("--folds", type=checks.positive_option)
    parser.add_argument("--regularization", type=float)
    parser.add_argument("--max-weight", type=float)
    parser.add_argument("--tau", type=float)
    parser.add_argument("--shrinkage", type=float)
    parser.add_argument("--rows", type=checks.positive_option)
    parser.add_argument("--seed", type=checks.seed_option)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 3 resamples, 20,000 draws, the first 3,000 events",
    )
    parser.add_argument("--workers", type=checks.positive_option, metavar="N",
                        help="worker processes (default: one per core)")  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    ns = parser.parse_args(argv)
    text, origin, _ = read_source(ns.config)
    data = parse_toml(text, origin)
    if ns.quick:
        data.update(QUICK)
    given = {
        "output": ns.out,
        "campaigns": ns.campaigns,
        "directions": ns.directions,
        "resamples": ns.resamples,
        "draws": ns.draws,
        "folds": ns.folds,
        "regularization": ns.regularization,
        "max_weight": ns.max_weight,
        "tau": ns.tau,
        "shrinkage": ns.shrinkage,
        "rows": ns.rows,
        "seed": ns.seed,
    }
    data.update({k: v for k, v in given.items() if v is not None})
    return read(data), ns.workers, ns.quiet


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args, workers, quiet = parse_args(argv)
    except BanditConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    compile_cache.enable()
    result = command("obd_ope", args, args.out, workers, quiet)
    if isinstance(result, int):
        return result
    print(format_tables(sorted(result.records, key=_order)))
    print(f"computed {len(result.computed)} cell(s), reused {len(result.reused)}; "
          f"written to {args.out}/summary.json, summary.md, obd_ope.png")  # fmt: skip
    return 0


if __name__ == "__main__":
    run_command(lambda: main(sys.argv[1:]))
