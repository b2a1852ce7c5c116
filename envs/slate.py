"""Slate environments: an ordered list of L distinct items out of K, and click models.

A slate env wraps a single-item env whose expected reward of item k is a click
probability, its *attraction* a_k in [0, 1]. Each round the agent shows an ordered
slate s = (s_1, ..., s_L) of distinct candidates; the user scans it under a click
model and the env reveals the click at every position. With a_l = a_{s_l}:

* position-based model (`"pbm"`): position l is examined with probability
  kappa_l (non-increasing), independently of everything else; an examined item
  is clicked with probability a_l. Reward: the number of clicks.

      E[click_l] = kappa_l a_l,          E[r] = sum_l kappa_l a_l

* cascade (`"cascade"`, Craswell et al. 2008): the user examines positions from
  the top, clicks the first attractive item and stops. Reward: 1 if any click.

      P(examine l) = prod_{j<l} (1 - a_j),  E[r] = 1 - prod_l (1 - a_l)

* dependent click model (`"dcm"`, Guo et al. 2009; as a bandit Katariya et al.
  2016): as the cascade, but after a click at position l the user stops
  (satisfied) with probability v_l (`termination`, non-increasing) and goes on
  scanning otherwise. Reward: 1 if the user ends satisfied (clicked and stopped
  at some position; Katariya et al.'s reward, which agents do not observe: they
  see the clicks).

      P(examine l) = prod_{j<l} (1 - v_j a_j),  E[click_l] = P(examine l) a_l,
      E[r] = 1 - prod_l (1 - v_l a_l)

  The cascade is the DCM with v = 1.

Optimal slate: the L most attractive allowed items in descending order of
attraction (`optimal_slate`). PBM: sum_l kappa_l a_l with kappa non-increasing is
maximised by matching the largest attractions to the largest kappa (rearrangement
inequality) and it grows with every a_l. Cascade and DCM: 1 - prod_l (1 - v_l a_l)
grows with every a_l, so the set is the top L; swapping the items at l < m
changes the product by (v_l - v_m)(a_l - a_m) times the other factors, <= 0 (a
gain) when the more attractive item moves up (a_m > a_l) and v_l >= v_m, so the
sorted order is optimal (any order is, for the cascade). docs/slates.md writes
this out.

Masked items. An item the observation's mask forbids (the recommendation
presets mask repeated candidates) may be shown, but its attraction counts as 0:
it is never clicked and only takes up a position. So every slate has a
well-defined value no larger than the optimal one, and playing masked items is
not an error (unlike a single-item env's masked arm).

`Feedback.expected_rewards` of a slate env are the attractions (K,); the slate's
values are in `Feedback.slate` (`bandits.types.SlateFeedback`).

Registered ids: `LinearSlate-v0` (the disjoint logistic linear problem,
a_k = sigmoid(x^T theta_k)) and `ContextualRecSlate-v0`,
`ContextualRecSlate-ColdStart-v0`, `ContextualRecSlate-Drift-v0` (the recommendation
presets; the attraction is the preset's click probability of each candidate),
and `BernoulliSlate-v0` (context-free: L items of attraction p and K - L of
p - gap, Kveton et al. 2015's synthetic cascading-bandit problem).

References:
  Craswell, Zoeter, Taylor & Ramsey (2008), "An experimental comparison of click
  position-bias models", WSDM.
  Guo, Liu & Wang (2009), "Efficient multiple-click models in web search", WSDM.
  Katariya, Kveton, Szepesvari & Wen (2016), "DCM bandits: learning to rank with
  multiple clicks", ICML.
  Lagree, Vernade & Cappe (2016), "Multiple-play bandits in the position-based
  model", NeurIPS.
  Kveton, Szepesvari, Wen & Ashkan (2015), "Cascading bandits: learning to rank
  in the cascade model", ICML.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from bandits.types import ArraySpec, Feedback, Observation, SlateFeedback
from bandits.validation import BanditConfigError, choice, positive_int, real
from envs.base import BanditEnv, PyTreeData, pytree_dataclass, register, registered
from envs.linear import LinearEnv
from envs.multi_armed import MultiArmedEnv, MultiArmedParams
from envs.recommendation import RecommendationEnv

CLICK_MODELS = ("pbm", "cascade", "dcm")


@pytree_dataclass
class SlateParams(PyTreeData):
    """A slate problem instance: the base env's, plus the click model's."""

    base: Any  # the single-item env's problem instance (attractions)
    kappa: jax.Array  # (L,)  PBM examination probability of each position
    termination: jax.Array  # (L,)  P(stop | click at l): cascade 1, DCM v_l


@pytree_dataclass
class SlateState(PyTreeData):
    """The base env's state and the mask of the observation about to be acted on."""

    base: Any
    mask: jax.Array  # (K,) bool  items the current observation allows


