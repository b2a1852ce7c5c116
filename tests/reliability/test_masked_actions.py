"""A Gymnasium step with an arm the observation's mask forbids is refused.

Before: the shell played it silently (the recommendation envs mask repeated
candidates), with a regret against the best allowed arm that could be negative.
Now the shells are strict by default: the step raises, naming the action and
the allowed ones; `strict=False` keeps the old behaviour and warns once. The
action spaces sample only allowed arms, so random play (and `check_env`) never
hits the error.
"""

from __future__ import annotations

import re
import warnings

import gymnasium
import numpy as np
import pytest

import envs  # noqa: F401  (registers the bandits/ ids)
from bandits import BanditConfigError
from envs.gym_spaces import MaskedActionError

ENV_ID = "bandits/ContextualRec-v0"
SMALL = dict(num_items=40, num_candidates=8, num_users=30, history_length=3)


def _masked_round(env, seeds=range(50)):
    """(observation, a masked-out arm) of the first reset seed whose first round
    masks an arm."""
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        if not obs["mask"].all():
            return obs, int(np.flatnonzero(~obs["mask"])[0])
    raise AssertionError("no round with a masked arm")


def test_a_masked_action_is_refused_by_default():
    env = gymnasium.make(ENV_ID, **SMALL)
    obs, masked = _masked_round(env)
    allowed = np.flatnonzero(obs["mask"]).tolist()
    message = (
        f"action {masked} is masked out by the current observation; "
        f"allowed actions: {allowed}"
    )
    with pytest.raises(MaskedActionError, match=re.escape(message)):
        env.step(masked)
    env.step(allowed[0])  # an allowed arm still plays


def test_with_strict_false_it_is_played_and_warned_about_once():
    env = gymnasium.make(ENV_ID, strict=False, **SMALL)
    obs, masked = _masked_round(env)
    with pytest.warns(UserWarning, match=f"action {masked} is masked out") as caught:
        _, reward, *_ = env.step(masked)
        obs, masked = _masked_round(env)  # a reset: still the same env
        env.step(masked)
    assert len(caught) == 1
    assert not obs["mask"][masked] and np.isfinite(reward)


def test_strict_must_be_a_bool():
    with pytest.raises(BanditConfigError, match="strict must be True or False"):
        gymnasium.make(ENV_ID, strict="yes", **SMALL)


def test_sampled_actions_are_allowed_arms():
    env = gymnasium.make(ENV_ID, **SMALL)
    env.action_space.seed(0)
    obs, _ = _masked_round(env)
    for _ in range(100):
        assert obs["mask"][env.action_space.sample()]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(30):  # random play never hits a masked arm
            obs, *_ = env.step(env.action_space.sample())


def test_the_vector_env_names_the_sub_env():
    vec = gymnasium.make_vec(
        ENV_ID, num_envs=4, vectorization_mode="vector_entry_point", **SMALL
    )
    vec.action_space.seed(0)
    for seed in range(50):
        obs, _ = vec.reset(seed=seed)
        rows = np.flatnonzero(~obs["mask"].all(axis=1))
        if rows.size:
            break
    i = int(rows[0])
    actions = np.array([np.flatnonzero(m)[0] for m in obs["mask"]])
    actions[i] = np.flatnonzero(~obs["mask"][i])[0]
    with pytest.raises(MaskedActionError, match=f"action {actions[i]} of sub-env {i}"):
        vec.step(actions)
    for _ in range(20):
        sample = vec.action_space.sample()
        assert obs["mask"][np.arange(4), sample].all()
    vec.step(vec.action_space.sample())
