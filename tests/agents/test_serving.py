"""`Server`: an agent served one request at a time gives the agent's own
decisions and states, through `act`/`update` and the fused `step`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import agents
import envs  # noqa: F401  (registers the Gymnasium ids)
from agents.serving import Server
from bandits.types import Observation
from bandits.validation import BanditConfigError

K, D = 4, 3


def observations(count, seed=0):
    rng = np.random.default_rng(seed)
    return [
        Observation(
            rng.normal(size=D).astype(np.float32),
            np.zeros((K, 0), np.float32),
            np.ones(K, bool),
        )
        for _ in range(count)
    ]


def reference(agent, key, events, rewards):
    """act / update by hand with the keys `Server` derives."""
    key_init, key = jax.random.split(key)
    state = agent.init(key_init)
    actions = []
    for obs, reward in zip(events, rewards, strict=True):
        key, key_act = jax.random.split(key)
        action = int(agent.act(key_act, state, obs))
        actions.append(action)
        key, key_update = jax.random.split(key)
        state = agent.update(key_update, state, obs, action, reward)
    return actions, state


@pytest.mark.parametrize("name", ["linucb", "lints", "epsilon_greedy"])
def test_step_gives_the_agents_own_decisions_and_state(name):
    agent = agents.make(name, num_arms=K, dim=D)
    events = observations(30)
    rewards = [float(r) for r in np.random.default_rng(1).normal(size=30)]
    want_actions, want_state = reference(agent, jax.random.key(5), events, rewards)

    server = Server(agent, key=jax.random.key(5))
    actions = [server.act(events[0])]
    for obs, reward in zip(events[1:], rewards[:-1], strict=True):
        actions.append(server.step(reward, obs))
    server.update(events[-1], actions[-1], rewards[-1])
    assert actions == want_actions
    # The reference runs op by op, the server compiled: XLA fuses the float32
    # arithmetic differently, a few ulps per update (3e-6 relative measured).
    for got, want in zip(
        jax.tree.leaves(server.state), jax.tree.leaves(want_state), strict=True
    ):
        np.testing.assert_allclose(
            np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6
        )


def test_int_typed_and_raw_keys_give_the_same_decisions():
    """The server carries its key as raw words between calls; an int seed, a
    typed key and a raw `PRNGKey` of the same seed decide alike, with the
    decisions `reference` makes from the typed key (equal actions, as in the
    test above: the same keys draw the same samples, and a decision is an
    argmax that float32 rounding between the compiled and the op-by-op path
    does not flip at these scores; checked under AVX2 and SSE4.2 too)."""
    agent = agents.make("lints", num_arms=K, dim=D)
    events = observations(12, seed=4)
    rewards = [float(r) for r in np.random.default_rng(2).normal(size=12)]
    want, _ = reference(agent, jax.random.key(7), events, rewards)
    for key in (7, jax.random.key(7), jax.random.PRNGKey(7)):
        server = Server(agent, key=key)
        got = [server.act(events[0])]
        for obs, reward in zip(events[1:], rewards[:-1], strict=True):
            got.append(server.step(reward, obs))
        assert got == want, type(key)


def test_act_and_update_match_step():
    agent = agents.linucb(num_arms=K, dim=D)
    events = observations(10, seed=2)
    split, fused = Server(agent, key=3), Server(agent, key=3)
    a, b = split.act(events[0]), fused.act(events[0])
    for obs in events[1:]:
        split.update(split._last[0], a, 0.5)
        a = split.act(obs)
        b = fused.step(0.5, obs)
        assert a == b


@pytest.mark.parametrize("name", ["epsilon_greedy", "lints"])
def test_propensities_and_predictions_change_no_decision(name):
    """`action_probs` and `predict` read the state that took the last decision
    (asked after `act` or `step`, before the next update): the agent's own
    `action_probs` (exact for epsilon-greedy; LinTS's Monte Carlo draws from a
    stream of their own) and `predict`. A server asked for them every event
    decides exactly as one that is not asked."""
    agent = agents.make(name, num_arms=K, dim=D)
    events = observations(15, seed=6)
    asked, quiet = Server(agent, key=9), Server(agent, key=9)
    a, b = asked.act(events[0]), quiet.act(events[0])
    for obs in events[1:]:
        a, b = asked.step(0.3, obs), quiet.step(0.3, obs)
        assert a == b
        probs = asked.action_probs(obs)
        scores = asked.predict(obs)
        assert probs.shape == (K,) and scores.shape == (K,)
        np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-5)
        np.testing.assert_allclose(
            scores, agent.predict(asked.state, obs), rtol=1e-5, atol=1e-6
        )
        if name == "epsilon_greedy":  # closed form: the agent's own, any key
            want = agent.action_probs(jax.random.key(0), asked.state, obs)
            np.testing.assert_allclose(probs, want, rtol=1e-5, atol=1e-6)
            # epsilon = 0.1 over K = 4 arms: the greedy arm 0.925, others 0.025.
            np.testing.assert_allclose(sorted(probs), [0.025] * 3 + [0.925], rtol=1e-6)
    with pytest.raises(BanditConfigError, match="has no predict"):
        Server(agents.make("random", num_arms=K)).predict(events[0])
    with pytest.raises(BanditConfigError, match="has no action_probs"):
        Server(agents.make("neural_ts", num_arms=K, dim=D)).action_probs(events[0])


def test_serving_a_gymnasium_env():
    """The Gymnasium loop of the README: a dict observation goes straight in,
    and LinUCB learns (regret of its last 300 steps below its first 300)."""
    env = gymnasium.make("bandits/Linear-v0", num_arms=5, dim=4)
    obs, _ = env.reset(seed=0)
    server = Server(agents.linucb(num_arms=5, dim=4), key=0)
    action = server.act(obs)
    regret = []
    for _ in range(1500):
        obs, reward, _, _, info = env.step(action)
        regret.append(info["regret"])
        action = server.step(reward, obs)
    assert sum(regret[-300:]) < 0.5 * sum(regret[:300])


def test_misuse_is_named():
    server = Server(agents.linucb(num_arms=K, dim=D))
    with pytest.raises(BanditConfigError, match="call act"):
        server.step(1.0, observations(1)[0])
    with pytest.raises(BanditConfigError, match="lacks mask"):
        server.act({"context": np.zeros(D), "arms": np.zeros((K, 0))})
    with pytest.raises(BanditConfigError, match=r"needs a bandits\.Agent"):
        Server("linucb")
    # Shapes and actions are checked before any compiled call; plain lists are
    # observations too.
    obs = {"context": [0.5] * D, "arms": np.zeros((K, 0)), "mask": [True] * K}
    wide = {**obs, "context": [0.5] * (D + 1)}
    with pytest.raises(BanditConfigError, match=rf"context has shape \({D + 1},\)"):
        server.act(wide)
    action = server.act(obs)
    assert 0 <= action < K
    more_arms = {**obs, "arms": np.zeros((K + 1, 0)), "mask": [True] * (K + 1)}
    with pytest.raises(BanditConfigError, match="observation arms has shape"):
        server.step(1.0, more_arms)
    for bad in (K, -1, 1.5, True):
        with pytest.raises(BanditConfigError, match="action must be"):
            server.update(obs, bad, 1.0)
    server.update(obs, K - 1, 1.0)


def test_a_warm_state_can_be_served():
    agent = agents.linucb(num_arms=K, dim=D)
    state = agent.init(jax.random.key(0))
    state = agent.update(jax.random.key(1), state, observations(1)[0], 2, 1.0)
    server = Server(agent, state=state)
    np.testing.assert_array_equal(
        np.asarray(server.state.theta_hat), np.asarray(state.theta_hat)
    )
    # the server owns copies: updating it leaves the caller's state intact
    server.act(observations(1)[0])
    server.step(0.0, observations(1, seed=3)[0])
    assert jnp.all(jnp.isfinite(state.theta_hat))


_SERVE_200 = """
import json, sys
import numpy as np
if sys.argv[1] == "call":
    from agents.serving import synchronous_dispatch
    synchronous_dispatch()