# ---------------------------------------------------------------------------
# Click models: closed forms and sampling, for one slate's attractions a (L,)


def examination_probabilities(
    click_model: str, attraction: jax.Array, kappa: jax.Array, termination: jax.Array
) -> jax.Array:
    """P(position l is examined), (L,): kappa_l (PBM) or prod_{j<l} (1 - v_j a_j)."""
    if click_model == "pbm":
        return kappa
    stay = 1.0 - termination * attraction
    return jnp.concatenate([jnp.ones((1,), stay.dtype), jnp.cumprod(stay)[:-1]])


def expected_clicks(
    click_model: str, attraction: jax.Array, kappa: jax.Array, termination: jax.Array
) -> jax.Array:
    """E[click at position l] = P(examine l) a_l, (L,)."""
    return (
        examination_probabilities(click_model, attraction, kappa, termination)
        * attraction
    )


def expected_slate_reward(
    click_model: str, attraction: jax.Array, kappa: jax.Array, termination: jax.Array
) -> jax.Array:
    """E[r] of a slate with attractions a (L,): sum_l kappa_l a_l (PBM) or
    1 - prod_l (1 - v_l a_l) (cascade, DCM).

    The product is taken over the sorted factors, so slates with the same
    multiset of factors (every ordering of one set, under the cascade) get the
    same value to the last bit.
    """
    if click_model == "pbm":
        return jnp.sum(kappa * attraction)
    return 1.0 - jnp.prod(jnp.sort(1.0 - termination * attraction))


def optimal_slate(attraction: jax.Array, mask: jax.Array, slate_size: int) -> jax.Array:
    """The L most attractive allowed items, most attractive first, (L,) int32.

    Optimal under all three click models (see the module docstring); ties go to
    the lower index. With fewer than L allowed items the rest are masked ones.
    """
    _, slate = jax.lax.top_k(jnp.where(mask, attraction, -jnp.inf), slate_size)
    return slate.astype(jnp.int32)


