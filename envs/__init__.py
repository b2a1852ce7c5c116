"""Bandit environments: pure-JAX cores (`envs.make`) and Gymnasium shells."""

from envs import linear, multi_armed, recommendation
from envs.base import BanditEnv, hyperparameters, make, make_env, register, registered
from envs.gym import register_gym_envs

__all__ = [
    "BanditEnv",
    "hyperparameters",
    "linear",
    "make",
    "make_env",
    "multi_armed",
    "register",
    "registered",
]

# Keep last: exposes every env registered above as `bandits/<Id>` in Gymnasium.
register_gym_envs()
