"""The kernel: types, the simulation loop, metrics, linear algebra, storage, reports.

It knows no concrete environment or agent (those live in `envs` and `agents`).
"""

from bandits import linalg, metrics
from bandits.simulation import NonFiniteAgentStateError, run, seed_list, simulate
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
    "run",
    "seed_list",
    "simulate",
]
