"""Generators and discriminators, one file per architecture; shared blocks in ``layers``.

Contract: a generator has ``latent_dim`` and ``output_shape`` and maps (B, latent_dim) to
(B, *output_shape); a discriminator has ``input_shape`` and maps (B, *input_shape) to raw
logits / critic values of shape (B,) (never a sigmoid: the losses apply it). Class-conditional
networks also have ``num_classes`` and take the labels as a second argument; discriminators with
a head beside the score (AC-GAN, InfoGAN, SGAN) return ``(scores, head_outputs)``.
"""

from gan_research.networks.conditional import (
    AuxiliaryDCGANDiscriminator,
    ConditionalDCGANDiscriminator,
    ConditionalDCGANGenerator,
)
from gan_research.networks.dcgan import SUPPORTED_IMAGE_SIZES, DCGANDiscriminator, DCGANGenerator
from gan_research.networks.mlp import MLPDiscriminator, MLPGenerator
from gan_research.networks.patchgan import PatchGANDiscriminator
from gan_research.networks.resnet_generator import ResnetGenerator
from gan_research.networks.sagan import SAGANDiscriminator, SAGANGenerator, SelfAttention
from gan_research.networks.seed_fashion import SeedFashionDiscriminator, SeedFashionGenerator
from gan_research.networks.unet import UNetGenerator

__all__ = [
    "SUPPORTED_IMAGE_SIZES",
    "AuxiliaryDCGANDiscriminator",
    "ConditionalDCGANDiscriminator",
    "ConditionalDCGANGenerator",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "MLPDiscriminator",
    "MLPGenerator",
    "PatchGANDiscriminator",
    "ResnetGenerator",
    "SAGANDiscriminator",
    "SAGANGenerator",
    "SeedFashionDiscriminator",
    "SeedFashionGenerator",
    "SelfAttention",
    "UNetGenerator",
]
