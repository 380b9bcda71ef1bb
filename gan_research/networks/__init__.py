"""Generators and discriminators, one file per architecture; shared blocks in ``layers``.

Contract: a generator has ``latent_dim`` and ``output_shape`` and maps (B, latent_dim) to
(B, *output_shape); a discriminator has ``input_shape`` and maps (B, *input_shape) to raw
logits / critic values of shape (B,) (never a sigmoid: the losses apply it).
"""

from gan_research.networks.dcgan import SUPPORTED_IMAGE_SIZES, DCGANDiscriminator, DCGANGenerator
from gan_research.networks.mlp import MLPDiscriminator, MLPGenerator
from gan_research.networks.seed_fashion import SeedFashionDiscriminator, SeedFashionGenerator

__all__ = [
    "SUPPORTED_IMAGE_SIZES",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "MLPDiscriminator",
    "MLPGenerator",
    "SeedFashionDiscriminator",
    "SeedFashionGenerator",
]
