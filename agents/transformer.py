"""A transformer bandit policy: a pretrained body, a Bayesian last layer, exploration.

The reward model is the transformer of `agents.transformer_model`: tokens for the
context fields, the behaviour history and the K candidates, a small pre-norm
transformer, and per candidate an embedding phi_k (width D) scored by a linear
head, P(click | k) = sigmoid(w^T [phi_k, 1]). The policy explores with the last
layer, the body serving as a feature extractor: the heads' posterior is the
belief, and the `exploration` string picks, once when the agent is built, the
rule of `agents.exploration` that acts on it (`exploration_rule`):

  * "ts": `Thompson(nu)` on `GaussianWeights(phi, w, R)`, Thompson sampling
    from a Laplace posterior on w (neural-linear with a logistic likelihood).
    The prior is N(w_0, I / lambda_0) centred on the (pretrained) head; each
    round an extended-Kalman step updates it,

        Sigma <- (Sigma^{-1} + p (1 - p) phi phi^T)^{-1}   (Sherman-Morrison),
        w     <- w + Sigma phi (r - p),    p = sigmoid(w^T phi),

    and the policy plays argmax_k phi_k^T w~ with w~ ~ N(w, nu^2 Sigma). Sigma
    is kept as a root R (R^T R = Sigma) updated by Potter's formula, with the
    precision Sigma^{-1} summed with Kahan compensation and R re-factorised
    from it every `HEAD_REFACTOR_EVERY` rounds (exact in float32 over long
    runs, see docs/numerics.md); the K scores are drawn as Phi w + nu (Phi R^T) z,
    z ~ N(0, I_h), in O(K h^2) per round.
  * "ensemble": `EnsembleChoice(M)` on the M heads' scores (`MemberScores`),
    each head such a filter on Poisson(1) bootstrap weights, started from draws
    of the prior; one head, drawn uniformly, plays greedily.
  * "epsilon": `EpsilonGreedy(epsilon)` on the posterior mean scores phi_k^T w;
    "greedy": `Greedy()` on them.

The exploration and training options are one frozen `PolicyConfig`, validated
in one place; `transformer(...)` and `policy(...)` take its fields as keywords.

With `finetune=True` the body and the click head are trained every `train_every`
rounds on the replay buffer (binary cross-entropy, Adam), after which the head
mean is reset to the trained head and Sigma is refitted from the buffer with the
new embeddings,

    Sigma = (lambda_0 I + sum_i p_i (1 - p_i) phi_i phi_i^T)^{-1};

with `finetune=False` the body stays frozen (and may be int8, `quantization`).

References:
  Riquelme, Tucker & Snoek (2018), "Deep Bayesian bandits showdown", ICLR
  (neural-linear Thompson sampling).
  Chapelle & Li (2011), "An empirical evaluation of Thompson sampling", NeurIPS
  (Laplace-approximated logistic Thompson sampling for click prediction).
  Lu & Van Roy (2017), "Ensemble sampling", NeurIPS.
  Osband, Blundell, Pritzel & Van Roy (2016), "Deep exploration via bootstrapped
  DQN", NeurIPS (online bootstrap weights).
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from agents.exploration import (
    EnsembleChoice,
    EpsilonGreedy,
    Exploration,
    GaussianWeights,
    Greedy,
    MemberScores,
    Thompson,
)
from agents.networks import make_optimizer
from agents.quantize import check_quantization, quantize_state
from agents.registry import keyword_options, register
from agents.replay import (
    ReplayBuffer,
    maybe,
    replay_init,
    replay_push,
    should_train,
)
from agents.transformer_finetune import (
    buffer_item,
    click_loss,
    fit_click_model,
    refit_precision,
)
from agents.transformer_model import (
    RecTransformer,
    TransformerConfig,
    binary_cross_entropy,
    build_model,
    embeddings,
    head_of,
    logits,
    split_model,
)
from bandits.linalg import compensated_add, inverse_factor, potter_update
from bandits.types import Agent, Observation
from bandits.validation import (
    BanditConfigError,
    choice,
    positive_int,
    real,
)

EXPLORATIONS = ("ts", "ensemble", "epsilon", "greedy")
# The head re-factorises its roots every 256 rounds. Its per-round cost is the
# network's, so the ridge agents' longer period (`agents.ridge.REFACTOR_EVERY`)
# would save nothing here; 256 keeps every published transformer number.
HEAD_REFACTOR_EVERY = 256


class HeadState(NamedTuple):
    """Laplace posteriors of the last layer (M = 1 except for "ensemble")."""

    mean: jax.Array  # (M, h)  posterior means w_m
    root: jax.Array  # (M, h, h)  R_m with R_m^T R_m = Sigma_m
    precision: jax.Array  # (M, h, h)  Sigma_m^{-1}, Kahan sum
    precision_residual: jax.Array  # (M, h, h)  Kahan compensation


def _head_prior(mean: jax.Array, precision: jax.Array) -> HeadState:
    """Heads with means (M, h) sharing one precision matrix (h, h)."""
    M, h = mean.shape
    R = inverse_factor(precision)
    return HeadState(
        mean=mean,
        root=jnp.broadcast_to(R, (M, h, h)),
        precision=jnp.broadcast_to(precision, (M, h, h)),
        precision_residual=jnp.zeros((M, h, h), precision.dtype),
    )


def _head_refactor(head: HeadState) -> HeadState:
    """Every R_m recomputed from its compensated precision (resets rounding)."""
    R = jax.vmap(inverse_factor)(head.precision - head.precision_residual)
    return head._replace(root=R)


class TransformerState(NamedTuple):
    """Network parameters, optimiser state, head posteriors and the replay buffer."""

    params: Any  # nnx.State of the model
    opt_state: Any  # optax state of `params`
    head: HeadState
    buffer: ReplayBuffer  # observations, actions and rewards of recent rounds
    step: jax.Array  # () int32 rounds seen


def _ekf_step(mean, R, precision, residual, phi, reward, weight):
    """One extended-Kalman (online Laplace) step of Bayesian logistic regression.

    Sigma^{-1} <- Sigma^{-1} + c phi phi^T with c = weight p (1 - p), and
    w <- w + weight Sigma phi (r - p), Sigma the updated covariance.
    """
    p = jax.nn.sigmoid(phi @ mean)
    curvature = weight * p * (1.0 - p)
    R, gain = potter_update(R, phi, curvature)
    precision, residual = compensated_add(
        precision, residual, curvature * jnp.outer(phi, phi)
    )
    mean = mean + weight * gain * (reward - p)
    return mean, R, precision, residual


@dataclasses.dataclass(frozen=True)
class PolicyConfig:
    """How the transformer policy explores and learns: the keyword options of
    `policy` and `transformer`, validated here, in one place, on construction."""

    exploration: str = "ts"
    """"ts", "ensemble", "epsilon" or "greedy" (see the module docstring)."""
    nu: float = 1.0
    """Thompson-sampling scale >= 0 (w~ ~ N(w, nu^2 Sigma)); also the spread of
    the ensemble's initial draws."""
    prior_precision: float = 10.0
    """lambda_0 > 0, precision of the prior N(w_0, I / lambda_0) around the
    (pretrained) head: trust in the pretrained head."""
    epsilon: float = 0.05
    """Exploration probability of "epsilon", in [0, 1]."""
    ensemble_size: int = 8
    """Heads M of "ensemble"."""
    finetune: bool = True
    """Train body and head on the replay buffer every `train_every` rounds
    (False: frozen body)."""
    train_every: int = 500
    """Rounds between retrainings."""
    train_steps: int = 20
    """Adam steps per retraining."""
    batch_size: int = 64
    """Replay rows per Adam step."""
    capacity: int = 1024
    """Replay slots."""
    learning_rate: float = 1e-3
    """Adam step size > 0 for fine-tuning."""
    max_grad_norm: float = 1.0
    """Global-norm gradient clipping (0: none)."""
    quantization: str = "none"
    """"none", "int8" or "int8_dynamic" (needs `finetune=False`: int8 weights are
    for inference only)."""
    propensity_samples: int = 256
    """Posterior draws behind the Monte Carlo `action_probs` of "ts"."""

    def __post_init__(self):
        choice("exploration", self.exploration, EXPLORATIONS)
        real("nu", self.nu, low=0.0)
        real("prior_precision", self.prior_precision, low=0.0, low_open=True)
        real("epsilon", self.epsilon, low=0.0, high=1.0)
        real("learning_rate", self.learning_rate, low=0.0, low_open=True)
        self._set_positive_int("ensemble_size")
        check_quantization(self.quantization)
        if not isinstance(self.finetune, bool):
            raise BanditConfigError.about(
                "finetune", f"must be true or false, got {self.finetune!r}"
            )
        if self.quantization != "none" and self.finetune:
            raise BanditConfigError.about(
                "quantization",
                "needs finetune=False: int8 weights are for inference only",
            )
        for name in (
            "train_every",
            "train_steps",
            "batch_size",
            "capacity",
            "propensity_samples",
        ):
            self._set_positive_int(name)
        real("max_grad_norm", self.max_grad_norm, low=0.0)

    def _set_positive_int(self, name: str) -> None:
        object.__setattr__(self, name, positive_int(name, getattr(self, name)))


