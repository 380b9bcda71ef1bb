"""The value checks shared across the package: integers with a minimum, positive numbers,
fractions and image sizes, each refusing a bad value with a ConfigError.

Every check takes ``(owner, name, value)`` and returns the value it accepted, so a constructor
reads ``self.width = check_positive_int(owner, "width", width)``. ``bool`` is refused wherever a
number is expected: it is an ``int`` subclass, and ``spectral_norm: true`` landing in a width
is a config typo, not a width of 1.

How a message names the setting depends on where the value came from (``form``):

- ``"argument"``: a constructor argument, ``owner`` being the class:
  ``DCGANGenerator: ngf must be a positive integer, got 0.``
- ``"key"``: a config key, ``owner`` its group (or ``""`` for none):
  ``dataset.batch_size must be a positive integer, got 0``
- ``"override"``: a key as typed on the command line, ``owner`` its group (or ``""``):
  ``size=0 is invalid: expected an integer >= 1``

The texts are the ones these checks printed before they were gathered here; tests and users
match on them, so a change of wording is a change of interface.
"""

from __future__ import annotations

from typing import Literal

from gan_research.errors import ConfigError

__all__ = [
    "Form",
    "check_fraction",
    "check_image_size",
    "check_int_at_least",
    "check_positive_float",
    "check_positive_int",
]

Form = Literal["argument", "key", "override"]


def _refusal(form: Form, owner: str, name: str, value: object, rule: str) -> ConfigError:
    """The ConfigError saying ``owner``'s ``name`` must be ``rule`` (``"a positive integer"``)."""
    if form == "argument":
        return ConfigError(f"{owner}: {name} must be {rule}, got {value!r}.")
    where = f"{owner}.{name}" if owner else name
    if form == "key":
        return ConfigError(f"{where} must be {rule}, got {value!r}")
    if form == "override":
        return ConfigError(f"{where}={value!r} is invalid: expected {rule}")
    raise ValueError(f"form must be 'argument', 'key' or 'override', got {form!r}")


def check_positive_int(owner: str, name: str, value: object, *, form: Form = "argument") -> int:
    """Return ``value`` if it is an int >= 1, else raise ConfigError ("must be a positive integer").

    Args:
        owner: the class ``name`` is an argument of (``form="argument"``), or the config group
            it is a key of (``""`` for a top-level key or a bare argument name).
        name: the argument or key.
        value: what was given.
        form: how the message names the setting; see the module docstring.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _refusal(form, owner, name, value, "a positive integer")
    return value


def check_int_at_least(owner: str, name: str, value: object, minimum: int, *, form: Form = "argument") -> int:
    """Return ``value`` if it is an int >= ``minimum``, else raise ConfigError ("an integer >= minimum").

    Unlike :func:`check_positive_int` the message states the minimum as a number even when it
    is 1 (``an integer >= 1``): the wording this check's callers have always printed.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _refusal(form, owner, name, value, f"an integer >= {minimum}")
    return value


def check_positive_float(owner: str, name: str, value: object, *, form: Form = "argument") -> float:
    """Return ``float(value)`` if it is a number > 0, else raise ConfigError ("a positive number").

    ``not value > 0`` rather than ``value <= 0`` so that NaN, which compares false with
    everything, is refused too. Infinity passes: no caller has an upper bound to state.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise _refusal(form, owner, name, value, "a positive number")
    return float(value)


def check_fraction(owner: str, name: str, value: object, *, form: Form = "argument") -> float:
    """Return ``float(value)`` if it is a number in [0, 1), else raise ConfigError.

    Used for LeakyReLU slopes and dropout rates: 1 would make the activation linear or drop
    every unit, which is never what a config means.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise _refusal(form, owner, name, value, "a number in [0, 1)")
    return float(value)


def check_image_size(owner: str, image_size: object, *, smallest: int, largest: int | None = None) -> int:
    """Return ``image_size`` if it is a power of two in [``smallest``, ``largest``], else raise ConfigError.

    Networks that grow from a 4x4 square by doubling need a power of two. ``smallest``: the
    smallest size the network is built for, itself a power of two (ProGAN's 4, StyleGAN's 32);
    ``largest``: the biggest (StyleGAN's 1024), or None for no upper bound (ProGAN). A bounded
    check lists every valid size in its message, an unbounded one the first few.
    """
    if (
        not isinstance(image_size, bool)
        and isinstance(image_size, int)
        and image_size >= smallest
        and not image_size & (image_size - 1)  # a power of two has a single bit set
        and (largest is None or image_size <= largest)
    ):
        return image_size
    if largest is None:
        # "..., 1024" shows the usual range, not a bound: the sizes people train at end there.
        examples = ", ".join(str(smallest * 2**k) for k in range(4))
        raise ConfigError(
            f"{owner}: image_size must be a power of two >= {smallest} ({examples}, ..., 1024), "
            f"got {image_size!r}."
        )
    sizes = [smallest * 2**k for k in range((largest // smallest).bit_length())]
    raise ConfigError(
        f"{owner}: image_size={image_size!r} is not supported: expected a power of two from "
        f"{smallest} to {largest}, one of {sizes}."
    )
