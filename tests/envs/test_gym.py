"""Contracts of the Gymnasium shells (`envs.gym`).

`check_env` and the per-step info checks are parametrized over `envs.registered()`
at collection time, so an env added by a new module is covered as soon as
`envs/__init__.py` imports it. Every env is built with its registered defaults.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnasium.utils import seeding
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

import bandits
import envs
from bandits.types import Agent, Observation
from bandits.validation import BanditConfigError
from envs.gym import (
    INFO_KEYS,
    BanditGymEnv,
    gym_id,
    register_gym_envs,
)
from envs.gym_vector import BanditVectorEnv

ENV_IDS = list(envs.registered())
# Envs whose action is one arm (slate envs take L items; tests/envs/test_slate.py).
SINGLE_ENV_IDS = [
    i for i in ENV_IDS if getattr(envs.make_env(i), "slate_size", None) is None
]
NUM_ENVS = 4


def _make(env_id: str, **kwargs) -> BanditGymEnv:
    return gymnasium.make(gym_id(env_id), **kwargs).unwrapped


def _first_allowed(obs) -> int:
    return int(np.flatnonzero(obs["mask"])[0])


def _first_action(env, obs):
    """The first allowed arm, or for a slate env the first L allowed items."""
    size = getattr(env.bandit_env, "slate_size", None)
    if size is None:
        return _first_allowed(obs)
    return np.flatnonzero(obs["mask"])[:size]


def _rollout(env, seed: int, steps: int):
    """Observations and rewards of `steps` steps playing the first allowed arm(s)."""
    obs, _ = env.reset(seed=seed)
    observations, rewards = [obs], []
    for _ in range(steps):
        obs, reward, *_ = env.step(_first_action(env, obs))
        observations.append(obs)
        rewards.append(reward)
    return observations, rewards


def _same(tree_a, tree_b) -> bool:
    leaves_a, leaves_b = jax.tree.leaves(tree_a), jax.tree.leaves(tree_b)
    return len(leaves_a) == len(leaves_b) and all(
        np.array_equal(a, b) for a, b in zip(leaves_a, leaves_b, strict=True)
    )


def test_every_env_is_registered_with_gymnasium():
    assert ENV_IDS, "no env registered"
    for env_id in ENV_IDS:
        spec = gymnasium.spec(f"bandits/{env_id}")
        assert spec.kwargs == {"env_id": env_id}
        assert spec.vector_entry_point is not None
        assert not spec.nondeterministic


def test_register_gym_envs_is_idempotent_and_picks_up_new_envs(monkeypatch):
    assert register_gym_envs() == []
    monkeypatch.setattr(envs.base, "_REGISTRY", dict(envs.base._REGISTRY))
    envs.register("GymShellProbe-v0", envs.multi_armed.multi_armed, "probe", num_arms=3)
    try:
        assert register_gym_envs() == ["bandits/GymShellProbe-v0"]
        assert register_gym_envs() == []
        env = gymnasium.make("bandits/GymShellProbe-v0")
        assert env.action_space == gymnasium.spaces.Discrete(3)
    finally:
        gymnasium.registry.pop("bandits/GymShellProbe-v0", None)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_check_env_passes_without_warnings(env_id):
    with warnings.catch_warnings():
        # Gymnasium reports soft failures (dtype, bounds, determinism) as
        # UserWarnings; the shell must trigger none.
        warnings.simplefilter("error", UserWarning)
        env = gymnasium.make(gym_id(env_id))
        check_env(env.unwrapped)
        env.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_spaces_follow_the_observation_spec(env_id):
    env = _make(env_id)
    spec = env.bandit_env.observation_spec()
    assert set(env.observation_space.spaces) == set(spec)
    assert {"context", "arms", "mask"} <= set(spec)
    assert set(spec) <= set(Observation._fields)
    for name, box in env.observation_space.spaces.items():
        assert isinstance(box, gymnasium.spaces.Box)
        assert box.shape == tuple(spec[name].shape)
        assert np.all(np.isfinite(box.low)) and np.all(np.isfinite(box.high))
    assert env.observation_space["mask"].dtype == np.bool_
    size = getattr(env.bandit_env, "slate_size", None)
    if size is None:
        assert env.action_space == gymnasium.spaces.Discrete(env.bandit_env.num_arms)
    else:  # one Discrete(K) per slate position
        assert isinstance(env.action_space, gymnasium.spaces.MultiDiscrete)
        assert env.action_space.nvec.tolist() == [env.bandit_env.num_arms] * size


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_reset_with_seed_is_reproducible(env_id):
    env = _make(env_id)
    first = _rollout(env, seed=7, steps=3)
    again = _rollout(env, seed=7, steps=3)
    assert _same(first, again)
    # A fresh shell with the same seed replays the same stream too.
    assert _same(first, _rollout(_make(env_id), seed=7, steps=3))


def test_different_seeds_give_different_streams():
    env = _make("Linear-v0")
    obs_a, rewards_a = _rollout(env, seed=0, steps=2)
    obs_b, rewards_b = _rollout(env, seed=1, steps=2)
    assert not np.array_equal(obs_a[0]["context"], obs_b[0]["context"])
    assert rewards_a != rewards_b
    # Unseeded resets continue the generator: two in a row differ.
    first, _ = env.reset()
    second, _ = env.reset()
    assert not np.array_equal(first["context"], second["context"])


@pytest.mark.parametrize("env_id", SINGLE_ENV_IDS)
def test_step_info_is_consistent(env_id):
    env = _make(env_id)
    num_arms = env.bandit_env.num_arms
    obs, _ = env.reset(seed=3)
    action = _first_allowed(obs)
    next_obs, reward, terminated, truncated, info = env.step(action)
    assert isinstance(reward, float) and np.isfinite(reward)
    assert terminated is False and truncated is False
    assert next_obs in env.observation_space
    assert set(info) == {"expected_rewards", "optimal_action", "regret"}
    expected = info["expected_rewards"]
    assert expected.shape == (num_arms,)
    best = info["optimal_action"]
    assert isinstance(best, int) and obs["mask"][best]
    allowed = expected[obs["mask"]]
    assert expected[best] == allowed.max()
    assert info["regret"] == pytest.approx(float(allowed.max() - expected[action]))
    assert info["regret"] >= 0.0

    # Replaying the same observation with the optimal arm costs nothing.
    replay_obs, _ = env.reset(seed=3)
    assert _same(replay_obs, obs)
    _, _, _, _, replay_info = env.step(best)
    np.testing.assert_array_equal(replay_info["expected_rewards"], expected)
    assert replay_info["optimal_action"] == best
    assert replay_info["regret"] == 0.0


def test_make_forwards_kwargs():
    env = gymnasium.make("bandits/Linear-v0", num_arms=7, dim=3, noise_std=0.0)
    obs, _ = env.reset(seed=0)
    assert env.action_space == gymnasium.spaces.Discrete(7)
    assert obs["context"].shape == (3,) and obs["context"].dtype == np.float32
    assert obs["arms"].shape == (7, 0)
    _, reward, _, _, info = env.step(2)
    # noise_std=0: the reward is the expected reward of the chosen arm.
    assert reward == pytest.approx(float(info["expected_rewards"][2]), abs=1e-6)
    with pytest.raises(BanditConfigError, match="dim"):
        gymnasium.make("bandits/Linear-v0", bogus=1)
    with pytest.raises(BanditConfigError, match="resample_params"):
        gymnasium.make("bandits/Linear-v0", resample_params="yes")


def test_default_and_resampled_params():
    env = _make("MultiArmed-v0", num_arms=4)
    env.reset(seed=0)
    assert _same(env.params, env.bandit_env.default_params())

    resampling = _make("MultiArmed-v0", num_arms=4, resample_params=True)
    resampling.reset(seed=0)
    params_0 = resampling.params
    resampling.reset(seed=1)
    assert not _same(params_0, resampling.params)
    resampling.reset(seed=0)
    assert _same(params_0, resampling.params)


def test_time_limit_through_gymnasium_make():
    env = gymnasium.make("bandits/MultiArmed-v0", max_episode_steps=2)
    env.reset(seed=0)
    assert env.step(0)[3] is False
    assert env.step(0)[3] is True


def test_bad_actions_and_step_before_reset_raise():
    env = _make("Linear-v0")  # 10 arms
    with pytest.raises(gymnasium.error.ResetNeeded):
        env.step(0)
    env.reset(seed=0)
    for action in (10, -1, 1.5, np.array([0, 1])):
        with pytest.raises(ValueError, match=r"action must be an integer in \[0, 10\)"):
            env.step(action)
    env.step(np.int64(9))


# ---------------------------------------------------------------------------
# Vector env


def _make_vec(env_id: str = "Linear-v0", **kwargs) -> BanditVectorEnv:
    return gymnasium.make_vec(
        gym_id(env_id),
        num_envs=NUM_ENVS,
        vectorization_mode="vector_entry_point",
        **kwargs,
    )


def test_vector_env_shapes():
    vec = _make_vec(num_arms=5, dim=3)
    assert isinstance(vec, BanditVectorEnv)
    assert isinstance(vec.metadata["autoreset_mode"], AutoresetMode)
    assert vec.single_action_space == gymnasium.spaces.Discrete(5)
    obs, info = vec.reset(seed=0)
    assert info == {}
    assert obs in vec.observation_space
    assert obs["context"].shape == (NUM_ENVS, 3)
    assert obs["arms"].shape == (NUM_ENVS, 5, 0)
    assert obs["mask"].shape == (NUM_ENVS, 5)
    obs, rewards, terminated, truncated, info = vec.step(np.array([0, 1, 2, 3]))
    assert obs in vec.observation_space
    assert rewards.shape == (NUM_ENVS,)
    assert not terminated.any() and not truncated.any()
    assert info["expected_rewards"].shape == (NUM_ENVS, 5)
    assert info["optimal_action"].shape == info["regret"].shape == (NUM_ENVS,)
    assert info["_regret"].all() and info["_expected_rewards"].all()
    assert np.all(info["regret"] >= 0.0)
    with pytest.raises(ValueError, match="actions must be an integer array"):
        vec.step(np.array([0, 1, 2]))


def test_vector_env_matches_single_envs_seeded_s_plus_i():
    """Sub-env i of a vector env reset with seed s replays a single env seeded s + i."""
    vec = _make_vec(num_arms=5, dim=3)
    actions = np.array([[0, 1, 2, 3], [4, 4, 0, 1]])
    vec_obs, _ = vec.reset(seed=10)
    vec_steps = [vec.step(a) for a in actions]
    for i in range(NUM_ENVS):
        single = _make("Linear-v0", num_arms=5, dim=3)
        obs, _ = single.reset(seed=10 + i)
        np.testing.assert_array_equal(obs["context"], vec_obs["context"][i])
        for t, a in enumerate(actions[:, i]):
            obs, reward, _, _, info = single.step(int(a))
            vec_next, vec_reward, _, _, vec_info = vec_steps[t]
            np.testing.assert_array_equal(obs["context"], vec_next["context"][i])
            # vmap may batch the matrix-vector product differently: float32 tolerance.
            assert reward == pytest.approx(float(vec_reward[i]), rel=1e-5, abs=1e-6)
            np.testing.assert_allclose(
                info["expected_rewards"],
                vec_info["expected_rewards"][i],
                rtol=1e-5,
                atol=1e-6,
            )


def test_vector_env_reset_is_deterministic():
    vec = _make_vec(num_arms=5, dim=3)
    first, _ = vec.reset(seed=3)
    first_step = vec.step(np.zeros(NUM_ENVS, dtype=np.int64))
    again, _ = vec.reset(seed=3)
    again_step = vec.step(np.zeros(NUM_ENVS, dtype=np.int64))
    assert _same(first, again)
    assert _same(first_step, again_step)
    other, _ = vec.reset(seed=[3, 4, 5, 7])
    np.testing.assert_array_equal(other["context"][:3], first["context"][:3])
    assert not np.array_equal(other["context"][3], first["context"][3])
    unseeded, _ = vec.reset()
    assert not np.array_equal(unseeded["context"], first["context"])


def test_vector_env_resampled_params_are_per_env():
    vec = _make_vec("MultiArmed-v0", num_arms=3, resample_params=True)
    vec.reset(seed=0)
    means = np.asarray(vec.params.means)
    assert means.shape == (NUM_ENVS, 3)
    assert len({tuple(row) for row in means}) == NUM_ENVS
    shared = _make_vec("MultiArmed-v0", num_arms=3)
    shared.reset(seed=0)
    assert np.asarray(shared.params.means).shape == (3,)


def test_vector_env_time_limit_and_next_step_autoreset():
    vec = _make_vec("MultiArmedGaussian-v0", num_arms=3, max_episode_steps=2)
    vec.reset(seed=0)
    actions = np.zeros(NUM_ENVS, dtype=np.int64)
    truncations = []
    for _ in range(5):
        _, rewards, terminated, truncated, info = vec.step(actions)
        assert not terminated.any()
        truncations.append(truncated.copy())
        if truncations[-2:-1] and truncations[-2].all():
            # The step after a truncation restarts: no reward, no info.
            np.testing.assert_array_equal(rewards, 0.0)
            assert not info["_regret"].any()
        else:
            assert info["_regret"].all()
    np.testing.assert_array_equal(
        [t.all() for t in truncations], [False, True, False, False, True]
    )


def test_vector_env_autoreset_draws_new_instances_when_resampling():
    vec = _make_vec(
        "MultiArmed-v0", num_arms=3, resample_params=True, max_episode_steps=1
    )
    vec.reset(seed=0)
    actions = np.zeros(NUM_ENVS, dtype=np.int64)
    before = np.asarray(vec.params.means)
    assert vec.step(actions)[3].all()  # every sub-env truncates after one step
    np.testing.assert_array_equal(vec.params.means, before)
    vec.step(actions)  # ... and restarts on the next one with a new instance
    after = np.asarray(vec.params.means)
    assert not np.any(np.all(after == before, axis=1))


BLOCK_ENV_IDS = [i for i in ENV_IDS if envs.make_env(i).actions_leave_state]


@pytest.mark.parametrize("reward", ["gaussian", "bernoulli"])
def test_blocks_ahead_replay_the_step_by_step_stream(reward):
    """Envs whose state ignores the action step from rounds computed ahead
    (`envs.gym.BLOCK` at a time, for every action). Across two block boundaries
    and random actions, against the same shell stepping one compiled step at a
    time on the same keys: the same arms and masks, Bernoulli rewards identical,
    and contexts, expected rewards, regret and Gaussian rewards within 1e-6 (two
    programs on the same numbers; identical on this machine except the Gaussian
    draw times the noise scale, but another CPU may fuse them differently)."""
    from envs import gym as shell

    assert {"Linear-v0", "LinearArmFeatures-v0"} <= set(BLOCK_ENV_IDS)
    steps = 2 * shell.BLOCK + 37
    actions = np.random.default_rng(5).integers(0, 10, size=steps)

    def play(blocks: bool):
        env = _make("Linear-v0", num_arms=10, dim=6, reward=reward)
        env._blocks = blocks
        obs, _ = env.reset(seed=11)
        rows = []
        for action in actions:
            nxt, r, _, _, info = env.step(int(action))
            rows.append((obs, r, info))
            obs = nxt
        return rows, env._block is not None

    (fast, used_blocks), (slow, _) = play(True), play(False)
    assert used_blocks
    close = {"rtol": 1e-6, "atol": 1e-6}
    for (obs_f, r_f, info_f), (obs_s, r_s, info_s) in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(obs_f["mask"], obs_s["mask"])
        for name in ("context", "arms"):
            np.testing.assert_allclose(obs_f[name], obs_s[name], **close)
        for name in ("expected_rewards", "regret"):
            np.testing.assert_allclose(info_f[name], info_s[name], **close)
        assert info_f["optimal_action"] == info_s["optimal_action"]
        if reward == "bernoulli":
            # The same uniform draw against the same mean: a flip would need the
            # means to round apart across the draw (checked under AVX2, SSE4.2).
            assert r_f == r_s
        else:
            np.testing.assert_allclose(r_f, r_s, **close)


# ---------------------------------------------------------------------------
# Recommendation envs: rounds ahead, against the kernel

# Few users, so that many rounds of a block are revisits (recomputed on the host's
# request), and new users and drift in the variants.
REC_CASES = [
    ("ContextualRec-v0", {}),
    ("ContextualRec-v0", {"num_users": 40}),
    ("ContextualRec-ColdStart-v0", {"num_users": 40}),
    ("ContextualRec-Drift-v0", {"num_users": 40, "drift_shift_steps": [300]}),
    ("ContextualRec-Sequential-v0", {"num_users": 40}),
]
REC_STEPS = 2 * 256 + 37  # two block boundaries (`envs.recommendation_gym.BLOCK`)


@dataclasses.dataclass(frozen=True)
class _ShellKeys:
    """`env` on the key stream of the Gymnasium shell (`envs.gym._start` and
    `_advance`), for `bandits.simulate`: its params are (the shell's start key,
    the env's params); reset splits that key into (instance, reset, steps) and
    each step splits the stream key into (next, step). The kernel's keys are
    ignored, so `simulate` replays a shell reset with a seed."""

    env: Any

    @property
    def num_arms(self) -> int:
        return self.env.num_arms

    def observation_spec(self):
        return self.env.observation_spec()

    def reset(self, key, params):
        del key
        shell_key, params = params
        _, key_reset, key_steps = jax.random.split(shell_key, 3)
        obs, state = self.env.reset(key_reset, params)
        return obs, (key_steps, state)

    def step(self, key, state, action, params):
        del key
        key_steps, state = state
        key_next, key_step = jax.random.split(key_steps)
        obs, state, feedback = self.env.step(key_step, state, action, params[1])
        return obs, (key_next, state), feedback


def _random_allowed_agent() -> Agent:
    """Plays a uniformly random allowed arm; learns nothing."""

    def init(key):
        del key
        return jnp.zeros(())

    def act(key, state, obs):
        del state
        logits = jnp.where(obs.mask, 0.0, -jnp.inf)
        return jax.random.categorical(key, logits).astype(jnp.int32)

    def update(key, state, obs, action, reward):
        del key, obs, action, reward
        return state

    return Agent(init, act, update)


def _shell_key(seed: int) -> jax.Array:
    """The key `BanditGymEnv.reset(seed=seed)` starts its stream from."""
    from envs import gym as shell

    words = shell._seed_words(seeding.np_random(seed)[0])
    return shell._key_from_words(jnp.asarray(words))


@pytest.mark.parametrize(("env_id", "kwargs"), REC_CASES)
def test_rec_shell_matches_the_kernel_on_the_same_keys(env_id, kwargs):
    """The shell steps the recommendation envs from rounds computed ahead
    (`envs.recommendation_gym`). Driven by the actions `bandits.simulate` took
    on the shell's key stream, it gives the same clicks (exactly: the same
    uniform against the same float32 click probability), and the same optimal
    arms, expected rewards and regret to float32 rounding (1e-6: the block
    evaluates the model vectorised over rounds and revisit outcomes, where XLA
    may round a function or a reduction one ulp apart from the kernel's program;
    seen: at most 1.2e-7. The population is carried from block to block by the
    model's per-step functions one round at a time, not by these vectorised
    values, so such differences do not accumulate)."""
    env = _make(env_id, **kwargs)
    assert env._rec_blocks
    core = env.bandit_env
    simulate = jax.jit(
        lambda params: bandits.simulate(
            jax.random.key(0),
            _ShellKeys(core),
            params,
            _random_allowed_agent(),
            REC_STEPS,
        )
    )
    trajectory = simulate((_shell_key(8), core.default_params()))
    trajectory = jax.device_get(trajectory)
    obs, _ = env.reset(seed=8)
    revisits = 0
    for t in range(REC_STEPS):
        action = int(trajectory.action[t])
        assert obs["mask"][action]
        revisits += int(env._rec._last_seen[env._rec._row] >= 0)
        obs, reward, _, _, info = env.step(action)
        assert reward == float(trajectory.reward[t])
        expected = info["expected_rewards"]
        best = info["optimal_action"]
        np.testing.assert_allclose(
            expected[action], trajectory.expected_reward[t], rtol=1e-6, atol=1e-6
        )
        np.testing.assert_allclose(
            expected[best], trajectory.optimal_expected_reward[t], rtol=1e-6, atol=1e-6
        )
        np.testing.assert_allclose(
            info["regret"], trajectory.regret[t], rtol=1e-6, atol=1e-6
        )
    if kwargs.get("num_users"):
        assert revisits > REC_STEPS // 2  # the revisit path is exercised


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [*REC_CASES[1:], ("ContextualRec-v0", {"num_users": 40, "num_items": 30})],
)
@pytest.mark.filterwarnings("ignore:action .* is masked out:UserWarning")
def test_rec_rounds_ahead_replay_the_step_by_step_stream(env_id, kwargs):
    """The same shell stepping one compiled call at a time on the same keys: the
    same observations (masks, history masks and clicks exactly; floats within
    1e-6, see above), rewards, optimal arms, expected rewards and regret, across
    two block boundaries with random actions. With `strict=False` masked
    (repeated) candidates are played too; 30 items make repeats common."""
    rng = np.random.default_rng(2)
    num_arms = envs.make_env(env_id, **kwargs).num_arms

    def play(blocks: bool, actions: list[int]):
        """Steps with `actions`, drawing a random arm where they end."""
        env = _make(env_id, strict=False, **kwargs)
        env._rec_blocks = blocks
        obs, _ = env.reset(seed=4)
        rows = []
        for t in range(REC_STEPS):
            if t == len(actions):
                actions.append(int(rng.integers(num_arms)))
            nxt, reward, _, _, info = env.step(actions[t])
            rows.append((obs, reward, info))
            obs = nxt
        return rows, env._rec is not None

    actions: list[int] = []
    (fast, used), (slow, unused) = play(True, actions), play(False, actions)
    assert used and not unused
    masked = sum(
        not obs["mask"][a] for (obs, _, _), a in zip(fast, actions, strict=True)
    )
    if kwargs.get("num_items"):
        assert masked > 10
    close = {"rtol": 1e-6, "atol": 1e-6}
    for (obs_f, r_f, info_f), (obs_s, r_s, info_s) in zip(fast, slow, strict=True):
        for name in ("mask", "history_mask"):
            np.testing.assert_array_equal(obs_f[name], obs_s[name])
        for name in ("context", "arms", "history"):
            np.testing.assert_allclose(obs_f[name], obs_s[name], **close)
        assert r_f == r_s
        assert info_f["optimal_action"] == info_s["optimal_action"]
        for name in ("expected_rewards", "regret"):
            np.testing.assert_allclose(info_f[name], info_s[name], **close)


@pytest.mark.parametrize(
    ("reward", "resample_params", "limit"),
    [
        ("gaussian", False, None),
        ("bernoulli", False, None),
        ("bernoulli", True, None),
        ("gaussian", False, 300),
        ("bernoulli", True, 300),
        ("bernoulli", True, 3),
    ],
)
def test_vector_blocks_replay_the_step_by_step_streams(reward, resample_params, limit):
    """The vector shell steps envs whose state ignores the action from blocks
    computed ahead for every sub-env. Across two block boundaries and random
    actions, against the same vector shell stepping one compiled call at a
    time: the same masks, optimal arms, truncations and Bernoulli rewards, and
    contexts, expected rewards, regret and Gaussian rewards within 1e-6 (as
    for the single shell above). With a time limit (`limit`) blocks end with
    each episode: 300 puts a truncation inside the second block and the restart
    (new instances when resampling) after it; 3 restarts every fourth step."""
    from envs import gym as shell

    steps = 2 * shell.BLOCK + 37
    actions = np.random.default_rng(6).integers(0, 10, size=(steps, NUM_ENVS))

    def play(blocks: bool):
        vec = _make_vec(
            num_arms=10,
            dim=6,
            reward=reward,
            resample_params=resample_params,
            max_episode_steps=limit,
        )
        vec._blocks = blocks
        obs, _ = vec.reset(seed=21)
        rows, used = [], []
        for action in actions:
            nxt, r, terminated, truncated, info = vec.step(action)
            assert not terminated.any()
            assert r.dtype == np.float32 and r.shape == (NUM_ENVS,)
            rows.append((obs, r, info, truncated))
            obs = nxt
            used.append(vec._block is not None)
        return rows, np.mean(used)

    (fast, used_blocks), (slow, unused) = play(True), play(False)
    assert used_blocks > 0.5 and unused == 0
    truncations = [t for *_, t in fast]
    assert any(t.any() for t in truncations) == (limit is not None)
    close = {"rtol": 1e-6, "atol": 1e-6}
    for (obs_f, r_f, info_f, t_f), (obs_s, r_s, info_s, t_s) in zip(
        fast, slow, strict=True
    ):
        np.testing.assert_array_equal(t_f, t_s)
        np.testing.assert_array_equal(obs_f["mask"], obs_s["mask"])
        for name in ("context", "arms"):
            np.testing.assert_allclose(obs_f[name], obs_s[name], **close)
        assert set(info_f) == set(info_s)
        for name in ("expected_rewards", "regret"):
            np.testing.assert_allclose(info_f[name], info_s[name], **close)
            assert info_f[name].dtype == info_s[name].dtype
        np.testing.assert_array_equal(
            info_f["optimal_action"], info_s["optimal_action"]
        )
        for name in INFO_KEYS:
            np.testing.assert_array_equal(info_f[f"_{name}"], info_s[f"_{name}"])
        if reward == "bernoulli":
            np.testing.assert_array_equal(r_f, r_s)
        else:
            np.testing.assert_allclose(r_f, r_s, **close)


def test_vector_env_with_a_time_limit_steps_from_blocks():
    """Blocks end with the episode: a limit of 3 gives 3-round blocks, and the
    step after a truncation (the restart) is one compiled call."""
    vec = _make_vec(num_arms=5, dim=3, max_episode_steps=3)
    vec.reset(seed=0)
    assert vec._blocks and vec._block is not None
    assert vec._outs[0].shape[1] == 3
    actions = np.zeros(NUM_ENVS, dtype=np.int64)
    for _ in range(2):
        vec.step(actions)
    assert vec.step(actions)[3].all() and vec._block is None
    vec.step(actions)  # the restart: a new episode, from a new block
    assert vec._block is not None and vec._row == 0
