"""The multi-scale gradient GAN family (MSG-GAN; Karnewar & Wang 2020, "MSG-GAN: Multi-Scale
Gradients for Generative Adversarial Networks", CVPR 2020, arXiv:1903.06048).

G emits an image at every resolution (4x4 up to the data's size) and D reads each at its matching
scale (``gan_research.networks.msggan``), so D's gradients reach every block of G directly, from
the first step, instead of only through the blocks above it: the paper's alternative to
progressive growing (sec. 1 and 3). The real images' pyramid is made by average pooling.

The step is the unconditional GAN step of :class:`~gan_research.families.gan.GAN`, unchanged:
the pyramid of a batch travels through it as one tensor, a scale atlas
(:func:`~gan_research.networks.msggan.pack_scales`), returned by :meth:`generate_fake` for fakes
and by :meth:`real_samples` for reals. Everything the shared step does to a batch acts on every
scale alike: label flips swap whole pyramids, instance noise perturbs every scale, a WGAN-GP
interpolate mixes the two pyramids with one ε per sample and an R1 penalty on the atlas is the
sum of the per-scale penalties.

The paper trains MSG-ProGAN with the relativistic average hinge loss (sec. 4: ``loss=relativistic_hinge``)
and Adam(0.003, betas (0, 0.99)), 1 D step per G step, without progressive growing, fade-in or
EMA (sec. 4 and its code, akanimax/BMSG-GAN ``train.py``); ``experiment=msggan_digits`` uses those.

Sample grids and the metrics see the full-resolution image (the generator's ``forward``); the
grid ``samples/scales/`` shows the fixed noise batch's whole pyramid, one atlas per sample.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from gan_research.errors import ConfigError
from gan_research.families.base import require_attributes
from gan_research.families.gan import GAN
from gan_research.networks.msggan import image_pyramid, pack_scales
from gan_research.utils.data_spec import DataKind


class MSGGAN(GAN):
    """MSG-GAN: G(z) → an image per resolution, D(pyramid) → score (see the module docstring)."""

    data_kinds = (DataKind.IMAGES, DataKind.STACKED)

    def check_networks(self, generator: nn.Module, discriminator: nn.Module) -> None:
        """G has ``forward_scales`` and ``scales`` (the sides it emits, lowest first); D reads the
        same scales."""
        needs = "MSG-GAN needs a multi-scale generator and discriminator (gan_research.networks.msggan)"
        require_attributes("generator", generator, ("forward_scales", "scales"), needs)
        require_attributes("discriminator", discriminator, ("scales",), needs)
        super().check_networks(generator, discriminator)
        if tuple(generator.scales) != tuple(discriminator.scales):
            raise ConfigError(
                f"model.generator emits scales {list(generator.scales)} but model.discriminator reads "
                f"{list(discriminator.scales)}; give both the same image_size"
            )

    def generate_fake(self, z: Tensor, condition: Any) -> Tensor:
        """G's image at every resolution, packed into one scale atlas."""
        return pack_scales(self.generator.forward_scales(z))

    def real_samples(self, real: Tensor) -> Tensor:
        """The real batch's average-pooled pyramid, packed as the fakes are."""
        return pack_scales(image_pyramid(real, self.generator.scales))

    @torch.no_grad()
    def scale_atlases(self, z: Tensor) -> Tensor:
        """The sampling generator's pyramids for ``z`` as atlases, in eval mode."""
        gen = self.sampling_generator
        was_training = gen.training
        gen.eval()
        try:
            return pack_scales(gen.forward_scales(z.to(self.device)))
        finally:
            gen.train(was_training)

    def extra_grids(self) -> dict[str, tuple[Tensor, int]]:
        """``scales``: every resolution G emits for the fixed noise batch (its first 16 samples),
        each sample's pyramid as one atlas: full size on the left, lower scales on the right."""
        z = self.fixed_noise[:16]
        return {"scales": (self.scale_atlases(z).cpu(), 4)}
