"""The generative model behind `ContextualRec-v0`: catalogue, users, context, clicks.

Pure functions over two pytrees: `RecParams` (one problem instance: the catalogue,
the user population and the context-effect tables, shared by every seed) and
`RecState` (one stream: the clock, the arriving user, the candidates and the
per-user state that evolves: preferences, history and boredom). The environment
class in `envs.recommendation` composes them, and the arrivals' context (clock,
situation, encoding) lives in `envs.recommendation_context`.
`docs/recommendation_env.md` writes the model out with equations. Symbols follow
that page:

    z_{u,i,t} = beta_0 + beta_pref <R(theta_t) p_u, v_i> + beta_pop pi_i
              + s * g(c_t, u, i) - beta_bored B_{u, cat(i)}(t) + S_{cat(i)}(t)
              + s_seq f_seq(u, i) + s_int f_int(c_t, u, i)
    P(click) = sigmoid(z_{u,i,t})

with g the context effect (category x time-of-day, category x weekend, category x
device, category x location, category x age band, and region-specific item
popularity), s = `context_strength`, R(theta_t) the population drift rotation,
B the boredom state and S the weekly season; the sequence and interaction terms
f_seq, f_int live in `envs.recommendation_sequence`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from envs.base import PyTreeData, pytree_dataclass
from envs.recommendation_context import (
    DAYS_PER_WEEK,
    Situation,
    clock,
    inverse_cdf,
    sample_situation,
)
from envs.recommendation_sequence import (
    SequenceParams,
    interaction_effect,
    sample_sequence_params,
    sequence_effect,
)


@pytree_dataclass
class RecParams(PyTreeData):
    """One problem instance (shared by all seeds of a run)."""

    item_latent: jax.Array  # (N, L)  unit latent vectors v_i (hidden)
    item_category: jax.Array  # (N,) int32  cat(i)
    item_features: jax.Array  # (N, p_item)  observed [onehot(cat) | content | pop]
    item_popularity: jax.Array  # (N,)  log popularity rescaled to [0, 1], pi_i
    item_cdf: jax.Array  # (N,)  CDF of the popularity distribution (candidates)
    user_preference: jax.Array  # (U, L)  unit preference vectors p_u at t=0
    user_age: jax.Array  # (U,) int32  age band
    user_region: jax.Array  # (U,) int32  region
    user_cdf: jax.Array  # (U,)  CDF of the arrival distribution (activity rates)
    taste_mean: jax.Array  # (L,)  population mean taste m (new users draw from it)
    history_items: jax.Array  # (U, H) int32  pre-run history, most recent first
    history_clicks: jax.Array  # (U, H) bool
    history_valid: jax.Array  # (U, H) bool
    effect_time: jax.Array  # (C, 2)  category x (sin, cos) time of day
    effect_weekend: jax.Array  # (C,)  category x weekend
    effect_device: jax.Array  # (C, n_dev)  category x device
    effect_location: jax.Array  # (C, n_loc)  category x location
    effect_age: jax.Array  # (C, A)  category x age band
    effect_region_item: jax.Array  # (R, N)  region-specific item popularity
    season_phase: jax.Array  # (C,)  phase of the weekly season per category
    sequence: SequenceParams  # tables of f_seq and f_int


@pytree_dataclass
class RecState(PyTreeData):
    """One stream: the clock, the current arrival and the evolving user state."""

    t: jax.Array  # () int32  step counter (the clock)
    user: jax.Array  # () int32  the arriving user u_t
    situation: Situation  # the arrival's situational context
    candidates: jax.Array  # (K,) int32  candidate item ids
    mask: jax.Array  # (K,) bool  False for duplicate candidates
    preference: jax.Array  # (U, L)  p_u in the un-rotated frame
    history_items: jax.Array  # (U, H) int32  most recent first
    history_clicks: jax.Array  # (U, H) bool
    history_valid: jax.Array  # (U, H) bool
    boredom: jax.Array  # (U, C)  B_u at the time of the user's last visit
    last_visit: jax.Array  # (U,) int32  step of the user's last interaction


# ---------------------------------------------------------------------------
# Problem instances


def unit_rows(x: jax.Array) -> jax.Array:
    """Rows of `x` scaled to unit Euclidean norm."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def rescale01(x: jax.Array) -> jax.Array:
    """(x - min) / (max - min), and zeros where x is constant."""
    span = jnp.max(x) - jnp.min(x)
    return jnp.where(span > 0, (x - jnp.min(x)) / jnp.where(span > 0, span, 1.0), 0.0)


