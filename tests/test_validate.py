"""The one validation helper: every check returns the converted value or names the thing, the bound and the value."""

from __future__ import annotations

import math

import numpy as np
import pytest

from minialex import validate
from minialex.errors import ConfigError, LayerInputError


def test_integer_accepts_ints_in_range_and_converts_numpy_ints():
    assert validate.integer(3, "x", low=1) == 3
    assert type(validate.integer(np.int64(7), "x", low=0, high=7)) is int
    assert validate.integer(None, "x", low=1, allow_none=True) is None


@pytest.mark.parametrize("value", [0, -1, True, 2.0, "3", None, 11])
def test_integer_rejects_with_the_name_the_bounds_and_the_value(value):
    with pytest.raises(ConfigError, match=rf"^batch_size must be an integer in \[1, 10\], got {value!r}$".replace("(", r"\(")):
        validate.integer(value, "batch_size", low=1, high=10)


def test_number_bounds_open_and_closed():
    assert validate.number(0.5, "lr", low=0.0, low_open=True) == 0.5
    assert validate.number(0, "momentum", low=0.0, high=1.0, high_open=True) == 0.0
    for bad in (0.0, -1.0, math.inf, math.nan, True, "0.1", None):
        with pytest.raises(ConfigError, match=r"^lr must be a finite number > 0, got "):
            validate.number(bad, "lr", low=0.0, low_open=True)
    with pytest.raises(ConfigError, match=r"momentum must be a finite number in \[0, 1\), got 1\.0"):
        validate.number(1.0, "momentum", low=0.0, high=1.0, high_open=True)


def test_the_error_class_is_the_callers_choice():
    with pytest.raises(LayerInputError, match="Conv2d: stride must be an integer >= 1, got 0"):
        validate.integer(0, "Conv2d: stride", low=1, error=LayerInputError)


def test_choice_and_flag():
    assert validate.choice("sgd", "optimizer", ("sgd", "adam")) == "sgd"
    with pytest.raises(ConfigError, match="optimizer must be one of sgd, adam, got 'rmsprop'"):
        validate.choice("rmsprop", "optimizer", ("sgd", "adam"))
    with pytest.raises(ConfigError, match="init must be one of"):
        validate.choice([1], "init", ("he", None))  # unhashable values are rejected, not a TypeError
    with pytest.raises(ConfigError):
        validate.choice(True, "n", (1, 2))  # True is not 1 here
    assert validate.flag(False, "augment") is False
    with pytest.raises(ConfigError, match="augment must be True or False, got 1"):
        validate.flag(1, "augment")


def test_long_values_are_cut_so_the_message_stays_one_short_line():
    with pytest.raises(ConfigError) as info:
        validate.integer("x" * 10_000, "epochs", low=1)
    assert len(str(info.value)) < 120
