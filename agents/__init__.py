"""Bandit agents: pure-JAX policies built by factories (`agents.make(name, ...)`)."""

from agents import basic, features, linear, popularity
from agents.basic import random, thompson_bernoulli, ucb1
from agents.linear import epsilon_greedy, lin_greedy, lints, linucb
from agents.registry import hyperparameters, make, register, registered

__all__ = [
    "basic",
    "epsilon_greedy",
    "hyperparameters",
    "lin_greedy",
    "linear",
    "lints",
    "linucb",
    "make",
    "random",
    "register",
    "registered",
    "thompson_bernoulli",
    "ucb1",
]
