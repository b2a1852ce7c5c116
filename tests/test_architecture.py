"""The package layering of docs/architecture.md, checked on the source.

Every module's imports of project packages must point down the layers:

    bandits (kernel) <- envs, agents <- experiments.{config, plan, execute} -> studies
                                        experiments.store <- experiments.report

The kernel knows no env, agent or platform; envs and agents do not know each
other or the platform; the result folder (`store`) and the report read only
files, so they import no env or agent; no platform module imports a study.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Which project packages a module under each prefix may import (longest prefix wins).
ALLOWED = {
    "bandits": {"bandits"},
    "envs": {"bandits", "envs"},
    "agents": {"bandits", "agents"},
    "experiments": {"bandits", "envs", "agents", "experiments"},
    "experiments.store": {"bandits", "experiments.store"},
    "experiments.report": {"bandits", "experiments.store", "experiments.report"},
    "experiments.studies": {"bandits", "envs", "agents", "experiments"},
}
PROJECT = ("bandits", "envs", "agents", "experiments")


def _modules():
    for package in PROJECT:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            yield name.removesuffix(".__init__"), path


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return {m for m in found if m.split(".")[0] in PROJECT}


def _rule(module: str) -> set[str]:
    prefixes = [p for p in ALLOWED if module == p or module.startswith(p + ".")]
    return ALLOWED[max(prefixes, key=len)]


def _allowed(target: str, allowed: set[str]) -> bool:
    return any(target == a or target.startswith(a + ".") for a in allowed)


@pytest.mark.parametrize("module,path", list(_modules()), ids=lambda v: str(v))
def test_imports_point_down_the_layers(module, path):
    allowed = _rule(module)
    wrong = sorted(t for t in _imports(path) if not _allowed(t, allowed))
    assert not wrong, f"{module} imports {wrong}; allowed: {sorted(allowed)}"
    if not module.startswith("experiments.studies"):
        studies = sorted(
            t for t in _imports(path) if t.startswith("experiments.studies")
        )
        assert not studies, f"platform module {module} imports the studies {studies}"


def test_the_rule_table_rejects_a_wrong_arrow():
    """The check itself can fail: a kernel module importing an env is refused."""
    assert not _allowed("envs.linear", _rule("bandits.simulation"))
    assert not _allowed("agents.linear", _rule("experiments.report.render"))
    assert _allowed("experiments.store.storage", _rule("experiments.report.compare"))


def test_import_loads_no_parquet_plotting_cluster_or_network_library():
    """`import bandits, envs, agents` leaves pyarrow, matplotlib, dask, rich, flax
    and optax unloaded (they are imported where files, plots, clusters or neural
    agents are used)."""
    code = (
        "import sys, bandits, envs, agents; "
        "print(sorted({m.split('.')[0] for m in sys.modules} "
        "& {'pyarrow', 'matplotlib', 'dask', 'rich', 'flax', 'optax'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout
