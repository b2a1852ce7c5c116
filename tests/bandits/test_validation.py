"""Bad configuration raises `BanditConfigError` naming the field at fault."""

from __future__ import annotations

import inspect
import math

import jax
import numpy as np
import pytest

import agents
from bandits import BanditConfigError, validation
from bandits.validation import positive_int, real

K, D = 3, 2


def test_config_errors_are_value_errors():
    assert issubclass(BanditConfigError, ValueError)


def test_unknown_agent_lists_the_known_ones():
    with pytest.raises(BanditConfigError, match="unknown agent 'lincub'") as info:
        agents.make("lincub", num_arms=K, dim=D)
    message = str(info.value)
    for name in agents.registered():
        assert repr(name) in message or name in message


def test_unknown_hyperparameter_lists_the_allowed_ones():
    with pytest.raises(BanditConfigError, match="'alhpa'") as info:
        agents.make("linucb", num_arms=K, dim=D, alhpa=1.0)
    message = str(info.value)
    for name in ("alpha", "regularization", "features", "dtype"):
        assert name in message


def test_missing_hyperparameter_is_named():
    with pytest.raises(BanditConfigError, match="'dim'"):
        agents.make("linucb", num_arms=K)


@pytest.mark.parametrize(
    ("name", "kwargs", "field"),
    [
        ("linucb", {"alpha": -0.5}, "alpha"),
        ("linucb", {"alpha": math.nan}, "alpha"),
        ("linucb", {"alpha": "big"}, "alpha"),
        ("linucb", {"regularization": 0.0}, "regularization"),
        ("linucb", {"regularization": 0}, "regularization"),
        ("lints", {"regularization": -1.0}, "regularization"),
        ("lin_greedy", {"regularization": 0.0}, "regularization"),
        ("lints", {"v": -0.1}, "v"),
        ("epsilon_greedy", {"epsilon": -0.1}, "epsilon"),
        ("epsilon_greedy", {"epsilon": 1.5}, "epsilon"),
        ("linucb", {"features": "items"}, "features"),
        ("linucb", {"dtype": "float16"}, "dtype"),
        ("linucb", {"num_arms": 0}, "num_arms"),
        ("linucb", {"num_arms": 2.5}, "num_arms"),
        ("linucb", {"num_arms": "3"}, "num_arms"),
        ("linucb", {"dim": -1}, "dim"),
        ("ucb1", {"c": -1.0}, "c"),
        ("thompson_bernoulli", {"prior_alpha": 0.0}, "prior_alpha"),
    ],
)
def test_bad_hyperparameter_names_the_field(name, kwargs, field):
    with pytest.raises(BanditConfigError, match=rf"\b{field}\b"):
        agents.make(name, **{"num_arms": K, "dim": D, **kwargs})


def test_error_messages_state_what_is_allowed():
    with pytest.raises(BanditConfigError, match=r"epsilon must be in \[0.0, 1.0\]"):
        agents.make("epsilon_greedy", num_arms=K, dim=D, epsilon=2.0)
    with pytest.raises(BanditConfigError, match="'context', 'arms'"):
        agents.make("linucb", num_arms=K, dim=D, features="items")
    with pytest.raises(BanditConfigError, match="'float32', 'float64'"):
        agents.make("linucb", num_arms=K, dim=D, dtype="half")
    with pytest.raises(BanditConfigError, match="> 0"):
        agents.make("linucb", num_arms=K, dim=D, regularization=0.0)


@pytest.mark.parametrize(
    "name", ["linucb", "lints", "epsilon_greedy", "ucb1", "thompson_bernoulli"]
)
def test_float64_without_x64_is_a_clear_error(name):
    with (
        jax.enable_x64(False),
        pytest.raises(BanditConfigError, match="dtype='float64' needs 64-bit JAX"),
    ):
        agents.make(name, num_arms=K, dim=D, dtype="float64")


