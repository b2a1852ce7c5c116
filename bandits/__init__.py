"""The kernel: types and protocols, the simulation loop, metrics, linear algebra,
off-policy estimators.

It knows no concrete environment or agent (those live in `envs` and `agents`)
and no experiment platform (configs, result folders, reports and plots live in
`experiments`). See docs/architecture.md.
"""

# `_backend` configures JAX's CPU back-end on import, before anything uses it.
from bandits import _backend, linalg, metrics, offline, ope  # noqa: F401
from bandits.seeds import seed_list
from bandits.simulation import (
    NonFiniteAgentStateError,
    run,
    run_with_states,
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
    "offline",
    "ope",
    "run",
    "run_with_states",
    "seed_list",
    "simulate",
    "simulate_with_state",
    "sweep",
    "sweep_with_states",
]
