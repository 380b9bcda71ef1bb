"""The two generators and the two discriminators of CycleGAN, each pair one module
(Zhu et al. 2017, arXiv:1703.10593, sec. 3: G: X → Y, F: Y → X, D_X, D_Y).

A pair is a plain container, so the framework's single ``model.generator`` and
``model.discriminator`` hold both networks of a side: one optimiser steps both
generators and one both discriminators, as the reference chains their parameters
(junyanz/pytorch-CycleGAN-and-pix2pix, models/cycle_gan_model.py, ``itertools.chain``),
and the generator EMA, checkpoints and device moves cover both at once.

Naming follows the paper, not the reference code: ``d_a`` judges domain-A images (real A
against F(B)), ``d_b`` domain-B images (real B against G(A)). The reference's ``netD_A``
is our ``d_b`` (it judges G_A's output, fake B) and its ``netD_B`` our ``d_a``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from gan_research.errors import ConfigError


def _shape(owner: str, role: str, net: nn.Module, attr: str) -> tuple[int, ...]:
    if not hasattr(net, attr):
        raise ConfigError(f"{owner}: {role} ({type(net).__name__}) lacks the attribute {attr!r}")
    return tuple(getattr(net, attr))


class TranslationPair(nn.Module):
    """G: A → B and F: B → A.

    Args:
        a_to_b: the generator translating domain A to B (the paper's G), with
            ``input_shape`` (C_a, H, W) and ``output_shape`` (C_b, H, W).
        b_to_a: the generator translating B to A (the paper's F), with the shapes swapped.

    ``input_shape`` / ``output_shape`` are those of ``a_to_b``; ``forward(a)`` is G(a).
    """

    def __init__(self, a_to_b: nn.Module, b_to_a: nn.Module) -> None:
        super().__init__()
        owner = type(self).__name__
        g_in, g_out = (
            _shape(owner, "a_to_b", a_to_b, "input_shape"),
            _shape(owner, "a_to_b", a_to_b, "output_shape"),
        )
        f_in, f_out = (
            _shape(owner, "b_to_a", b_to_a, "input_shape"),
            _shape(owner, "b_to_a", b_to_a, "output_shape"),
        )
        if f_in != g_out or f_out != g_in:
            raise ConfigError(
                f"{owner}: a_to_b maps {g_in} -> {g_out}, so b_to_a must map {g_out} -> {g_in}, "
                f"but it maps {f_in} -> {f_out}; give b_to_a the channels of a_to_b swapped "
                "(input_channels <-> output_channels) and the same image_size"
            )
        self.a_to_b = a_to_b
        self.b_to_a = b_to_a
        self.input_shape: tuple[int, ...] = g_in
        self.output_shape: tuple[int, ...] = g_out

    def forward(self, a: Tensor) -> Tensor:
        """G(a): the A → B translation."""
        return self.a_to_b(a)

    def compile(self, *args: Any, **kwargs: Any) -> None:
        """``torch.compile`` each generator in place (the fast path's ``compile``): the family calls
        the members, never the pair's own forward."""
        self.a_to_b.compile(*args, **kwargs)
        self.b_to_a.compile(*args, **kwargs)


class DiscriminatorPair(nn.Module):
    """D_A (judges domain-A images) and D_B (judges domain-B images).

    Args:
        d_a: discriminator of domain A, ``input_shape`` (C_a, H, W) (the paper's D_X).
        d_b: discriminator of domain B, ``input_shape`` (C_b, H, W) (the paper's D_Y).

    ``input_shape`` is ``d_b``'s: what the pair's A → B generator's output is judged by, so the
    framework's G/D shape contract reads as for any other family. ``forward(a, b)`` returns
    ``(d_a(a), d_b(b))``.
    """

    def __init__(self, d_a: nn.Module, d_b: nn.Module) -> None:
        super().__init__()
        owner = type(self).__name__
        self.input_shape_a: tuple[int, ...] = _shape(owner, "d_a", d_a, "input_shape")
        self.input_shape: tuple[int, ...] = _shape(owner, "d_b", d_b, "input_shape")
        self.d_a = d_a
        self.d_b = d_b

    def forward(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        return self.d_a(a), self.d_b(b)

    def compile(self, *args: Any, **kwargs: Any) -> None:
        """``torch.compile`` each discriminator in place (see :meth:`TranslationPair.compile`)."""
        self.d_a.compile(*args, **kwargs)
        self.d_b.compile(*args, **kwargs)
