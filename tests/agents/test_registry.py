"""The registry's deferred agents: declared names match what their modules
register, and they build on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

import agents
from agents import registry
from bandits.validation import BanditConfigError


def test_deferred_names_are_exactly_what_their_modules_register():
    """Every agent defined in a flax-based module is declared with
    `registry.defer` (else `agents.make` would not find it before the module
    is imported), and nothing else is."""
    every = agents.registered()  # imports every deferred module
    flax_modules = {
        "agents.neural",
        "agents.neural_linear",
        "agents.ensemble",
        "agents.transformer",
        "agents.transformer_slate",
        "agents.in_context",
    }
    defined_there = {
        name
        for name, entry in every.items()
        if entry.factory.__module__ in flax_modules
    }
    assert set(registry._DEFERRED) == defined_there


def test_a_deferred_agent_builds_on_first_use_in_a_fresh_process():
    code = (
        "import sys, agents; "
        "assert 'flax' not in sys.modules; "
        "a = agents.make('neural_ts', num_arms=3, dim=2); "
        "print(a.name, 'flax' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["neural_ts", "True"], done.stdout + done.stderr


def test_unknown_agent_lists_deferred_names_too():
    with pytest.raises(BanditConfigError, match="neural_ts") as error:
        agents.make("no_such_agent", num_arms=2, dim=1)
    assert "linucb" in str(error.value)