import agents
from agents.serving import Server
from bandits.types import Observation
from jax._src import xla_bridge
rng = np.random.default_rng(0)
arms, mask = np.zeros((4, 0), np.float32), np.ones(4, bool)
server = Server(agents.make(sys.argv[2], num_arms=4, dim=3), key=5)
action, actions = server.act(Observation(np.ones(3, np.float32), arms, mask)), []
for _ in range(200):
    x = rng.normal(size=3).astype(np.float32)
    action = server.step(float(rng.normal()) + 0.3 * action, Observation(x, arms, mask))
    actions.append(action)
print(json.dumps({"asynchronous": xla_bridge._CPU_ENABLE_ASYNC_DISPATCH.value,
                  "actions": actions}))
"""


@pytest.mark.parametrize("name", ["linucb", "lints"])
def test_synchronous_dispatch_gives_the_same_decisions(name):
    """A server process in synchronous dispatch (by the call or by
    `BANDITS_SYNC_DISPATCH=1`) really runs synchronously and decides exactly as
    one in JAX's default mode: same program, same machine, so the same bits."""

    def serve(mode, sync_env):
        env = {**os.environ, "BANDITS_SYNC_DISPATCH": sync_env}
        out = subprocess.run(
            [sys.executable, "-c", _SERVE_200, mode, name],
            env=env, capture_output=True, text=True, check=True, timeout=300,
        )  # fmt: skip
        return json.loads(out.stdout.strip().splitlines()[-1])

    default = serve("none", "0")
    by_call, by_env = serve("call", "0"), serve("none", "1")
    assert default["asynchronous"] is True
    assert by_call["asynchronous"] is False and by_env["asynchronous"] is False
    assert by_call["actions"] == default["actions"] == by_env["actions"]
    assert len(set(default["actions"])) > 1  # the server really learns and moves


def test_synchronous_dispatch_too_late_is_refused():
    """In this process JAX has computed already: the call must not pretend."""
    from agents.serving import synchronous_dispatch

    jax.block_until_ready(jnp.ones(2) + 1)
    with pytest.raises(BanditConfigError, match="before JAX's first computation"):
        synchronous_dispatch()
