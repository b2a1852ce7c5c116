"""Rounds ahead for the Gymnasium shell of the recommendation envs.

A `RecommendationEnv` step mixes parts that ignore the action with parts that
follow it. The key stream, every uniform, and each arrival (user, situation,
candidates, mask, new-user draw) are fixed by the keys alone; only the arriving
user's rows (taste, history, boredom, last visit) remember what was shown and
clicked. So the shell (`envs.gym`) computes `BLOCK` rounds ahead in one compiled
call, each round from the population as it stood at the start of the block, and
steps by indexing NumPy arrays:

* a round whose user has not arrived earlier in the block sees exactly the rows it
  would see stepping one call at a time: its observation, click probabilities
  `mu`, optimal arm and the regret of every arm come from the block;
* the click is `u < mu_a`, the same float32 comparison of the same uniform the
  env's `step` makes (`RecommendationEnv.step`), done on the host;
* a round whose user did arrive earlier in the block (a revisit) follows from that
  user's rows after the last visit (the same `consume`, then the arrival's
  new-user draw). The block computes the first `REVISITS_AHEAD` revisits for
  every arm and click of the previous visit (where that visit was the user's
  first in the block), and the host picks the one that was played; any other
  revisit takes one small compiled call;
* the next block's call first replays the finished block on the whole population
  (the same `consume` with the played items and clicks, the same arrivals), so the
  stream continues from the state one call at a time would have reached.

Arrivals, consumption and click probabilities are the model's own functions
(`envs.recommendation_model`), applied to a one-user view of the population
(`_visitor`: the user's rows, user index 0); every per-user quantity the model
reads is a row of the arriving user, so the view gives the same numbers.
`tests/envs/test_gym.py` checks the shell against `bandits.simulate` on the same
keys, with many revisits and new users.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces

from bandits.records import pseudo_regret
from bandits.types import Observation
from envs import recommendation_model as model
from envs.base import BanditEnv
from envs.recommendation import RecommendationEnv
from envs.recommendation_context import inverse_cdf
from envs.recommendation_model import RecParams, RecState

BLOCK = 256
"""Rounds computed ahead per compiled call."""

REVISITS_AHEAD = 16
"""Revisits per block computed ahead for every (arm, click) of the user's first
visit in the block; the others take a compiled call each."""

OBS_FIELDS = ("context", "arms", "mask", "history", "history_mask")


def supports(env: BanditEnv) -> bool:
    """Whether the shell can step `env` from rounds computed ahead."""
    return isinstance(env, RecommendationEnv)


class _Round(NamedTuple):
    """What the agent sees in one round and what each action would reveal."""

    obs: Observation
    expected_rewards: jax.Array  # (K,)  mu_k
    optimal_action: jax.Array  # () int32  best allowed arm
    regret: jax.Array  # (K,)  regret of each arm


class _Ahead(NamedTuple):
    """`BLOCK` rounds of one stream computed from the population at the block's
    start; row j is the round acted on at the j-th step of the block."""

    views: RecState  # (B, ...) the arriving user's one-user view (rows (B, 1, ...))
    ages: jax.Array  # (B, 1) int32  the user's age band
    regions: jax.Array  # (B, 1) int32  the user's region
    users: jax.Array  # (B,) int32  the arriving users
    rounds: _Round  # (B, ...)
    click_draws: jax.Array  # (B,)  the uniform each click is drawn with
    next_draws: jax.Array  # (B, n)  the uniforms of the next arrival
    revisits: jax.Array  # (R, K, 2, P)  packed revisit rounds (`_revisit_rounds`)


class _Played(NamedTuple):
    """A finished block: what was shown and clicked, to replay on the population
    (`rounds` = 0 at a reset: nothing to replay). NumPy arrays on the host,
    arrays of the compiled program inside it (hence `Any`)."""

    users: Any  # (B,) int32
    items: Any  # (B,) int32  the item shown
    clicks: Any  # (B,) bool
    next_draws: Any  # (B, n)
    rounds: Any  # () int32  rounds played, 0 or B


# ---------------------------------------------------------------------------
# Pure pieces


def _visitor(
    state: RecState, params: RecParams, user: jax.Array
) -> tuple[RecState, RecParams]:
    """The population seen by `user` alone: its rows, as user 0 of one."""

    def row(x: jax.Array) -> jax.Array:
        return x[user][None]

    view = state.replace(
        user=jnp.zeros((), jnp.int32),
        preference=row(state.preference),
        history_items=row(state.history_items),
        history_clicks=row(state.history_clicks),
        history_valid=row(state.history_valid),
        boredom=row(state.boredom),
        last_visit=row(state.last_visit),
    )
    return view, params.replace(
        user_age=row(params.user_age), user_region=row(params.user_region)
    )


def _arrival(
    env: RecommendationEnv,
    state: RecState,
    params: RecParams,
    u: jax.Array,
    t: jax.Array,
) -> tuple[jax.Array, RecState, RecParams]:
    """`model.arrive` at step t from uniforms `u`, on the drawn user's view of
    `state`: (user, view, view params)."""
    draws = model.split_draws(u, env)
    user = inverse_cdf(params.user_cdf, draws.user)
    view, view_params = _visitor(state, params, user)
    view = model.seat(draws, view.replace(t=t), params, env)
    return user, view, view_params


def _round(env: RecommendationEnv, view: RecState, view_params: RecParams) -> _Round:
    """The observation, click probabilities and per-arm regret of a view."""
    obs = env.observe(view, view_params)
    expected = env.expected_rewards(view, view_params)
    arms = jnp.arange(env.num_arms, dtype=jnp.int32)
    best, _, regret = pseudo_regret(expected, view.mask, arms)
    return _Round(obs, expected, best, regret)


def _replay(
    env: RecommendationEnv, state: RecState, params: RecParams, played: _Played
) -> RecState:
    """The population after a finished block, as `env.step` leaves it: each step
    consumes the shown item (clicked or not), then the next user arrives. With
    `played.rounds` = 0, `state` unchanged."""
    size = played.items.shape[0]
    start = state.t

    def one(j, state):
        state = state.replace(t=start + j, user=played.users[j])
        state = model.consume(state, params, played.items[j], played.clicks[j], env)
        if env.new_user_rate > 0:
            # The next arrival's new-user draw; the block's last arrival is below.
            draws = model.split_draws(played.next_draws[j], env)
            last = j + 1 == size
            draws = draws._replace(new_user=jnp.where(last, 1.0, draws.new_user))
            nxt = played.users[jnp.minimum(j + 1, size - 1)]
            state = model.maybe_new_user(draws, state.replace(user=nxt), params, env)
        return state

    def last_arrival(state):
        last_draws = played.next_draws[size - 1]
        return model.arrive(last_draws, state.replace(t=start + size), params, env)

    state = jax.lax.fori_loop(0, played.rounds, one, state)
    return jax.lax.cond(played.rounds > 0, last_arrival, lambda state: state, state)


@functools.partial(jax.jit, static_argnames=("env", "size"))
def _ahead(key, state, params, played, *, env, size):
    """Replays the finished block (`played`; none at a reset), then computes the
    next `size` rounds; returns (key after them, state at their start, rounds).
    One program for both, so an env configuration compiles it once."""
    state = _replay(env, state, params, played)
    n = 1 + model.arrival_draw_count(env)

    def draw(key, _):
        key_next, key_step = jax.random.split(key)
        return key_next, jax.random.uniform(key_step, (n,))

    key_end, u = jax.lax.scan(draw, key, None, length=size)
    steps = state.t + jnp.arange(1, size, dtype=jnp.int32)
    users, views, view_params = jax.vmap(
        lambda u, t: _arrival(env, state, params, u, t)
    )(u[:-1, 1:], steps)
    first, first_params = _visitor(state, params, state.user)

    def stack(one, many):
        return jnp.concatenate([one[None], many])

    views = jax.tree.map(stack, first, views)
    ages = stack(first_params.user_age, view_params.user_age)
    regions = stack(first_params.user_region, view_params.user_region)
    rounds = jax.vmap(
        lambda view, age, region: _round(
            env, view, params.replace(user_age=age, user_region=region)
        )
    )(views, ages, regions)
    users = stack(state.user, users)
    revisits = _revisit_rounds(env, views, ages, regions, u[:, 1:], params, users)
    ahead = _Ahead(views, ages, regions, users, rounds, u[:, 0], u[:, 1:], revisits)
    return key_end, state, ahead


REVISED_FIELDS = ("history", "history_mask")
"""The observation fields a revisit changes (the arrival's own are the block's)."""


def _pack(rounds: _Round, fields: tuple[str, ...] = OBS_FIELDS) -> jax.Array:
    """One float32 vector of a round's leaves (bools and small ints are exact):
    the observation `fields`, then the expected rewards, optimal arm and regret."""
    leaves = [getattr(rounds.obs, name) for name in fields]
    leaves += [rounds.expected_rewards, rounds.optimal_action, rounds.regret]
    return jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in leaves])


def _pack_revised(rounds: _Round) -> jax.Array:
    """`_pack` of what a revisit changes."""
    return _pack(rounds, REVISED_FIELDS)


def _revisit_view(
    env: RecommendationEnv,
    views: RecState,
    next_draws: jax.Array,
    params: RecParams,
    last: jax.Array,
    now: jax.Array,
    item: jax.Array,
    clicked: jax.Array,
) -> RecState:
    """The view at round `now` of a user last seen at round `last` of the same
    block: its rows after that visit's `consume`, then arrival `now`'s new-user
    draw."""
    before = jax.tree.map(lambda x: x[last], views)
    after = model.consume(before, params, item, clicked, env)
    view = jax.tree.map(lambda x: x[now], views).replace(
        preference=after.preference,
        history_items=after.history_items,
        history_clicks=after.history_clicks,
        history_valid=after.history_valid,
        boredom=after.boredom,
        last_visit=after.last_visit,
    )
    if env.new_user_rate > 0:
        draws = model.split_draws(next_draws[now - 1], env)
        view = model.maybe_new_user(draws, view, params, env)
    return view


@functools.partial(jax.jit, static_argnames=("env",), donate_argnames=("views",))
def _revisit(
    views, ages, regions, next_draws, params, last, now, item, clicked, *, env
):
    """`_revisit_view` in one call: returns the views with row `now` replaced
    and the packed round."""
    view = _revisit_view(env, views, next_draws, params, last, now, item, clicked)
    view_params = params.replace(user_age=ages[now], user_region=regions[now])
    views = jax.tree.map(lambda rows, row: rows.at[now].set(row), views, view)
    return views, _pack(_round(env, view, view_params))


def _revisit_rounds(
    env: RecommendationEnv,
    views: RecState,
    ages: jax.Array,
    regions: jax.Array,
    next_draws: jax.Array,
    params: RecParams,
    users: jax.Array,
) -> jax.Array:
    """The first `REVISITS_AHEAD` revisits of a block (rounds whose user came
    earlier in it, in order), each for every arm and click of the user's previous
    visit, packed by `_pack_revised`: (R, K, 2, P). Valid where that previous
    visit was the user's first in the block (its view is the block's)."""
    rounds = jnp.arange(users.shape[0])
    earlier = (users[:, None] == users[None, :]) & (rounds[None, :] < rounds[:, None])
    last = jnp.max(jnp.where(earlier, rounds[None, :], -1), axis=1)
    (revisits,) = jnp.nonzero(last >= 0, size=REVISITS_AHEAD, fill_value=1)
    arms = jnp.arange(env.num_arms)
    clicks = jnp.array([False, True])

    def one(now, arm, clicked):
        before = jnp.maximum(last[now], 0)
        item = views.candidates[before, arm]
        view = _revisit_view(env, views, next_draws, params, before, now, item, clicked)
        view_params = params.replace(user_age=ages[now], user_region=regions[now])
        return _pack_revised(_round(env, view, view_params))

    per_click = jax.vmap(one, in_axes=(None, None, 0))
    per_arm = jax.vmap(per_click, in_axes=(None, 0, None))
    return jax.vmap(per_arm, in_axes=(0, None, None))(revisits, arms, clicks)


# ---------------------------------------------------------------------------
# The host side


class RecStepper:
    """Steps one recommendation stream from blocks computed ahead (see the module
    docstring); `envs.gym.BanditGymEnv` holds one per reset.

    Args:
      env: the recommendation env.
      params: its problem instance.
      key: the key of the next step (the shell's stream key).
      state: the env state of the round about to be acted on.
      space: the shell's observation space (keys and dtypes of observations).
    """

    def __init__(
        self,
        env: RecommendationEnv,
        params: RecParams,
        key: jax.Array,
        state: RecState,
        space: spaces.Dict,
    ):
        self.env, self.params, self.space = env, params, space
        self._key, self._state = key, state
        self._ahead: _Ahead | None = None
        self._items = np.zeros(BLOCK, np.int32)
        self._clicks = np.zeros(BLOCK, bool)
        self._arms = np.zeros(BLOCK, np.int64)  # the arm played in each round
        self._next_block()

    def observe(self) -> dict[str, np.ndarray]:
        """The observation of the round about to be acted on (fresh arrays)."""
        return {name: rows[self._row].copy() for name, rows in self._obs.items()}

    def step(self, action: int) -> tuple[float, dict[str, Any]]:
        """Plays `action` on the current round: (reward, info)."""
        row = self._row
        expected = self._expected[row]
        clicked = bool(self._click_draws[row] < expected[action])
        self._items[row] = self._candidates[row, action]
        self._clicks[row] = clicked
        self._arms[row] = action
        info = {
            "expected_rewards": expected.copy(),
            "optimal_action": int(self._optimal[row]),
            "regret": float(self._regret[row, action]),
        }
        if row + 1 == BLOCK:
            self._next_block()
        else:
            self._enter(row + 1)
        return float(np.float32(clicked)), info

    def _next_block(self) -> None:
        if self._ahead is None:  # a reset: nothing to replay
            n = model.arrival_draw_count(self.env)
            played = _Played(
                np.zeros(BLOCK, np.int32),
                self._items,
                self._clicks,
                np.zeros((BLOCK, n), np.float32),
                np.int32(0),
            )
        else:
            played = _Played(
                self._ahead.users,
                self._items,
                self._clicks,
                self._ahead.next_draws,
                np.int32(BLOCK),
            )
        self._key, self._state, ahead = _ahead(
            self._key, self._state, self.params, played, env=self.env, size=BLOCK
        )
        self._ahead = ahead
        rounds, users, click_draws, candidates, revisits = jax.device_get(
            (
                ahead.rounds,
                ahead.users,
                ahead.click_draws,
                ahead.views.candidates,
                ahead.revisits,
            )
        )
        # Writable copies: a revisit overwrites its row.
        self._obs = {
            name: np.array(getattr(rounds.obs, name), dtype=box.dtype)
            for name, box in self.space.spaces.items()
        }
        self._expected = np.array(rounds.expected_rewards)
        self._optimal = np.array(rounds.optimal_action)
        self._regret = np.array(rounds.regret)
        self._click_draws = np.asarray(click_draws)
        self._candidates = np.asarray(candidates)
        self._last_seen = _last_seen(np.asarray(users))
        self._revisits = np.asarray(revisits)
        ahead_rows = np.flatnonzero(self._last_seen >= 0)[:REVISITS_AHEAD]
        self._revisit_slot = {row: slot for slot, row in enumerate(ahead_rows.tolist())}
        # Rows whose device view is stale (served from `revisits`).
        self._stale = np.zeros(BLOCK, bool)
        self._enter(0)

    def _enter(self, row: int) -> None:
        """Makes `row` the current round, taking a revisit from the rounds
        computed ahead, else recomputing it in one call."""
        self._row = row
        last = int(self._last_seen[row])
        if last < 0:
            return
        slot = self._revisit_slot.get(row)
        if slot is not None and self._last_seen[last] < 0:
            click = int(self._clicks[last])
            packed = self._revisits[slot, self._arms[last], click]
            self._unpack(row, packed, REVISED_FIELDS)
            self._stale[row] = True
            return
        self._unpack(row, self._recompute(row))

    def _recompute(self, row: int) -> np.ndarray:
        """Recomputes revisit `row` on the device (after its user's previous
        visit, if that one's device view is stale): its packed round."""
        last = int(self._last_seen[row])
        if self._stale[last]:
            self._recompute(last)
        ahead = self._ahead
        assert ahead is not None
        views, packed = _revisit(
            ahead.views,
            ahead.ages,
            ahead.regions,
            ahead.next_draws,
            self.params,
            np.int32(last),
            np.int32(row),
            self._items[last],
            self._clicks[last],
            env=self.env,
        )
        self._ahead = ahead._replace(views=views)
        self._stale[row] = False
        return np.asarray(packed)

    def _unpack(
        self, row: int, packed: np.ndarray, fields: tuple[str, ...] = OBS_FIELDS
    ) -> None:
        """Writes a packed round (`_pack` of `fields`) into row `row` of the host
        arrays."""
        targets = [self._obs[name] for name in fields]
        targets += [self._expected, self._optimal, self._regret]
        start = 0
        for target in targets:
            shape = target.shape[1:]
            size = int(np.prod(shape, dtype=np.int64))
            target[row] = packed[start : start + size].reshape(shape)
            start += size


def _last_seen(users: np.ndarray) -> np.ndarray:
    """For each round, the previous round of the same user in the block (-1 if
    none)."""
    last: dict[int, int] = {}
    out = np.full(users.shape, -1, dtype=np.int64)
    for j, user in enumerate(users.tolist()):
        out[j] = last.get(user, -1)
        last[user] = j
    return out
