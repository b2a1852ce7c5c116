"""The agent registry behind `agents.make` and `bandits list`."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable
from typing import Any, TypedDict

from bandits.types import Agent
from bandits.validation import BanditConfigError


@dataclasses.dataclass(frozen=True)
class AgentEntry:
    name: str
    factory: Callable[..., Agent]
    description: str


_REGISTRY: dict[str, AgentEntry] = {}
# Agents whose module is imported on first use (name -> module): the neural and
# transformer agents need flax and optax, which `import agents` does not load.
_DEFERRED: dict[str, str] = {}


def defer(module: str, names: tuple[str, ...]) -> None:
    """Declares agents registered by `module`, imported when first asked for."""
    for name in names:
        _DEFERRED[name] = module


def _load(name: str) -> None:
    if name not in _REGISTRY and name in _DEFERRED:
        importlib.import_module(_DEFERRED[name])
        if name not in _REGISTRY:
            raise RuntimeError(f"{_DEFERRED[name]} does not register agent {name!r}")


def register(name: str, description: str = ""):
    """Decorator registering an agent factory under `name`."""

    def wrap(factory: Callable[..., Agent]) -> Callable[..., Agent]:
        doc = (factory.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = AgentEntry(
            name, factory, description or (doc[0] if doc else "")
        )
        return factory

    return wrap


class DeclaredShapes(TypedDict, total=False):
    """The shape fields of an `Agent` (see `bandits.Agent`)."""

    num_arms: int | None
    context_dim: int | None
    arm_dim: int | None


def declared_shapes(
    num_arms: int, dim: int | None, features: str = "context"
) -> DeclaredShapes:
    """The shape fields of an `Agent` built for `num_arms` arms whose model reads
    `dim` columns of `obs.arms` rows (features="arms") or of `obs.context` (any
    other form): `Agent(..., **declared_shapes(K, d, features))`."""
    if features == "arms":
        return {"num_arms": num_arms, "arm_dim": dim}
    return {"num_arms": num_arms, "context_dim": dim}


def keyword_options(config_type: type):
    """Decorator: a factory's `**options` are the fields of dataclass `config_type`.

    The factory's signature (what `hyperparameters` and `make` check, and what
    `help` shows) then lists each field as a keyword argument with its default, in
    place of `**options`; the factory validates them by building `config_type`.
    """

    def wrap(factory: Callable[..., Agent]) -> Callable[..., Agent]:
        signature = inspect.signature(factory)
        own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
        fields = [
            inspect.Parameter(
                field.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=field.default,
                annotation=field.type,
            )
            for field in dataclasses.fields(config_type)
        ]
        factory.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=own + fields
        )
        return factory

    return wrap


def registered() -> dict[str, AgentEntry]:
    """Registered agents by name (imports the deferred agent modules)."""
    for name in _DEFERRED:
        _load(name)
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
    _load(name)
    if name not in _REGISTRY:
        known = ", ".join(sorted(set(_REGISTRY) | set(_DEFERRED)))
        raise BanditConfigError(f"unknown agent {name!r}; known agents: {known}")
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
