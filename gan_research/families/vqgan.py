"""VQGAN's first stage (Esser, Rombach & Ommer 2021, "Taming Transformers for High-Resolution Image
Synthesis", arXiv:2012.09841, sec. 3.1 and 3.2): a vector-quantised autoencoder trained with a
perceptual reconstruction loss and a patch discriminator.

The generator is the autoencoder (``gan_research.networks.vqgan.VQGANAutoencoder``: encoder E,
codebook Z, decoder G; x̂ = G(q(E(x)))) and D a PatchGAN on images
(``gan_research.networks.patchgan``). Per step, in the reference code's order
(CompVis/taming-transformers, taming/models/vqgan.py ``VQModel.training_step``, optimiser 0 then 1):

1. the autoencoder's update on eq. 6, L = L_VQ + λ·L_GAN, with
   - L_rec = |x − x̂| + ``perceptual_weight``·perceptual(x̂, x) (sec. 3.2: "we replace the L2 loss
     with a perceptual loss"; taming's ``VQLPIPSWithDiscriminator``: L1 + LPIPS, each weighted 1),
   - L_VQ = L_rec + ``codebook_weight``·(‖sg[E(x)] − z_q‖² + β‖sg[z_q] − E(x)‖²) (eq. 4; β and
     which term it weights are the quantiser's, see ``networks/vqgan.py``),
   - L_GAN the ``loss`` group's generator loss on D(x̂) (taming: hinge, −E[D(x̂)]),
   - λ = ``disc_weight``·‖∇_{G_L} L_rec‖ / (‖∇_{G_L} L_GAN‖ + 1e-4) at the decoder's last layer
     G_L (eq. 7, :func:`~gan_research.losses.vqgan.adaptive_weight`), or ``disc_weight`` alone
     with ``adaptive_weight: false``;
2. D's update on x (real) against the same x̂, detached, with the ``loss`` group (taming: hinge).

The adversarial part starts after ``schedule.pretrain_steps`` steps (taming's ``disc_start``):
before that the autoencoder trains on L_VQ alone and D is untouched (taming multiplies both
adversarial losses by a factor 0, which leaves D's weights where they are too).

Documented choices: taming's D loss is half the hinge loss (``0.5 * (...)``); here it is the
``loss`` group's, unhalved: Adam's update does not change under a constant factor on the loss
(up to its ε). The perceptual network is the ``perceptual`` group's (taming: LPIPS on VGG16,
whose weights cannot be downloaded here; on the digits: the domain classifier's features).

The evaluator (``metrics=reconstruction``) scores reconstructions (PSNR, SSIM, FID) and reads
:meth:`code_usage`: distinct codes used and the code perplexity. Sample grids: input |
reconstruction; ``samples/codes/``: the code indices of the same images as grey maps.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_research.errors import ConfigError, DataError
from gan_research.families.base import GeneratorLoss, require_attributes
from gan_research.families.image_to_image import ImageToImageModule, first_pairs
from gan_research.losses.perceptual import PerceptualLoss, feature_network_or_none
from gan_research.losses.vqgan import adaptive_weight
from gan_research.utils.data_spec import DataKind
from gan_research.utils.weights import keep_out_of_checkpoints


def _weight(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"model.{name}={value!r} is invalid: expected a number >= 0")
    return float(value)


class VQGAN(ImageToImageModule):
    """VQGAN stage 1 (see the module docstring).

    Args:
        perceptual: a frozen feature network (the ``perceptual`` config group) or None.
        perceptual_layers: ``{layer: weight}`` of the perceptual loss (features compared by mean
            squared error, as LPIPS compares unit-normalised ones); every layer must be one the
            network returns.
        perceptual_weight: weight of the perceptual term in L_rec (taming: 1.0); 0 or no network:
            L1 alone.
        codebook_weight: weight of the VQ terms (taming: 1.0).
        disc_weight: the factor on λ (taming's configs: 0.8).
        adaptive_weight: λ from eq. 7 (True) or ``disc_weight`` alone (False).
        *args, **kwargs: those of :class:`~gan_research.families.image_to_image.ImageToImageModule`.
    """

    data_kinds = (DataKind.IMAGES,)
    pretrain_loss = True

    def __init__(
        self,
        *args: Any,
        perceptual: nn.Module | None = None,
        perceptual_layers: dict[str, float] | None = None,
        perceptual_weight: float = 1.0,
        codebook_weight: float = 1.0,
        disc_weight: float = 0.8,
        adaptive_weight: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.perceptual_weight = _weight("perceptual_weight", perceptual_weight)
        self.codebook_weight = _weight("codebook_weight", codebook_weight)
        self.disc_weight = _weight("disc_weight", disc_weight)
        self.use_adaptive_weight = bool(adaptive_weight)
        perceptual = feature_network_or_none(perceptual)
        self.perceptual: nn.Module | None = None
        self.feature_loss: PerceptualLoss | None = None
        if perceptual is not None and self.perceptual_weight > 0:
            layers = dict(perceptual_layers or {})
            if not layers:
                raise ConfigError(
                    "model.perceptual_layers is empty: name the feature network's layers to compare, "
                    f"e.g. {{{next(iter(getattr(perceptual, 'layers', ['<layer>'])))}: 1.0}}"
                )
            # Frozen and fixed: its weights stay out of checkpoints.
            self.perceptual = keep_out_of_checkpoints(perceptual)
            self.feature_loss = PerceptualLoss(perceptual, layers, criterion="mse")

    # ----------------------------------------------------------------- checks
    def check_networks(self, generator: nn.Module, discriminator: nn.Module) -> None:
        """G is a vector-quantised autoencoder (``encode``, ``decode``, ``quantizer``,
        ``last_layer``) with equal input and output shapes; D judges its outputs."""
        needs = "VQGAN needs a vector-quantised autoencoder (gan_research.networks.vqgan.VQGANAutoencoder)"
        require_attributes("generator", generator, ("encode", "decode", "quantizer", "last_layer"), needs)
        super().check_networks(generator, discriminator)
        g_in, g_out = tuple(generator.input_shape), tuple(generator.output_shape)
        if g_in != g_out:
            raise ConfigError(
                f"model.generator maps {g_in} -> {g_out}; an autoencoder's shapes must be equal"
            )
        d_in = tuple(discriminator.input_shape)
        if d_in[0] != g_out[0]:
            raise ConfigError(
                f"model.discriminator judges {d_in[0]}-channel images but model.generator makes "
                f"{g_out[0]}; set model.discriminator.input_channels={g_out[0]}"
            )

    def check_data(self, datamodule: Any) -> None:
        """Images of the autoencoder's shape."""
        spec = datamodule.spec
        self.check_data_kind(spec)
        shape = tuple(self.generator.input_shape)
        if tuple(spec.sample_shape) != shape:
            raise ConfigError(
                f"dataset '{spec.name}' has images of shape {tuple(spec.sample_shape)}, but model.generator "
                f"encodes {shape}; set the networks' channels and image_size to the dataset's"
            )
        self.prepare_feature_network(datamodule)

    # ------------------------------------------------------------------ losses
    def reconstruction_loss(self, x_hat: Tensor, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """L_rec = |x − x̂| + perceptual_weight · perceptual(x̂, x), and its unweighted parts."""
        l1 = F.l1_loss(x_hat, x)
        terms = {"l1": l1}
        loss = l1
        if self.feature_loss is not None:
            terms["perceptual"] = self.feature_loss(x_hat, x)
            loss = loss + self.perceptual_weight * terms["perceptual"]
        return loss, terms

    def autoencoder_loss(self, x: Tensor) -> tuple[Tensor, GeneratorLoss]:
        """Eq. 6 for a batch: the reconstruction x̂ and the autoencoder's loss with its terms."""
        quantized = self.generator.encode(x)
        x_hat = self.generator.decode(quantized.z_q)
        rec, terms = self.reconstruction_loss(x_hat, x)
        terms["codebook"] = quantized.codebook_loss
        terms["commitment"] = quantized.commitment_loss
        loss = rec + self.codebook_weight * (quantized.codebook_loss + quantized.commitment_loss)
        logs: dict[str, Tensor] = {}
        if not self.pretraining:
            scores = self.discriminator(self.add_instance_noise(x_hat))
            real_scores = self.real_scores_for_generator(
                lambda: self.discriminator(self.add_instance_noise(x))
            )
            g_adv = self.objective.adversarial.generator_loss(scores, real_scores)
            if self.use_adaptive_weight:
                weight = self.disc_weight * adaptive_weight(rec, g_adv, self.generator.last_layer)
            else:
                weight = g_adv.new_tensor(self.disc_weight)
            terms["adv"] = g_adv
            logs["train/adaptive_weight"] = weight
            loss = loss + weight * g_adv
        with torch.no_grad():
            used, perplexity = self.generator.quantizer.codebook_usage(quantized.indices)
        logs["train/codes_used"] = used.float()
        logs["train/code_perplexity"] = perplexity
        return x_hat, GeneratorLoss(loss, terms, logs)

    # ------------------------------------------------------------------- step
    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        chunks = self.critic_chunks(batch[0])
        (x,) = chunks[0]
        # taming's order: the autoencoder (D frozen by the optimiser toggle), then D on that x̂.
        with self.optimizer_phase(opt_g):
            x_hat, g_loss = self.autoencoder_loss(x)
            logs = self.generator_update(opt_g, g_loss)
        if not self.pretraining:
            logs.update(self.unconditional_discriminator_step(x, x_hat.detach(), opt_d))
            for (x_k,) in chunks[1:]:
                with torch.no_grad():
                    x_hat_k = self.generator(x_k)
                logs.update(self.unconditional_discriminator_step(x_k, x_hat_k, opt_d))
        self.finish_step(logs, batch_size=x.shape[0])

    # ------------------------------------------------------------ evaluation
    def validation_pairs(self, n: int) -> tuple[Tensor, Tensor]:
        """The first ``n`` validation images, each paired with itself (its reconstruction's target)."""
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if datamodule is None:
            raise RuntimeError("VQGAN reads validation images from the trainer's datamodule")
        images, _ = first_pairs(datamodule.val_dataloader(), n)
        return images, images

    def grid_columns(self, a: Tensor, b: Tensor) -> list[Tensor]:
        """input | reconstruction."""
        return [a, self.translate(a).cpu()]

    @torch.no_grad()
    def encode_indices(self, images: Tensor) -> Tensor:
        """The sampling autoencoder's code indices (B, h, w) of ``images``, in eval mode (an EMA
        codebook is not updated)."""
        net = self.sampling_generator
        was_training = net.training
        net.eval()
        try:
            return net.encode(images.to(self.device)).indices
        finally:
            net.train(was_training)

    @torch.no_grad()
    def code_usage(self, images: Tensor) -> dict[str, float]:
        """What the evaluator logs of the codebook on ``images``: ``codes_used`` (distinct codes,
        of ``n_embed``) and ``code_perplexity`` (the effective number of codes)."""
        if len(images) == 0:
            raise DataError("code_usage needs at least one image")
        indices = torch.cat([self.encode_indices(chunk) for chunk in images.split(256)])
        used, perplexity = self.sampling_generator.quantizer.codebook_usage(indices)
        return {"codes_used": float(used), "code_perplexity": float(perplexity)}

    def extra_grids(self) -> dict[str, tuple[Tensor, int]]:
        """``codes``: the fixed validation images' code maps, each index scaled to a grey level
        (index / (n_embed − 1)), nearest-upsampled to the image size beside the image."""
        a, _ = self.fixed_pairs()
        indices = self.encode_indices(a).cpu().float()
        levels = indices / max(self.generator.n_embed - 1, 1) * 2 - 1
        maps = F.interpolate(levels[:, None], size=a.shape[-2:], mode="nearest")
        maps = maps.expand(-1, a.shape[1], -1, -1)
        tiles = torch.stack([a, maps], dim=1).flatten(0, 1)
        return {"codes": (tiles, 8)}
