"""Bandit environments: pure-JAX cores (`envs.make`) and Gymnasium shells."""

from envs import linear
from envs.base import BanditEnv, hyperparameters, make, make_env, register, registered

__all__ = [
    "BanditEnv",
    "hyperparameters",
    "linear",
    "make",
    "make_env",
    "register",
    "registered",
]
