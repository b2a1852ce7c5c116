"""Where the time of one off-policy benchmark cell goes at a large log size.

Times, for the first target and logging policy of one env of the study config,
the phases of `experiments.studies.ope_benchmark` one after the other, each
ended with `jax.block_until_ready`: training the target, the truth log
(`truth_events` events in streams as long as a replicate's, and the target's
probabilities on it), and per replicate: generating its log, the target's
probabilities on it, the reward-model features, and the cross-fitted ridge
models with every estimator (`estimate_replicates`, which builds the features
again). The first replicate includes compilation; the later ones show the
steady cost. With `--streamed`, each replicate goes through the path of logs
too large for memory (`ope_benchmark.estimate_streamed`: the log generated in
parts of streams, the ridge model fitted from summed statistics, a second pass
for the predictions), timed as one phase.

    python -m experiments.studies.ope_benchmark_timing --env Linear-v0 \\
        --size 100000 --replicates 3 --truth-events 500000
    python -m experiments.studies.ope_benchmark_timing --env ContextualRec-v0 \\
        --size 100000 --replicates 1 --truth-events 200000 --streamed
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp

import envs
from bandits import offline
from experiments.cli import run_command
from experiments.config import checks
from experiments.studies import ope_benchmark as study_module


def time_cell(
    env_id: str,
    size: int,
    replicates: int,
    truth_events: int,
    config: str,
    streamed: bool = False,
) -> list[tuple[str, float]]:
    """(phase, seconds) for one cell, in the order run."""
    study = study_module.read_study(
        config, {"log_sizes": [size], "replicates": 2, "truth_events": truth_events}
    )
    cell = next(c for c in study.envs if c.id == env_id)
    env, params = envs.make(cell.id, **cell.params)
    policy = study_module.logging_policy(study.loggers[0])
    streams = study.streams_per_replicate
    phases = []
    start = time.perf_counter()

    def done(name: str, value=None) -> None:
        nonlocal start
        jax.block_until_ready(value)
        phases.append((name, time.perf_counter() - start))
        start = time.perf_counter()

    agent, state = study_module.train_target(cell.targets[0], env, params)
    done("train the target", state)
    key = jax.random.key(study.seed)
    study_module.true_value(
        key, env, params, policy, agent, state, truth_events, size // streams
    )
    done(f"truth log ({truth_events:,} events) and its target probabilities")
    for r in range(replicates):
        k = jax.random.fold_in(key, 1000 + r)
        if streamed:
            study_module.estimate_streamed(
                study, env, params, cell, policy, (agent, state), size, k
            )
            done(f"replicate {r}: streamed log, statistics, predictions, estimators")
            continue
        data, order = study_module.logs_by_replicate(
            k, env, params, policy, 1, size, streams
        )
        done(f"replicate {r}: generate the log")
        obs = jax.tree.map(jnp.asarray, data.observations())
        probs = offline.policy_probs(agent, state, obs, jax.random.fold_in(k, 1))
        done(f"replicate {r}: target probabilities", probs)
        features = study_module.model_features(cell.reward_model, env, obs)
        done(f"replicate {r}: reward-model features {features.shape}", features)
        del features
        study_module.estimate_replicates(study, env, cell, data, order, probs, k)
        done(f"replicate {r}: features, cross-fitted ridge, estimators")
    return phases


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="ope_benchmark")
    parser.add_argument("--env", default="Linear-v0")
    parser.add_argument("--size", type=checks.positive_option, default=100_000)
    parser.add_argument("--replicates", type=checks.positive_option, default=3)
    parser.add_argument("--truth-events", type=checks.positive_option, default=500_000)
    parser.add_argument(
        "--streamed", action="store_true", help="replicates through the streamed path"
    )
    args = parser.parse_args(argv)
    phases = time_cell(
        args.env, args.size, args.replicates, args.truth_events, args.config,
        args.streamed,
    )  # fmt: skip
    for name, seconds in phases:
        print(f"{seconds:8.1f} s  {name}")
    print(f"{sum(s for _, s in phases):8.1f} s  in all")
    return 0


if __name__ == "__main__":
    run_command(lambda: main(sys.argv[1:]))
