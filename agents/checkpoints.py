"""Model checkpoints: `.npz` archives of named arrays, never pickled.

An archive holds JSON text entries (the architecture, how the model was
trained) and one array per parameter of a Flax NNX state, under
"param:<path>" (e.g. "param:blocks/0/attention/qkv/kernel"). Reading checks
the archive's table of contents before decompressing anything: a text entry
larger than `MAX_TEXT_BYTES` or a parameter member larger than the parameter
its architecture declares is refused, so a small file cannot expand to
gigabytes; every parameter must be present with its shape and dtype, and none
may be extra. `agents.pretrain` (the transformer) and
`agents.in_context_pretrain` (the in-context policy) store their models this
way; every failure is a `BanditConfigError` naming the file.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from bandits.validation import BanditConfigError

PARAM_PREFIX = "param:"
ZIP_MAGIC = b"PK\x03\x04"
NPY_HEADER_BYTES = 4096
"""Room for an .npy member's header beyond its data (the header is < 4 KiB)."""
MAX_TEXT_BYTES = 1 << 20


def path_name(path: tuple) -> str:
    """A parameter's name in the archive: its state path joined by "/"."""
    return "/".join(str(part) for part in path)


def write(path: str | os.PathLike, texts: Mapping[str, str], params: Any) -> Path:
    """Writes the text entries and every parameter of `params` (an NNX state),
    atomically."""
    from bandits.files import atomic_write

    arrays: dict[str, Any] = {key: np.asarray(text) for key, text in texts.items()}
    for p, variable in nnx.to_flat_state(params):
        arrays[PARAM_PREFIX + path_name(p)] = np.asarray(variable.get_value())

    def dump(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)

    return atomic_write(Path(path), dump)


def unreadable(path: Path, err: Exception) -> BanditConfigError:
    """The error for a file that cannot be read as a checkpoint."""
    return BanditConfigError(f"{str(path)!r} is not a readable checkpoint: {err}")


def member_sizes(path: Path, kind: str) -> dict[str, int]:
    """The archive's members and their uncompressed sizes, from its table of
    contents; `kind` names the model in errors ("a transformer")."""
    where = repr(str(path))
    if not path.is_file():
        raise BanditConfigError(f"checkpoint {where} does not exist")
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
        if magic != ZIP_MAGIC:
            raise BanditConfigError(
                f"{where} is not {kind} checkpoint (not an .npz archive)"
            )
        with zipfile.ZipFile(path) as archive:
            return {i.filename: i.file_size for i in archive.infolist()}
    except BanditConfigError:
        raise
    except (OSError, zipfile.BadZipFile, ValueError) as err:
        raise unreadable(path, err) from None


def read_text(path: Path, sizes: Mapping[str, int], key: str, kind: str) -> str:
    """The text entry `key`, refused when absent or larger than `MAX_TEXT_BYTES`."""
    size = sizes.get(key + ".npy")
    if size is None or size > MAX_TEXT_BYTES:
        raise BanditConfigError(
            f"{str(path)!r} is not {kind} checkpoint (no valid {key!r})"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            return str(archive[key])
    except (OSError, zipfile.BadZipFile, ValueError, KeyError) as err:
        raise unreadable(path, err) from None


def read_params(path: Path, sizes: Mapping[str, int], template: Any) -> Any:
    """The parameters of the archive in the structure of `template` (an NNX
    state of the declared architecture), each checked against it."""
    where = repr(str(path))
    flat = list(nnx.to_flat_state(template))
    expected = {path_name(p): np.asarray(v.get_value()) for p, v in flat}
    _check_members(where, sizes, expected)
    try:
        with np.load(path, allow_pickle=False) as stored:
            values = {name: stored[PARAM_PREFIX + name] for name in expected}
    except (OSError, zipfile.BadZipFile, ValueError, KeyError) as err:
        raise unreadable(path, err) from None
    restored = []
    for p, variable in flat:
        name = path_name(p)
        value, needed = values[name], expected[name]
        if value.shape != needed.shape or value.dtype != needed.dtype:
            raise BanditConfigError(
                f"checkpoint parameter {name} is {value.dtype}{value.shape}, the "
                f"architecture needs {needed.dtype}{needed.shape}"
            )
        restored.append((p, variable.replace(jnp.asarray(value))))
    return nnx.from_flat_state(restored)


def _check_members(
    where: str, sizes: Mapping[str, int], expected: Mapping[str, np.ndarray]
) -> None:
    """Every parameter present, none extra, none larger than it can be."""
    stored = {
        name[len(PARAM_PREFIX) : -len(".npy")]: size
        for name, size in sizes.items()
        if name.startswith(PARAM_PREFIX) and name.endswith(".npy")
    }
    for name, needed in expected.items():
        if name not in stored:
            raise BanditConfigError(f"checkpoint {where} lacks parameter {name}")
        if stored[name] > needed.nbytes + NPY_HEADER_BYTES:
            raise BanditConfigError(
                f"checkpoint parameter {name} holds {stored[name]} bytes, more than "
                f"the {needed.nbytes} its architecture needs; not read"
            )
    extra = sorted(set(stored) - set(expected))
    if extra:
        raise BanditConfigError(
            f"checkpoint {where} has parameters the architecture lacks: {extra[:5]}"
        )
