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


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("linucb_items", dict(num_arms=3, item_dim=3),
         "num_arms of agent 'linucb_items' is 3, but {where} has 5 arms per event "
         "(column 'mask' of per-event shape (5,))"),
        ("random", dict(num_arms=7),
         "num_arms of agent 'random' is 7, but {where} has 5 arms per event"),
        ("linucb", dict(num_arms=5, dim=4),
         "dim of agent 'linucb' is 4, but {where} has 19 context features "
         "(column 'context' of per-event shape (19,))"),
        ("linucb", dict(num_arms=5, dim=13, features="arms"),
         "dim of agent 'linucb' is 13, but {where} has 14 features per arm row "
         "(column 'arms' of per-event shape (5, 14))"),
    ],
)  # fmt: skip
def test_logs_of_another_shape_are_refused_before_any_event_is_read(
    data, tmp_path, monkeypatch, name, kwargs, message
):
    """Before: K = 3 on logs of K = 5 replayed silently (the agent never learns
    arms 3 and 4, or clamps them onto arm 2); a wrong dim was a raw JAX shape
    error from inside the replay. Now the agent's declared shapes are compared
    with the logs' first, naming both; from a file, only its schema is read."""
    import agents.warm_start as module

    path = logged.save(data, tmp_path / "logs.parquet")
    agent = agents.make(name, **kwargs)

    def no_events(*args, **kwargs):
        raise AssertionError("events were read")

    monkeypatch.setattr(module, "read_logged", no_events)
    sources = {"the logged data": data, f"the logged data {str(path)!r}": str(path)}
    for where, source in sources.items():
        with pytest.raises(BanditConfigError) as info:
            warm_start(agent, source)
        assert str(info.value).startswith(message.format(where=where)), info.value
        assert info.value.field == message.split()[0]


def test_logs_of_the_agents_shape_still_warm_start(data, tmp_path):
    agent = agents.make("linucb_context_items", num_arms=5, dim=19, item_dim=13)
    path = logged.save(data, tmp_path / "logs.parquet")
    assert warm_start(agent, str(path)).name == "linucb_context_items_warm"
