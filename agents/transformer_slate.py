"""The transformer as a slate ranker: `slate_policy`.

The transformer policy (`agents.transformer`) scores every candidate with
phi_k^T w, its body's embedding phi_k and a Bayesian logistic head w ~ N(w_hat,
Sigma). As a slate agent it ranks the candidates by one draw of the head,
w~ ~ N(w_hat, nu^2 Sigma) (Thompson sampling; or by w_hat itself with
`exploration="greedy"`), and shows the L allowed candidates of largest score,
largest first. It learns as the cascade agents do: the head takes one
extended-Kalman step per examined position (down to and including the first
click; every position without a click), with that position's click; an
unexamined position leaves the state exactly as it was.

The body is frozen (`finetune=False`): the ranker is the pretrained transformer
served on slates, its head adapting online. Propensities of a Thompson draw
have no closed form: no `action_probs` or `slate_probability`.

    cfg = transformer.config_for_env(env)          # a ContextualRecSlate env
    agent = slate_policy(cfg, pretrained, slate_size=env.slate_size, nu=0.5)

Registered as `transformer_slate` (the arguments of `agents.transformer` and
`slate_size`), so that a config can name it, from a checkpoint or not:

    [[agents]]
    name = "transformer_slate"
    checkpoint = "checkpoint.npz"
    hyperparameters = { nu = 0.5 }
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import jax
import jax.numpy as jnp

from agents.exploration import GaussianWeights
from agents.registry import register
from agents.slate import cascade_observed
from agents.transformer import (
    PolicyConfig,
    TransformerConfig,
    TransformerState,
    _head_update,
    _make_policy,
    transformer,
    transformer_parts,
)
from agents.transformer_model import embeddings
from bandits.types import Agent, Observation
from bandits.validation import BanditConfigError, positive_int

SLATE_EXPLORATIONS = ("ts", "greedy")


def slate_policy(
    cfg: TransformerConfig,
    params: Any = None,
    *,
    slate_size: int,
    name: str | None = None,
    **options: Any,
) -> Agent:
    """The transformer ranking L of its K candidates (see the module docstring).

    Args:
      cfg: the architecture (`agents.transformer.config_for_env`).
      params: pretrained parameters (`agents.pretrain`), or None for a random
        initialisation drawn from the init key.
      slate_size: L, 1 <= L <= K.
      name: display name (default "transformer_slate_<exploration>").
      **options: fields of `agents.transformer.PolicyConfig`; `exploration` is
        "ts" (default) or "greedy", and `finetune` must be False.

    Raises:
      BanditConfigError: naming the option, before anything is traced.
    """
    size = positive_int("slate_size", slate_size)
    if size > cfg.num_arms:
        raise BanditConfigError.about(
            "slate_size", f"must be at most num_arms = {cfg.num_arms}, got {size}"
        )
    options = {"finetune": False, **options}
    config = PolicyConfig(**options)
    if config.exploration not in SLATE_EXPLORATIONS:
        raise BanditConfigError.about(
            "exploration",
            f"of the slate ranker must be one of {SLATE_EXPLORATIONS}, "
            f"got {config.exploration!r}",
        )
    if config.finetune:
        raise BanditConfigError.about(
            "finetune", "must be False: the slate ranker keeps its body frozen"
        )
    base = _make_policy(cfg, params, config)
    graphdef = base.graphdef  # the model as run (float or int8)
    nu = config.nu
    greedy = config.exploration == "greedy"

    def scores(key, state: TransformerState, obs: Observation) -> jax.Array:
        phi = embeddings(graphdef, state.params, obs)
        belief = GaussianWeights(phi, state.head.mean[0], state.head.root[0])
        return belief.point() if greedy else belief.draw(key, nu)

    def act(key, state: TransformerState, obs: Observation) -> jax.Array:
        masked = jnp.where(obs.mask, scores(key, state, obs), -jnp.inf)
        return jax.lax.top_k(masked, size)[1].astype(jnp.int32)

    def update(key, state: TransformerState, obs, slate, clicks):
        del key
        clicks = jnp.asarray(clicks, jnp.float32)
        phi = embeddings(graphdef, state.params, obs)[slate]  # (L, h)
        examined = cascade_observed(clicks)
        step = state.step + 1
        head = state.head
        weights = jnp.ones((head.mean.shape[0],), jnp.float32)
        for position in range(size):
            stepped = _head_update(head, phi[position], clicks[position], weights, step)
            head = jax.tree.map(
                lambda new, old, seen=examined[position]: jnp.where(seen, new, old),
                stepped,
                head,
            )
        return state._replace(head=head, step=step)

    def predict(state: TransformerState, obs: Observation) -> jax.Array:
        return base.predict(state, obs)

    return Agent(
        base.init,
        act,
        update,
        None,
        name=name or f"transformer_slate_{config.exploration}",
        predict=predict,
        num_arms=cfg.num_arms,
        context_dim=cfg.context_dim,
        slate_size=size,
    )


@register("transformer_slate")
def transformer_slate(num_arms: int, dim: int, slate_size: int, **kwargs: Any) -> Agent:
    """The transformer ranking a slate of L of its K candidates (`slate_policy`).

    Takes the arguments of `agents.transformer` (shapes, architecture, a
    `checkpoint` or `params`, `random_init`, the `PolicyConfig` options;
    `finetune` defaults to False here and must stay so) and `slate_size` L.
    """
    kwargs.setdefault("finetune", False)
    cfg, params, config = transformer_parts(num_arms, dim, **kwargs)
    return slate_policy(
        cfg, params, slate_size=slate_size, **dataclasses.asdict(config)
    )


def _slate_signature() -> inspect.Signature:
    """`transformer`'s signature with `slate_size` after `dim` and finetune
    defaulting to False."""
    base = inspect.signature(transformer)
    parameters = [
        p.replace(default=False) if p.name == "finetune" else p
        for p in base.parameters.values()
    ]
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters.insert(2, inspect.Parameter("slate_size", kind, annotation=int))
    return base.replace(parameters=parameters)


transformer_slate.__signature__ = _slate_signature()  # type: ignore[attr-defined]
