"""The progressive GAN family (ProGAN; Karras, Aila, Laine & Lehtinen 2018, arXiv:1710.10196).

Both networks (``gan_research.networks.progan``) are built for the final resolution; training
starts at ``growth.start_resolution`` and doubles it, each new resolution first faded in
(``alpha`` from 0 to 1 over ``growth.fade_steps`` steps, sec. 2 and fig. 2) and then
stabilised for ``growth.steps_per_phase`` steps. The step is the unconditional GAN step of
:class:`~gan_research.families.gan.GAN` with the configured loss (WGAN-GP in the paper, sec. 6
and app. A.1: ``loss=wgan_gp``) plus the drift term ``drift_weight * E[D(x)²]`` on real scores
(app. A.1, epsilon_drift = 0.001), which keeps the critic's output near zero.

Where the fade-in schedule lives: ``model.growth`` (the family's own argument, defaults in
``conf/model/progan.yaml``), because the ``schedule`` group is the fixed :class:`Schedule`
dataclass shared by every family; ``schedule=progressive`` holds ProGAN's optimiser settings.
Stage and alpha are pure functions of ``global_step`` (:meth:`GrowthSchedule.stage_and_alpha`),
so a resumed run continues the fade exactly where it stopped.

At each step the real batch is average-pooled to the current resolution and, during a fade,
blended with its half-resolution version upsampled, as the generator's output is ("we also
fade in the real images", app. A.1; official ``process_reals``). Sample grids and metrics get
the generator at the current stage, upsampled (nearest) to the full image size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gan_research.errors import ConfigError
from gan_research.families.gan import GAN, LossTerms
from gan_research.networks.progan import resolution_stage, stage_resolution
from gan_research.utils.data_spec import DataKind
from gan_research.utils.validation import check_int_at_least


@dataclass(frozen=True)
class GrowthSchedule:
    """The progressive-growing schedule (``model.growth``), counted in generator steps.

    start_resolution: the first resolution trained (a power of two >= 4).
    steps_per_phase: steps each resolution is stabilised (alpha = 1) before the next is faded
        in; the last resolution trains at alpha = 1 for the rest of the run (the paper: 800k
        real images per phase, app. A.1).
    fade_steps: steps over which a new resolution's alpha rises linearly from 0 to 1
        (the paper: 800k images); 0 switches resolutions abruptly.

    Timeline from ``start``: [stabilise start] [fade start+1][stabilise start+1] ... [final ...].
    """

    start_resolution: int = 4
    steps_per_phase: int = 600
    fade_steps: int = 600

    def __post_init__(self) -> None:
        r = self.start_resolution
        if isinstance(r, bool) or not isinstance(r, int) or r < 4 or r & (r - 1):
            raise ConfigError(
                f"model.growth.start_resolution must be a power of two >= 4 (4, 8, 16, ...), got {r!r}"
            )
        for key, low in (("steps_per_phase", 1), ("fade_steps", 0)):
            check_int_at_least("model.growth", key, getattr(self, key), low, form="key")

    @classmethod
    def create(cls, growth: GrowthSchedule | Mapping[str, Any]) -> GrowthSchedule:
        if isinstance(growth, GrowthSchedule):
            return growth
        valid = ("start_resolution", "steps_per_phase", "fade_steps")
        unknown = sorted(set(growth) - set(valid))
        if unknown:
            raise ConfigError(f"unknown model.growth keys {unknown}; valid keys: {list(valid)}")
        return cls(**dict(growth))

    def stage_and_alpha(self, step: int, num_stages: int) -> tuple[int, float]:
        """(stage, alpha) trained at generator step ``step`` by networks of ``num_stages`` stages.

        alpha = r / fade_steps at the r-th step of a fade (0 on its first step, as the official
        training loop's ``lod`` fraction), 1 while stabilising.
        """
        stage = resolution_stage(self.start_resolution)
        last = num_stages - 1
        if step < self.steps_per_phase or stage >= last:
            return min(stage, last), 1.0
        period = self.fade_steps + self.steps_per_phase
        grown, into = divmod(step - self.steps_per_phase, period)
        stage += grown + 1
        if stage > last:
            return last, 1.0
        alpha = into / self.fade_steps if into < self.fade_steps else 1.0
        return stage, alpha

    def phase_start(self, stage: int) -> int:
        """The step at which ``stage`` starts fading in (0 for the start stage)."""
        grown = stage - resolution_stage(self.start_resolution)
        if grown <= 0:
            return 0
        return self.steps_per_phase + (grown - 1) * (self.fade_steps + self.steps_per_phase)


def downsample_reals(images: Tensor, stage: int, alpha: float) -> Tensor:
    """Real images at ``stage``'s resolution, faded like the generator's output (app. A.1).

    Average pooling to ``4 * 2**stage`` pixels; while ``alpha < 1`` the result is
    ``lerp(upsample_nearest(avgpool2(x)), x, alpha)``, the official ``process_reals``.
    """
    resolution = stage_resolution(stage)
    factor = images.shape[-1] // resolution
    x = F.avg_pool2d(images, factor) if factor > 1 else images
    if stage > 0 and alpha < 1.0:
        low = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest")
        x = torch.lerp(low, x, alpha)
    return x


class ProGAN(GAN):
    """ProGAN: the GAN step at the current stage/alpha of a :class:`GrowthSchedule`.

    Args:
        growth: the progressive schedule (``model.growth``: start_resolution, steps_per_phase,
            fade_steps).
        drift_weight: epsilon_drift of the drift term on real scores (app. A.1: 0.001; 0: off).
        **kwargs: those of :class:`~gan_research.families.base.AdversarialModule`.
    """

    # stage and alpha are Python values: a compiled network would recompile at every fade step.
    compilable: tuple[str, ...] = ()

    data_kinds = (DataKind.IMAGES, DataKind.STACKED)

    def __init__(
        self,
        *args: Any,
        growth: GrowthSchedule | Mapping[str, Any] | None = None,
        drift_weight: float = 0.001,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.growth = GrowthSchedule.create(growth if growth is not None else {})
        if isinstance(drift_weight, bool) or not isinstance(drift_weight, (int, float)) or drift_weight < 0:
            raise ConfigError(f"model.drift_weight must be a number >= 0, got {drift_weight!r}")
        self.drift_weight = float(drift_weight)
        stages = [getattr(net, "num_stages", None) for net in (self.generator, self.discriminator)]
        if None in stages or stages[0] != stages[1]:
            raise ConfigError(
                "model=progan needs growing networks with the same stages (ProGANGenerator, "
                f"ProGANDiscriminator); got {type(self.generator).__name__} and "
                f"{type(self.discriminator).__name__} with num_stages {stages}"
            )
        self.num_stages = stages[0]
        image_size = self.generator.output_shape[-1]
        if self.growth.start_resolution > image_size:
            raise ConfigError(
                f"model.growth.start_resolution={self.growth.start_resolution} exceeds the image size "
                f"{image_size}; valid: {[stage_resolution(s) for s in range(self.num_stages)]}"
            )
        # Generator steps trained, kept in the state dict: a checkpoint loaded without a Trainer
        # (gan-eval) samples at the stage it was trained to, not at stage 0.
        self.register_buffer("growth_step", torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------ the schedule
    def growth_state(self, step: int | None = None) -> tuple[int, float]:
        """(stage, alpha) at generator step ``step`` (default: the current global step; without a
        trainer, the step the networks were trained to).

        Within a training step the global step is the step being trained until G's optimiser
        steps, which counts it: every D and G forward of the step sees that step's stage.
        """
        if step is None:
            step = self.global_step if self._trainer is not None else int(self.growth_step)
        return self.growth.stage_and_alpha(step, self.num_stages)

    # ------------------------------------------------------------------- step
    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        # The stage and alpha of this step, read before G's update moves the global step on.
        stage, alpha = self.growth_state()
        real = downsample_reals(batch[0], stage, alpha)
        logs, batch_size = self.adversarial_updates((real, *batch[1:]))
        logs["train/stage_resolution"] = torch.tensor(float(stage_resolution(stage)))
        logs["train/alpha"] = torch.tensor(float(alpha))
        self.finish_step(logs, batch_size)
        self.growth_step.fill_(self.global_step)

    # ------------------------------------------------------------------ hooks
    def generate_fake(self, z: Tensor, condition: Any) -> Tensor:
        stage, alpha = self.growth_state()
        return self.generator(z, stage=stage, alpha=alpha)

    def discriminate(self, x: Tensor, condition: Any) -> tuple[Tensor, Any]:
        stage, alpha = self.growth_state()
        scores = self.discriminator(x, stage=stage, alpha=alpha)
        return scores, scores

    def discriminator_extra_losses(
        self, real_extra: Any, fake_extra: Any, real_condition: Any, fake_condition: Any
    ) -> LossTerms:
        if self.drift_weight == 0:
            return LossTerms()
        # App. A.1: L' = L + epsilon_drift * E_x[D(x)^2], keeping the critic's scores from drifting.
        return LossTerms({"drift": self.drift_weight * real_extra.pow(2).mean()})

    # ------------------------------------------------------------- sampling
    def to_full_size(self, images: Tensor) -> Tensor:
        """Nearest upsampling to the final image size, so grids and metrics see full-size images."""
        size = self.generator.output_shape[-1]
        factor = size // images.shape[-1]
        return F.interpolate(images, scale_factor=factor, mode="nearest") if factor > 1 else images

    @torch.no_grad()
    def generate(self, z: Tensor | None = None, n: int | None = None, condition: Any = None) -> Tensor:
        """Samples of the (EMA) generator at the current stage and alpha, at full size."""
        if z is None:
            z = self.sample_latent(n if n is not None else self.fixed_noise.shape[0])
        stage, alpha = self.growth_state()
        gen = self.sampling_generator
        was_training = gen.training
        gen.eval()
        try:
            return self.to_full_size(gen(z.to(self.device), stage=stage, alpha=alpha))
        finally:
            gen.train(was_training)

    def forward(self, z: Tensor) -> Tensor:
        stage, alpha = self.growth_state()
        return self.to_full_size(self.generator(z, stage=stage, alpha=alpha))