def transformer_parts(
    num_arms: int,
    dim: int,
    arm_features: int,
    arm_columns: int = 0,
    history_length: int = 0,
    history_features: int = 0,
    context_fields: Any = None,
    num_items: int = 0,
    id_column: int = -1,
    history_id_column: int | None = None,
    width: int = 32,
    depth: int = 2,
    heads: int = 2,
    mlp_ratio: int = 2,
    wide_cross: int = 0,
    checkpoint: str | None = None,
    params: Any = None,
    random_init: bool = False,
    **options: Any,
) -> tuple[TransformerConfig, Any, PolicyConfig]:
    """The architecture, parameters and policy options of a `transformer` (and
    `transformer_slate`) agent, checked; the arguments of both.

    Args:
      num_arms: candidates per round K.
      dim: context dimension d.
      arm_features: leading columns of `obs.arms` used as item features (for
        `ContextualRec-*`: `env.item_dim`, leaving out the id column).
      arm_columns: total columns of `obs.arms` (0: `arm_features`).
      history_length: H rows of `obs.history` (0: ignore history).
      history_features: p_h columns of `obs.history`.
      context_fields: widths of the context fields, summing to `dim` (default:
        one field of width d).
      num_items: item-embedding vocabulary N (0: no item embedding).
      id_column: column of `obs.arms` holding item id / (N - 1).
      history_id_column: column of `obs.history` holding the shown item's id /
        (N - 1), whose item embedding joins its history token (None: not read;
        for `ContextualRec-*` with `history_item_ids`: -1).
      width, depth, heads, mlp_ratio: the architecture (D, blocks, heads, MLP
        expansion).
      wide_cross: c > 0 adds the wide part [a_k[:m], vec(a_k[:c] x^T)] to the
        click head (see `agents.transformer_model`; for `ContextualRec-*`,
        `env.num_categories` crosses the context with the category one-hot).
      checkpoint: path of a `.npz` checkpoint from `agents.pretrain` (its
        architecture replaces the shape arguments, which must agree).
      params: pretrained float parameters (an `nnx.State`), instead of a path.
      random_init: with `checkpoint` or `params`, keep their architecture but
        draw the parameters from the init key: the same model from scratch, the
        baseline of the pretrained one.
      **options: how the policy explores and learns, the fields of
        `PolicyConfig` (exploration, nu, prior_precision, epsilon,
        ensemble_size, finetune, train_every, train_steps, batch_size, capacity,
        learning_rate, max_grad_norm, quantization, propensity_samples); they are
        keyword arguments of this factory with `PolicyConfig`'s defaults.

    References:
      See the module docstring.
    """
    num_arms = positive_int("num_arms", num_arms)
    dim = positive_int("dim", dim)
    fields = (dim,) if context_fields is None else tuple(context_fields)
    cfg = TransformerConfig(
        num_arms=num_arms,
        context_fields=fields,
        arm_features=arm_features,
        arm_columns=arm_columns,
        history_length=history_length,
        history_features=history_features,
        num_items=num_items,
        id_column=id_column,
        history_id_column=history_id_column,
        width=width,
        depth=depth,
        heads=heads,
        mlp_ratio=mlp_ratio,
        quantization="none",
        wide_cross=wide_cross,
    )
    if cfg.context_dim != dim:
        raise BanditConfigError.about(
            "context_fields",
            f"must sum to dim ({dim}), got {fields} (sum {cfg.context_dim})",
        )
    config = PolicyConfig(**options)
    if checkpoint is not None and params is not None:
        raise BanditConfigError("give either checkpoint or params, not both")
    if checkpoint is not None:
        from agents.pretrain import load_checkpoint

        saved_cfg, params = load_checkpoint(checkpoint)
        _check_same_architecture(cfg, saved_cfg)
    if not isinstance(random_init, bool):
        raise BanditConfigError.about(
            "random_init", f"must be a bool, got {random_init!r}"
        )
    return cfg, None if random_init else params, config