def cdf_of(weights: jax.Array) -> jax.Array:
    """Normalised cumulative sum of non-negative weights (last entry 1)."""
    cdf = jnp.cumsum(weights) / jnp.sum(weights)
    return cdf.at[-1].set(1.0)


class ArrivalDraws(NamedTuple):
    """The uniforms U(0, 1) behind one arrival (one PRNG call per step)."""

    user: jax.Array  # ()  arriving user
    new_user: jax.Array  # ()  is it a new user
    hour: jax.Array  # ()  jitter within the clock slot
    location: jax.Array  # ()
    device: jax.Array  # ()
    popular: jax.Array  # (n_pop,)  candidates drawn by popularity
    uniform: jax.Array  # (K - n_pop,)  candidates drawn uniformly
    taste: jax.Array  # (L,)  a new user's taste (through the normal quantile)


def num_popular(cfg) -> int:
    """Candidates drawn by popularity, round(popular_fraction * K)."""
    return round(cfg.popular_fraction * cfg.num_candidates)


def arrival_draw_count(cfg) -> int:
    return 5 + cfg.num_candidates + cfg.latent_dim


def split_draws(u: jax.Array, cfg) -> ArrivalDraws:
    """Names the entries of a (arrival_draw_count,) vector of uniforms."""
    n_pop, K = num_popular(cfg), cfg.num_candidates
    return ArrivalDraws(
        user=u[0],
        new_user=u[1],
        hour=u[2],
        location=u[3],
        device=u[4],
        popular=u[5 : 5 + n_pop],
        uniform=u[5 + n_pop : 5 + K],
        taste=u[5 + K :],
    )


