"""Context-aware recommendation: simulated users whose tastes depend on context.

Each step one user arrives (drawn by activity rate) in a situational context (time
of day, weekend, location, device), the environment shows K candidate items from a
catalogue of N, the agent recommends one and the user clicks with probability

    P(click | u, i, c, t) = sigmoid(z_{u,i,t}),
    z_{u,i,t} = beta_0 + beta_pref <R(theta_t) p_u, v_i> + beta_pop pi_i
              + s * g(c, u, i) - beta_bored B_{u,cat(i)}(t) + S_{cat(i)}(t)
              + s_seq f_seq(u, i) + s_int f_int(c, u, i).

`s = context_strength` scales the context effect g; at s = 0 the observed context
carries no information about clicks (with the weekly season off). Users' tastes move
toward what they click, categories they consumed satiate (boredom with a half-life),
and the `drift` options rotate the whole population's tastes (gradually or abruptly
at given steps), add a weekly season, and bring in new users with no history.
`sequence_strength` s_seq and `interaction_strength` s_int (default 0: off) add
users whose clicks follow their last clicks (a Markov intent over categories,
complementary item pairs) and three-way situation x taste x item interactions
(`envs.recommendation_sequence`); `ContextualRec-Sequential-v0` turns them on.

`expected_rewards` are the exact click probabilities of the K candidates. Because
the state evolves (history, boredom, drift), regret is dynamic regret: at each step
against the best candidate for that step's state (the per-step oracle). The model is
written out in `docs/recommendation_env.md`.

Observation layout (see `RecommendationEnv.arm_layout`):

* `context` (d,): [sin h, cos h, weekend, device, location, age band, region], the
  categoricals one-hot (`context_encoding="onehot"`) or as index / (count - 1)
  (`"raw"`).
* `arms` (K, p_item + 1): [onehot(category) (C) | content features (q) |
  popularity in [0, 1] (1) | item id / (N - 1) (1)]. The last column identifies the
  item (for per-item agents such as `popularity`); linear agents should use the
  first p_item columns.
* `mask` (K,): False for repeated candidates.
* `history` (H, p_item + 1): the arriving user's last H interactions, most recent
  first: the shown item's features and whether it was clicked; `history_mask` (H,).
  With `history_item_ids=True` each row ends with one more column, the shown
  item's id / (N - 1) (as in `arms`), width `history_dim` = p_item + 2.

Latent vectors (p_u, v_i) stay hidden.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from bandits.types import ArraySpec, Feedback, Observation
from bandits.validation import (
    BanditConfigError,
    choice,
    non_negative_int,
    positive_int,
    real,
)
from envs import recommendation_context as rec_context
from envs import recommendation_model as model
from envs.base import BanditEnv, register
from envs.recommendation_context import KNOWN_DEVICES, KNOWN_LOCATIONS, Situation
from envs.recommendation_model import RecParams, RecState

CONTEXT_ENCODINGS = ("onehot", "raw")

__all__ = [
    "CONTEXT_ENCODINGS",
    "KNOWN_DEVICES",
    "KNOWN_LOCATIONS",
    "RecParams",
    "RecState",
    "RecommendationEnv",
    "Situation",
]


@dataclasses.dataclass(frozen=True, kw_only=True)
class RecommendationEnv(BanditEnv):
    """The context-aware recommendation simulator (see the module docstring).

    Attributes:
      num_items: catalogue size N.
      num_users: population size U.
      num_candidates: candidates shown per step K (<= N).
      num_categories: item categories C.
      latent_dim: dimension L of the hidden user/item vectors.
      num_content_features: observed content features q per item (>= 0).
      history_length: interactions H kept per user and shown in `history`.
      num_age_bands: age bands A.
      num_regions: regions R.
      devices: device names, a subset of `KNOWN_DEVICES`.
      locations: location names, a subset of `KNOWN_LOCATIONS`.
      context_encoding: "onehot" or "raw" (see module docstring).
      context_strength: s in [0, 1], scale of the context effect g.
      context_scale: standard deviation of each category x context table entry.
      regional_scale: standard deviation of the region x item popularity table.
      preference_weight: beta_pref, weight of the latent affinity <p_u, v_i>.
      popularity_weight: beta_pop, weight of the log popularity rescaled to [0, 1].
      base_logit: beta_0.
      boredom_weight: beta_bored, logit cost of one unit of boredom.
      boredom_half_life_days: days for boredom to halve.
      interest_drift: eta in [0, 1], step of p_u toward a clicked item.
      popularity_exponent: Zipf exponent alpha of item popularity.
      popular_fraction: share of the K candidates drawn by popularity (the rest
        uniformly).
      activity_sigma: log-normal spread of user activity rates.
      item_spread: spread of item latents around their category centroid.
      taste_mean_scale: size of the population's mean taste m.
      steps_per_day: arrivals per simulated day (the clock).
      warm_start: users start with a pre-run history (else all start cold).
      new_user_rate: probability in [0, 1] that an arrival is a new, cold user.
      drift_rotation: population taste rotation speed omega, radians per day.
      drift_shift_steps: steps at which tastes jump by `drift_shift_angle`.
      drift_shift_angle: phi, radians per abrupt shift.
      season_amplitude: logit amplitude of the weekly per-category season.
      sequence_strength: s_seq >= 0, scale of the sequence term f_seq (the
        Markov intent over categories and complementary pairs); 0: off.
      interaction_strength: s_int >= 0, scale of the interaction term f_int
        (category x device x time block, situation x taste x item); 0: off.
      history_item_ids: append the item id / (N - 1) to each history row.
      content_noise: standard deviation of the noise in the content features.
      params_seed: seed of the default problem instance.
    """

    num_items: int = 1000
    num_users: int = 10_000
    num_candidates: int = 20
    num_categories: int = 8
    latent_dim: int = 16
    num_content_features: int = 4
    history_length: int = 10
    num_age_bands: int = 5
    num_regions: int = 4
    devices: tuple[str, ...] = KNOWN_DEVICES
    locations: tuple[str, ...] = KNOWN_LOCATIONS
    context_encoding: str = "onehot"
    context_strength: float = 1.0
    context_scale: float = 0.5
    regional_scale: float = 0.3
    preference_weight: float = 3.0
    popularity_weight: float = 1.0
    base_logit: float = -2.5
    boredom_weight: float = 0.5
    boredom_half_life_days: float = 1.0
    interest_drift: float = 0.05
    popularity_exponent: float = 0.8
    popular_fraction: float = 0.5
    activity_sigma: float = 1.0
    item_spread: float = 0.7
    taste_mean_scale: float = 0.5
    steps_per_day: int = 240
    warm_start: bool = True
    new_user_rate: float = 0.0
    drift_rotation: float = 0.0
    drift_shift_steps: tuple[int, ...] = ()
    drift_shift_angle: float = math.pi / 2
    season_amplitude: float = 0.0
    sequence_strength: float = 0.0
    interaction_strength: float = 0.0
    history_item_ids: bool = False
    content_noise: float = 0.25
    params_seed: int = 0

    def __post_init__(self):
        for name in (
            "num_items",
            "num_users",
            "num_candidates",
            "num_categories",
            "latent_dim",
            "history_length",
            "num_age_bands",
            "num_regions",
            "steps_per_day",
        ):
            positive_int(name, getattr(self, name))
        non_negative_int("num_content_features", self.num_content_features)
        non_negative_int("params_seed", self.params_seed)
        if self.num_candidates > self.num_items:
            raise BanditConfigError.about(
                "num_candidates",
                f"must be <= num_items ({self.num_items}), got {self.num_candidates}",
            )
        # Sequences from TOML/JSON arrive as lists: store tuples (hashable).
        object.__setattr__(
            self, "devices", _names("devices", self.devices, KNOWN_DEVICES)
        )
        object.__setattr__(
            self, "locations", _names("locations", self.locations, KNOWN_LOCATIONS)
        )
        object.__setattr__(
            self,
            "drift_shift_steps",
            _steps("drift_shift_steps", self.drift_shift_steps),
        )
        choice("context_encoding", self.context_encoding, CONTEXT_ENCODINGS)
        for name in ("context_strength", "interest_drift", "popular_fraction"):
            real(name, getattr(self, name), low=0.0, high=1.0)
        real("new_user_rate", self.new_user_rate, low=0.0, high=1.0)
        for name in (
            "context_scale",
            "regional_scale",
            "preference_weight",
            "boredom_weight",
            "popularity_exponent",
            "activity_sigma",
            "item_spread",
            "taste_mean_scale",
            "season_amplitude",
            "sequence_strength",
            "interaction_strength",
            "content_noise",
        ):
            real(name, getattr(self, name), low=0.0)
        for name in (
            "popularity_weight",
            "base_logit",
            "drift_rotation",
            "drift_shift_angle",
        ):
            real(name, getattr(self, name))
        real(
            "boredom_half_life_days",
            self.boredom_half_life_days,
            low=0.0,
            low_open=True,
        )
        for name in ("warm_start", "history_item_ids"):
            if not isinstance(getattr(self, name), bool):
                raise BanditConfigError.about(
                    name, f"must be true or false, got {getattr(self, name)!r}"
                )

    # -- sizes and layout -------------------------------------------------

    @property
    def num_arms(self) -> int:
        return self.num_candidates

    @property
    def context_dim(self) -> int:
        """Length d of `obs.context`."""
        return rec_context.context_dim(self)

    @property
    def context_fields(self) -> tuple[int, ...]:
        """Widths of the context's fields (time of day, weekend, device,
        location, age band, region), summing to `context_dim`: a model can give
        each field its own token."""
        return rec_context.context_fields(self)

    @property
    def item_dim(self) -> int:
        """Item-feature columns p_item = C + q + 1 (`arms` adds the id column)."""
        return self.num_categories + self.num_content_features + 1

    @property
    def history_dim(self) -> int:
        """Columns of `obs.history`: p_item + 1 (the click flag), + 1 with
        `history_item_ids` (the item id / (N - 1), last)."""
        return self.item_dim + 1 + int(self.history_item_ids)

    def arm_layout(self) -> dict[str, slice]:
        """Column slices of `obs.arms` (and of `obs.history`, where the
        "item_id" column holds the click flag instead; with `history_item_ids`
        the history's last column is the item id)."""
        C, q = self.num_categories, self.num_content_features
        return {
            "category": slice(0, C),
            "content": slice(C, C + q),
            "popularity": slice(C + q, C + q + 1),
            "item_id": slice(C + q + 1, C + q + 2),
        }

    # -- the functional core ----------------------------------------------

    def sample_params(self, key: jax.Array) -> RecParams:
        return model.sample_instance(key, self)

    def reset(self, key: jax.Array, params: RecParams) -> tuple[Observation, RecState]:
        u = jax.random.uniform(key, (model.arrival_draw_count(self),))
        state = model.arrive(u, model.initial_state(params, self), params, self)
        return self.observe(state, params), state

    def step(
        self, key: jax.Array, state: RecState, action: jax.Array, params: RecParams
    ) -> tuple[Observation, RecState, Feedback]:
        # One PRNG call per step: the click's uniform, then the next arrival's.
        u = jax.random.uniform(key, (1 + model.arrival_draw_count(self),))
        expected = self.expected_rewards(state, params)
        clicked = u[0] < expected[action]
        state = self.consume(state, params, state.candidates[action], clicked)
        state = model.arrive(u[1:], state.replace(t=state.t + 1), params, self)
        feedback = Feedback(
            reward=clicked.astype(jnp.float32), expected_rewards=expected
        )
        return self.observe(state, params), state, feedback

    def step_slate(
        self,
        key: jax.Array,
        state: RecState,
        params: RecParams,
        slate: jax.Array,
        clicks: jax.Array,
        examined: jax.Array,
    ) -> tuple[Observation, RecState]:
        """The next observation and state after the user scanned a slate
        (`envs.slate`): every examined position, top first, enters the user's
        history with its click (preference drift and boredom on clicks, as in
        `step`); unexamined positions leave no trace. Then the next arrival."""
        u = jax.random.uniform(key, (model.arrival_draw_count(self),))

        def show(state, position):
            item, clicked, seen = position
            return model.consume_if(state, params, item, clicked, seen, self), None

        items = state.candidates[slate]
        state, _ = jax.lax.scan(show, state, (items, clicks, examined))
        state = model.arrive(u, state.replace(t=state.t + 1), params, self)
        return self.observe(state, params), state

    def expected_rewards(self, state: RecState, params: RecParams) -> jax.Array:
        """Exact click probabilities of the K candidates, (K,)."""
        return jax.nn.sigmoid(model.click_logits(state, params, self))

    def expected_rewards_in(
        self,
        state: RecState,
        params: RecParams,
        situation: Situation,
        age: jax.Array,
        region: jax.Array,
    ) -> jax.Array:
        """Click probabilities of the same user, history and candidates in another
        context (situation and demographics), (K,). Used to build context-blind
        oracles (average over contexts)."""
        return jax.nn.sigmoid(
            model.click_logits(state, params, self, situation, age, region)
        )

    def sample_situation(self, key: jax.Array, t: jax.Array) -> Situation:
        """A situational context drawn as the env draws it at step t."""
        u = jax.random.uniform(key, (model.arrival_draw_count(self),))
        draws = model.split_draws(u, self)
        t = jnp.asarray(t, jnp.int32)
        return rec_context.sample_situation(
            draws.hour, draws.location, draws.device, t, self
        )

    def consume(
        self, state: RecState, params: RecParams, item: jax.Array, clicked: jax.Array
    ) -> RecState:
        """The arriving user's state after being shown `item` (clicked or not)."""
        return model.consume(state, params, item, clicked, self)

    def observe(self, state: RecState, params: RecParams) -> Observation:
        """The observation of the current arrival."""
        u = state.user
        features = rec_context.encode_context(
            state.situation, params.user_age[u], params.user_region[u], self
        )
        item_id = state.candidates.astype(jnp.float32) / max(self.num_items - 1, 1)
        arms = jnp.concatenate(
            [params.item_features[state.candidates], item_id[:, None]], axis=1
        )
        valid = state.history_valid[u]
        past = params.item_features[state.history_items[u]]
        clicks = state.history_clicks[u].astype(jnp.float32)[:, None]
        columns = [past, clicks]
        if self.history_item_ids:
            ids = state.history_items[u].astype(jnp.float32) / max(
                self.num_items - 1, 1
            )
            columns.append(ids[:, None])
        history = jnp.where(valid[:, None], jnp.concatenate(columns, axis=1), 0.0)
        return Observation(
            context=features,
            arms=arms,
            mask=state.mask,
            history=history,
            history_mask=valid,
        )

    def observation_spec(self) -> dict[str, ArraySpec]:
        K, H, p = self.num_candidates, self.history_length, self.item_dim + 1
        return {
            "context": ArraySpec((self.context_dim,), jnp.float32, -1.0, 1.0),
            "arms": ArraySpec((K, p), jnp.float32, -1.0, 1.0),
            "mask": ArraySpec((K,), jnp.bool_, 0, 1),
            "history": ArraySpec((H, self.history_dim), jnp.float32, -1.0, 1.0),
            "history_mask": ArraySpec((H,), jnp.bool_, 0, 1),
        }


def _names(field: str, value, known: tuple[str, ...]) -> tuple[str, ...]:
    """A non-empty tuple of distinct names from `known`."""
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise BanditConfigError.about(
            field,
            f"must be a list of names from {', '.join(map(repr, known))}; "
            f"got {value!r}",
        )
    names = tuple(value)
    if not names:
        raise BanditConfigError.about(field, f"must not be empty; choose from {known}")
    unknown = [name for name in names if name not in known]
    if unknown:
        raise BanditConfigError(
            f"unknown {field} name(s) {', '.join(map(repr, unknown))}; allowed: "
            f"{', '.join(map(repr, known))}"
        )
    if len(set(names)) != len(names):
        raise BanditConfigError.about(field, f"must not repeat a name, got {names}")
    return names


def _steps(field: str, value) -> tuple[int, ...]:
    """A tuple of step indices >= 0."""
    if not isinstance(value, list | tuple):
        raise BanditConfigError.about(
            field, f"must be a list of step indices >= 0, got {value!r}"
        )
    return tuple(non_negative_int(f"{field}[{i}]", s) for i, s in enumerate(value))


register(
    "ContextualRec-v0",
    RecommendationEnv,
    "Context-aware recommendation: 10k users, 1k items, K=20 candidates, clicks.",
)
register(
    "ContextualRec-ColdStart-v0",
    RecommendationEnv,
    "ContextualRec with no pre-run history and 20% new (cold) users per arrival.",
    warm_start=False,
    new_user_rate=0.2,
)
register(
    "ContextualRec-Drift-v0",
    RecommendationEnv,
    "ContextualRec with rotating tastes, an abrupt shift at step 5000, a weekly "
    "season and 2% new users.",
    drift_rotation=0.02,
    drift_shift_steps=(5000,),
    season_amplitude=0.5,
    new_user_rate=0.02,
)
register(
    "ContextualRec-LargeCatalog-v0",
    RecommendationEnv,
    "ContextualRec with a 100,000-item catalogue.",
    num_items=100_000,
)
register(
    "ContextualRec-Sequential-v0",
    RecommendationEnv,
    "ContextualRec with sequence-dependent users (Markov intent over categories, "
    "complementary pairs), three-way context x taste x item interactions, item ids "
    "in the history, 16 noisier content features and 2,000 users.",
    sequence_strength=1.0,
    interaction_strength=0.5,
    history_item_ids=True,
    num_content_features=16,
    content_noise=0.5,
    num_users=2000,
)
