"""One decision at a time: `agents.serving.Server.step` (learn from the last
reward, decide the next) against one round of the NumPy Sherman-Morrison LinUCB
loop, in the same run.

Setting (speed issue): LinUCB, d = 20, K = 10, one stream, 3,000 events after a
warm-up of 300. Both sides get a fresh context per event from NumPy and the
reward of the chosen arm; the per-event latency of each (median and 99th
percentile, microseconds) is recorded, and the ratio of medians
(NumPy / Server: above 1 means the server is faster).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import agents
from agents.serving import Server
from bandits.types import Observation

K, D, EVENTS, WARMUP = 10, 20, 3_000, 300


class NumpyLinUCB:
    """The reference's arithmetic (tests/benchmarks/numpy_linucb.py), one round
    per call."""

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha
        self.A_inv = np.repeat(np.eye(D)[None], K, axis=0)
        self.b = np.zeros((K, D))
        self.theta_hat = np.zeros((K, D))
        self.last: tuple[np.ndarray, int] | None = None

    def step(self, reward: float, x: np.ndarray) -> int:
        if self.last is not None:
            x_last, k = self.last
            u = self.A_inv[k] @ x_last
            self.A_inv[k] -= np.outer(u, u) / (1.0 + x_last @ u)
            self.b[k] += reward * x_last
            self.theta_hat[k] = self.A_inv[k] @ self.b[k]
        variance = (self.A_inv @ x) @ x
        ucb = self.theta_hat @ x + self.alpha * np.sqrt(np.maximum(variance, 0.0))
        k = int(np.argmax(ucb))
        self.last = (x, k)
        return k


def latencies(step, contexts, theta, rng) -> np.ndarray:
    times = []
    action = step(0.0, contexts[0])
    for i in range(1, len(contexts)):
        reward = float(theta[action] @ contexts[i - 1] + rng.normal())
        start = time.perf_counter()
        action = step(reward, contexts[i])
        times.append(time.perf_counter() - start)
    return np.asarray(times[WARMUP:]) * 1e6


def test_server_step_against_numpy_round(benchmark, record_ratio):
    ours, theirs, server_step = server_and_numpy_latencies()
    contexts = np.random.default_rng(0).uniform(-1, 1, size=(2, D)).astype(np.float32)
    benchmark.pedantic(
        lambda: server_step(0.0, contexts[1]), rounds=200, warmup_rounds=10
    )
    record_ratio(
        "server_step_vs_numpy_round",
        float(np.median(theirs) / np.median(ours)),
        server_p50_us=float(np.median(ours)),
        server_p99_us=float(np.percentile(ours, 99)),
        numpy_p50_us=float(np.median(theirs)),
        numpy_p99_us=float(np.percentile(theirs, 99)),
    )
    assert np.isfinite(ours).all() and np.isfinite(theirs).all()


_CHILD = """
import json, sys
sys.path.insert(0, sys.argv[2])
if sys.argv[1] == "synchronous":
    from agents.serving import synchronous_dispatch
    synchronous_dispatch()
import numpy as np
from tests.benchmarks import test_latency_bench as tl
from tests.benchmarks import test_serving_bench as sb
ours, numpy_ref, _ = sb.server_and_numpy_latencies()
obs, calls = tl.setting.__wrapped__()
acts = tl._latencies(obs, calls, 1000)
print(json.dumps({
    "server_p50_us": float(np.median(ours)),
    "server_p99_us": float(np.percentile(ours, 99)),
    "numpy_p50_us": float(np.median(numpy_ref)),
    **{f"{name}_act_p50_us": float(np.median(t) * 1e6) for name, t in acts.items()},
}))
"""


def server_and_numpy_latencies():
    """Per-event latencies (us) of `Server.step` and of the NumPy round on the
    same stream, and the server's step function."""
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(K, D)) / np.sqrt(D)
    contexts = rng.uniform(-1, 1, size=(EVENTS + WARMUP + 1, D)).astype(np.float32)
    arms, mask = np.zeros((K, 0), np.float32), np.ones(K, bool)
    server = Server(agents.linucb(num_arms=K, dim=D, alpha=1.0), key=0)
    server.act(Observation(contexts[0], arms, mask))

    def server_step(reward, x):
        return server.step(reward, Observation(x, arms, mask))

    ours = latencies(server_step, contexts, theta, np.random.default_rng(1))
    theirs = latencies(NumpyLinUCB().step, contexts, theta, np.random.default_rng(1))
    return ours, theirs, server_step


def test_synchronous_dispatch_against_default(benchmark, record_ratio):
    """`agents.serving.synchronous_dispatch` against JAX's default dispatch: the
    same loops (LinUCB `Server.step` with the NumPy round beside it, then the
    transformer's and context x item LinUCB's `act` interleaved) in fresh
    processes, three per mode, alternating so that the machine's load hits both
    alike. Records each mode's median over its three processes and the ratio
    default / synchronous (above 1: synchronous is faster)."""
    root = str(Path(__file__).resolve().parents[2])
    runs: dict[str, list[dict]] = {"default": [], "synchronous": []}

    def child(mode):
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, mode, root],
            capture_output=True, text=True, check=True, timeout=600,
        )  # fmt: skip
        runs[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))

    def both():
        child("default")
        child("synchronous")

    benchmark.pedantic(both, rounds=3, iterations=1)
    median = {
        mode: {k: float(np.median([r[k] for r in rs])) for k in rs[0]}
        for mode, rs in runs.items()
    }
    for key in median["default"]:
        if key == "numpy_p50_us":
            continue
        record_ratio(
            f"{key.removesuffix('_us')}_default_vs_synchronous",
            median["default"][key] / median["synchronous"][key],
            default_us=median["default"][key],
            synchronous_us=median["synchronous"][key],
        )
    record_ratio(
        "server_step_synchronous_vs_numpy_round",
        median["synchronous"]["numpy_p50_us"] / median["synchronous"]["server_p50_us"],
        **{f"synchronous_{k}": v for k, v in median["synchronous"].items()},
    )
    assert all(np.isfinite(v) for m in median.values() for v in m.values())