def _signature_of(source: Any):
    """Decorator: the factory shows (and `make` checks) the arguments of `source`."""

    def wrap(factory):
        factory.__signature__ = inspect.signature(source)
        return factory

    return wrap


@register("transformer")
@keyword_options(PolicyConfig)
@_signature_of(transformer_parts)
def transformer(*args: Any, **kwargs: Any) -> Agent:
    """A transformer reward model with a Bayesian last layer (see module docstring).

    Takes the arguments of `transformer_parts` (shapes, architecture, a
    checkpoint or parameters, and the `PolicyConfig` options as keywords).

    Examples:
      >>> agent = transformer(num_arms=20, dim=19, arm_features=13,
      ...                     history_length=10, history_features=14)
    """
    return _build_policy(*transformer_parts(*args, **kwargs))


def config_for_env(env: Any, **architecture: Any) -> TransformerConfig:
    """The transformer's shapes for a recommendation env (`ContextualRec-*`, or
    its slate version `ContextualRecSlate-*`).

    One token per context field (`env.context_fields`, else the whole context as
    one field), the item features of `obs.arms` with the id in the last column,
    and the behaviour history; where its rows end with the item id
    (`env.history_item_ids`), `history_id_column = -1` embeds it. `architecture`
    sets width, depth, heads, mlp_ratio and wide_cross, and may override
    history_id_column (None: history ids not embedded).
    """
    if getattr(env, "slate_size", None) is not None:
        env = env.base  # a slate env: the recommendation env it shows slates of
    fields = tuple(getattr(env, "context_fields", (env.context_dim,)))
    ids_in_history = bool(getattr(env, "history_item_ids", False))
    architecture.setdefault("history_id_column", -1 if ids_in_history else None)
    return TransformerConfig(
        num_arms=env.num_arms,
        context_fields=fields,
        arm_features=env.item_dim,
        arm_columns=env.item_dim + 1,
        history_length=env.history_length,
        history_features=getattr(env, "history_dim", env.item_dim + 1),
        num_items=env.num_items,
        id_column=-1,
        **architecture,
    )