def sample_clicks(
    key: jax.Array,
    click_model: str,
    attraction: jax.Array,
    kappa: jax.Array,
    termination: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One user's scan of a slate: (clicks (L,) bool, examined (L,) bool, reward).

    Two uniforms per position from one PRNG call: u_0 < a_l (the item attracts)
    and u_1 < kappa_l (PBM: the position is examined) or u_1 < v_l (cascade,
    DCM: a click there ends the scan, satisfied).
    """
    u = jax.random.uniform(key, (2, attraction.shape[-1]))
    attracted = u[0] < attraction
    if click_model == "pbm":
        examined = u[1] < kappa
        clicks = examined & attracted
        return clicks, examined, jnp.sum(clicks).astype(jnp.float32)
    ends = attracted & (u[1] < termination)
    # Examined: no scan-ending click above (the top position always is).
    examined = (jnp.cumsum(ends) - ends) == 0
    clicks = examined & attracted
    satisfied = jnp.any(clicks & ends)
    return clicks, examined, satisfied.astype(jnp.float32)


# ---------------------------------------------------------------------------
# The environment


@dataclasses.dataclass(frozen=True)
class SlateEnv(BanditEnv):
    """A single-item click env shown as slates of `slate_size` items.

    Attributes:
      base: the single-item env; its `expected_rewards` are the attractions and
        must lie in [0, 1]. Either its rounds ignore the action
        (`actions_leave_state`) or it has `step_slate(key, state, params, slate,
        clicks, examined) -> (obs, state)`.
      slate_size: L, 1 <= L <= K.
      click_model: one of `CLICK_MODELS`.
      kappa: PBM examination probabilities (L values in [0, 1], non-increasing);
        None draws them per problem instance: kappa_1 = 1 and the other L - 1
        are sorted U(0, 1) draws, descending.
      termination: DCM stop-after-click probabilities v_l (L values in [0, 1],
        non-increasing); None draws all L as sorted U(0, 1) draws, descending.
    """

    base: BanditEnv
    slate_size: int = 3
    click_model: str = "cascade"
    kappa: tuple[float, ...] | None = None
    termination: tuple[float, ...] | None = None

    actions_leave_state: ClassVar[bool] = False  # one action is a whole slate

    def __post_init__(self):
        choice("click_model", self.click_model, CLICK_MODELS)
        size = positive_int("slate_size", self.slate_size)
        if size > self.base.num_arms:
            raise BanditConfigError.about(
                "slate_size",
                f"must be <= the number of candidates K = {self.base.num_arms} "
                f"(a slate shows distinct items), got {size}",
            )
        for name, model in (("kappa", "pbm"), ("termination", "dcm")):
            value = getattr(self, name)
            if value is None:
                continue
            if self.click_model != model:
                raise BanditConfigError.about(
                    name,
                    f"is a parameter of the {model!r} click model only; the "
                    f"{self.click_model!r} model takes none (leave it unset)",
                )
            object.__setattr__(self, name, _position_probabilities(name, value, size))
        if getattr(self.base, "reward", "bernoulli") != "bernoulli":
            raise BanditConfigError.about(
                "reward",
                "must be 'bernoulli' for a slate env (attractions are click "
                f"probabilities), got {self.base.reward!r}",  # type: ignore[attr-defined]
            )
        if not self.base.actions_leave_state and not hasattr(self.base, "step_slate"):
            raise BanditConfigError(
                f"{type(self.base).__name__} cannot show slates: its state depends "
                "on the action and it has no step_slate method"
            )

    @property
    def num_arms(self) -> int:
        return self.base.num_arms

    # -- problem instances -------------------------------------------------

    def default_params(self) -> SlateParams:
        """The base env's default instance (the same catalogue as its single-item
        preset), with click parameters drawn from its `params_seed`."""
        seed = getattr(self.base, "params_seed", 0)
        key = jax.random.fold_in(jax.random.key(seed), 0x51A7E)
        return self._with_clicks(key, self.base.default_params())

    def sample_params(self, key: jax.Array) -> SlateParams:
        key_base, key_clicks = jax.random.split(key)
        return self._with_clicks(key_clicks, self.base.sample_params(key_base))

    def _with_clicks(self, key: jax.Array, base_params: Any) -> SlateParams:
        L = self.slate_size
        ones = jnp.ones((L,), jnp.float32)
        key_kappa, key_termination = jax.random.split(key)
        kappa = termination = ones
        if self.click_model == "pbm":
            kappa = _given_or_drawn(self.kappa, key_kappa, L, first_is_one=True)
        elif self.click_model == "dcm":
            termination = _given_or_drawn(
                self.termination, key_termination, L, first_is_one=False
            )
        return SlateParams(base=base_params, kappa=kappa, termination=termination)

    # -- the functional core -----------------------------------------------

    def reset(self, key: jax.Array, params: SlateParams):
        obs, state = self.base.reset(key, params.base)
        return obs, SlateState(base=state, mask=obs.mask)

    def expected_rewards(self, state: SlateState, params: SlateParams) -> jax.Array:
        """Attraction a_k of every candidate (its click probability), (K,)."""
        return self.base.expected_rewards(state.base, params.base)

    def step(
        self,
        key: jax.Array,
        state: SlateState,
        action: jax.Array,
        params: SlateParams,
    ) -> tuple[Observation, SlateState, Feedback]:
        """Shows the (L,) slate `action`, samples the user's clicks, moves on."""
        key_clicks, key_next = jax.random.split(key)
        attraction = self.expected_rewards(state, params)
        # A masked item (e.g. a repeated candidate) may be shown but is never
        # clicked: it only takes up a position.
        shown = jnp.where(state.mask[action], attraction[action], 0.0)
        clicks, examined, reward = sample_clicks(
            key_clicks, self.click_model, shown, params.kappa, params.termination
        )
        best = optimal_slate(attraction, state.mask, self.slate_size)
        slate = SlateFeedback(
            clicks=clicks.astype(jnp.float32),
            examined=examined,
            expected_clicks=self.expected_clicks(shown, params),
            expected_reward=self.slate_value(shown, params),
            optimal_slate=best,
            optimal_expected_reward=self.slate_value(attraction[best], params),
        )
        obs, base_state = self._advance(
            key_next, state, params, action, clicks, examined
        )
        return (
            obs,
            SlateState(base=base_state, mask=obs.mask),
            Feedback(reward, attraction, slate),
        )

    def _advance(self, key, state, params, action, clicks, examined):
        """The base env's next observation and state after the slate."""
        if self.base.actions_leave_state:
            obs, base_state, _ = self.base.step(key, state.base, action[0], params.base)
            return obs, base_state
        return self.base.step_slate(  # type: ignore[attr-defined]
            key, state.base, params.base, action, clicks, examined
        )

    def expected_clicks(self, attraction: jax.Array, params: SlateParams) -> jax.Array:
        """E[click_l] of a slate whose items have attractions (L,)."""
        return expected_clicks(
            self.click_model, attraction, params.kappa, params.termination
        )

    def slate_value(self, attraction: jax.Array, params: SlateParams) -> jax.Array:
        """E[r] of a slate whose items have attractions (L,)."""
        return expected_slate_reward(
            self.click_model, attraction, params.kappa, params.termination
        )

    def observation_spec(self) -> dict[str, ArraySpec]:
        return self.base.observation_spec()