def sample_instance(key: jax.Array, cfg) -> RecParams:
    """Draws the catalogue, the population and the effect tables.

    All normals come from one PRNG call and all uniforms from another (named
    blocks of two flat vectors), which keeps the compiled program small.

    Args:
      key: a PRNG key.
      cfg: the static `RecommendationEnv` configuration.

    Returns:
      A `RecParams` pytree.
    """
    N, U, L, C = cfg.num_items, cfg.num_users, cfg.latent_dim, cfg.num_categories
    H, q, A, R = (
        cfg.history_length,
        cfg.num_content_features,
        cfg.num_age_bands,
        cfg.num_regions,
    )
    n_dev, n_loc = len(cfg.devices), len(cfg.locations)
    key_normal, key_uniform = jax.random.split(key)
    z = _blocks(
        jax.random.normal,
        key_normal,
        centroids=(C, L),
        item_noise=(N, L),
        projection=(q, L),
        content_noise=(N, q),
        taste_mean=(L,),
        taste=(U, L),
        activity=(U,),
        time=(C, 2),
        weekend=(C,),
        device=(C, n_dev),
        location=(C, n_loc),
        age=(C, A),
        region_item=(R, N),
    )
    u = _blocks(
        jax.random.uniform,
        key_uniform,
        category=(N,),
        rank=(N,),
        age=(U,),
        region=(U,),
        season=(C,),
        history_count=(U, 1),
        history_items=(U, H),
        history_clicks=(U, H),
    )

    # Catalogue: categories, latent vectors clustered by category, Zipf popularity.
    category = _uniform_int(u["category"], C)
    latent = unit_rows(z["centroids"][category] + cfg.item_spread * z["item_noise"])
    rank = jnp.argsort(u["rank"])  # a uniformly random permutation of 0..N-1
    log_pop = -cfg.popularity_exponent * jnp.log1p(rank.astype(jnp.float32))
    content = jnp.tanh(
        latent @ z["projection"].T + cfg.content_noise * z["content_noise"]
    )
    popularity = rescale01(log_pop)
    features = jnp.concatenate(
        [jax.nn.one_hot(category, C), content, popularity[:, None]], axis=1
    )

    # Users: tastes around a population mean, demographics, long-tailed activity.
    taste_mean = cfg.taste_mean_scale * z["taste_mean"]
    activity = jnp.exp(cfg.activity_sigma * z["activity"])

    # Context effects, each entry N(0, context_scale^2); regional item popularity.
    sigma = cfg.context_scale
    params = RecParams(
        item_latent=latent,
        item_category=category,
        item_features=features.astype(jnp.float32),
        item_popularity=popularity,
        item_cdf=cdf_of(jnp.exp(log_pop - jnp.max(log_pop))),
        user_preference=unit_rows(taste_mean + z["taste"]),
        user_age=_uniform_int(u["age"], A),
        user_region=_uniform_int(u["region"], R),
        user_cdf=cdf_of(activity),
        taste_mean=taste_mean,
        history_items=jnp.zeros((U, H), jnp.int32),
        history_clicks=jnp.zeros((U, H), bool),
        history_valid=jnp.zeros((U, H), bool),
        effect_time=sigma * z["time"],
        effect_weekend=sigma * z["weekend"],
        effect_device=sigma * z["device"],
        effect_location=sigma * z["location"],
        effect_age=sigma * z["age"],
        effect_region_item=cfg.regional_scale * z["region_item"],
        season_phase=2 * math.pi * u["season"],
        sequence=sample_sequence_params(jax.random.fold_in(key, 1), rank, cfg),
    )
    if cfg.warm_start:
        params = _with_past_history(u, params, cfg)
    return params


def _blocks(sampler, key: jax.Array, **shapes: tuple[int, ...]) -> dict[str, jax.Array]:
    """Named blocks of one flat draw `sampler(key, (total,))`."""
    sizes = [math.prod(shape) for shape in shapes.values()]
    flat = sampler(key, (sum(sizes),))
    out, start = {}, 0
    for (name, shape), size in zip(shapes.items(), sizes, strict=True):
        out[name] = flat[start : start + size].reshape(shape)
        start += size
    return out


def _uniform_int(u: jax.Array, n: int) -> jax.Array:
    """floor(u n), a uniform integer in {0, ..., n-1} from u ~ U(0, 1)."""
    return jnp.minimum(jnp.floor(u * n), n - 1).astype(jnp.int32)


def _with_past_history(u: dict[str, jax.Array], params: RecParams, cfg) -> RecParams:
    """Pre-run history: n_u ~ U{0..H} past items per user, clicked context-free.

    Past items come from the popularity distribution and were clicked with
    probability sigmoid(beta_0 + beta_pref <p_u, v_i> + beta_pop pi_i).
    """
    H = cfg.history_length
    count = _uniform_int(u["history_count"], H + 1)
    items = inverse_cdf(params.item_cdf, u["history_items"])
    affinity = jnp.einsum(
        "uhl,ul->uh", params.item_latent[items], params.user_preference
    )
    logit = (
        cfg.base_logit
        + cfg.preference_weight * affinity
        + cfg.popularity_weight * params.item_popularity[items]
    )
    return params.replace(
        history_items=items,
        history_clicks=u["history_clicks"] < jax.nn.sigmoid(logit),
        history_valid=jnp.arange(H)[None, :] < count,
    )


# ---------------------------------------------------------------------------
# Utility and click probabilities


