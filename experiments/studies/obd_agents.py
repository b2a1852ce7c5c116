"""Study: which agent would have clicked best on real traffic? (Open Bandit Dataset)

The practitioner's question: train each of the project's agents on the first
half of the uniform-random logs of a campaign (a warm start: `agents.warm_start`,
the agent's own `update` on every logged event, in time order), then estimate the
click rate it would have had on the second half, two ways:

  replay  Li, Chu, Langford & Wang (2011) (`bandits.offline.replay`): the agent
          keeps learning through the held-out half, credited only on events
          where it picked the logged item; unbiased on uniform logs, but it keeps
          about 1/K of the events (1/80 on campaign all).
  DR      the agent frozen after the warm start, its probabilities on every
          held-out event (`bandits.offline.policy_probs`; Monte Carlo for
          sampling agents), the doubly robust estimate (`bandits.ope.dr`) with
          the cross-fitted shared logistic reward model of the OBD study
          (`experiments.studies.obd_ope`), on every held-out event.

Each agent picks one item per impression from the user's context (one-hot
categories and the K user-item affinities, `envs.obd`); the logs' slot is
ignored by the agents, and since uniform logging places every item at every
slot alike, the estimates are the agent's click rate at a random slot. The
logging policy's own click rate on the held-out half (uniform random) is the
baseline.

    python -m experiments.studies.obd_agents
    python -m experiments.studies.obd_agents --quick --out /tmp/obd_agents

Writes `summary.json` and `summary.md` to `--out`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import jax
import numpy as np

import agents
from agents.warm_start import warm_start
from bandits import Agent, offline, ope
from bandits.files import atomic_write
from bandits.types import Observation
from bandits.validation import BanditConfigError, positive_int, real
from envs import obd
from envs.logged import LoggedData
from experiments.cli import run_command
from experiments.config import checks
from experiments.studies.obd_ope import machine, reward_model

AGENTS = ("random", "thompson_bernoulli", "lin_greedy", "linucb", "lints", "neural_ts")


@dataclasses.dataclass(frozen=True)
class Args:
    """Command-line arguments of the OBD agent comparison."""

    out: str = "results/obd_agents"
    """Folder for summary.json and summary.md."""
    campaign: str = "all"
    """Campaign from `envs.obd.CAMPAIGNS`."""
    agents: tuple[str, ...] = AGENTS
    """Agents from `AGENTS`."""
    train_fraction: float = 0.5
    """The first fraction of the (time-ordered) logs trains, the rest evaluates."""
    samples: int = 100
    """Monte Carlo draws per event behind a sampling agent's probabilities
    (each is within about 0.5 / sqrt(samples) = 0.05 of the exact one)."""
    folds: int = 3
    """Cross-fitting folds of the DR reward model."""
    regularization: float = 1.0
    """L2 weight of the logistic reward model."""
    rows: int | None = None
    """Use only the first `rows` events of the logs; None: all."""
    seed: int = 0
    """Seed of the warm starts, the replays, the folds and the Monte Carlo."""
    quick: bool = False
    """Smoke settings: the first 2,000 events, 50 draws, random and LinUCB."""


def make_agent(name: str, num_arms: int, dim: int, samples: int = 100) -> Agent:
    """The compared agents, on the user context (disjoint models per item);
    sampling agents estimate their probabilities from `samples` draws."""
    if name == "random":
        return agents.random(num_arms=num_arms, dim=dim)
    if name == "thompson_bernoulli":  # context-free, as the logged BTS policy
        return agents.thompson_bernoulli(
            num_arms=num_arms, dim=dim, propensity_samples=samples
        )
    if name == "lin_greedy":
        return agents.make("lin_greedy", num_arms=num_arms, dim=dim)
    if name == "linucb":
        return agents.linucb(num_arms=num_arms, dim=dim, alpha=1.0)
    if name == "lints":
        return agents.lints(num_arms=num_arms, dim=dim, propensity_samples=samples)
    if name == "neural_ts":
        return agents.make("neural_ts", num_arms=num_arms, dim=dim, features="context")
    raise BanditConfigError(
        f"unknown agent {name!r}; choose from {', '.join(map(repr, AGENTS))}"
    )


def clopper_pearson(successes: int, trials: int) -> tuple[float, float]:
    """The exact 95% binomial interval (Clopper & Pearson 1934): with few
    accepted events and rarer clicks, replay's normal interval is meaningless
    (0 clicks give the interval 0-0)."""
    from scipy.stats import beta

    low = 0.0 if successes == 0 else beta.ppf(0.025, successes, trials - successes + 1)
    high = (
        1.0
        if successes == trials
        else beta.ppf(0.975, successes + 1, trials - successes)
    )
    return float(low), float(high)


def _as_array(value: np.ndarray) -> jax.Array:
    """`value` itself, typed as the jax.Array the bandits functions take (they
    take NumPy arrays too)."""
    return cast(jax.Array, value)


def _observations(data: LoggedData) -> Observation:
    return Observation(
        context=_as_array(np.asarray(data.context)),
        arms=_as_array(np.ascontiguousarray(data.arms)),
        mask=_as_array(np.asarray(data.mask)),
    )


def compare(name: str, train: LoggedData, test: LoggedData, reward_hat, args: Args):
    """Replay and DR estimates of one agent warm-started on `train`."""
    start = time.perf_counter()
    num_arms, dim = test.mask.shape[1], test.context.shape[1]
    key = jax.random.key(args.seed)
    key_warm, key_replay, key_probs = jax.random.split(key, 3)
    agent = warm_start(
        make_agent(name, num_arms, dim, args.samples), train, key=key_warm
    )
    state = agent.init(key_warm)
    observations = _observations(test)
    replayed = offline.replay(
        agent,
        key_replay,
        observations,
        _as_array(test.action),
        _as_array(test.reward),
        state=state,
    )
    target = np.asarray(
        offline.policy_probs(agent, state, observations, key_probs, args.samples),
        np.float64,
    )
    target = (target / target.sum(axis=1, keepdims=True)).astype(np.float32)
    dr = ope.dr(test.reward, test.action, test.propensity, target, reward_hat)
    accepted = int(replayed.accepted)
    clicks = round(float(replayed.estimate.value) * accepted)
    exact = clopper_pearson(clicks, accepted)
    return {
        "agent": name,
        "replay_value": float(replayed.estimate.value),
        "replay_low": float(replayed.estimate.low),
        "replay_high": float(replayed.estimate.high),
        "replay_accepted": int(replayed.accepted),
        "replay_clicks": clicks,
        "replay_exact_low": exact[0],
        "replay_exact_high": exact[1],
        "dr_value": float(dr.value),
        "dr_low": float(dr.low),
        "dr_high": float(dr.high),
        "seconds": time.perf_counter() - start,
    }


def run(args: Args) -> dict[str, Any]:
    logs = obd.load("random", args.campaign)
    if args.rows is not None:
        logs = logs.take(np.arange(min(args.rows, len(logs))))
    train, test = logs.split(args.train_fraction)
    model = reward_model(test.mask.shape[1], args.regularization)
    reward_hat = np.asarray(
        offline.cross_fit(
            model,
            obd.pair_features(test),
            _as_array(test.action),
            _as_array(test.reward),
            jax.random.key(args.seed + 1),
            args.folds,
        )
    )
    baseline = ope.mean_estimate(_as_array(test.reward.astype(np.float64)))
    rows = []
    for name in args.agents:
        row = compare(name, train, test, reward_hat, args)
        rows.append(row)
        print(
            f"{name:20s} replay {100 * row['replay_value']:.2f}% "
            f"({row['replay_accepted']} accepted)  DR {100 * row['dr_value']:.3f}%  "
            f"({row['seconds']:.0f} s)",
            flush=True,
        )
    return {
        "campaign": args.campaign,
        "train_events": len(train),
        "test_events": len(test),
        "logging_click_rate": float(baseline.value),
        "logging_low": float(baseline.low),
        "logging_high": float(baseline.high),
        "rows": rows,
    }


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"Campaign {result['campaign']}: trained on the first "
        f"{result['train_events']:,} events of the uniform-random logs, evaluated "
        f"on the last {result['test_events']:,}; the logging policy's own click "
        f"rate there: {100 * result['logging_click_rate']:.3f}% (95% "
        f"{100 * result['logging_low']:.3f}-{100 * result['logging_high']:.3f}%).",
        "",
        "| agent | replay: click rate (exact 95%) | accepted (clicks) "
        "| DR: click rate (95%) |",
        "| --- | --- | ---: | --- |",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['agent']} | {100 * r['replay_value']:.2f}% "
            f"({100 * r['replay_exact_low']:.2f}-"
            f"{100 * r['replay_exact_high']:.2f}%) | "
            f"{r['replay_accepted']} ({r['replay_clicks']}) | "
            f"{100 * r['dr_value']:.3f}% ({100 * r['dr_low']:.3f}-"
            f"{100 * r['dr_high']:.3f}%) |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> Args:
    defaults = Args()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=defaults.out)
    parser.add_argument("--campaign", choices=obd.CAMPAIGNS)
    parser.add_argument("--agents", nargs="+", choices=AGENTS)
    parser.add_argument("--train-fraction", type=float)
    parser.add_argument("--samples", type=checks.positive_option)
    parser.add_argument("--rows", type=checks.positive_option)
    parser.add_argument("--seed", type=checks.seed_option)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: the first 2,000 events, 50 draws, random and LinUCB",
    )
    ns = parser.parse_args(argv)
    base = (
        dataclasses.replace(
            defaults, rows=2_000, samples=50, agents=("random", "linucb")
        )
        if ns.quick
        else defaults
    )
    given = {
        "campaign": ns.campaign,
        "agents": tuple(ns.agents) if ns.agents else None,
        "train_fraction": ns.train_fraction,
        "samples": ns.samples,
        "rows": ns.rows,
        "seed": ns.seed,
    }
    args = dataclasses.replace(
        base,
        out=ns.out,
        quick=ns.quick,
        **{k: v for k, v in given.items() if v is not None},
    )
    real("train_fraction", args.train_fraction, low=0.0, high=1.0, low_open=True)
    positive_int("samples", args.samples)
    if args.rows is not None:
        positive_int("rows", args.rows)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parse_args(argv)
    except BanditConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    command = " ".join(["python -m experiments.studies.obd_agents", *argv])
    result = run(args)
    out = Path(args.out)
    summary = {
        "command": command,
        "machine": machine(),
        "args": dataclasses.asdict(args),
        **result,
    }
    text = json.dumps(summary, indent=1)
    atomic_write(out / "summary.json", lambda tmp: tmp.write_text(text))
    table = format_table(result)
    page = (
        "# Open Bandit Dataset: agents by replay and by DR\n\n"
        f"`{command}` on {machine()}.\n\n{table}"
    )
    atomic_write(out / "summary.md", lambda tmp: tmp.write_text(page))
    print()
    print(table)
    return 0


if __name__ == "__main__":
    run_command(lambda: main(sys.argv[1:]))
