"""The kernel: types, the simulation loop, metrics, linear algebra, storage, reports.

It knows no concrete environment or agent (those live in `envs` and `agents`).
"""

import importlib

# `_backend` configures JAX's CPU back-end on import, before anything uses it.
from bandits import _backend, linalg, metrics  # noqa: F401
from bandits.simulation import (
    NonFiniteAgentStateError,
    run,
    run_with_states,
    seed_list,
    simulate,
    simulate_with_state,
    sweep,
    sweep_with_states,
)
from bandits.types import Agent, ArraySpec, Env, Feedback, Observation, Trajectory
from bandits.validation import BanditConfigError

__all__ = [
    "Agent",
    "ArraySpec",
    "BanditConfigError",
    "Env",
    "Feedback",
    "NonFiniteAgentStateError",
    "Observation",
    "Trajectory",
    "linalg",
    "metrics",
    "progress",
    "report",
    "run",
    "run_with_states",
    "seed_list",
    "simulate",
    "simulate_with_state",
    "storage",
    "sweep",
    "sweep_with_states",
]

_LAZY = ("progress", "report", "storage")  # keep rich/matplotlib/pyarrow off import


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(f"bandits.{name}")
    raise AttributeError(f"module 'bandits' has no attribute {name!r}")