def rotate(x: jax.Array, angle: jax.Array) -> jax.Array:
    """R(angle) x: the same rotation in each plane (x_0, x_1), (x_2, x_3), ...

    An odd last coordinate is left unchanged.
    """
    n = x.shape[-1] // 2 * 2
    pairs = x[..., :n].reshape(*x.shape[:-1], n // 2, 2)
    c, s = jnp.cos(angle), jnp.sin(angle)
    turned = jnp.stack(
        [c * pairs[..., 0] - s * pairs[..., 1], s * pairs[..., 0] + c * pairs[..., 1]],
        axis=-1,
    ).reshape(*x.shape[:-1], n)
    return jnp.concatenate([turned, x[..., n:]], axis=-1)


def drift_angle(t: jax.Array, cfg) -> jax.Array:
    """theta_t = omega * t / steps_per_day + phi * #{shift steps <= t}."""
    angle = cfg.drift_rotation * t.astype(jnp.float32) / cfg.steps_per_day
    if cfg.drift_shift_steps:
        shifts = jnp.sum(t >= jnp.asarray(cfg.drift_shift_steps, jnp.int32))
        angle = angle + cfg.drift_shift_angle * shifts
    return angle


def has_rotation(cfg) -> bool:
    return cfg.drift_rotation != 0 or bool(cfg.drift_shift_steps)


def effective_preference(state: RecState, user: jax.Array, cfg) -> jax.Array:
    """R(theta_t) p_u, (L,)."""
    p = state.preference[user]
    return rotate(p, drift_angle(state.t, cfg)) if has_rotation(cfg) else p


def boredom_now(state: RecState, user: jax.Array, cfg) -> jax.Array:
    """B_u(t) = B_u(t_last) * 2^{-(t - t_last) / half_life}, (C,)."""
    half_life = cfg.boredom_half_life_days * cfg.steps_per_day
    elapsed = (state.t - state.last_visit[user]).astype(jnp.float32)
    return state.boredom[user] * jnp.exp2(-elapsed / half_life)


def context_effect(
    params: RecParams,
    situation: Situation,
    age: jax.Array,
    region: jax.Array,
    items: jax.Array,
) -> jax.Array:
    """g(c, u, i) for each item in `items` (K,), before `context_strength`."""
    cat = params.item_category[items]
    angle = 2.0 * jnp.pi * situation.hour / 24.0
    return (
        params.effect_time[cat] @ jnp.stack([jnp.sin(angle), jnp.cos(angle)])
        + params.effect_weekend[cat] * situation.weekend.astype(jnp.float32)
        + params.effect_device[cat, situation.device]
        + params.effect_location[cat, situation.location]
        + params.effect_age[cat, age]
        + params.effect_region_item[region, items]
    )


def click_logits(
    state: RecState,
    params: RecParams,
    cfg,
    situation: Situation | None = None,
    age: jax.Array | None = None,
    region: jax.Array | None = None,
) -> jax.Array:
    """Utility z of each candidate for the current arrival, (K,).

    `situation`, `age` and `region` default to the arrival's own; passing others
    evaluates the same user, history and candidates in a different context.
    """
    u, items = state.user, state.candidates
    situation = state.situation if situation is None else situation
    age = params.user_age[u] if age is None else age
    region = params.user_region[u] if region is None else region
    cat = params.item_category[items]
    taste = effective_preference(state, u, cfg)
    affinity = params.item_latent[items] @ taste
    z = (
        cfg.base_logit
        + cfg.preference_weight * affinity
        + cfg.popularity_weight * params.item_popularity[items]
        - cfg.boredom_weight * boredom_now(state, u, cfg)[cat]
    )
    if cfg.context_strength != 0:
        z = z + cfg.context_strength * context_effect(
            params, situation, age, region, items
        )
    if cfg.season_amplitude != 0:
        day, _ = clock(state.t, cfg.steps_per_day)
        phase = 2.0 * jnp.pi * day / DAYS_PER_WEEK + params.season_phase[cat]
        z = z + cfg.season_amplitude * jnp.sin(phase)
    if cfg.sequence_strength != 0:
        clicked = state.history_clicks[u] & state.history_valid[u]
        z = z + cfg.sequence_strength * sequence_effect(
            params.sequence,
            params.item_category,
            state.history_items[u],
            clicked,
            items,
        )
    if cfg.interaction_strength != 0:
        z = z + cfg.interaction_strength * interaction_effect(
            params.sequence,
            params.item_category,
            params.item_latent,
            situation,
            taste,
            items,
            cfg,
        )
    return z


# ---------------------------------------------------------------------------
# Transitions


def consume(
    state: RecState, params: RecParams, item: jax.Array, clicked: jax.Array, cfg
) -> RecState:
    """Records that the arriving user was shown `item` and (maybe) clicked it.

    The interaction enters the user's history (most recent first). On a click the
    preference moves toward the item, p_u <- (1 - eta) p_u + eta R(-theta_t) v_i,
    and the item's category gains one unit of boredom, which then halves every
    `boredom_half_life_days`.
    """
    return _set_user_rows(state, _consumed_rows(state, params, item, clicked, cfg))


def consume_if(
    state: RecState,
    params: RecParams,
    item: jax.Array,
    clicked: jax.Array,
    shown: jax.Array,
    cfg,
) -> RecState:
    """`consume` where `shown` is True, else the state unchanged (one user's rows
    are selected, so the cost stays that of `consume`): a slate position the
    user did not examine leaves no trace."""
    u = state.user
    new = _consumed_rows(state, params, item, clicked, cfg)
    old = _UserRows(
        preference=state.preference[u],
        history_items=state.history_items[u],
        history_clicks=state.history_clicks[u],
        history_valid=state.history_valid[u],
        boredom=state.boredom[u],
        last_visit=state.last_visit[u],
    )
    shown = jnp.asarray(shown, bool)
    rows = jax.tree.map(lambda n, o: jnp.where(shown, n, o), new, old)
    return _set_user_rows(state, rows)


class _UserRows(NamedTuple):
    """The arriving user's rows of the per-user state."""

    preference: jax.Array  # (L,)
    history_items: jax.Array  # (H,)
    history_clicks: jax.Array  # (H,)
    history_valid: jax.Array  # (H,)
    boredom: jax.Array  # (C,)
    last_visit: jax.Array  # ()


def _consumed_rows(
    state: RecState, params: RecParams, item: jax.Array, clicked: jax.Array, cfg
) -> _UserRows:
    """The arriving user's rows after being shown `item` (see `consume`)."""
    u = state.user
    clicked = jnp.asarray(clicked, bool)
    v = params.item_latent[item]
    if has_rotation(cfg):
        v = rotate(v, -drift_angle(state.t, cfg))
    p = state.preference[u]
    p_new = jnp.where(
        clicked, (1.0 - cfg.interest_drift) * p + cfg.interest_drift * v, p
    )
    bump = jax.nn.one_hot(params.item_category[item], cfg.num_categories)
    boredom = boredom_now(state, u, cfg) + clicked.astype(jnp.float32) * bump
    return _UserRows(
        preference=p_new,
        history_items=_push(state.history_items[u], item),
        history_clicks=_push(state.history_clicks[u], clicked),
        history_valid=_push(state.history_valid[u], jnp.asarray(True)),
        boredom=boredom,
        last_visit=state.t,
    )


def _set_user_rows(state: RecState, rows: _UserRows) -> RecState:
    u = state.user
    return state.replace(
        preference=state.preference.at[u].set(rows.preference),
        history_items=state.history_items.at[u].set(rows.history_items),
        history_clicks=state.history_clicks.at[u].set(rows.history_clicks),
        history_valid=state.history_valid.at[u].set(rows.history_valid),
        boredom=state.boredom.at[u].set(rows.boredom),
        last_visit=state.last_visit.at[u].set(rows.last_visit),
    )


def _push(row: jax.Array, value: jax.Array) -> jax.Array:
    """Prepends `value` to a fixed-length row, dropping the oldest entry."""
    return jnp.concatenate([jnp.asarray(value, row.dtype)[None], row[:-1]])


def arrive(u: jax.Array, state: RecState, params: RecParams, cfg) -> RecState:
    """The next arrival at step `state.t` from uniforms `u` (see `split_draws`).

    The user is drawn by activity rate. With probability `new_user_rate` the
    arrival is a new user who takes over the slot: fresh preference drawn around
    the population mean, empty history, no boredom.
    """
    draws = split_draws(u, cfg)
    state = state.replace(user=inverse_cdf(params.user_cdf, draws.user))
    return seat(draws, state, params, cfg)


def seat(draws: ArrivalDraws, state: RecState, params: RecParams, cfg) -> RecState:
    """The rest of an arrival once `state.user` is drawn: the new-user draw (if
    `new_user_rate` > 0), the candidates and the situation at step `state.t`.

    Only the arriving user's rows are read or written, so `state` may also be a
    one-user view of the population (the Gymnasium shell computes arrivals ahead
    that way, `envs.recommendation_gym`).
    """
    if cfg.new_user_rate > 0:
        state = maybe_new_user(draws, state, params, cfg)
    candidates, mask = sample_candidates(draws, params, cfg)
    return state.replace(
        situation=sample_situation(
            draws.hour, draws.location, draws.device, state.t, cfg
        ),
        candidates=candidates,
        mask=mask,
    )


def maybe_new_user(draws: ArrivalDraws, state: RecState, params: RecParams, cfg):
    """With probability nu, resets slot `state.user` to a new, cold user.

    The fresh taste normalize(m + eps) is stored in the un-rotated frame like
    everyone's, so its effective taste R(theta_t) p_u is centred on the drifted
    population mean R(theta_t) m.
    """
    u = state.user
    is_new = draws.new_user < cfg.new_user_rate
    normal = jax.scipy.special.ndtri(jnp.clip(draws.taste, 1e-7, 1.0 - 1e-7))
    fresh = unit_rows(params.taste_mean + normal)
    return state.replace(
        preference=state.preference.at[u].set(
            jnp.where(is_new, fresh, state.preference[u])
        ),
        history_valid=state.history_valid.at[u].set(state.history_valid[u] & ~is_new),
        boredom=state.boredom.at[u].set(jnp.where(is_new, 0.0, state.boredom[u])),
    )


def sample_candidates(draws: ArrivalDraws, params: RecParams, cfg):
    """K candidates: round(f K) by popularity, the rest uniform; duplicates masked.

    Returns the (K,) item ids and a (K,) mask that is False for every repeat of
    an item already listed earlier (the first copy stays allowed).
    """
    K, N = cfg.num_candidates, cfg.num_items
    popular = inverse_cdf(params.item_cdf, draws.popular)
    uniform = jnp.minimum(jnp.floor(draws.uniform * N), N - 1).astype(jnp.int32)
    items = jnp.concatenate([popular, uniform])
    earlier = jnp.tril(jnp.ones((K, K), bool), k=-1)
    repeated = jnp.any((items[:, None] == items[None, :]) & earlier, axis=1)
    return items, ~repeated


def initial_state(params: RecParams, cfg) -> RecState:
    """The state before the first arrival (t = 0)."""
    U, K = cfg.num_users, cfg.num_candidates
    zero = jnp.asarray(0, jnp.int32)
    return RecState(
        t=zero,
        user=zero,
        situation=Situation(
            hour=jnp.asarray(0.0, jnp.float32),
            weekend=jnp.asarray(False),
            device=zero,
            location=zero,
        ),
        candidates=jnp.zeros((K,), jnp.int32),
        mask=jnp.ones((K,), bool),
        preference=params.user_preference,
        history_items=params.history_items,
        history_clicks=params.history_clicks,
        history_valid=params.history_valid,
        boredom=jnp.zeros((U, cfg.num_categories), jnp.float32),
        last_visit=jnp.zeros((U,), jnp.int32),
    )
