"""The agent registry behind `agents.make` and `bandits list`."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from bandits.types import Agent
from bandits.validation import BanditConfigError


@dataclasses.dataclass(frozen=True)
class AgentEntry:
    name: str
    factory: Callable[..., Agent]
    description: str


_REGISTRY: dict[str, AgentEntry] = {}


def register(name: str, description: str = ""):
    """Decorator registering an agent factory under `name`."""

    def wrap(factory: Callable[..., Agent]) -> Callable[..., Agent]:
        doc = (factory.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = AgentEntry(
            name, factory, description or (doc[0] if doc else "")
        )
        return factory

    return wrap


def registered() -> dict[str, AgentEntry]:
    """Registered agents by name."""
    return dict(_REGISTRY)


def hyperparameters(name: str) -> dict[str, Any]:
    """Keyword arguments of agent `name` with their defaults (`inspect.Parameter.empty`
    for required ones)."""
    entry = _entry(name)
    return {
        p.name: p.default
        for p in inspect.signature(entry.factory).parameters.values()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def _entry(name: str) -> AgentEntry:
    if name not in _REGISTRY:
        raise BanditConfigError(
            f"unknown agent {name!r}; known agents: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name]


def make(name: str, **hyperparams: Any) -> Agent:
    """Builds agent `name` with the given hyperparameters.

    Unknown names and unknown or missing hyperparameters raise `BanditConfigError`.

    Example:
      >>> agent = make("linucb", num_arms=10, dim=20, alpha=1.0)
    """
    entry = _entry(name)
    allowed = hyperparameters(name)
    unknown = sorted(set(hyperparams) - set(allowed))
    if unknown:
        raise BanditConfigError(
            f"unknown hyperparameter(s) {', '.join(map(repr, unknown))} for agent "
            f"{name!r}; allowed: {', '.join(allowed)}"
        )
    missing = [
        k
        for k, v in allowed.items()
        if v is inspect.Parameter.empty and k not in hyperparams
    ]
    if missing:
        raise BanditConfigError(
            f"agent {name!r} needs hyperparameter(s) {', '.join(map(repr, missing))}"
        )
    return entry.factory(**hyperparams)
