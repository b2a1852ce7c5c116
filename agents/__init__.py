"""Bandit agents: pure-JAX policies built by factories (`agents.make(name, ...)`).

The neural, transformer and in-context agents live in modules that need flax
and optax; they are imported when first used (`agents.make("neural_ts", ...)`,
`agents.registered()`, or the attributes `agents.neural`, `agents.transformer`,
`agents.in_context`, `agents.ensemble_sampling`, `agents.bootstrapped_ensemble`),
so `import agents` stays light.
"""

import importlib
from typing import Any

from agents import basic, features, linear, popularity, ranking, slate
from agents.basic import random, thompson_bernoulli, ucb1
from agents.linear import epsilon_greedy, lin_greedy, lints, linucb
from agents.ranking import cascade_klucb, cascade_ucb1, pbm_ucb
from agents.registry import defer, hyperparameters, make, register, registered
from agents.slate import (
    cascade_lints,
    cascade_linucb,
    epsilon_greedy_slate,
    random_slate,
    top_l_linucb,
)

NEURAL_AGENTS = (
    "neural_epsilon_greedy",
    "neural_ucb",
    "neural_ts",
    "neural_linear",
    "ensemble_sampling",
    "bootstrapped_ensemble",
)
defer("agents.neural", NEURAL_AGENTS)
defer("agents.transformer", ("transformer",))
defer("agents.transformer_slate", ("transformer_slate",))
defer("agents.in_context", ("in_context",))

_LAZY_ATTRIBUTES = {
    "neural": ("agents.neural", None),
    "transformer": ("agents.transformer", None),
    "in_context": ("agents.in_context", None),
    "ensemble_sampling": ("agents.ensemble", "ensemble_sampling"),
    "bootstrapped_ensemble": ("agents.ensemble", "bootstrapped_ensemble"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY_ATTRIBUTES:
        raise AttributeError(f"module 'agents' has no attribute {name!r}")
    module_name, attribute = _LAZY_ATTRIBUTES[name]
    module = importlib.import_module(module_name)
    return module if attribute is None else getattr(module, attribute)


__all__ = [
    "basic",
    "bootstrapped_ensemble",
    "cascade_klucb",
    "cascade_lints",
    "cascade_linucb",
    "cascade_ucb1",
    "ensemble_sampling",
    "epsilon_greedy",
    "epsilon_greedy_slate",
    "features",
    "hyperparameters",
    "in_context",
    "lin_greedy",
    "linear",
    "lints",
    "linucb",
    "make",
    "neural",
    "pbm_ucb",
    "popularity",
    "random",
    "random_slate",
    "ranking",
    "register",
    "registered",
    "slate",
    "thompson_bernoulli",
    "top_l_linucb",
    "transformer",
    "ucb1",
]
