"""The compile-profile plugin (`tests/compile_profile.py`) records a test's
compiled programs and sums them by function and module."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests import compile_profile

ROOT = Path(__file__).resolve().parents[1]


def test_the_plugin_records_each_compiled_function_per_test(tmp_path):
    (tmp_path / "test_tiny.py").write_text(
        "import jax, jax.numpy as jnp\n"
        "def test_one():\n"
        "    def doubled_sum(x):\n"
        "        return 2 * x.sum()\n"
        "    assert float(jax.jit(doubled_sum)(jnp.arange(3.0))) == 6.0\n"
    )
    profile = tmp_path / "profile"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.compile_profile",
         f"--compile-profile={profile}", "-p", "no:cacheprovider",
         str(tmp_path / "test_tiny.py")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu",
             "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    text = compile_profile.summary(profile)
    assert re.search(r" 1  jit\(doubled_sum\)$", text, re.MULTILINE), text
    assert re.search(r"  test_tiny\.py$", text, re.MULTILINE), text
