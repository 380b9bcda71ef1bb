"""StyleGAN (Karras, Laine & Aila 2019) and StyleGAN2 (Karras et al. 2020) training.

The networks (``gan_research.networks.stylegan``) know nothing of training; this family adds,
on top of the GAN step (:class:`~gan_research.families.gan.GAN`):

- style-mixing regularisation (StyleGAN sec. 3.1): with probability ``mixing_prob`` (0.9) a
  fake batch is generated from two latents z1, z2 with a crossover index k drawn uniformly from
  1 … num_ws − 1 (one per batch, as the official ``loss.py``): ws[:, :k] = w(z1), ws[:, k:] = w(z2).
  It applies to every fake batch, those of D's updates and those of G's.
- the loss: the ``loss`` group, for StyleGAN2 non-saturating logistic + R1 on reals
  (``conf/loss/non_saturating_r1.yaml``); R1 is lazy through ``schedule.d_reg_every`` (16):
  the base's ``discriminator_regularization`` applies it every k-th D update scaled by k
  (StyleGAN2 sec. 3.1).
- lazy path-length regularisation (StyleGAN2 sec. 3.2, eq. 4):
  E_{w,y~N(0,I)} (‖J_wᵀ y‖₂ − a)², with y scaled by 1/sqrt(H·W) (official ``loss.py``), ``a`` the
  moving average of the lengths (decay ``pl_decay`` 0.01), weight ``pl_weight`` (2), applied
  every ``schedule.g_reg_every`` (4) G updates and scaled by that interval, on a batch ``pl_batch_shrink``
  (2) times smaller. It is added to G's loss on the steps it is due (``train/g_pl``), as the
  lazy R1 is added to D's; ``pl_weight: 0`` disables it. The interval lives here rather than
  in the schedule because the ``Schedule`` dataclass is shared by every family.
- sampling: the EMA generator when ``schedule.ema_decay`` is set (the base's
  ``sampling_generator``); sample grids are truncated with ``truncation_psi`` (StyleGAN sec. 5.2);
  samples for the metrics never are (the papers' FIDs are at ψ = 1).
- grids (``extra_grids``): ``style_mixing`` (StyleGAN Fig. 3) and ``truncation`` (Fig. 8).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from gan_research.errors import ConfigError
from gan_research.families.gan import GAN, LossTerms
from gan_research.networks.stylegan import mix_styles, style_groups
from gan_research.utils.data_spec import DataKind

# Style-mixing grid: sources (columns) and destinations per style group (rows).
MIXING_SOURCES = 6
MIXING_DESTINATIONS = 3
# Truncation sweep: rows of fixed z, columns ψ from TRUNCATION_RANGE[0] to [1].
TRUNCATION_ROWS = 6
TRUNCATION_RANGE = (-1.0, 1.0)
TRUNCATION_STEPS = 9


class StyleGAN(GAN):
    """StyleGAN / StyleGAN2 (the generator's ``version`` decides which).

    Args:
        mixing_prob: probability of style mixing per fake batch (0.9; 0 disables it).
        pl_weight: weight of the path-length penalty (2 in StyleGAN2; 0 disables it).
        pl_decay: decay of the moving average ``a`` of the path lengths (0.01).
        pl_batch_shrink: the penalty's batch is the G batch divided by this (2).
        truncation_psi: ψ of the sample grids (0.7 as in the papers' figures; 1: none).
        **kwargs: those of :class:`~gan_research.families.base.AdversarialModule`.
    """

    # G is called through mapping/synthesis, which nn.Module.compile does not reach.
    compilable: tuple[str, ...] = ("discriminator",)

    data_kinds = (DataKind.IMAGES, DataKind.STACKED)

    def __init__(
        self,
        *args: Any,
        mixing_prob: float = 0.9,
        pl_weight: float = 2.0,
        pl_decay: float = 0.01,
        pl_batch_shrink: int = 2,
        truncation_psi: float = 0.7,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        for attr in ("mapping", "synthesis", "num_ws", "w_avg"):
            if not hasattr(self.generator, attr):
                raise ConfigError(
                    f"model.generator ({type(self.generator).__name__}) lacks {attr!r}: the StyleGAN family "
                    "needs a style-based generator (gan_research.networks.stylegan.StyleGANGenerator)"
                )
        checks = [
            (
                _is_number(mixing_prob) and 0 <= mixing_prob <= 1,
                "mixing_prob",
                mixing_prob,
                "a number in [0, 1]",
            ),
            (_is_number(pl_weight) and pl_weight >= 0, "pl_weight", pl_weight, "a number >= 0"),
            (_is_number(pl_decay) and 0 < pl_decay <= 1, "pl_decay", pl_decay, "a number in (0, 1]"),
            (
                _is_int(pl_batch_shrink) and pl_batch_shrink >= 1,
                "pl_batch_shrink",
                pl_batch_shrink,
                "an int >= 1",
            ),
            (_is_number(truncation_psi), "truncation_psi", truncation_psi, "a number (1: no truncation)"),
        ]
        for ok, key, value, valid in checks:
            if not ok:
                raise ConfigError(f"model.{key}={value!r} is invalid: expected {valid}")
        self.mixing_prob = float(mixing_prob)
        self.pl_weight = float(pl_weight)
        self.pl_decay = float(pl_decay)
        self.pl_batch_shrink = int(pl_batch_shrink)
        self.truncation_psi = float(truncation_psi)
        # a of eq. 4, saved in checkpoints so a resumed run keeps its target length.
        self.register_buffer("pl_mean", torch.zeros(()))

    # ------------------------------------------------------------- mixing
    def mapping_with_mixing(self, z: Tensor) -> Tensor:
        """ws of the latents ``z``, style-mixed with a second latent with probability ``mixing_prob``."""
        ws = self.generator.mapping(z)
        num_ws = ws.shape[1]
        if self.mixing_prob > 0 and num_ws > 1 and torch.rand(()).item() < self.mixing_prob:
            crossover = int(torch.randint(1, num_ws, ()).item())
            # As stylegan2-ada (skip_w_avg_update): only the main latents move the average of w.
            ws_other = self.generator.mapping(self.sample_latent(z.shape[0]), update_w_avg=False)
            ws = mix_styles(ws, ws_other, crossover)
        return ws

    def generate_fake(self, z: Tensor, condition: Any) -> Tensor:
        return self.generator.synthesis(self.mapping_with_mixing(z))

    # ---------------------------------------------------------- path length
    def path_length_penalty(self, batch_size: int) -> tuple[Tensor, Tensor]:
        """(E (‖J_wᵀ y‖ − a)², mean ‖J_wᵀ y‖) on ``batch_size`` fresh fakes; updates a (StyleGAN2 eq. 4).

        y ~ N(0, I) / sqrt(H·W) so the lengths do not grow with the resolution; ‖J_wᵀ y‖ sums the
        squared gradient over w_dim, averages it over the styles and takes the square root (official
        ``loss.py``: ``pl_grads.square().sum(2).mean(1).sqrt()``).
        """
        ws = self.mapping_with_mixing(self.sample_latent(batch_size))
        images = self.generator.synthesis(ws)
        y = torch.randn_like(images) / math.sqrt(images.shape[2] * images.shape[3])
        (grad,) = torch.autograd.grad((images * y).sum(), ws, create_graph=True)
        lengths = grad.float().pow(2).sum(dim=2).mean(dim=1).sqrt()
        with torch.no_grad():
            self.pl_mean.copy_(torch.lerp(self.pl_mean, lengths.mean(), self.pl_decay))
        return (lengths - self.pl_mean).pow(2).mean(), lengths.detach().mean()

    def path_length_due(self) -> bool:
        """Lazy: at G updates 0, k, 2k, … with k = ``schedule.g_reg_every`` (global_step counts G updates)."""
        return self.pl_weight > 0 and self.global_step % self.schedule.g_reg_every == 0

    def generator_extra_losses(self, fake: Tensor, fake_extra: Any, fake_condition: Any) -> LossTerms:
        """The lazy path-length penalty ``pl`` when due, on a batch ``pl_batch_shrink`` times smaller
        than G's, with the moving average it updated (``train/pl_mean``)."""
        if not self.path_length_due():
            return LossTerms()
        penalty, _ = self.path_length_penalty(max(1, fake.shape[0] // self.pl_batch_shrink))
        # × k: the lazy penalty stands for the k updates it skipped (StyleGAN2 sec. 3.1).
        return LossTerms(
            {"pl": penalty * self.pl_weight * self.schedule.g_reg_every},
            {"train/pl_mean": self.pl_mean.detach().clone()},
        )

    # ------------------------------------------------------------- sampling
    @torch.no_grad()
    def synthesize(self, ws: Tensor, noise_mode: str = "const") -> Tensor:
        """Images of the sampling (EMA) generator for styles ``ws`` in eval mode; "const" noise
        by default so images of a grid differ only by their styles."""
        gen = self.sampling_generator
        was_training = gen.training
        gen.eval()
        try:
            return gen.synthesis(ws.to(self.device), noise_mode=noise_mode)
        finally:
            gen.train(was_training)

    @torch.no_grad()
    def styles(self, z: Tensor, truncation_psi: float = 1.0) -> Tensor:
        """ws of the sampling generator for ``z`` (no w_avg update)."""
        gen = self.sampling_generator
        return gen.mapping(z.to(self.device), truncation_psi=truncation_psi, update_w_avg=False)

    def grid_samples(self) -> tuple[Tensor, None]:
        # Per-layer noise drawn on rank 0 only (the grid callback) would move its RNG away from the
        # other processes' and break DDP's identical global draws: the grid's noise is forked.
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            ws = self.styles(self.fixed_noise, self.truncation_psi)
            return self.synthesize(ws, noise_mode="random"), None

    def extra_grids(self) -> dict[str, tuple[Tensor, int]]:
        """``style_mixing`` (StyleGAN Fig. 3) and ``truncation`` (StyleGAN Fig. 8), from the fixed noise.

        ``style_mixing``: the top row holds the source images (first cell blank), then for each of
        coarse, middle and fine (:func:`~gan_research.networks.stylegan.style_groups`) one row per
        destination: the destination image, then the destination with that group's styles copied
        from each source. Rows of ``MIXING_SOURCES + 1``; grids use ``truncation_psi``.

        ``truncation``: a row per fixed z, columns ψ = −1 … 1 (``TRUNCATION_STEPS``); the ψ = 0
        column is the image of w̄ in every row, ψ = 1 the untruncated sample.
        """
        noise = self.fixed_noise
        n_src = min(MIXING_SOURCES, noise.shape[0])
        n_dst = min(MIXING_DESTINATIONS, max(1, noise.shape[0] - n_src))
        ws_src = self.styles(noise[:n_src], self.truncation_psi)
        ws_dst = self.styles(
            noise[n_src : n_src + n_dst] if noise.shape[0] > n_src else noise[:n_dst], self.truncation_psi
        )
        src_images, dst_images = self.synthesize(ws_src), self.synthesize(ws_dst)
        blank = torch.ones_like(src_images[:1])  # white after the callback's [-1, 1] → [0, 1]
        rows = [torch.cat([blank, src_images])]
        image_size = self.generator.output_shape[-1]
        for group in style_groups(image_size).values():
            for d in range(n_dst):
                mixed = ws_dst[d : d + 1].repeat(n_src, 1, 1)
                mixed[:, group] = ws_src[:, group]
                rows.append(torch.cat([dst_images[d : d + 1], self.synthesize(mixed)]))
        grids = {"style_mixing": (torch.cat(rows), n_src + 1)}

        n_rows = min(TRUNCATION_ROWS, noise.shape[0])
        ws = self.styles(noise[:n_rows])
        w_avg = self.sampling_generator.w_avg
        psis = torch.linspace(*TRUNCATION_RANGE, TRUNCATION_STEPS).tolist()
        swept = torch.stack(
            [torch.lerp(w_avg, ws, psi) for psi in psis], dim=1
        )  # (rows, steps, num_ws, w_dim)
        grids["truncation"] = (self.synthesize(swept.flatten(0, 1)), TRUNCATION_STEPS)
        return grids


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