def _position_probabilities(name: str, value: Any, size: int) -> tuple[float, ...]:
    """L probabilities in [0, 1], non-increasing, as a tuple (hashable)."""
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise BanditConfigError.about(
            name, f"must be a list of {size} probabilities in [0, 1], got {value!r}"
        )
    if len(value) != size:
        raise BanditConfigError.about(
            name, f"must have slate_size = {size} entries, got {len(value)}"
        )
    out = []
    for i, p in enumerate(value):
        if isinstance(p, bool) or not isinstance(p, int | float):
            raise BanditConfigError.about(
                f"{name}[{i}]", f"must be a number in [0, 1], got {p!r}"
            )
        if not (math.isfinite(p) and 0.0 <= p <= 1.0):
            raise BanditConfigError.about(f"{name}[{i}]", f"must be in [0, 1], got {p}")
        out.append(float(p))
    for i in range(1, size):
        if out[i] > out[i - 1]:
            raise BanditConfigError.about(
                name,
                f"must be non-increasing down the slate ({name}[0] >= {name}[1] "
                f">= ...; the optimal slate relies on it), got {tuple(out)}",
            )
    return tuple(out)


def _given_or_drawn(
    given: tuple[float, ...] | None, key: jax.Array, size: int, first_is_one: bool
) -> jax.Array:
    """`given` as an array, or non-increasing U(0, 1) draws (first set to 1 if
    `first_is_one`)."""
    if given is not None:
        return jnp.asarray(given, jnp.float32)
    drawn = -jnp.sort(-jax.random.uniform(key, (size,)))
    if first_is_one:
        drawn = drawn.at[0].set(1.0)
    return drawn


# ---------------------------------------------------------------------------
# Factories and registration


SLATE_OPTIONS = ("slate_size", "click_model", "kappa", "termination")


def linear_slate(
    *,
    num_arms: int = 10,
    dim: int = 5,
    scale: float = 1.0,
    slate_size: int = 3,
    click_model: str = "cascade",
    kappa: tuple[float, ...] | None = None,
    termination: tuple[float, ...] | None = None,
    params_seed: int = 0,
) -> SlateEnv:
    """Slates over the disjoint logistic linear problem: a_k = sigmoid(x^T theta_k),
    x ~ U[-1, 1]^d, theta_k ~ N(0, scale^2 / d I) (`LinearBernoulli-v0`)."""
    base = LinearEnv(num_arms, dim, "bernoulli", 1.0, scale, params_seed)
    return SlateEnv(base, slate_size, click_model, kappa, termination)


