"""The shared value checks: what a user typing a config value can rely on.

The message texts are an interface (other tests and users match on them), so they are
asserted here in full, one per form.
"""

from __future__ import annotations

import math

import pytest

from gan_research.errors import ConfigError
from gan_research.utils.validation import (
    check_fraction,
    check_image_size,
    check_int_at_least,
    check_positive_float,
    check_positive_int,
)


def _refused(check, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        check(*args, **kwargs)
    return str(info.value)


@pytest.mark.parametrize("value", [True, False])
def test_bool_is_not_a_number(value: bool) -> None:
    # `spectral_norm: true` landing in a width must not become a width of 1.
    assert "positive integer" in _refused(check_positive_int, "G", "ngf", value)
    assert "integer >= 0" in _refused(check_int_at_least, "G", "n", value, 0)
    assert "positive number" in _refused(check_positive_float, "G", "lr", value)
    assert "[0, 1)" in _refused(check_fraction, "G", "slope", value)
    assert "power of two" in _refused(check_image_size, "G", value, smallest=1)


@pytest.mark.parametrize("value", [1.0, 2.5, "3", None])
def test_an_integer_must_be_an_int(value: object) -> None:
    _refused(check_positive_int, "G", "ngf", value)
    _refused(check_int_at_least, "G", "ngf", value, 0)


def test_the_minimum_is_inclusive_and_returned_values_are_the_inputs() -> None:
    assert check_positive_int("G", "ngf", 1) == 1
    _refused(check_positive_int, "G", "ngf", 0)
    assert check_int_at_least("", "strip_iterates", 0, 0) == 0
    _refused(check_int_at_least, "", "strip_iterates", -1, 0)
    assert check_int_at_least("model", "num_classes", 2, 2) == 2
    _refused(check_int_at_least, "model", "num_classes", 1, 2)


def test_messages_name_the_setting_as_the_user_gave_it() -> None:
    assert (
        _refused(check_positive_int, "DCGANGenerator", "ngf", 0)
        == "DCGANGenerator: ngf must be a positive integer, got 0."
    )
    assert (
        _refused(check_positive_int, "dataset", "batch_size", -3, form="key")
        == "dataset.batch_size must be a positive integer, got -3"
    )
    assert (
        _refused(check_int_at_least, "", "num_classes", 0, 1, form="key")
        == "num_classes must be an integer >= 1, got 0"
    )
    assert (
        _refused(check_int_at_least, "", "size", "big", 1, form="override")
        == "size='big' is invalid: expected an integer >= 1"
    )
    assert (
        _refused(check_int_at_least, "model", "continuous", -1, 0, form="override")
        == "model.continuous=-1 is invalid: expected an integer >= 0"
    )
    assert (
        _refused(check_positive_float, "ring", "radius", 0, form="key")
        == "ring.radius must be a positive number, got 0"
    )
    assert (
        _refused(check_fraction, "MLPDiscriminator", "leaky_slope", 1.0)
        == "MLPDiscriminator: leaky_slope must be a number in [0, 1), got 1.0."
    )


def test_positive_float_refuses_nan_and_returns_a_float() -> None:
    _refused(check_positive_float, "ring", "radius", math.nan)
    _refused(check_positive_float, "ring", "radius", -0.5)
    value = check_positive_float("ring", "radius", 2)
    assert value == 2.0 and isinstance(value, float)


def test_fraction_is_half_open() -> None:
    assert check_fraction("D", "dropout", 0) == 0.0
    assert check_fraction("D", "dropout", 0.999) == 0.999
    _refused(check_fraction, "D", "dropout", 1)
    _refused(check_fraction, "D", "dropout", -0.1)


@pytest.mark.parametrize("size", [4, 8, 64, 2048])
def test_unbounded_image_size_takes_any_power_of_two_from_the_smallest(size: int) -> None:
    assert check_image_size("ProGANGenerator", size, smallest=4) == size


@pytest.mark.parametrize("size", [0, 2, 3, 12, 48, -4, 16.0])
def test_unbounded_image_size_refuses_the_rest(size: object) -> None:
    assert _refused(check_image_size, "ProGANGenerator", size, smallest=4) == (
        f"ProGANGenerator: image_size must be a power of two >= 4 (4, 8, 16, 32, ..., 1024), got {size!r}."
    )


def test_bounded_image_size_lists_every_valid_size() -> None:
    for size in (32, 64, 128, 256, 512, 1024):
        assert check_image_size("StyleGANGenerator", size, smallest=32, largest=1024) == size
    for size in (16, 2048, 96):
        message = _refused(check_image_size, "StyleGANGenerator", size, smallest=32, largest=1024)
        assert message == (
            f"StyleGANGenerator: image_size={size} is not supported: expected a power of two from "
            "32 to 1024, one of [32, 64, 128, 256, 512, 1024]."
        )
