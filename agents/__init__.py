"""Bandit agents: pure-JAX policies built by factories (`agents.make(name, ...)`)."""

from agents import basic, features, linear, neural, popularity, transformer
from agents.basic import random, thompson_bernoulli, ucb1
from agents.linear import epsilon_greedy, lin_greedy, lints, linucb
from agents.neural import bootstrapped_ensemble, ensemble_sampling
from agents.registry import hyperparameters, make, register, registered

__all__ = [
    "basic",
    "bootstrapped_ensemble",
    "ensemble_sampling",
    "epsilon_greedy",
    "features",
    "hyperparameters",
    "lin_greedy",
    "linear",
    "lints",
    "linucb",
    "make",
    "neural",
    "popularity",
    "random",
    "register",
    "registered",
    "thompson_bernoulli",
    "transformer",
    "ucb1",
]
