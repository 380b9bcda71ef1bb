"""pix2pix: image-to-image translation with a conditional GAN (Isola et al. 2017,
"Image-to-Image Translation with Conditional Adversarial Networks", arXiv:1611.07004).

G maps an input image a (domain A) to an output image b (domain B); D is a conditional
PatchGAN that scores the (input, output) pair, concatenated along the channels
(sec. 2.1: "both the generator and discriminator observe the input edge map").
The objective is the paper's eq. 4,

    G* = arg min_G max_D L_cGAN(G, D) + λ L_L1(G),   L_L1(G) = E ||b - G(a)||_1,

with λ = ``l1_weight`` (100 in the paper). There is no latent z: the noise is dropout in
G's decoder at training time (sec. 2.1).

One training step follows the released code's ``Pix2PixModel.optimize_parameters``
(junyanz/pytorch-CycleGAN-and-pix2pix, models/pix2pix_model.py): one forward of G,
then a D update on the detached output, then a G update through the updated D,
reusing the same forward (same dropout mask). Details of that code kept here:

- D's loss is halved, ``loss_D = (loss_D_fake + loss_D_real) * 0.5`` ("we divide the
  objective by 2 while optimizing D, which slows down the rate at which D learns
  relative to G", sec. 3.3): ``d_loss_weight`` (0.5).
- The adversarial loss is the ``loss`` config group. ``non_saturating`` (the default
  recipe) is the reference's ``gan_mode="vanilla"``: BCE-with-logits on every patch,
  G maximising log D(a, G(a)). With ``lsgan`` our loss keeps Mao et al.'s ½ factors
  (``losses/adversarial.py``), so against L1 the adversarial term weighs half of the
  reference's ``gan_mode="lsgan"`` (D's likewise); set ``l1_weight=50`` to restore
  the reference's ratio.
- L1 is the mean absolute error per pixel (``nn.L1Loss()``), in [-1, 1] image units.

The schedule's D-side tricks apply unchanged (label smoothing and flips, instance
noise on D's input pair, lazy gradient penalties on the pair, weight clipping, skipped
D updates, EMA of G, linear LR decay). With ``schedule.n_critic > 1`` the step's batch
is split in n_critic parts: D updates on each (outputs of G without gradient), the G
update on the last part; n_critic = 1 is the reference's step.

Inference (``translate``, sample grids, metrics) runs G in eval mode: dropout off,
batch norm with running statistics. The paper instead keeps dropout on and uses
the test batch's statistics at test time (sec. 2.2); at the reference's batch size of
1 that is instance normalisation.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_research.errors import ConfigError
from gan_research.families.base import AdversarialModule
from gan_research.utils.images import grid_rows

PAIRED_DATASETS = "paired_folder, digits_edges"


class Pix2Pix(AdversarialModule):
    """pix2pix: G(a) → b with an L1 term, D(a, b) a conditional PatchGAN.

    Args:
        generator: A → B image network with ``input_shape`` (C_a, H, W) and
            ``output_shape`` (C_b, H, W) (``networks/unet.py``).
        discriminator: pair scorer with ``input_shape`` (C_a + C_b, H, W) returning
            patch logits (``networks/patchgan.py``).
        l1_weight: λ of eq. 4 (100).
        d_loss_weight: factor of D's loss (0.5, the reference's halving).
        num_fixed_samples: validation pairs in the sample grid (input | output | target rows).
        *args, **kwargs: those of :class:`~gan_research.families.base.AdversarialModule`.
    """

    latent_input = False

    def __init__(
        self, *args: Any, l1_weight: float = 100.0, d_loss_weight: float = 0.5, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        for key, value in (("l1_weight", l1_weight), ("d_loss_weight", d_loss_weight)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"model.{key}={value!r} is invalid: expected a float >= 0")
        if d_loss_weight == 0:
            raise ConfigError("model.d_loss_weight=0 would never train D: expected a float > 0 (0.5)")
        self.l1_weight = float(l1_weight)
        self.d_loss_weight = float(d_loss_weight)
        # The grid's validation pairs, taken at fit start (not checkpointed: they come from the data).
        self.fixed_a: Tensor | None = None
        self.fixed_b: Tensor | None = None

    # ----------------------------------------------------------------- checks
    def check_networks(self, generator: nn.Module, discriminator: nn.Module) -> None:
        """G maps (C_a, H, W) to (C_b, H, W); D scores (C_a + C_b, H, W) pairs."""
        for name, net, attrs in (
            ("generator", generator, ("input_shape", "output_shape")),
            ("discriminator", discriminator, ("input_shape",)),
        ):
            missing = [a for a in attrs if not hasattr(net, a)]
            if missing:
                raise ConfigError(
                    f"model.{name} ({type(net).__name__}) lacks attribute(s) {missing}; pix2pix needs an "
                    "image-to-image generator (UNetGenerator) and a PatchGANDiscriminator"
                )
        g_in, g_out, d_in = (
            tuple(s) for s in (generator.input_shape, generator.output_shape, discriminator.input_shape)
        )
        if len(g_in) != 3 or len(g_out) != 3 or len(d_in) != 3:
            raise ConfigError(
                f"pix2pix needs image networks; got generator {g_in} -> {g_out}, discriminator {d_in}"
            )
        if g_in[1:] != g_out[1:]:
            raise ConfigError(
                f"model.generator maps {g_in} to {g_out}: pix2pix translates between images of one size"
            )
        pair = g_in[0] + g_out[0]
        if d_in[0] != pair:
            raise ConfigError(
                f"model.discriminator.input_channels={d_in[0]}, but pix2pix's D sees the (input, output) "
                f"pair concatenated: C_a + C_b = {g_in[0]} + {g_out[0]} = {pair}; set "
                f"model.discriminator.input_channels={pair}"
            )
        if d_in[1:] != g_out[1:]:
            raise ConfigError(
                f"model.discriminator.image_size gives {d_in[1:]} inputs but model.generator produces "
                f"{g_out[1:]} images; set model.discriminator.image_size={g_out[-1]}"
            )

    def check_data(self, datamodule: Any) -> None:
        """A paired dataset whose A and B shapes are G's input and output shapes."""
        name = getattr(datamodule, "name", type(datamodule).__name__)
        if not getattr(datamodule, "paired", False):
            raise ConfigError(
                f"pix2pix learns from aligned (input, target) pairs, but dataset '{name}' is not paired; "
                f"use a paired dataset ({PAIRED_DATASETS}), or model=cyclegan for unpaired data"
            )
        g_in, g_out = tuple(self.generator.input_shape), tuple(self.generator.output_shape)
        a_shape, b_shape = tuple(datamodule.a_shape), tuple(datamodule.b_shape)
        problems = []
        if a_shape[0] != g_in[0]:
            problems.append(f"model.generator.input_channels={a_shape[0]} (dataset channels_a)")
        if b_shape[0] != g_out[0]:
            problems.append(f"model.generator.output_channels={b_shape[0]} (dataset channels_b)")
        if a_shape[1:] != g_in[1:] or b_shape[1:] != g_out[1:]:
            size = b_shape[-1]
            problems.append(f"model.generator.image_size={size} and model.discriminator.image_size={size}")
        if problems:
            pair = a_shape[0] + b_shape[0]
            d_hint = (
                f" and model.discriminator.input_channels={pair}"
                if pair != self.discriminator.input_shape[0]
                else ""
            )
            raise ConfigError(
                f"dataset '{name}' has pairs of shapes {a_shape} -> {b_shape}, but model.generator maps "
                f"{g_in} -> {g_out}; set {', '.join(problems)}{d_hint}"
            )

    # ------------------------------------------------------------------- step
    def discriminate(self, a: Tensor, b: Tensor) -> Tensor:
        """D's patch logits of the pair (a, b), concatenated along the channels as the reference's
        ``torch.cat((real_A, fake_B), 1)``."""
        return self.discriminator(torch.cat([a, b], dim=1))

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        a_all, b_all = batch[0], batch[1]
        opt_g, opt_d = self.optimizers()
        n_critic = self.schedule.n_critic
        if a_all.shape[0] % n_critic != 0:
            raise RuntimeError(
                f"a training batch of {a_all.shape[0]} pairs cannot be split into n_critic={n_critic} "
                "D batches; the datamodule must yield batch_size * n_critic pairs"
            )
        chunks = list(zip(a_all.chunk(n_critic), b_all.chunk(n_critic), strict=True))
        logs: dict[str, Tensor] = {}
        for a, b in chunks[:-1]:
            with torch.no_grad():
                fake = self.generator(a)
            logs.update(self.discriminator_step(a, b, fake, opt_d))
        a, b = chunks[-1]
        # One forward for both phases, as the reference: D learns from its detached output,
        # then G is scored by the updated D on the very same output (same dropout mask).
        fake = self.generator(a)
        logs.update(self.discriminator_step(a, b, fake.detach(), opt_d))
        logs.update(self.generator_step(a, b, fake, opt_g))
        if "train/d_grad_norm" in logs:
            logs["train/grad_norm_ratio"] = logs["train/g_grad_norm"] / logs["train/d_grad_norm"].clamp_min(
                1e-12
            )
        self.update_ema()
        self.step_lr_schedulers()
        logs["train/lr_g"] = torch.tensor(opt_g.param_groups[0]["lr"])
        logs["train/lr_d"] = torch.tensor(opt_d.param_groups[0]["lr"])
        if self.schedule.instance_noise > 0:
            logs["train/instance_noise"] = torch.tensor(self.instance_noise_std())
        self.log_step(logs, batch_size=a.shape[0])

    def discriminator_step(self, a: Tensor, b: Tensor, fake: Tensor, opt_d: Any) -> dict[str, Tensor]:
        """One D update on real pairs (a, b) and fake pairs (a, G(a)); ``fake`` carries no gradient."""
        real_b, fake_b = self.flip_labels(b, fake)  # a flipped pair keeps its input a
        real_in = self.add_instance_noise(torch.cat([a, real_b], dim=1))
        fake_in = self.add_instance_noise(torch.cat([a, fake_b], dim=1))
        with self.optimizer_phase(opt_d):
            real_scores = self.discriminator(real_in)
            fake_scores = self.discriminator(fake_in)
            d_adv = self.objective.adversarial.discriminator_loss(
                real_scores, fake_scores, real_target=1.0 - self.schedule.label_smoothing
            )
            # Gradient penalties are taken w.r.t. the B half of the pair, given the real pair's
            # input (as GAN's conditional penalties are given the real batch's condition);
            # they keep their configured weights (the halving is the adversarial term's).
            ca = a.shape[1]
            penalties = self.discriminator_regularization(
                lambda x: self.discriminator(torch.cat([real_in[:, :ca], x], dim=1)),
                real_in[:, ca:],
                fake_in[:, ca:],
            )
            d_loss = self.d_loss_weight * d_adv
            if penalties:
                d_loss = d_loss + sum(penalties.values())
            threshold = self.schedule.d_skip_threshold
            skip = threshold is not None and self.all_gather(d_adv.detach()).mean().item() < threshold
            if not skip:
                d_grad_norm = self.backward_and_step(opt_d, d_loss, counts_as_step=False)
                self.clip_discriminator_weights()
                self.count_d_update()
        logs = {
            "train/d_loss": d_loss.detach(),
            **{f"train/d_{name}": value.detach() for name, value in penalties.items()},
            **self.balance_diagnostics(real_scores.detach(), fake_scores.detach(), d_adv.detach()),
        }
        if not skip:
            logs["train/d_grad_norm"] = d_grad_norm
        if threshold is not None:
            logs["train/d_skipped"] = torch.tensor(float(skip))
        return logs

    def generator_loss(self, a: Tensor, b: Tensor, fake: Tensor) -> dict[str, Tensor]:
        """Eq. 4's G side: ``{"g_loss": adv + l1_weight * l1, "g_adv": adv, "g_l1": l1}``
        (l1 unweighted: the mean absolute error per pixel)."""
        scores = self.discriminator(self.add_instance_noise(torch.cat([a, fake], dim=1)))
        g_adv = self.objective.adversarial.generator_loss(scores)
        g_l1 = F.l1_loss(fake, b)
        return {"g_loss": g_adv + self.l1_weight * g_l1, "g_adv": g_adv, "g_l1": g_l1}

    def generator_step(self, a: Tensor, b: Tensor, fake: Tensor, opt_g: Any) -> dict[str, Tensor]:
        """One G update; D is frozen by the optimiser toggle, so only G's weights change."""
        with self.optimizer_phase(opt_g):
            terms = self.generator_loss(a, b, fake)
            g_grad_norm = self.backward_and_step(opt_g, terms["g_loss"], counts_as_step=True)
        return {**{f"train/{k}": v.detach() for k, v in terms.items()}, "train/g_grad_norm": g_grad_norm}

    # -------------------------------------------------------------- inference
    @torch.no_grad()
    def translate(self, a: Tensor) -> Tensor:
        """A → B with the sampling generator (EMA when enabled) in eval mode."""
        gen = self.sampling_generator
        was_training = gen.training
        gen.eval()
        try:
            return gen(a.to(self.device))
        finally:
            gen.train(was_training)

    def forward(self, a: Tensor) -> Tensor:
        return self.generator(a)

    def on_fit_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and self.fixed_a is None:
            self.set_fixed_batch(*datamodule.first_validation_pairs(self.num_fixed_samples))

    def set_fixed_batch(self, a: Tensor, b: Tensor) -> None:
        """The validation pairs of the sample grid (kept on the host)."""
        self.fixed_a, self.fixed_b = a.detach().cpu(), b.detach().cpu()

    def grid_samples(self) -> tuple[Tensor, int]:
        """Input | output | target, one fixed validation pair per row (3 images a row).

        Grey images are repeated to RGB when the other domain is RGB, so one grid holds both.
        """
        if self.fixed_a is None or self.fixed_b is None:
            raise RuntimeError(
                "pix2pix's grid needs validation pairs: fit first, or call set_fixed_batch(a, b)"
            )
        a, b = self.fixed_a, self.fixed_b
        return grid_rows(a, self.translate(a).cpu(), b), 3

    def sample_for_evaluation(self, n: int) -> Tensor:
        """Translations of the first ``n`` validation inputs (the split repeated when it is smaller)."""
        if self.trainer is None or self.trainer.datamodule is None:
            raise RuntimeError("sample_for_evaluation needs the trainer's paired datamodule")
        a, _ = self.trainer.datamodule.first_validation_pairs(n)
        if len(a) < n:
            a = a.repeat((n + len(a) - 1) // len(a), 1, 1, 1)[:n]
        return torch.cat([self.translate(chunk) for chunk in a.split(256)])
