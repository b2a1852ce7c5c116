"""Bandit environments: pure-JAX cores (`envs.make`) and Gymnasium shells."""

from envs import (
    classification,
    linear,
    linear_fixed,
    logged,
    multi_armed,
    nonlinear,
    recommendation,
    slate,
    wheel,
)
from envs.base import BanditEnv, hyperparameters, make, make_env, register, registered
from envs.gym import register_gym_envs

__all__ = [
    "BanditEnv",
    "classification",
    "hyperparameters",
    "linear",
    "linear_fixed",
    "logged",
    "make",
    "make_env",
    "multi_armed",
    "nonlinear",
    "recommendation",
    "register",
    "registered",
    "slate",
    "wheel",
]

# Keep last: exposes every env registered above as `bandits/<Id>` in Gymnasium.
register_gym_envs()
