"""Files handed in by a user: every failure is a `BanditConfigError` naming the
file, never a raw OSError, ArrowInvalid or JSONDecodeError, and nothing is
unpickled or decompressed beyond what the declared architecture needs."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

import envs
from agents import pretrain as pt
from agents import transformer as tf
from bandits import BanditConfigError
from envs import logged

SMALL = dict(num_items=40, num_candidates=5, num_users=30, history_length=3)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    env = envs.make_env("ContextualRec-v0", **SMALL)
    cfg = tf.config_for_env(env, width=16, depth=1, heads=2)
    _, params = tf.split_model(cfg, 0)
    path = tmp_path_factory.mktemp("ckpt") / "model.npz"
    return pt.save_checkpoint(path, cfg, params)


@pytest.mark.parametrize("kind", ["text", "directory", "truncated", "empty"])
def test_bad_checkpoint_files_are_named(checkpoint, tmp_path, kind):
    path = tmp_path / "bad.npz"
    if kind == "text":
        path.write_text("root:x:0:0:root:/root:/bin/bash\n")
    elif kind == "directory":
        path.mkdir()
    elif kind == "truncated":
        path.write_bytes(checkpoint.read_bytes()[:2000])
    else:
        path.write_bytes(b"")
    with pytest.raises(BanditConfigError) as info:
        pt.load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message
    assert "pickled" not in message


def test_a_member_larger_than_its_parameter_is_not_decompressed(checkpoint, tmp_path):
    """A 1 MB archive could expand to 1 GiB: the sizes in the archive's table
    of contents are checked against the declared architecture first."""
    bomb = tmp_path / "bomb.npz"
    with (
        zipfile.ZipFile(checkpoint) as source,
        zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == "param:click_head/bias.npy":
                header = data[: len(data) - 4]
                data = header + np.zeros(50_000_000, np.uint8).tobytes()
            target.writestr(info.filename, data)
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(BanditConfigError, match="more than the"):
        pt.load_checkpoint(bomb)


@pytest.mark.parametrize("kind", ["text", "directory", "truncated"])
def test_bad_logged_data_files_are_named(tmp_path, kind):
    env, params = envs.make("ContextualRec-v0", **SMALL)
    import jax

    good = logged.save(
        logged.generate(jax.random.key(0), env, params, logged.uniform(), 40),
        tmp_path / "good.parquet",
    )
    path = tmp_path / "bad.parquet"
    if kind == "text":
        path.write_text("not parquet")
    elif kind == "directory":
        path.mkdir()
    else:
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 3] + data[-2000:])
    with pytest.raises(BanditConfigError) as info:
        logged.load(path)
    assert str(path) in str(info.value)