def recommendation_slate(
    *,
    slate_size: int = 5,
    click_model: str = "cascade",
    kappa: tuple[float, ...] | None = None,
    termination: tuple[float, ...] | None = None,
    **options: Any,
) -> SlateEnv:
    """Slates over the recommendation simulator: the attraction of a candidate is
    its click probability under the preset (`docs/recommendation_env.md`);
    `**options` are `RecommendationEnv`'s fields."""
    base = RecommendationEnv(**options)
    return SlateEnv(base, slate_size, click_model, kappa, termination)


@dataclasses.dataclass(frozen=True)
class TwoLevelBernoulliEnv(MultiArmedEnv):
    """Context-free items of two attractions: `best_count` items of p and the
    other K - best_count of p - gap, in a random order per instance (Kveton et
    al. 2015's synthetic cascading-bandit problem, with best_count = L).

    `default_params` is the instance of `params_seed`; `sample_params` draws the
    order, so the best items are not the lowest indices an index policy's
    tie-break would favour."""

    best_count: int = 1
    attraction: float = 0.2
    gap: float = 0.15

    actions_leave_state: ClassVar[bool] = True  # every round the same context

    def __post_init__(self):
        super().__post_init__()
        real("attraction", self.attraction, low=0.0, high=1.0)
        real("gap", self.gap, low=0.0, high=self.attraction)

    def sample_params(self, key: jax.Array) -> MultiArmedParams:
        rank = jax.random.permutation(key, self.arms_count)
        best = rank < self.best_count
        means = jnp.where(best, self.attraction, self.attraction - self.gap)
        return MultiArmedParams(means=means.astype(jnp.float32))


def bernoulli_slate(
    *,
    num_arms: int = 16,
    slate_size: int = 2,
    attraction: float = 0.2,
    gap: float = 0.15,
    click_model: str = "cascade",
    kappa: tuple[float, ...] | None = None,
    termination: tuple[float, ...] | None = None,
    params_seed: int = 1,
) -> SlateEnv:
    """Context-free slates (Kveton et al. 2015, Section 6.1): L = `slate_size`
    items of attraction p = `attraction` and K - L of p - `gap`, in a random
    order per instance; the optimal slate is the L items of p.

    The default instance is `params_seed` 1: seed 0's order puts the best two
    items at indices 0 and 1, which the lowest-index tie-break of index
    policies would favour."""
    positive_int("num_arms", num_arms)
    base = TwoLevelBernoulliEnv(
        arms_count=num_arms,
        params_seed=params_seed,
        best_count=min(positive_int("slate_size", slate_size), num_arms),
        attraction=attraction,
        gap=gap,
    )
    return SlateEnv(base, slate_size, click_model, kappa, termination)


def _keyword_signature(factory, config_type: type) -> None:
    """Lists `config_type`'s fields as keyword arguments of `factory` (in place of
    `**options`), so `envs.hyperparameters` and `envs.make` check them."""
    signature = inspect.signature(factory)
    own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    fields = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default)
        for f in dataclasses.fields(config_type)
    ]
    factory.__signature__ = signature.replace(parameters=own + fields)


_keyword_signature(recommendation_slate, RecommendationEnv)

register(
    "LinearSlate-v0",
    linear_slate,
    "Slates of L=3 of 10 arms, attraction sigmoid(x^T theta_k), cascade clicks.",
)
register(
    "BernoulliSlate-v0",
    bernoulli_slate,
    "Context-free slates of L=2 of 16 items: L of attraction 0.2, the rest 0.05 "
    "(Kveton et al. 2015's synthetic problem), cascade clicks.",
)
for _preset, _slate_id in (
    ("ContextualRec-v0", "ContextualRecSlate-v0"),
    ("ContextualRec-ColdStart-v0", "ContextualRecSlate-ColdStart-v0"),
    ("ContextualRec-Drift-v0", "ContextualRecSlate-Drift-v0"),
    ("ContextualRec-Sequential-v0", "ContextualRecSlate-Sequential-v0"),
):
    # The preset's own settings, so the slate preset is the same population.
    register(
        _slate_id,
        recommendation_slate,
        f"{_preset} shown as slates of L=5 of the K=20 candidates, cascade clicks.",
        **registered()[_preset].defaults,
    )
