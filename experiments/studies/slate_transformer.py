"""The pretrained transformer as a slate ranker on `ContextualRecSlate-v0`.

    python -m experiments.studies.slate_transformer --checkpoint \\
        results/pretrain_finetune/ContextualRec-v0/checkpoint_unweighted.npz

The checkpoint is one the pretrain/fine-tune study writes
(`python -m experiments.studies.pretrain_finetune`): the transformer pretrained
on logs of `ContextualRec-v0`'s default instance, the population the slate
preset shows slates of (its default instance is the same). On that instance,
cascade clicks, K = 20, L = 5, the study runs the pretrained ranker (Thompson
draw, nu = 0.5, frozen body, as the single-item study's "Transformer pretrained +
TS"), the same architecture from a random initialisation, CascadeLinUCB, top-L
LinUCB and random slates on the same seeds, and prints the final slate regret
and the regret over the first `--early` steps, mean [95% interval] over seeds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import agents
import bandits
import envs
from agents.pretrain import load_checkpoint
from agents.transformer_slate import slate_policy
from bandits import metrics
from bandits.validation import BanditConfigError, positive_int

ENV_ID = "ContextualRecSlate-v0"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--horizon", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--early", type=int, default=500)
    return parser.parse_args(argv)


def _band(values) -> str:
    band = metrics.mean_band(values[:, None])
    return f"{band.mean[0]:.1f} [{band.low[0]:.1f}, {band.high[0]:.1f}]"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        horizon = positive_int("horizon", args.horizon)
        seeds = positive_int("seeds", args.seeds)
        early = positive_int("early", args.early)
        if early > horizon:
            raise BanditConfigError.about("early", f"must be at most {horizon}")
        cfg, params = load_checkpoint(args.checkpoint)
    except BanditConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    env, env_params = envs.make(ENV_ID)
    size, arm_dim = env.slate_size, cfg.arm_columns
    chosen = {
        "Transformer ranker, pretrained + TS": slate_policy(
            cfg, params, slate_size=size, nu=0.5
        ),
        "Transformer ranker, scratch + TS": slate_policy(
            cfg, None, slate_size=size, nu=0.5
        ),
        "CascadeLinUCB": agents.make(
            "cascade_linucb", num_arms=env.num_arms, dim=arm_dim,
            slate_size=size, features="arms", alpha=0.5,
        ),
        "Top-L LinUCB": agents.make(
            "top_l_linucb", num_arms=env.num_arms, dim=arm_dim,
            slate_size=size, features="arms", alpha=0.5,
        ),
        "Random slates": agents.make(
            "random_slate", num_arms=env.num_arms, slate_size=size
        ),
    }  # fmt: skip
    print(f"{ENV_ID}, default instance, T = {horizon}, {seeds} seeds")
    print(f"| agent | regret at {horizon} | at {early} |")
    print("|---|---|---|")
    for label, agent in chosen.items():
        trajectory = bandits.run(
            env, agent, horizon=horizon, seeds=seeds, params=env_params
        )
        curve = metrics.cumulative_regret(trajectory)
        print(f"| {label} | {_band(curve[:, -1])} | {_band(curve[:, early - 1])} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
