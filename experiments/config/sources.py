"""Where a config's text comes from: a TOML file, or a config shipped with the
package. Light on imports (no registries), so that `bandits run` can refuse a
missing or malformed file before it starts anything."""

from __future__ import annotations

import importlib.resources
import tomllib
from pathlib import Path
from typing import Any

from bandits.validation import BanditConfigError

PACKAGED_CONFIGS = "configs"


def packaged_configs() -> list[str]:
    """Names of the configs shipped inside the `experiments` package."""
    folder = importlib.resources.files("experiments").joinpath(PACKAGED_CONFIGS)
    return sorted(
        entry.name.removesuffix(".toml")
        for entry in folder.iterdir()
        if entry.name.endswith(".toml")
    )


def packaged_config_text(name: str) -> str:
    """The TOML text of a packaged config, e.g. `packaged_config_text("quickstart")`."""
    name = name.removesuffix(".toml")
    if name not in packaged_configs():
        raise BanditConfigError(
            f"no packaged config {name!r}; available: {', '.join(packaged_configs())}"
        )
    folder = importlib.resources.files("experiments").joinpath(PACKAGED_CONFIGS)
    return folder.joinpath(f"{name}.toml").read_text(encoding="utf-8")


def read_source(source: str | Path) -> tuple[str, str, str]:
    """(text, description of origin, default experiment name)."""
    path = Path(source)
    if path.is_file():
        try:
            return path.read_text(encoding="utf-8"), str(path), path.stem
        except UnicodeDecodeError as err:
            raise BanditConfigError(
                f"cannot read config {str(source)!r}: it is not UTF-8 text (TOML "
                f"is): {err}"
            ) from None
        except OSError as err:
            raise BanditConfigError(
                f"cannot read config {str(source)!r}: {err.strerror or err}"
            ) from None
    if path.exists():
        raise BanditConfigError(f"config {str(source)!r} is not a file")
    name = str(source).removesuffix(".toml")
    if "/" not in name and "\\" not in name and name in packaged_configs():
        origin = f"package:experiments/{PACKAGED_CONFIGS}/{name}.toml"
        return packaged_config_text(name), origin, name
    raise BanditConfigError(
        f"config {str(source)!r} not found: no such file, and not a packaged config "
        f"(available: {', '.join(packaged_configs())})"
    )


def parse_toml(text: str, origin: str) -> dict[str, Any]:
    """The TOML document in `text`; a clear error naming `origin` if it is not."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise BanditConfigError(f"{origin} is not valid TOML: {err}") from None


def output_folder(out: str | Path | None, output: str | None, name: str) -> Path:
    """Where a run writes: `out` (the command line's `--out`), else the config's
    `run.output`, else `results/<name>`."""
    if out is not None:
        return Path(out)
    if output is not None:
        return Path(output)
    return Path("results") / name
