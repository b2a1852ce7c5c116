"""Config and report edge cases that went wrong quietly."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure

from bandits import BanditConfigError
from experiments.config.loader import build, parse_config
from experiments.report.plots import plot_label

BASE = {
    "env": {"id": "Linear-v0", "params": {"num_arms": 3, "dim": 2}},
    "run": {"horizon": 10, "seeds": 1},
}


def test_a_grid_repeating_a_number_as_int_and_float_is_refused():
    """`alpha = [1, 1.0]` is one agent twice (two series with the same numbers)."""
    data = {**BASE, "agents": [{"name": "linucb", "grid": {"alpha": [1, 1.0]}}]}
    with pytest.raises(BanditConfigError, match=r"agents\[0\]\.grid\.alpha lists"):
        build(parse_config(data))


def test_a_label_starting_with_an_underscore_stays_in_the_legend():
    """matplotlib leaves labels starting with "_" out of legends."""
    ax = Figure().subplots()
    ax.plot([0, 1], [0, 1], label=plot_label("_baseline"))
    ax.plot([0, 1], [1, 0], label=plot_label("a $5 agent"))
    texts = [t.get_text() for t in ax.legend().get_texts()]
    assert texts == ["\u200b_baseline", r"a \$5 agent"]