def test_float64_with_x64_builds():
    with jax.enable_x64(True):
        agent = agents.make("linucb", num_arms=K, dim=D, dtype="float64")
        assert agent.init(jax.random.key(0)).b.dtype == jax.numpy.float64


@pytest.mark.parametrize("name", sorted(agents.registered()))
def test_every_agent_rejects_zero_arms(name):
    required = [
        k
        for k, v in agents.hyperparameters(name).items()
        if v is inspect.Parameter.empty and k not in ("num_arms", "dim")
    ]
    if required:
        # Without its other required hyperparameters the agent is refused for
        # those first (checked in test_contracts); zero arms is checked elsewhere.
        with pytest.raises(BanditConfigError, match=required[0]):
            agents.make(name, num_arms=0, dim=D)
        return
    with pytest.raises(BanditConfigError, match="num_arms"):
        agents.make(name, num_arms=0, dim=D)


# --- the kernel's checks ------------------------------------------------------


def test_positive_int():
    assert validation.positive_int("horizon", 5) == 5
    for bad in (0, -3, 2.5, 5.0, True, "5", None):
        with pytest.raises(
            BanditConfigError, match="horizon must be a positive integer"
        ):
            validation.positive_int("horizon", bad)


def test_non_negative_int():
    assert validation.non_negative_int("buffer", 0) == 0
    for bad in (-1, 0.5, False):
        with pytest.raises(BanditConfigError, match="buffer must be an integer >= 0"):
            validation.non_negative_int("buffer", bad)


def test_real_intervals():
    assert validation.real("x", 1) == 1.0
    assert validation.real("x", 0.0, low=0.0) == 0.0
    with pytest.raises(BanditConfigError, match=r"x must be in \(0.0, inf\]"):
        validation.real("x", 0.0, low=0.0, low_open=True)
    with pytest.raises(BanditConfigError, match=r"x must be in \[0.0, 1.0\)"):
        validation.real("x", 1.0, low=0.0, high=1.0, high_open=True)
    with pytest.raises(BanditConfigError, match="x must be a number, got NaN"):
        validation.real("x", math.nan)
    with pytest.raises(BanditConfigError, match="x must be a number"):
        validation.real("x", [1.0])
    # Traced values pass through unchecked (their value is unknown).
    assert jax.jit(lambda v: validation.real("x", v, low=0.0))(-1.0) == -1.0


def test_choice_lists_the_allowed_values():
    assert validation.choice("reward", "gaussian", ("gaussian", "bernoulli")) == (
        "gaussian"
    )
    with pytest.raises(
        BanditConfigError, match="'gaussian', 'bernoulli'; got 'poisson'"
    ):
        validation.choice("reward", "poisson", ("gaussian", "bernoulli"))


@pytest.mark.parametrize("value", [5.0, 1.5, True, "3", None])
def test_positive_int_takes_integers_only(value):
    """One rule for every size and count in the project: 5.0 is refused too."""
    with pytest.raises(BanditConfigError, match="num_arms must be a positive integer"):
        positive_int("num_arms", value)


def test_positive_int_takes_numpy_integers():
    assert positive_int("num_arms", np.int64(3)) == 3
    assert type(positive_int("num_arms", np.int32(3))) is int


def test_an_error_carries_its_field_as_data():
    with pytest.raises(BanditConfigError) as info:
        real("alpha", -1.0, low=0.0)
    err = info.value
    assert (err.field, err.problem) == ("alpha", "must be in [0.0, inf], got -1.0")
    moved = err.at("agents[0].hyperparameters.alpha", " (env setting a=1)")
    assert str(moved) == (
        "agents[0].hyperparameters.alpha must be in [0.0, inf], got -1.0 "
        "(env setting a=1)"
    )
    assert moved.field == "agents[0].hyperparameters.alpha"
    plain = BanditConfigError("give either checkpoint or params, not both")
    assert plain.field is None
    assert str(plain.at("agents[1] ('T')")) == (
        "agents[1] ('T'): give either checkpoint or params, not both"
    )
