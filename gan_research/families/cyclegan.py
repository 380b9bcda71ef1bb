"""CycleGAN: unpaired image-to-image translation with cycle consistency (Zhu, Park, Isola &
Efros 2017, "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial
Networks", arXiv:1703.10593).

Two generators, G: A → B and F: B → A (``model.generator``, a
:class:`~gan_research.networks.pairs.TranslationPair`), and two discriminators, D_A on
domain-A images and D_B on domain-B images (``model.discriminator``, a
:class:`~gan_research.networks.pairs.DiscriminatorPair`). The full objective (eq. 3) is

    L(G, F, D_A, D_B) = L_GAN(G, D_B) + L_GAN(F, D_A) + λ L_cyc(G, F),
    L_cyc = E_a ||F(G(a)) − a||₁ + E_b ||G(F(b)) − b||₁             (eq. 2),

plus, as in the paper's sec. 5.2 (photo ↔ painting) and the released code's default, the
identity loss λ_id λ (E_b ||G(b) − b||₁ + E_a ||F(a) − a||₁) ("identity loss 0.5 λ"):
``cycle_weight`` = λ = 10, ``identity_weight`` = λ_id = 0.5 (relative to λ, as the reference's
``--lambda_identity``). L1 terms are per-pixel means (``nn.L1Loss``), in [-1, 1] units.

One training step is the reference's ``CycleGANModel.optimize_parameters``
(junyanz/pytorch-CycleGAN-and-pix2pix, models/cycle_gan_model.py): one forward of both
generators; a G update (both generators, one optimiser; D frozen by the optimiser toggle);
then a D update (both discriminators, one optimiser) on real images against the fakes of
that same forward, detached and passed through a history pool per discriminator.

Adversarial weights, made those of the reference
------------------------------------------------
The adversarial loss is the ``loss`` config group. The reference computes every
adversarial term as ``criterion(pred, target)`` (MSE for ``lsgan``, BCE-with-logits for
``vanilla``, ∓mean for ``wgangp``) and halves D's sum: ``loss_D = 0.5 (L(real) + L(fake))``;
G's terms are not halved. Our losses differ by constant factors (``losses/adversarial.py``):

- ``lsgan`` keeps Mao et al.'s ½ on both sides (eq. 2): D's loss already equals the
  reference's, G's is half of it. So G's adversarial terms are multiplied by 2
  (``g_adversarial_factor``), and D's by 1;
- every other loss sums D's real and fake terms without the ½, and its G term equals the
  reference's criterion (``non_saturating`` is ``vanilla``; ``wgan`` is ``wgangp``'s ∓mean):
  D's terms are multiplied by ½ and G's by 1.

So for any loss, adversarial, cycle and identity terms weigh against each other exactly as in
the reference (``train/g_adv`` is the reference's ``loss_G_A + loss_G_B``). D regularisers
(gradient penalties, not in the reference) are added to each D's loss unscaled.

History pool
------------
Each discriminator sees, instead of the newest fakes, a batch drawn through a pool of the
last ``pool_size`` (50) generated images (Shrivastava et al. 2017, arXiv:1612.07828, sec. 2.3;
reference util/image_pool.py): until the pool is full every image is stored and returned;
then each image is, with probability ½, returned as is, or swapped for a random stored one
(returned) that it replaces in the pool. ``pool_size=0`` disables it. The draws come from
torch's global CPU generator, whose state the base module saves in checkpoints, and the pool
contents are saved too, so a resumed run continues exactly as an uninterrupted one.

Logged
------
``train/g_loss`` = ``g_adv`` + ``g_cycle`` + ``g_identity`` (each weighted, summed over both
directions; ``g_identity`` is 0 when disabled); ``train/d_a``, ``train/d_b``: each D's
weighted adversarial loss (the reference's ``loss_D_B`` / ``loss_D_A``: its ``netD_A`` judges
domain B); ``train/d_loss`` = ``d_a`` + ``d_b`` (+ penalties, ``train/d_a_<reg>``...), the SUM,
which is what the one D optimiser minimises; the balance diagnostics over both Ds' patch
scores, gradient norms and learning rates.

Grids: A | G(A) | F(G(A)) (``samples/``) and B | F(B) | G(F(B)) (``samples/b_to_a/``), a row
per fixed validation pair taken at fit start. ``translate`` (G), ``translate_back`` (F) and
``sample_for_evaluation(n)`` (the first ``n`` validation pairs as ``(a, G(a), b)``) are what the
metrics read; the fixed pairs, the sampling and the grid layout are the image-to-image base's
(:class:`~gan_research.families.image_to_image.ImageToImageModule`).

Schedule: one D update per G update (``schedule.n_critic=1``, as the reference); the other D
tricks (label smoothing and flips, instance noise, lazy regularisers, weight clipping,
skipped D updates), the EMA of both generators and the linear LR decay apply unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_research.errors import ConfigError
from gan_research.families.base import DiscriminatorLoss, GeneratorLoss
from gan_research.families.image_to_image import ImageToImageModule, run_in_eval_mode
from gan_research.losses.adversarial import AdversarialLoss, LeastSquaresLoss
from gan_research.networks.pairs import DiscriminatorPair, TranslationPair
from gan_research.utils.data_spec import DataKind
from gan_research.utils.images import grid_rows


def reference_adversarial_factors(adversarial: AdversarialLoss) -> tuple[float, float]:
    """``(d_factor, g_factor)`` that turn our loss into the reference's ``0.5 (L(real) + L(fake))``
    for D and ``L(fake, real label)`` for G (see the module docstring)."""
    if isinstance(adversarial, LeastSquaresLoss):
        return 1.0, 2.0
    return 0.5, 1.0


class HistoryPool:
    """A buffer of previously generated images (reference util/image_pool.py ``ImagePool``).

    Args:
        size: images kept (50); 0 returns every batch unchanged.

    Random draws use torch's global CPU generator (saved in checkpoints by the base module);
    :meth:`state_dict` holds the stored images, so checkpoints carry the pool.
    """

    def __init__(self, size: int = 50) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ConfigError(
                f"model.pool_size={size!r} is invalid: expected an integer >= 0 (50; 0 disables)"
            )
        self.size = size
        self.images: Tensor | None = None  # (size, C, H, W), allocated at the first query
        self.count = 0

    def query(self, images: Tensor) -> Tensor:
        """The batch D trains on: per image, itself or (once the pool is full, with probability ½)
        a stored older one, which the new image replaces."""
        if self.size == 0:
            return images
        images = images.detach()
        if self.images is None:
            self.images = images.new_empty((self.size, *images.shape[1:]))
        elif self.images.device != images.device or self.images.dtype != images.dtype:
            self.images = self.images.to(device=images.device, dtype=images.dtype)
        out = []
        # One image at a time, as the reference: an image stored earlier in the batch may be
        # returned for a later one. The draws are on the CPU generator: no device sync.
        for image in images:
            if self.count < self.size:
                self.images[self.count] = image
                self.count += 1
                out.append(image)
            elif torch.rand(()).item() > 0.5:
                index = int(torch.randint(self.size, ()).item())
                out.append(self.images[index].clone())
                self.images[index] = image
            else:
                out.append(image)
        return torch.stack(out)

    def state_dict(self) -> dict[str, Any]:
        stored = self.images[: self.count].detach().cpu().clone() if self.images is not None else None
        return {"size": self.size, "count": self.count, "images": stored}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        stored = state.get("images")
        if self.size == 0 or stored is None or len(stored) == 0:
            self.images, self.count = None, 0
            return
        # A pool resized between runs keeps what fits.
        stored = stored[: self.size]
        self.images = stored.new_empty((self.size, *stored.shape[1:]))
        self.images[: len(stored)] = stored
        self.count = len(stored)


class CycleGAN(ImageToImageModule):
    """CycleGAN: G: A → B and F: B → A, D_A and D_B, adversarial + cycle + identity losses.

    Args:
        generator: a :class:`TranslationPair` (``a_to_b`` = G, ``b_to_a`` = F; ResnetGenerator).
        discriminator: a :class:`DiscriminatorPair` (``d_a``, ``d_b``; PatchGAN, instance norm).
        cycle_weight: λ of eq. 3 (10).
        identity_weight: λ_id, the identity loss's weight relative to λ (0.5; 0 disables it,
            which domains with different channel counts need).
        pool_size: images in each discriminator's history pool (50; 0 disables).
        num_fixed_samples: validation pairs in the sample grids.
        *args, **kwargs: those of :class:`~gan_research.families.image_to_image.ImageToImageModule`.
    """

    data_kinds = (DataKind.PAIRED, DataKind.UNPAIRED)

    def __init__(
        self,
        *args: Any,
        cycle_weight: float = 10.0,
        identity_weight: float = 0.5,
        pool_size: int = 50,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        for key, value in (("cycle_weight", cycle_weight), ("identity_weight", identity_weight)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"model.{key}={value!r} is invalid: expected a float >= 0")
        if self.schedule.n_critic != 1:
            raise ConfigError(
                f"schedule.n_critic={self.schedule.n_critic} is invalid for CycleGAN: it updates each "
                "discriminator once per generator update on that step's fakes (as the reference); "
                "expected schedule.n_critic=1"
            )
        g_in, g_out = self.generator.input_shape, self.generator.output_shape
        if identity_weight > 0 and g_in != g_out:
            raise ConfigError(
                f"model.identity_weight={identity_weight} needs domains of one shape (the identity loss "
                f"feeds B images to G: A -> B), but the domains are A {g_in} and B {g_out}; "
                "set model.identity_weight=0"
            )
        self.cycle_weight = float(cycle_weight)
        self.identity_weight = float(identity_weight)
        self.pool_a = HistoryPool(pool_size)  # fakes F(b) for D_A
        self.pool_b = HistoryPool(pool_size)  # fakes G(a) for D_B
        self.d_factor, self.g_factor = reference_adversarial_factors(self.objective.adversarial)

    # ----------------------------------------------------------------- checks
    def check_networks(self, generator: nn.Module, discriminator: nn.Module) -> None:
        """G/F are a TranslationPair, D_A/D_B a DiscriminatorPair, each D judging its domain's shape."""
        if not isinstance(generator, TranslationPair):
            raise ConfigError(
                f"CycleGAN's model.generator must be a gan_research.networks.pairs.TranslationPair "
                f"(a_to_b, b_to_a), got {type(generator).__name__}"
            )
        if not isinstance(discriminator, DiscriminatorPair):
            raise ConfigError(
                f"CycleGAN's model.discriminator must be a gan_research.networks.pairs.DiscriminatorPair "
                f"(d_a, d_b), got {type(discriminator).__name__}"
            )
        a_shape, b_shape = tuple(generator.input_shape), tuple(generator.output_shape)
        for key, have, want, domain in (
            ("d_a", discriminator.input_shape_a, a_shape, "A"),
            ("d_b", discriminator.input_shape, b_shape, "B"),
        ):
            if tuple(have) != want:
                raise ConfigError(
                    f"model.discriminator.{key} judges domain-{domain} images of shape {want} (the "
                    f"generators' domain {domain}), but it is built for {tuple(have)}; set its "
                    f"input_channels={want[0]} and image_size={want[-1]}"
                )

    def check_data(self, datamodule: Any) -> None:
        """Any translation dataset (a paired one is used unpaired) with G's A and B shapes."""
        spec = datamodule.spec
        self.check_data_kind(spec)
        name, a_shape, b_shape = spec.name, spec.a_shape, spec.sample_shape
        g_in, g_out = tuple(self.generator.input_shape), tuple(self.generator.output_shape)
        if (tuple(a_shape), tuple(b_shape)) != (g_in, g_out):
            raise ConfigError(
                f"dataset '{name}' has domains A {tuple(a_shape)} and B {tuple(b_shape)}, but "
                f"model.generator maps {g_in} -> {g_out}; set the networks' channels and image_size to "
                "the dataset's (model=cyclegan reads ${dataset.channels_a}, ${dataset.channels_b} and "
                "${dataset.image_size})"
            )

    # ------------------------------------------------------------------- step
    def generator_losses(self, a: Tensor, b: Tensor) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """G's terms ``{"adv", "cycle", "identity"}`` (weighted) and the fakes ``(F(b), G(a))``.

        adv = g_factor (L_G(D_B(G(a))) + L_G(D_A(F(b)))); cycle = λ (|F(G(a)) − a| + |G(F(b)) − b|);
        identity = λ_id λ (|G(b) − b| + |F(a) − a|) (reference ``backward_G``).
        """
        g, f = self.generator.a_to_b, self.generator.b_to_a
        d = self.discriminator
        adversarial = self.objective.adversarial
        fake_b = g(a)
        fake_a = f(b)
        real_b = self.real_scores_for_generator(lambda: d.d_b(self.add_instance_noise(b)))
        real_a = self.real_scores_for_generator(lambda: d.d_a(self.add_instance_noise(a)))
        adv = self.g_factor * (
            adversarial.generator_loss(d.d_b(self.add_instance_noise(fake_b)), real_b)
            + adversarial.generator_loss(d.d_a(self.add_instance_noise(fake_a)), real_a)
        )
        cycle = self.cycle_weight * (F.l1_loss(f(fake_b), a) + F.l1_loss(g(fake_a), b))
        if self.identity_weight > 0:
            weight = self.identity_weight * self.cycle_weight
            identity = weight * (F.l1_loss(g(b), b) + F.l1_loss(f(a), a))
        else:
            identity = torch.zeros((), device=a.device)
        return {"adv": adv, "cycle": cycle, "identity": identity}, fake_a, fake_b

    def discriminator_losses(
        self, a: Tensor, b: Tensor, fake_a: Tensor, fake_b: Tensor
    ) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """D's terms ``{"a", "b", "a_<reg>", "b_<reg>"}`` on real images and (pooled) fakes, and all
        real / fake patch scores (flattened, for the diagnostics).

        d_a = d_factor L_D(D_A(a), D_A(fake_a)); d_b likewise (reference ``backward_D_basic``).
        """
        adversarial = self.objective.adversarial
        real_target = 1.0 - self.schedule.label_smoothing
        terms: dict[str, Tensor] = {}
        real_scores, fake_scores = [], []
        for name, net, real, fake in (
            ("a", self.discriminator.d_a, a, fake_a),
            ("b", self.discriminator.d_b, b, fake_b),
        ):
            real, fake = self.flip_labels(real, fake)
            real, fake = self.add_instance_noise(real), self.add_instance_noise(fake)
            real_out, fake_out = net(real), net(fake)
            terms[name] = self.d_factor * adversarial.discriminator_loss(
                real_out, fake_out, real_target=real_target
            )
            for reg, value in self.discriminator_regularization(net, real, fake).items():
                terms[f"{name}_{reg}"] = value
            real_scores.append(real_out.detach().flatten())
            fake_scores.append(fake_out.detach().flatten())
        return terms, torch.cat(real_scores), torch.cat(fake_scores)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        a, b = batch[0], batch[1]
        opt_g, opt_d = self.optimizers()
        with self.optimizer_phase(opt_g):
            g_terms, fake_a, fake_b = self.generator_losses(a, b)
            g_loss = g_terms["adv"] + g_terms["cycle"] + g_terms["identity"]
            logs = self.generator_update(opt_g, GeneratorLoss(g_loss, g_terms))
        # The fakes of this step's forward (before G's update), as the reference's D update.
        pooled_a = self.pool_a.query(fake_a.detach())
        pooled_b = self.pool_b.query(fake_b.detach())
        with self.optimizer_phase(opt_d):
            d_terms, real_scores, fake_scores = self.discriminator_losses(a, b, pooled_a, pooled_b)
            d_adv = d_terms["a"] + d_terms["b"]
            d_loss = sum(d_terms.values())
            logs.update(
                self.discriminator_update(
                    opt_d, DiscriminatorLoss(d_loss, d_adv, real_scores, fake_scores, d_terms)
                )
            )
        self.finish_step(logs, batch_size=a.shape[0])

    # ------------------------------------------------------- exact resume
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["history_pools"] = {"a": self.pool_a.state_dict(), "b": self.pool_b.state_dict()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        pools = checkpoint.get("history_pools")
        if pools is not None:
            self.pool_a.load_state_dict(pools["a"])
            self.pool_b.load_state_dict(pools["b"])

    # -------------------------------------------------------------- inference
    def translator(self, generator: nn.Module) -> nn.Module:
        """G (A → B) of the pair."""
        return generator.a_to_b

    @torch.no_grad()
    def translate_back(self, b: Tensor) -> Tensor:
        """B → A: F of the sampling generator (EMA when enabled) in eval mode."""
        return run_in_eval_mode(self.sampling_generator.b_to_a, b.to(self.device))

    def grid_columns(self, a: Tensor, b: Tensor) -> list[Tensor]:
        """A | G(A) | F(G(A)), a fixed validation image per row: unpaired data has no target,
        so the third column is the cycle's reconstruction (the paper's figures)."""
        fake_b = self.translate(a)
        return [a.to(self.device), fake_b, self.translate_back(fake_b)]

    def extra_grids(self) -> dict[str, tuple[Tensor, int]]:
        """``b_to_a``: B | F(B) | G(F(B)), a fixed validation image per row."""
        _, b = self.fixed_pairs()
        fake_a = self.translate_back(b)
        return {"b_to_a": (grid_rows(b.to(self.device), fake_a, self.translate(fake_a)), 3)}
