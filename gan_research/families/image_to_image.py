"""What the image-to-image families share: a generator that maps a condition image (domain A:
edges, a label map, a low-resolution or degraded image) to an output image (domain B), the
fixed validation pairs of their sample grids, and the samples the metrics read.

A family on :class:`ImageToImageModule` (pix2pix, CycleGAN; SRGAN, GauGAN/SPADE and GFP-GAN
fit the same mould) writes its own ``training_step`` from the base's skeleton
(:meth:`~gan_research.families.base.AdversarialModule.discriminator_update`,
:meth:`~gan_research.families.base.AdversarialModule.generator_update`,
:meth:`~gan_research.families.base.AdversarialModule.finish_step`), in its paper's order.
It adds the terms its paper puts beside the adversarial one (pix2pix's L1, CycleGAN's cycle
and identity losses, a perceptual loss) to its :class:`~gan_research.families.base.GeneratorLoss`,
and overrides only what differs:

- :meth:`translator`: the A → B network inside the generator module (the generator itself;
  CycleGAN's ``a_to_b``), which :meth:`translate`, :meth:`forward` and the grids run;
- :meth:`check_networks` / :meth:`check_data`: the shapes the family's networks need;
- :meth:`grid_columns`: the columns of the sample grid (input | output | target; an SRGAN
  would upsample its low-resolution input to the output's size here).

The datamodule yields ``(a, b)`` batches and has a ``val_dataloader()`` of ``(a, b)`` pairs in a
fixed order (``DataKind.PAIRED``; CycleGAN also takes ``UNPAIRED``, where b is not a's target).

Optional latent input: a multimodal translator (BicycleGAN, SPADE's VAE mode) also takes a
latent z. Such a family sets ``latent_input = True``; its generator then needs ``latent_dim``
and is called ``generator(a, z)``, the base registers the fixed noise batch of the grids
(``fixed_noise``, one latent per fixed pair) and :meth:`translate` draws z ~ N(0, I) unless it
is given one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from gan_research.errors import ConfigError, DataError
from gan_research.families.base import AdversarialModule, DiscriminatorLoss, require_attributes
from gan_research.utils.data_spec import DataKind
from gan_research.utils.images import grid_rows

# Inputs translated per generator forward when sampling for the metrics.
_EVAL_CHUNK = 256


class ImageToImageModule(AdversarialModule):
    """Base of the families whose generator maps an image a (domain A) to an image b (domain B).

    Args:
        num_fixed_samples: validation pairs of the sample grid (one per row), taken at fit start.
        *args, **kwargs: those of :class:`~gan_research.families.base.AdversarialModule`.
    """

    #: G maps images to images; a multimodal family sets True (see the module docstring).
    latent_input = False
    data_kinds = (DataKind.PAIRED,)
    evaluation_output = "translations"
    evaluation_output_description = "translations of input images"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The grid's validation pairs, taken at fit start (not checkpointed: they come from the data).
        self.fixed_a: Tensor | None = None
        self.fixed_b: Tensor | None = None

    # ----------------------------------------------------------------- checks
    def check_networks(self, generator: nn.Module, discriminator: nn.Module) -> None:
        """G has ``input_shape`` (A) and ``output_shape`` (B) (and ``latent_dim`` when it takes a
        latent); D has ``input_shape``. What D must judge is the family's to check."""
        g_attrs = ("input_shape", "output_shape", *(("latent_dim",) if self.latent_input else ()))
        needs = f"{type(self).__name__} needs an image-to-image generator (input_shape -> output_shape)"
        require_attributes("generator", generator, g_attrs, needs)
        require_attributes("discriminator", discriminator, ("input_shape",), needs)

    def check_data(self, datamodule: Any) -> None:
        """Data of the family's kinds whose A and B shapes are G's input and output shapes."""
        spec = datamodule.spec
        self.check_data_kind(spec)
        g_in, g_out = tuple(self.generator.input_shape), tuple(self.generator.output_shape)
        a_shape, b_shape = tuple(spec.a_shape), tuple(spec.sample_shape)
        if (a_shape, b_shape) != (g_in, g_out):
            raise ConfigError(
                f"dataset '{spec.name}' has pairs of shapes {a_shape} -> {b_shape}, but model.generator "
                f"maps {g_in} -> {g_out}; set the networks' channels and image_size to the dataset's"
            )
        self.prepare_feature_network(datamodule)

    def prepare_feature_network(self, datamodule: Any) -> None:
        """The frozen feature network a family holds as ``perceptual`` (its perceptual losses)
        reads the data it needs now, before anything is written (the ``classifier`` option trains
        or loads the domain classifier); a network without ``prepare`` needs none."""
        prepare = getattr(getattr(self, "perceptual", None), "prepare", None)
        if prepare is not None:
            prepare(datamodule)

    # ------------------------------------------------------------------- step
    def critic_chunks(self, *batch: Tensor) -> list[tuple[Tensor, ...]]:
        """The step's batch split into ``schedule.n_critic`` parts, one per D update (the G update
        takes the last); the datamodule yields ``batch_size * n_critic`` pairs."""
        n_critic = self.schedule.n_critic
        if batch[0].shape[0] % n_critic != 0:
            raise RuntimeError(
                f"a training batch of {batch[0].shape[0]} pairs cannot be split into n_critic={n_critic} "
                "D batches; the datamodule must yield batch_size * n_critic pairs"
            )
        return list(zip(*(t.chunk(n_critic) for t in batch), strict=True))

    def unconditional_discriminator_step(self, real: Tensor, fake: Tensor, opt_d: Any) -> dict[str, Tensor]:
        """One update of a D that judges B images alone (SRGAN's HR images, a style's patches):
        ``real`` against ``fake`` (no gradient to G), with the schedule's label flips, instance
        noise, label smoothing and regularisers."""
        real, fake = self.flip_labels(real, fake)
        real, fake = self.add_instance_noise(real), self.add_instance_noise(fake)
        with self.optimizer_phase(opt_d):
            real_scores = self.discriminator(real)
            fake_scores = self.discriminator(fake)
            d_adv = self.objective.adversarial.discriminator_loss(
                real_scores, fake_scores, real_target=1.0 - self.schedule.label_smoothing
            )
            penalties = self.discriminator_regularization(self.discriminator, real, fake)
            d_loss = d_adv + sum(penalties.values()) if penalties else d_adv
            return self.discriminator_update(
                opt_d, DiscriminatorLoss(d_loss, d_adv, real_scores, fake_scores, penalties)
            )

    # -------------------------------------------------------------- inference
    def translator(self, generator: nn.Module) -> nn.Module:
        """The A → B network of ``generator`` (the training or the sampling one): itself."""
        return generator

    @torch.no_grad()
    def translate(self, a: Tensor, z: Tensor | None = None) -> Tensor:
        """A → B with the sampling generator (EMA when enabled) in eval mode, without gradient.
        ``z``: the latents of a multimodal family (drawn from N(0, I) when None)."""
        net = self.translator(self.sampling_generator)
        a = a.to(self.device)
        if self.latent_input and z is None:
            z = self.sample_latent(a.shape[0])
        return run_in_eval_mode(net, a, *(() if z is None else (z.to(self.device),)))

    def forward(self, a: Tensor, z: Tensor | None = None) -> Tensor:
        net = self.translator(self.generator)
        return net(a) if z is None else net(a, z)

    # --------------------------------------------------------- validation pairs
    def on_fit_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and self.fixed_a is None:
            self.set_fixed_batch(*self.validation_pairs(self.num_fixed_samples))

    def set_fixed_batch(self, a: Tensor, b: Tensor) -> None:
        """The validation pairs of the sample grid (kept on the host)."""
        self.fixed_a, self.fixed_b = a.detach().cpu(), b.detach().cpu()

    def fixed_pairs(self) -> tuple[Tensor, Tensor]:
        """The grid's validation pairs ``(a, b)``; set at fit start or by :meth:`set_fixed_batch`."""
        if self.fixed_a is None or self.fixed_b is None:
            raise RuntimeError(
                f"{type(self).__name__}'s grids need validation pairs: fit first, or call "
                "set_fixed_batch(a, b)"
            )
        return self.fixed_a, self.fixed_b

    def validation_pairs(self, n: int) -> tuple[Tensor, Tensor]:
        """The first ``n`` pairs of the trainer's ``datamodule.val_dataloader()`` (fewer if it has fewer)."""
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if datamodule is None:
            raise RuntimeError(f"{type(self).__name__} reads validation pairs from the trainer's datamodule")
        return first_pairs(datamodule.val_dataloader(), n)

    # ------------------------------------------------------------ sampling
    def sample_for_evaluation(self, n: int) -> tuple[Tensor, Tensor, Tensor]:
        """``(input, output, target)`` of the first ``n`` validation pairs (the split repeated when
        it is smaller): the inputs a, their translations and the pairs' b."""
        a, b = self.validation_pairs(n)
        if len(a) < n:
            repeats = (n + len(a) - 1) // len(a)
            a = a.repeat(repeats, *([1] * (a.dim() - 1)))[:n]
            b = b.repeat(repeats, *([1] * (b.dim() - 1)))[:n]
        out = torch.cat([self.translate(chunk) for chunk in a.split(_EVAL_CHUNK)])
        return a.to(out.device), out, b.to(out.device)

    def grid_columns(self, a: Tensor, b: Tensor) -> list[Tensor]:
        """The sample grid's columns for the fixed pairs ``(a, b)``: input | output | target."""
        return [a, self.translate(a).cpu(), b]

    def grid_samples(self) -> tuple[Tensor, int]:
        """:meth:`grid_columns` of the fixed validation pairs, a pair per row. Grey images are
        repeated to RGB when another column is RGB, so one grid holds both domains."""
        columns = self.grid_columns(*self.fixed_pairs())
        return grid_rows(*columns), len(columns)


def first_pairs(loader: Any, n: int) -> tuple[Tensor, Tensor]:
    """The first ``n`` ``(a, b)`` pairs of ``loader`` (fewer if it has fewer)."""
    a_chunks, b_chunks, have = [], [], 0
    # Reading a loader must not move the training RNG stream (exact resume, comparable runs).
    with torch.random.fork_rng(devices=[]):
        for batch in loader:
            a_chunks.append(batch[0])
            b_chunks.append(batch[1])
            have += len(batch[0])
            if have >= n:
                break
    if not a_chunks:
        raise DataError("the datamodule's val_dataloader() yielded no validation pairs")
    return torch.cat(a_chunks)[:n], torch.cat(b_chunks)[:n]


def run_in_eval_mode(net: nn.Module, *inputs: Tensor) -> Tensor:
    """``net(*inputs)`` in eval mode (dropout off, batch-norm running statistics), its mode restored."""
    was_training = net.training
    net.eval()
    try:
        return net(*inputs)
    finally:
        net.train(was_training)
