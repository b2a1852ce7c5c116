"""`name = "in_context"` with `checkpoint = ...` on the platform: the
architecture comes from the checkpoint, and a checkpoint of another kind, for
other observations or contradicted by the hyperparameters is refused, naming
the field, before any compute."""

from __future__ import annotations

import numpy as np
import pytest

import bandits
import envs
from agents.in_context import InContextConfig, policy, split_model
from agents.in_context_pretrain import save_checkpoint
from bandits.validation import BanditConfigError
from experiments.config.loader import build, load_config


def _checkpoint(path, num_arms=3, dim=2, width=8):
    cfg = InContextConfig(num_arms, dim, 0, horizon=6, width=width, depth=1, heads=1)
    _, params = split_model(cfg)
    save_checkpoint(path, cfg, params, {"settings": {}})
    return cfg, params


def _config(tmp_path, agent: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(
        'name = "ic"\n[env]\nid = "Linear-v0"\n'
        "params = { num_arms = 3, dim = 2 }\n"
        "[run]\nhorizon = 6\nseeds = 2\n"
        f"[[agents]]\n{agent}\n"
    )
    return str(path)


def test_the_architecture_comes_from_the_checkpoint(tmp_path):
    """The platform's agent and the policy built from the same checkpoint run
    as the same program (same architecture, parameters, seeds and batch) on the
    same machine, so actions and rewards agree bit for bit."""
    cfg, params = _checkpoint(tmp_path / "ic.npz")
    config = load_config(
        _config(tmp_path, 'name = "in_context"\ncheckpoint = "ic.npz"')
    )
    (agent,) = build(config).agents_by_setting[0]
    env, _ = envs.make("Linear-v0", num_arms=3, dim=2)
    got = bandits.run(env, agent, horizon=6, seeds=2)
    want = bandits.run(env, policy(cfg, params), horizon=6, seeds=2)
    np.testing.assert_array_equal(np.asarray(got.action), np.asarray(want.action))
    np.testing.assert_array_equal(np.asarray(got.reward), np.asarray(want.reward))


@pytest.mark.parametrize(
    ("write", "agent", "message"),
    [
        (
            {"num_arms": 4},
            'name = "in_context"\ncheckpoint = "ic.npz"',
            r"agents\[0\]\.checkpoint: the in-context checkpoint was pretrained "
            r"for other observations.*num_arms 4 \(env: 3\)",
        ),
        (
            {},
            'name = "in_context"\ncheckpoint = "ic.npz"\n'
            "hyperparameters = { width = 16 }",
            r"agents\[0\]\.hyperparameters\.width = 16 disagrees with the checkpoint",
        ),
        (
            {},
            'name = "in_context"\ncheckpoint = "ic.npz"\n'
            'hyperparameters = { checkpoint = "ic.npz" }',
            r"the checkpoint is given by agents\[0\]\.checkpoint",
        ),
        (
            {},
            'name = "linucb"\ncheckpoint = "ic.npz"',
            r"agent 'linucb' cannot start from a checkpoint; only 'transformer', "
            r"'transformer_slate', 'in_context' can",
        ),
    ],
)
def test_bad_in_context_starts_are_refused(tmp_path, write, agent, message):
    _checkpoint(tmp_path / "ic.npz", **write)
    with pytest.raises(BanditConfigError, match=message):
        load_config(_config(tmp_path, agent))


def test_a_transformer_checkpoint_is_not_an_in_context_one(tmp_path):
    from agents import pretrain
    from agents.transformer import config_for_env
    from agents.transformer import split_model as tf_split

    rec, _ = envs.make("ContextualRec-v0")
    cfg = config_for_env(rec, width=8, depth=1, heads=1)
    pretrain.save_checkpoint(tmp_path / "ic.npz", cfg, tf_split(cfg)[1])
    with pytest.raises(BanditConfigError, match=r"agents\[0\]\.checkpoint"):
        load_config(_config(tmp_path, 'name = "in_context"\ncheckpoint = "ic.npz"'))