def _check_same_architecture(cfg: TransformerConfig, saved: TransformerConfig):
    mine = dataclasses.asdict(cfg)
    theirs = dataclasses.asdict(dataclasses.replace(saved, quantization="none"))
    diff = {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}
    if diff:
        details = ", ".join(
            f"{k}: given {a!r}, checkpoint {b!r}" for k, (a, b) in diff.items()
        )
        raise BanditConfigError(
            f"the checkpoint's architecture differs from the arguments ({details})"
        )


def policy(
    cfg: TransformerConfig,
    params: Any = None,
    *,
    name: str | None = None,
    **options: Any,
) -> Agent:
    """The agent for a given architecture and (optional) pretrained parameters.

    `transformer(...)` validates its arguments and builds the same agent; use
    this directly with a `TransformerConfig` and the `params` returned by
    `agents.pretrain`. `params=None` starts from a random initialisation drawn
    from the init key. `options` are the fields of `PolicyConfig`.
    """
    return _build_policy(cfg, params, PolicyConfig(**options), name)


def _build_policy(
    cfg: TransformerConfig, params: Any, config: PolicyConfig, name: str | None = None
) -> Agent:
    agent = _make_policy(cfg, params, config)
    return Agent(
        agent.init,
        agent.act,
        agent.update,
        agent.action_probs,
        name=name or f"transformer_{config.exploration}",
        predict=agent.predict,
        num_arms=cfg.num_arms,
        context_dim=cfg.context_dim,
    )


