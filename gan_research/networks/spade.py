"""GauGAN's networks (Park et al. 2019, "Semantic Image Synthesis with Spatially-Adaptive
Normalization", arXiv:1903.07291): SPADE normalisation, SPADE residual blocks, the SPADE
generator, the image encoder of the multimodal (VAE) variant and the multi-scale PatchGAN
discriminator with intermediate features for the feature-matching loss.

Layer for layer the reference code (NVlabs/SPADE): ``models/networks/normalization.py``
(``SPADE``), ``architecture.py`` (``SPADEResnetBlock``), ``generator.py`` (``SPADEGenerator``),
``encoder.py`` (``ConvEncoder``) and ``discriminator.py`` (``MultiscaleDiscriminator``,
``NLayerDiscriminator``), with its defaults: ``norm_G=spectralspadesyncbatch3x3`` (spectral norm
on the residual blocks' convolutions, parameter-free batch norm in SPADE, 3×3 kernels, 128 hidden
channels), ``norm_D=norm_E=spectralinstance``, ``ngf=ndf=64``, ``z_dim=256``, ``num_D=2``,
``n_layers_D=4`` and ``init_type=xavier`` with gain 0.02. Batch norm here is torch's
``BatchNorm2d``: under DDP, ``trainer.sync_batchnorm=true`` makes it the reference's synchronised
one. Where this file differs from the reference, for images that are not 256 px:

- the generator's start resolution is ``image_size / 2**num_up`` for ``num_upsampling_layers``
  ``normal`` (5 doublings), ``more`` (6) or ``most`` (7), as the reference's
  ``compute_latent_vector_size``; square images only (the reference's ``aspect_ratio`` is 1 here);
- the encoder halves its input down to 4×4 with as many stride-2 layers as that takes (the
  reference resizes every input to 256 px and uses 6, i.e. the same network at 256 px).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_research.errors import ConfigError
from gan_research.utils.validation import check_image_size, check_positive_int

#: Parameter-free normalisations SPADE can modulate (the reference's ``spade<norm>3x3``).
PARAM_FREE_NORMS = ("batch", "instance")
#: The reference's ``--num_upsampling_layers``: doublings of the generator from its start map.
UPSAMPLING_LAYERS = {"normal": 5, "more": 6, "most": 7}
#: Discriminator/encoder normalisations (the reference's ``spectral<norm>``, spectral norm apart).
D_NORMS = ("instance", "batch", "none")


def spade_weights_init(module: nn.Module, gain: float = 0.02) -> None:
    """The reference's ``init_weights(init_type="xavier", gain=0.02)``: conv and linear weights
    Xavier-normal with gain 0.02, biases 0; batch-norm scales N(1, 0.02)."""
    if isinstance(module, nn.Conv2d | nn.Linear):
        nn.init.xavier_normal_(module.weight, gain=gain)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d) and module.weight is not None:
        nn.init.normal_(module.weight, 1.0, gain)
        nn.init.zeros_(module.bias)


def _spectral(layer: nn.Module, enabled: bool) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(layer) if enabled else layer


def _param_free_norm(norm: str, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels, affine=False)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    raise ConfigError(
        f"SPADE: unknown param_free_norm={norm!r}; valid choices: {', '.join(PARAM_FREE_NORMS)}"
    )


class SPADE(nn.Module):
    """Spatially-adaptive normalisation (eq. 1): ``norm(x) * (1 + γ(m)) + β(m)``.

    ``norm`` has no parameters of its own; γ and β are per-pixel, per-channel maps predicted from
    the label map ``m`` (resized to ``x``'s resolution, nearest neighbour) by a shared conv + ReLU
    and one conv each (the reference's ``mlp_shared``, ``mlp_gamma``, ``mlp_beta``).

    Args:
        channels: channels of the normalised activations (γ's and β's channels).
        label_channels: channels of the label map (classes, one-hot).
        hidden: channels of the shared embedding (128 in the reference, "hardcoded").
        kernel_size: of the three convolutions (3).
        param_free_norm: ``batch`` (the reference's default, synchronised under DDP) or ``instance``.
    """

    def __init__(
        self,
        channels: int,
        label_channels: int,
        hidden: int = 128,
        kernel_size: int = 3,
        param_free_norm: str = "batch",
    ) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.param_free_norm = _param_free_norm(param_free_norm, channels)
        self.mlp_shared = nn.Sequential(
            nn.Conv2d(label_channels, hidden, kernel_size, padding=pad), nn.ReLU()
        )
        self.mlp_gamma = nn.Conv2d(hidden, channels, kernel_size, padding=pad)
        self.mlp_beta = nn.Conv2d(hidden, channels, kernel_size, padding=pad)

    def modulation(self, x: Tensor, segmap: Tensor) -> tuple[Tensor, Tensor]:
        """γ and β at ``x``'s resolution for the label map ``segmap``."""
        segmap = F.interpolate(segmap, size=x.shape[2:], mode="nearest")
        actv = self.mlp_shared(segmap)
        return self.mlp_gamma(actv), self.mlp_beta(actv)

    def forward(self, x: Tensor, segmap: Tensor) -> Tensor:
        gamma, beta = self.modulation(x, segmap)
        return self.param_free_norm(x) * (1 + gamma) + beta


class SPADEResBlock(nn.Module):
    """SPADE residual block (Fig. 4 right): two (SPADE, LeakyReLU 0.2, 3×3 conv) units, and a
    learned shortcut (SPADE, 1×1 conv without bias) when the channels change; spectral norm on the
    convolutions (the reference's ``norm_G=spectral...``)."""

    def __init__(
        self,
        fin: int,
        fout: int,
        label_channels: int,
        hidden: int = 128,
        param_free_norm: str = "batch",
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        self.learned_shortcut = fin != fout
        fmiddle = min(fin, fout)
        self.conv_0 = nn.Conv2d(fin, fmiddle, 3, padding=1)
        self.conv_1 = nn.Conv2d(fmiddle, fout, 3, padding=1)
        self.norm_0 = SPADE(fin, label_channels, hidden, 3, param_free_norm)
        self.norm_1 = SPADE(fmiddle, label_channels, hidden, 3, param_free_norm)
        if self.learned_shortcut:
            self.conv_s = nn.Conv2d(fin, fout, 1, bias=False)
            self.norm_s = SPADE(fin, label_channels, hidden, 3, param_free_norm)
        self.apply(spade_weights_init)
        for name in ("conv_0", "conv_1", *(("conv_s",) if self.learned_shortcut else ())):
            setattr(self, name, _spectral(getattr(self, name), spectral_norm))

    def forward(self, x: Tensor, seg: Tensor) -> Tensor:
        x_s = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return x_s + dx


class ConvEncoder(nn.Module):
    """The multimodal variant's image encoder (sec. 3, "Multi-modal synthesis"; the reference's
    ``ConvEncoder``): 3×3 stride-2 convolutions with spectral norm and instance norm, LeakyReLU
    0.2, down to 4×4, then two linear heads giving the mean and log-variance of q(z | image).

    Args:
        channels: image channels.
        image_size: side of the images (a power of two >= 8).
        ndf: filters of the first layer (the reference uses ``ngf``, 64); doubled per layer up to 8x.
        z_dim: latent size (256).
        norm, spectral_norm: the reference's ``norm_E=spectralinstance``.
    """

    def __init__(
        self,
        channels: int = 3,
        image_size: int = 256,
        ndf: int = 64,
        z_dim: int = 256,
        norm: str = "instance",
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        for key, value in (("channels", channels), ("ndf", ndf), ("z_dim", z_dim)):
            check_positive_int(owner, key, value)
        check_image_size(owner, image_size, smallest=8)
        layers: list[nn.Module] = []
        fin, size = channels, image_size
        for i in range(int(math.log2(image_size // 4))):
            fout = ndf * min(2**i, 8)
            conv = _spectral(nn.Conv2d(fin, fout, 3, stride=2, padding=1, bias=norm == "none"), spectral_norm)
            layers += [conv, _d_norm(norm, fout), nn.LeakyReLU(0.2)]
            fin, size = fout, size // 2
        self.body = nn.Sequential(*layers)
        self.fc_mu = nn.Linear(fin * 4 * 4, z_dim)
        self.fc_var = nn.Linear(fin * 4 * 4, z_dim)
        self.z_dim = z_dim
        self.input_shape = (channels, image_size, image_size)
        # Weights first, then spectral norm reads them (its u, v start from the initialised weights).
        for module in self.modules():
            if isinstance(module, nn.Linear):
                spade_weights_init(module)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, logvar)`` of q(z | x), each (B, z_dim)."""
        h = self.body(x).flatten(1)
        return self.fc_mu(h), self.fc_var(h)


class SPADEGenerator(nn.Module):
    """The SPADE generator (Fig. 5; the reference's ``SPADEGenerator``): from the label map
    downsampled to the start resolution (or, in the multimodal variant, from z through a linear
    layer), seven SPADE residual blocks with nearest-neighbour 2× upsampling between them
    (channels 16, 16, 16, 8, 4, 2, 1 × ngf), then LeakyReLU, a 3×3 conv to the image and tanh.
    Every block is modulated by the full-resolution label map.

    Called ``G(segmap)`` or, with an encoder (``use_vae``), ``G(segmap, z)``; ``encode(image)``
    gives ``(mu, logvar)`` of the encoder.

    Args:
        input_channels: label-map channels (classes, one-hot).
        output_channels: image channels.
        image_size: side of the square images (divisible by 2**num_up).
        ngf: the width (64).
        num_upsampling_layers: ``normal`` (5 doublings), ``more`` (6, an extra one between the
            middle blocks) or ``most`` (7, plus a final block at ngf/2).
        spade_hidden: SPADE's hidden channels (128).
        param_free_norm: SPADE's normalisation, ``batch`` or ``instance``.
        spectral_norm: on the residual blocks' convolutions (the reference: yes).
        use_vae: the multimodal variant: start from z and own an image encoder.
        z_dim: latent size of the multimodal variant (256).
        encoder_ndf: the encoder's first-layer filters (the reference: ngf).
    """

    def __init__(
        self,
        input_channels: int,
        output_channels: int = 3,
        image_size: int = 256,
        ngf: int = 64,
        num_upsampling_layers: str = "normal",
        spade_hidden: int = 128,
        param_free_norm: str = "batch",
        spectral_norm: bool = True,
        use_vae: bool = False,
        z_dim: int = 256,
        encoder_ndf: int | None = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        for key, value in (
            ("input_channels", input_channels),
            ("output_channels", output_channels),
            ("ngf", ngf),
            ("spade_hidden", spade_hidden),
            ("z_dim", z_dim),
        ):
            check_positive_int(owner, key, value)
        if num_upsampling_layers not in UPSAMPLING_LAYERS:
            raise ConfigError(
                f"{owner}: num_upsampling_layers={num_upsampling_layers!r} is invalid; valid choices: "
                f"{', '.join(UPSAMPLING_LAYERS)}"
            )
        if param_free_norm not in PARAM_FREE_NORMS:
            raise ConfigError(
                f"{owner}: param_free_norm={param_free_norm!r} is invalid; valid choices: "
                f"{', '.join(PARAM_FREE_NORMS)}"
            )
        num_up = UPSAMPLING_LAYERS[num_upsampling_layers]
        check_positive_int(owner, "image_size", image_size)
        if image_size % 2**num_up != 0:
            raise ConfigError(
                f"{owner}: image_size={image_size} is not divisible by 2**{num_up} "
                f"(num_upsampling_layers={num_upsampling_layers}); use a multiple of {2**num_up}"
            )
        self.num_upsampling_layers = num_upsampling_layers
        self.start_size = image_size // 2**num_up
        self.use_vae = bool(use_vae)
        self.input_shape: tuple[int, ...] = (input_channels, image_size, image_size)
        self.output_shape: tuple[int, ...] = (output_channels, image_size, image_size)
        nf = ngf
        if self.use_vae:
            self.latent_dim = z_dim
            self.fc: nn.Module = nn.Linear(z_dim, 16 * nf * self.start_size**2)
            self.encoder: ConvEncoder | None = ConvEncoder(
                output_channels, image_size, encoder_ndf or ngf, z_dim, "instance", spectral_norm
            )
        else:
            self.fc = nn.Conv2d(input_channels, 16 * nf, 3, padding=1)
            self.encoder = None
        spade_weights_init(self.fc)

        def block(fin: int, fout: int) -> SPADEResBlock:
            return SPADEResBlock(fin, fout, input_channels, spade_hidden, param_free_norm, spectral_norm)

        self.head_0 = block(16 * nf, 16 * nf)
        self.G_middle_0 = block(16 * nf, 16 * nf)
        self.G_middle_1 = block(16 * nf, 16 * nf)
        self.up_0 = block(16 * nf, 8 * nf)
        self.up_1 = block(8 * nf, 4 * nf)
        self.up_2 = block(4 * nf, 2 * nf)
        self.up_3 = block(2 * nf, nf)
        final = nf
        if num_upsampling_layers == "most":
            self.up_4 = block(nf, nf // 2 or 1)
            final = nf // 2 or 1
        self.conv_img = nn.Conv2d(final, output_channels, 3, padding=1)
        spade_weights_init(self.conv_img)

    def encode(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, logvar)`` of the encoder for ``image`` (the multimodal variant only)."""
        if self.encoder is None:
            raise RuntimeError("SPADEGenerator.encode needs use_vae=true")
        return self.encoder(image)

    def forward(self, seg: Tensor, z: Tensor | None = None) -> Tensor:
        if self.use_vae:
            if z is None:
                z = torch.randn(seg.shape[0], self.latent_dim, device=seg.device, dtype=seg.dtype)
            x = self.fc(z).view(
                -1, self.fc.out_features // self.start_size**2, self.start_size, self.start_size
            )
        else:
            x = self.fc(F.interpolate(seg, size=(self.start_size, self.start_size), mode="nearest"))
        up = self.num_upsampling_layers
        x = F.interpolate(self.head_0(x, seg), scale_factor=2, mode="nearest")
        x = self.G_middle_0(x, seg)
        if up in ("more", "most"):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.G_middle_1(x, seg)
        for name in ("up_0", "up_1", "up_2", "up_3"):
            x = getattr(self, name)(F.interpolate(x, scale_factor=2, mode="nearest"), seg)
        if up == "most":
            x = self.up_4(F.interpolate(x, scale_factor=2, mode="nearest"), seg)
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))


def _d_norm(norm: str, channels: int) -> nn.Module:
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "none":
        return nn.Identity()
    raise ConfigError(f"unknown norm={norm!r}; valid choices: {', '.join(D_NORMS)}")


class NLayerDiscriminator(nn.Module):
    """One scale of GauGAN's D (the reference's ``NLayerDiscriminator``): 4×4 convolutions with
    padding 2, stride 2 except the last two, LeakyReLU 0.2, spectral norm and instance norm after
    the first layer (the norm replaces the conv's bias), channels doubled up to 512; returns every
    layer's output (the last is the patch logits) for the feature-matching loss."""

    def __init__(
        self,
        input_channels: int,
        ndf: int = 64,
        n_layers: int = 4,
        norm: str = "instance",
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        pad = 2  # ceil((4 - 1) / 2), as the reference
        nf = ndf
        groups: list[nn.Module] = [nn.Sequential(nn.Conv2d(input_channels, nf, 4, 2, pad), nn.LeakyReLU(0.2))]
        for n in range(1, n_layers):
            prev, nf = nf, min(nf * 2, 512)
            stride = 1 if n == n_layers - 1 else 2
            conv = nn.Conv2d(prev, nf, 4, stride, pad, bias=norm == "none")
            groups.append(nn.Sequential(conv, _d_norm(norm, nf), nn.LeakyReLU(0.2)))
        groups.append(nn.Sequential(nn.Conv2d(nf, 1, 4, 1, pad)))
        self.groups = nn.ModuleList(groups)
        self.apply(spade_weights_init)
        for group in self.groups:
            group[0] = _spectral(group[0], spectral_norm)

    def forward(self, x: Tensor) -> list[Tensor]:
        outputs = []
        for group in self.groups:
            x = group(x)
            outputs.append(x)
        return outputs


class MultiscaleDiscriminator(nn.Module):
    """GauGAN's D (sec. 3, pix2pixHD's multi-scale design): ``num_d`` identical PatchGANs on the
    (label map, image) pair concatenated along the channels, each on the input average-pooled
    (3×3, stride 2, padding 1, padding excluded) once more than the previous one.

    ``forward`` returns, per scale, the list of layer outputs (the last is the patch logits).

    Args:
        label_channels, image_channels: of the pair (its input has their sum, read from the
            dataset's ``channels_a`` and ``channels_b`` by the config).
        image_size: side of the input pair.
        ndf, n_layers: of each scale (64, 4).
        num_d: scales (2).
        norm: ``instance`` (the reference), ``batch`` or ``none``; kept as the attribute ``norm``.
        spectral_norm: on every convolution (the reference: yes).
    """

    norms: tuple[str, ...] = D_NORMS

    def __init__(
        self,
        label_channels: int,
        image_channels: int = 3,
        image_size: int = 256,
        ndf: int = 64,
        n_layers: int = 4,
        num_d: int = 2,
        norm: str = "instance",
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        for key, value in (
            ("label_channels", label_channels),
            ("image_channels", image_channels),
            ("image_size", image_size),
            ("ndf", ndf),
            ("n_layers", n_layers),
            ("num_d", num_d),
        ):
            check_positive_int(owner, key, value)
        if norm not in D_NORMS:
            raise ConfigError(f"{owner}: unknown norm={norm!r}; valid choices: {', '.join(D_NORMS)}")
        # Each scale halves its input (n_layers - 1) times; the smallest scale must keep a pixel.
        smallest = image_size // 2 ** (num_d - 1)
        if smallest // 2 ** (n_layers - 1) < 1:
            raise ConfigError(
                f"{owner}: num_d={num_d} scales of n_layers={n_layers} leave no patch of a {image_size} px "
                f"input; use fewer scales or layers, or larger images"
            )
        input_channels = label_channels + image_channels
        self.norm = norm
        self.num_d = num_d
        self.input_shape: tuple[int, ...] = (input_channels, image_size, image_size)
        self.scales = nn.ModuleList(
            NLayerDiscriminator(input_channels, ndf, n_layers, norm, spectral_norm) for _ in range(num_d)
        )

    @staticmethod
    def downsample(x: Tensor) -> Tensor:
        return F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: Tensor) -> list[list[Tensor]]:
        results = []
        for i, scale in enumerate(self.scales):
            if i > 0:
                x = self.downsample(x)
            results.append(scale(x))
        return results


def final_logits(outputs: list[list[Tensor]]) -> Tensor:
    """Every scale's patch logits of a multi-scale D output, flattened per sample: (B, N)."""
    return torch.cat([layers[-1].flatten(1) for layers in outputs], dim=1)
