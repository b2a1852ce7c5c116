"""One Gymnasium step at a time: `gymnasium.make("bandits/Linear-v0")` and
`gymnasium.make("bandits/ContextualRec-v0")` against a minimal NumPy linear bandit
in the same run.

Setting (speed issue): K = 10 arms, d = 20, Gaussian rewards, one env made with
`gymnasium.make` (so with Gymnasium's wrappers, as a user has it), 3,000 steps
after a warm-up of 600 that crosses a block boundary (`envs.gym.BLOCK`). The NumPy
env draws a context and a reward per step and reports the same info (expected
rewards, optimal arm, regret). Per-step latency (mean, which includes the
block computed every `BLOCK` steps, median and 99th percentile, microseconds) of
each and the ratio of medians (NumPy / ours: above 1 means the shell is faster)
are recorded.

`ContextualRec-v0` (defaults: 10,000 users, 1,000 items, K = 20 candidates, a
history of 10) is timed the same way, playing the first allowed candidate, against
the same NumPy env measured right after it.
"""

from __future__ import annotations

import time

import gymnasium
import numpy as np

import envs  # noqa: F401  (registers the Gymnasium ids)

K, D, STEPS, WARMUP = 10, 20, 3_000, 600


class NumpyLinear:
    """A minimal disjoint linear bandit: x ~ N(0, I), r = theta_a . x + N(0, 1)."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.theta = self.rng.normal(size=(K, D)) / np.sqrt(D)
        self.x = self.rng.normal(size=D).astype(np.float32)

    def step(self, action: int):
        expected = self.theta @ self.x
        best = int(np.argmax(expected))
        reward = float(expected[action] + self.rng.normal())
        info = {
            "expected_rewards": expected,
            "optimal_action": best,
            "regret": float(expected[best] - expected[action]),
        }
        self.x = self.rng.normal(size=D).astype(np.float32)
        return {"context": self.x}, reward, False, False, info


def latencies(step) -> np.ndarray:
    times = []
    for t in range(STEPS + WARMUP):
        start = time.perf_counter()
        step(t % K)
        times.append(time.perf_counter() - start)
    return np.asarray(times[WARMUP:]) * 1e6


def test_gym_linear_step_against_numpy(benchmark, record_ratio):
    env = gymnasium.make("bandits/Linear-v0", num_arms=K, dim=D)
    env.reset(seed=0)
    ours = latencies(env.step)
    theirs = latencies(NumpyLinear().step)
    benchmark.pedantic(lambda: env.step(1), rounds=200, warmup_rounds=10)
    record_ratio(
        "gym_linear_step_vs_numpy",
        float(np.median(theirs) / np.median(ours)),
        ours_mean_us=float(np.mean(ours)),
        ours_p50_us=float(np.median(ours)),
        ours_p99_us=float(np.percentile(ours, 99)),
        numpy_mean_us=float(np.mean(theirs)),
        numpy_p50_us=float(np.median(theirs)),
        numpy_p99_us=float(np.percentile(theirs, 99)),
    )
    assert np.all(np.isfinite(ours))


def test_gym_contextual_rec_step_against_numpy(benchmark, record_ratio):
    env = gymnasium.make("bandits/ContextualRec-v0")
    obs, _ = env.reset(seed=0)

    def step(_):
        nonlocal obs
        obs, *_ = env.step(int(np.argmax(obs["mask"])))

    ours = latencies(step)
    theirs = latencies(NumpyLinear().step)
    benchmark.pedantic(lambda: step(0), rounds=200, warmup_rounds=10)
    record_ratio(
        "gym_contextual_rec_step_vs_numpy",
        float(np.median(theirs) / np.median(ours)),
        ours_mean_us=float(np.mean(ours)),
        ours_p50_us=float(np.median(ours)),
        ours_p99_us=float(np.percentile(ours, 99)),
        numpy_mean_us=float(np.mean(theirs)),
        numpy_p50_us=float(np.median(theirs)),
        numpy_p99_us=float(np.percentile(theirs, 99)),
    )
    assert np.all(np.isfinite(ours))


NUM_ENVS = 16


class NumpyLinearVec:
    """`NumpyLinear` for `NUM_ENVS` streams at once (one shared theta)."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.theta = self.rng.normal(size=(K, D)) / np.sqrt(D)
        self.x = self.rng.normal(size=(NUM_ENVS, D)).astype(np.float32)
        self.rows = np.arange(NUM_ENVS)

    def step(self, actions: np.ndarray):
        expected = self.x @ self.theta.T
        best = np.argmax(expected, axis=1)
        chosen = expected[self.rows, actions]
        reward = chosen + self.rng.normal(size=NUM_ENVS)
        info = {
            "expected_rewards": expected,
            "optimal_action": best,
            "regret": expected[self.rows, best] - chosen,
        }
        self.x = self.rng.normal(size=(NUM_ENVS, D)).astype(np.float32)
        never = np.zeros(NUM_ENVS, dtype=bool)
        return {"context": self.x}, reward, never, never, info


def test_gym_linear_vector_step_against_numpy(benchmark, record_ratio):
    """`gymnasium.make_vec("bandits/Linear-v0", num_envs=16)` (vector entry
    point, blocks ahead for every sub-env) against the NumPy env batched over 16
    streams; per-step latency of the whole batch. Also recorded: the same vector
    env with a time limit of 100 steps (blocks end with each episode, and every
    101st step is the restart, one compiled call), and the same env forced onto
    one compiled call per batch, the path of envs whose state depends on the
    action."""

    def make(blocks: bool = True, **limit):
        vec = gymnasium.make_vec(
            "bandits/Linear-v0",
            num_envs=NUM_ENVS,
            vectorization_mode="vector_entry_point",
            num_arms=K,
            dim=D,
            **limit,
        )
        vec.unwrapped._blocks = blocks
        vec.reset(seed=0)
        return vec

    vec = make()
    actions = np.arange(NUM_ENVS) % K

    def batched(step):
        return lambda t: step((actions + t) % K)

    ours = latencies(batched(vec.step))
    theirs = latencies(batched(NumpyLinearVec().step))
    time_limit = latencies(batched(make(max_episode_steps=100).step))
    one_call = latencies(batched(make(blocks=False).step))
    benchmark.pedantic(lambda: vec.step(actions), rounds=200, warmup_rounds=10)
    record_ratio(
        "gym_linear_vector16_step_vs_numpy",
        float(np.median(theirs) / np.median(ours)),
        ours_mean_us=float(np.mean(ours)),
        ours_p50_us=float(np.median(ours)),
        ours_p99_us=float(np.percentile(ours, 99)),
        numpy_mean_us=float(np.mean(theirs)),
        numpy_p50_us=float(np.median(theirs)),
        numpy_p99_us=float(np.percentile(theirs, 99)),
        time_limit_100_p50_us=float(np.median(time_limit)),
        time_limit_100_mean_us=float(np.mean(time_limit)),
        one_call_per_step_p50_us=float(np.median(one_call)),
        one_call_per_step_mean_us=float(np.mean(one_call)),
    )
    assert np.all(np.isfinite(ours))
