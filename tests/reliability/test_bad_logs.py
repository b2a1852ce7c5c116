"""Logged events a learner would silently misread are refused.

Before: `warm_start` on K = 3 with `action = 99` dropped every event, and with
`action = -1` credited all of them to arm 2; `LoggedData`, `save` and `load`
kept such values. Now logged data is checked on construction, on load and when
handed to a warm start, naming the column and the first bad row.
"""

from __future__ import annotations

import dataclasses
import re

import jax
import numpy as np
import pytest

import agents
import envs
from agents.warm_start import warm_start
from bandits import BanditConfigError
from bandits.files import write_logged
from envs import logged

SMALL = dict(num_items=40, num_candidates=5, num_users=30, history_length=3)


@pytest.fixture(scope="module")
def data():
    env, params = envs.make("ContextualRec-v0", **SMALL)
    return logged.generate(
        jax.random.key(0), env, params, logged.uniform(), 40, num_streams=4
    )


def _with(data, **columns):
    arrays = {k: np.array(v) for k, v in data.columns().items()}
    for name, (row, value) in columns.items():
        arrays[name][row] = value
    return arrays


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("action", 99, "column 'action' row 7 is 99, not an arm in [0, 5)"),
        ("action", -1, "column 'action' row 7 is -1, not an arm in [0, 5)"),
        ("propensity", 0.0, "column 'propensity' row 7 is 0.0, not in (0, 1]"),
        ("propensity", 1.5, "column 'propensity' row 7 is 1.5, not in (0, 1]"),
        ("reward", np.nan, "column 'reward' row 7 is nan, not a finite number"),
    ],
)
def test_bad_events_are_refused_everywhere(data, tmp_path, column, value, message):
    arrays = _with(data, **{column: (7, value)})
    with pytest.raises(BanditConfigError, match=re.escape(message)):
        dataclasses.replace(data, **{column: arrays[column]})
    path = tmp_path / "bad.parquet"
    write_logged(path, arrays, {})  # the writer does not judge; the reader does
    with pytest.raises(BanditConfigError, match="row 7"):
        logged.load(path)
    if column != "propensity":  # a warm start reads actions and rewards only
        agent = agents.make("linucb_items", num_arms=5, item_dim=3)
        with pytest.raises(BanditConfigError, match="row 7"):
            warm_start(agent, arrays)


def test_an_action_the_mask_forbids_is_refused(data):
    arrays = {k: np.array(v) for k, v in data.columns().items()}
    arrays["mask"][3, arrays["action"][3]] = False
    with pytest.raises(BanditConfigError, match=r"row 3 .* allowed by the row's mask"):
        dataclasses.replace(data, mask=arrays["mask"])


def test_good_logs_still_load(data, tmp_path):
    path = logged.save(data, tmp_path / "good.parquet")
    assert len(logged.load(path)) == len(data)
