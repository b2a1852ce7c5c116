"""Environment steps per second of `ContextualRec-*` through `bandits.run`.

A trivial agent (uniform random) isolates the environment's cost. Setting: 64 seeds,
T = 2,000, compile excluded; N = 1,000 items (`ContextualRec-v0`) and N = 100,000
items (`ContextualRec-LargeCatalog-v0`), each against `Linear-v0` (K = 10, d = 20)
measured in the same test. Recorded in `benchmark.extra_info`: steps per second of
both and their ratio. The 100,000-item case also records the peak resident memory
of a fresh process that builds the env and runs it (budget: 2 GiB).

Under `--benchmark-disable` (as in `make bench-smoke`) each run happens once and the
memory probe is skipped.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import agents
import bandits
import envs
from tests.benchmarks.conftest import best_time

SEEDS, HORIZON = 64, 2_000
CASES = {
    "1k": "ContextualRec-v0",
    "100k": "ContextualRec-LargeCatalog-v0",
}
MEMORY_PROBE = textwrap.dedent(
    f"""
    import json, resource
    import jax, agents, bandits, envs
    env, params = envs.make("ContextualRec-LargeCatalog-v0")
    agent = agents.make("random", num_arms=env.num_arms)
    traj = bandits.run(env, agent, horizon={HORIZON}, seeds={SEEDS}, params=params)
    jax.block_until_ready(traj)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({{"peak_rss_mib": peak / 1024}}))
    """
)


def _random_run(env_id: str, **kwargs):
    env, params = envs.make(env_id, **kwargs)
    agent = agents.make("random", num_arms=env.num_arms)
    return lambda: bandits.run(env, agent, horizon=HORIZON, seeds=SEEDS, params=params)


@pytest.mark.parametrize("size", list(CASES))
def test_contextual_rec_env_steps_per_second(benchmark, record_ratio, size):
    run_rec = _random_run(CASES[size])
    run_linear = _random_run("Linear-v0", num_arms=10, dim=20)
    if benchmark.disabled:
        benchmark(run_rec)
        return

    rec_seconds = best_time(run_rec)
    linear_seconds = best_time(run_linear)
    benchmark.pedantic(run_rec, rounds=3, warmup_rounds=1)
    rec_rate = SEEDS * HORIZON / rec_seconds
    linear_rate = SEEDS * HORIZON / linear_seconds
    info = {"rec_steps_per_s": rec_rate, "linear_steps_per_s": linear_rate}
    if size == "100k":
        info["peak_rss_mib_100k"] = _peak_memory_mib()
    record_ratio(f"contextual_rec_{size}_vs_linear", rec_rate / linear_rate, **info)
    assert rec_rate > 0 and linear_rate > 0


def _peak_memory_mib() -> float:
    """Peak resident memory of a fresh process running the 100k-item env."""
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mib"])
