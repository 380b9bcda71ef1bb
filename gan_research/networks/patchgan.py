"""The PatchGAN discriminator of pix2pix and CycleGAN (Isola et al. 2017, arXiv:1611.07004,
sec. 3.2.2 and appendix 6.1.2; Zhu et al. 2017, arXiv:1703.10593, sec. 4).

It classifies each N×N patch of its input as real or fake and returns the map of patch
logits; the adversarial loss averages over patches. With ``n_layers=3`` the receptive field
of one output is 70×70 pixels (the paper's default "70×70 PatchGAN", C64-C128-C256-C512).

Layer for layer, parameter for parameter, the ``NLayerDiscriminator`` of the authors'
released code (junyanz/pytorch-CycleGAN-and-pix2pix, models/networks.py): 4×4
convolutions, stride 2 except the last two, no norm on the first layer, LeakyReLU(0.2),
convolution biases only where no batch norm follows (the reference's ``use_bias``
rule: instance norm without affine parameters, or no norm). Weights N(0, 0.02) as its
``init_weights(init_type="normal")``.
"""

from __future__ import annotations

from torch import Tensor, nn

from gan_research.errors import ConfigError
from gan_research.networks.layers import apply_spectral_norm
from gan_research.utils.validation import check_positive_int

NORMS = ("batch", "instance", "none")


def norm_layer(norm: str, channels: int) -> nn.Module:
    """The reference's norm layers: BatchNorm2d(affine) or InstanceNorm2d(no affine, no running stats)."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if norm == "none":
        return nn.Identity()
    raise ConfigError(f"unknown norm={norm!r}; valid choices: {', '.join(NORMS)}")


def translation_weights_init(module: nn.Module) -> None:
    """pix2pix/CycleGAN's ``init_weights(init_type="normal", init_gain=0.02)``: conv weights
    N(0, 0.02), biases 0; batch-norm scales N(1, 0.02), shifts 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class PatchGANDiscriminator(nn.Module):
    """N-layer PatchGAN: (B, input_channels, H, W) → patch logits (B, 1, H', W').

    Args:
        input_channels: channels of what D sees (pix2pix: input and output images
            concatenated, e.g. 3 + 3; CycleGAN: one domain's images).
        ndf: filters of the first layer (64).
        n_layers: stride-2 layers after the first (3: the 70×70 PatchGAN; 1: 16×16 patches;
            deeper: larger patches, up to a whole-image classifier).
        norm: ``batch`` (pix2pix), ``instance`` (CycleGAN) or ``none``; kept as the attribute
            ``norm``. A gradient penalty needs ``instance`` or ``none``: batch statistics couple
            the samples whose input gradients it penalises (Gulrajani et al. 2017, sec. 4).
        image_size: side of the input, for ``input_shape`` and the size check.
        spectral_norm: spectrally normalise every convolution (not in the papers; available for
            every discriminator of the framework).
    """

    norms: tuple[str, ...] = NORMS

    def __init__(
        self,
        input_channels: int = 6,
        ndf: int = 64,
        n_layers: int = 3,
        norm: str = "batch",
        image_size: int = 256,
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        check_positive_int(owner, "input_channels", input_channels)
        check_positive_int(owner, "ndf", ndf)
        check_positive_int(owner, "n_layers", n_layers)
        check_positive_int(owner, "image_size", image_size)
        if norm not in NORMS:
            raise ConfigError(f"{owner}: unknown norm={norm!r}; valid choices: {', '.join(NORMS)}.")
        # n_layers stride-2 convolutions, then two stride-1 4x4 convolutions (each shrinking by 1).
        smallest = image_size // 2**n_layers - 2
        if smallest < 1:
            raise ConfigError(
                f"{owner}: n_layers={n_layers} halves image_size={image_size} {n_layers} times, leaving no "
                f"patch; use n_layers <= {max(1, (image_size // 4).bit_length() - 1)} or larger images"
            )
        self.norm = norm
        self.input_shape: tuple[int, ...] = (input_channels, image_size, image_size)
        use_bias = norm != "batch"
        layers: list[nn.Module] = [
            nn.Conv2d(input_channels, ndf, 4, 2, 1),
            nn.LeakyReLU(0.2, True),
        ]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=use_bias),
                norm_layer(norm, ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1, bias=use_bias),
            norm_layer(norm, ndf * mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * mult, 1, 4, 1, 1),
        ]
        # `model` as in the reference, so its state-dict keys (model.0.weight, ...) match.
        self.model = nn.Sequential(*layers)
        self.apply(translation_weights_init)
        if spectral_norm:
            apply_spectral_norm(self.model)

    def forward(self, x: Tensor) -> Tensor:
        """Patch logits (B, 1, H', W'): one real/fake logit per receptive field."""
        return self.model(x)