def _make_policy(
    cfg: TransformerConfig, params: Any, config: PolicyConfig
) -> _TransformerPolicy:
    """The policy object behind `policy` (the model as run, its options)."""
    run_cfg = dataclasses.replace(cfg, quantization=config.quantization)
    graphdef, template = split_model(run_cfg)
    if config.quantization != "none":
        if params is None:
            raise BanditConfigError.about("quantization", "needs pretrained params")
        params = quantize_state(params, template)
    return _TransformerPolicy(
        cfg=dataclasses.replace(cfg, quantization="none"),
        graphdef=graphdef,
        params=params,
        config=config,
        rule=exploration_rule(config),
        optimizer=make_optimizer(config.learning_rate, config.max_grad_norm),
    )


def exploration_rule(config: PolicyConfig) -> Exploration:
    """The rule named by `config.exploration`, chosen once when the agent is built."""
    match config.exploration:
        case "ts":
            return Thompson(config.nu, config.propensity_samples, batched_probs=True)
        case "ensemble":
            return EnsembleChoice(config.ensemble_size)
        case "epsilon":
            return EpsilonGreedy(config.epsilon, divide_last=True)
        case _:
            return Greedy()


@dataclasses.dataclass(frozen=True, eq=False)
class _TransformerPolicy:
    """The agent's pure functions over static parts: the network's graph, the
    pretrained parameters, the options and the exploration rule."""

    cfg: TransformerConfig  # the float architecture
    graphdef: Any  # static graph of the model as run (float or int8)
    params: Any  # pretrained parameters as run, or None (random init)
    config: PolicyConfig
    rule: Exploration
    optimizer: optax.GradientTransformation

    @property
    def bootstrap(self) -> bool:
        """Whether the heads are an ensemble on bootstrap weights."""
        return isinstance(self.rule, EnsembleChoice)

    @property
    def num_heads(self) -> int:
        """M: the ensemble's size, else one head."""
        return self.config.ensemble_size if self.bootstrap else 1

    def init(self, key: jax.Array) -> TransformerState:
        key_params, key_heads = jax.random.split(key)
        theta = self.params
        if theta is None:
            theta = nnx.split(build_model(self.cfg, key_params))[1]
        M, h = self.num_heads, self.cfg.embed_dim
        mean = jnp.broadcast_to(head_of(theta), (M, h))
        if self.bootstrap:
            z = jax.random.normal(key_heads, (M, h))
            mean = mean + self.config.nu * z / jnp.sqrt(self.config.prior_precision)
        else:
            del key_heads
        example = buffer_item(_zero_observation(self.cfg), 0, 0.0, self.cfg)
        return TransformerState(
            params=theta,
            opt_state=self.optimizer.init(theta) if self.config.finetune else (),
            head=_head_prior(mean, self.config.prior_precision * jnp.eye(h)),
            buffer=replay_init(example, self.config.capacity),
            step=jnp.zeros((), jnp.int32),
        )

    def belief(
        self, state: TransformerState, obs: Observation
    ) -> GaussianWeights | MemberScores:
        """What the heads say about the candidates: scores phi_k^T w."""
        phi = embeddings(self.graphdef, state.params, obs)  # (K, h)
        head = state.head
        if self.bootstrap:
            return MemberScores(lambda m: phi @ head.mean[m], lambda: head.mean @ phi.T)
        return GaussianWeights(phi, head.mean[0], head.root[0])

    def act(self, key, state: TransformerState, obs: Observation) -> jax.Array:
        return self.rule.sample(key, self.belief(state, obs), obs.mask)

    def action_probs(self, key, state: TransformerState, obs: Observation):
        return self.rule.probs(key, self.belief(state, obs), obs.mask)

    def predict(self, state: TransformerState, obs: Observation) -> jax.Array:
        phi = embeddings(self.graphdef, state.params, obs)
        return jnp.mean(jax.nn.sigmoid(phi @ state.head.mean.T), axis=-1)

    def update(self, key, state: TransformerState, obs, action, reward):
        key_boot, key_train = jax.random.split(key)
        phi = embeddings(self.graphdef, state.params, obs)[action]
        reward = jnp.asarray(reward, jnp.float32)
        M = self.num_heads
        if self.bootstrap:
            weights = jax.random.poisson(key_boot, 1.0, (M,)).astype(jnp.float32)
        else:
            del key_boot
            weights = jnp.ones((M,), jnp.float32)
        step = state.step + 1
        state = state._replace(
            head=_head_update(state.head, phi, reward, weights, step),
            buffer=replay_push(
                state.buffer, buffer_item(obs, action, reward, self.cfg)
            ),
            step=step,
        )
        if not self.config.finetune:
            del key_train
            return state
        return maybe(
            should_train(state.step, self.config.train_every),
            lambda s: self.retrain(key_train, s),
            state,
        )

    def retrain(self, key, state: TransformerState) -> TransformerState:
        """Fine-tunes body and head, then refits the head posteriors around it."""
        old_head = head_of(state.params)
        theta, opt_state = fit_click_model(
            key,
            self.graphdef,
            state.params,
            state.opt_state,
            state.buffer,
            self.optimizer,
            self.config.train_steps,
            self.config.batch_size,
        )
        new_head = head_of(theta)
        precision = refit_precision(
            self.graphdef, theta, state.buffer, new_head, self.config.prior_precision
        )
        if self.bootstrap:
            mean = state.head.mean - old_head + new_head
        else:
            mean = jnp.broadcast_to(new_head, (self.num_heads, self.cfg.embed_dim))
        return state._replace(
            params=theta, opt_state=opt_state, head=_head_prior(mean, precision)
        )


