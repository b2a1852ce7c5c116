"""Bandit agents: pure-JAX policies built by factories (`agents.make(name, ...)`)."""

from agents import linear
from agents.linear import epsilon_greedy, lin_greedy, lints, linucb
from agents.registry import hyperparameters, make, register, registered

__all__ = [
    "epsilon_greedy",
    "hyperparameters",
    "lin_greedy",
    "linear",
    "lints",
    "linucb",
    "make",
    "register",
    "registered",
]