def _head_update(head: HeadState, phi, reward, weights, step) -> HeadState:
    """Every head's extended-Kalman step on (phi, r) with its bootstrap weight,
    and the periodic re-factorisation of the roots."""
    head = HeadState(
        *jax.vmap(_ekf_step, in_axes=(0, 0, 0, 0, None, None, 0))(
            *head, phi, reward, weights
        )
    )
    return jax.lax.cond(
        step % HEAD_REFACTOR_EVERY == 0, _head_refactor, lambda hd: hd, head
    )


def _zero_observation(cfg: TransformerConfig) -> Observation:
    """An all-zero observation with the configured shapes (for buffer layouts)."""
    K, H = cfg.num_arms, cfg.history_length
    return Observation(
        context=jnp.zeros((cfg.context_dim,), jnp.float32),
        arms=jnp.zeros((K, cfg.arm_columns), jnp.float32),
        mask=jnp.ones((K,), bool),
        history=jnp.zeros((H, cfg.history_features), jnp.float32) if H else None,
        history_mask=jnp.zeros((H,), bool) if H else None,
    )


__all__ = [
    "EXPLORATIONS",
    "HeadState",
    "PolicyConfig",
    "RecTransformer",
    "TransformerConfig",
    "TransformerState",
    "binary_cross_entropy",
    "build_model",
    "click_loss",
    "embeddings",
    "exploration_rule",
    "fit_click_model",
    "head_of",
    "logits",
    "policy",
    "split_model",
    "transformer",
]
