"""VQGAN's second stage (Esser, Rombach & Ommer 2021, "Taming Transformers for High-Resolution Image
Synthesis", arXiv:2012.09841, sec. 3.2): a transformer that models images as sequences of the
first stage's codes, trained by maximum likelihood and sampled one code at a time.

The first stage is a trained ``model=vqgan`` run (``experiment=vqgan_digits``), named in the
experiment's ``needs`` (``model.first_stage_run``: its run directory): its autoencoder is rebuilt
from the run's recorded ``model.generator`` (``.hydra/config.yaml``, ``_target_`` checked against
the allow-list), so the two stages cannot disagree on sizes, and its ``checkpoints/last.ckpt`` is
loaded with ``torch.load(weights_only=True)`` (the EMA autoencoder when the run kept one), frozen
and kept in eval mode. A missing run, a run of another model or a checkpoint that does not fit is
one ``error:`` line naming the key and the first mismatching tensor.

Per step: the batch's images → the frozen encoder's code map (h×w indices, raster order) → the
transformer's logits of [sos, s_1 … s_{T−1}] → cross entropy against s (eq. 9; with
``conditional``, the class label picks the start token, eq. 10). The generator is the
transformer; there is no discriminator (``adversarial = False``: one optimiser, the ``loss``
group unused).

Sampling (grids, metrics): ``sample_codes`` draws h·w codes with ``temperature`` and ``top_k``
(taming's sampling knobs), the first stage decodes them. The metrics are the image metrics of any
noise → image family (``metrics=default``: FID/KID/IS in the domain classifier's features,
precision/recall, class coverage), so a transformer's samples compare directly with a GAN's.

The first stage's weights are part of this module's checkpoints (as GFP-GAN's prior): ``gan-eval``
scores a stage-2 checkpoint with them (``utils.weights.restoring_a_checkpoint`` skips the initial
load), reading of the stage-1 run only its recorded config, the architecture.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_research.errors import ConfigError
from gan_research.families.base import AdversarialModule, GeneratorLoss, require_attributes
from gan_research.utils.data_spec import DataKind
from gan_research.utils.earlier_run import load_run_weights, network_from_run
from gan_research.utils.weights import initial_weights_needed

#: The config key of the stage-1 run, named in errors.
FIRST_STAGE_KEY = "model.first_stage_run"
_HOW_TO_MAKE = (
    "Train the first stage first (gan-train experiment=vqgan_digits, or a model=vqgan run of your "
    "own) and point model.first_stage_run at its run directory"
)
# Samples decoded per forward when sampling for the metrics.
_SAMPLE_CHUNK = 500


class VQGANTransformer(AdversarialModule):
    """VQGAN stage 2 (see the module docstring).

    Args:
        generator: the code transformer (``gan_research.networks.transformer.CodeTransformer``).
        first_stage_run: the stage-1 run directory (``${needs.vqgan_digits}``).
        conditional: class-conditional (eq. 10: the label picks the start token); needs labels.
        temperature, top_k: sampling knobs (taming's ``sample``); ``top_k`` None samples the full
            distribution.
        discriminator: must be None (no adversarial term).
        *args, **kwargs: those of :class:`~gan_research.families.base.AdversarialModule`.
    """

    adversarial = False
    latent_input = False
    data_kinds = (DataKind.IMAGES,)
    compilable = ("generator",)

    def __init__(
        self,
        generator: nn.Module,
        first_stage_run: str | None,
        *args: Any,
        discriminator: nn.Module | None = None,
        conditional: bool = False,
        temperature: float = 1.0,
        top_k: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(generator, discriminator, *args, **kwargs)
        if first_stage_run is None or str(first_stage_run) in ("", "None"):
            raise ConfigError(f"{FIRST_STAGE_KEY} is not set. {_HOW_TO_MAKE}.")
        first_stage, checkpoint = network_from_run(
            first_stage_run,
            key=FIRST_STAGE_KEY,
            how_to_make=_HOW_TO_MAKE,
            requires=("encode", "decode_indices", "latent_shape", "n_embed", "output_shape", "quantizer"),
            kind="a vector-quantised autoencoder (a model=vqgan run)",
        )
        self.check_codes(generator, first_stage)
        if isinstance(temperature, bool) or not isinstance(temperature, int | float) or temperature <= 0:
            raise ConfigError(f"model.temperature={temperature!r} is invalid: expected a number > 0")
        vocab = int(generator.vocab_size)
        bad_top_k = isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= vocab
        if top_k is not None and bad_top_k:
            raise ConfigError(f"model.top_k={top_k!r} is invalid: expected null or an integer in 1..{vocab}")
        if conditional and getattr(generator, "n_classes", None) is None:
            raise ConfigError(
                "model.conditional=true needs a transformer with a start token per class: set "
                "model.generator.n_classes to the dataset's number of classes"
            )
        self.conditional = bool(conditional)
        self.temperature = float(temperature)
        self.top_k = top_k
        self.first_stage = first_stage.requires_grad_(False).eval()
        if initial_weights_needed():
            load_run_weights(self.first_stage, checkpoint, key=FIRST_STAGE_KEY, how_to_make=_HOW_TO_MAKE)
        # Otherwise built to receive a stage-2 checkpoint (gan-eval), which holds the first stage's
        # weights: only the stage-1 run's recorded config (its architecture) is read.
        self.first_stage_source = str(checkpoint)

    # ----------------------------------------------------------------- checks
    def check_networks(self, generator: nn.Module, discriminator: nn.Module | None) -> None:
        """G is a code transformer (see :meth:`check_codes` for its fit to the first stage)."""
        require_attributes(
            "generator",
            generator,
            ("vocab_size", "block_size", "sample"),
            "VQGAN's second stage needs a code transformer (gan_research.networks.transformer)",
        )

    @staticmethod
    def check_codes(generator: nn.Module, first: nn.Module) -> None:
        """The transformer's vocabulary is the first stage's codebook (``vocab_size`` = its
        ``n_embed``) and its context holds a whole code map (``block_size`` >= h·w)."""
        h, w = first.latent_shape
        if int(generator.vocab_size) != int(first.n_embed):
            raise ConfigError(
                f"model.generator.vocab_size={generator.vocab_size} but the first stage has "
                f"{first.n_embed} codes; set model.generator.vocab_size={first.n_embed}"
            )
        if int(generator.block_size) < h * w:
            raise ConfigError(
                f"model.generator.block_size={generator.block_size} is shorter than the first stage's "
                f"{h}x{w} code map; set model.generator.block_size={h * w}"
            )

    def check_data(self, datamodule: Any) -> None:
        spec = datamodule.spec
        self.check_data_kind(spec)
        if tuple(spec.sample_shape) != tuple(self.first_stage.output_shape):
            raise ConfigError(
                f"dataset '{spec.name}' has images of shape {tuple(spec.sample_shape)}, but the first stage "
                f"encodes {tuple(self.first_stage.output_shape)}; use the stage-1 run's dataset settings"
            )
        if self.conditional and spec.num_classes != self.generator.n_classes:
            raise ConfigError(
                f"model.conditional=true: dataset '{spec.name}' has {spec.num_classes} classes but "
                f"model.generator.n_classes={self.generator.n_classes}; set them equal"
            )

    def train(self, mode: bool = True) -> VQGANTransformer:
        super().train(mode)
        # The first stage is frozen: no dropout, and an EMA codebook is never updated.
        self.first_stage.eval()
        return self

    # ------------------------------------------------------------------- codes
    @property
    def code_shape(self) -> tuple[int, int]:
        return tuple(self.first_stage.latent_shape)  # type: ignore[return-value]

    @torch.no_grad()
    def encode_codes(self, images: Tensor) -> Tensor:
        """The first stage's code indices of ``images`` in raster order: (B, h·w)."""
        return self.first_stage.encode(images).indices.flatten(1)

    # ------------------------------------------------------------------- step
    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        images = batch[0]
        labels = batch[1] if self.conditional else None
        opt_g = self.optimizers()
        codes = self.encode_codes(images)
        with self.optimizer_phase(opt_g):
            logits = self.generator(codes, labels)
            nll = F.cross_entropy(logits.flatten(0, 1), codes.flatten())
            # Bits per code: the same likelihood in units that compare across codebook sizes.
            logs = {"train/bits_per_code": nll.detach() / torch.log(torch.tensor(2.0))}
            out = self.generator_update(opt_g, GeneratorLoss(nll, {"nll": nll}, logs))
        self.finish_step(out, batch_size=images.shape[0])

    # ---------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample_codes(
        self, n: int, labels: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """``n`` code maps (n, h, w) drawn from the sampling transformer."""
        h, w = self.code_shape
        net = self.sampling_generator
        codes = net.sample(
            n, h * w, cond=labels, temperature=self.temperature, top_k=self.top_k, generator=generator
        )
        return codes.view(n, h, w)

    @torch.no_grad()
    def decode(self, codes: Tensor) -> Tensor:
        return self.first_stage.decode_indices(codes.to(self.device)).clamp(-1, 1)

    def sample_labels(self, n: int) -> Tensor | None:
        if not self.conditional:
            return None
        return torch.arange(n, device=self.device) % int(self.generator.n_classes)

    @torch.no_grad()
    def sample_for_evaluation(self, n: int) -> Tensor | tuple[Tensor, Tensor]:
        """``n`` decoded samples (and, when conditional, the class each was drawn for)."""
        images, labels = [], []
        for start in range(0, n, _SAMPLE_CHUNK):
            m = min(_SAMPLE_CHUNK, n - start)
            cond = self.sample_labels(m)
            images.append(self.decode(self.sample_codes(m, cond)))
            if cond is not None:
                labels.append(cond)
        samples = torch.cat(images)
        return (samples, torch.cat(labels)) if labels else samples

    def grid_samples(self) -> tuple[Tensor, int | None]:
        """Samples from a generator seeded with ``sample_seed`` (the same draws at every grid, so
        grids of one run show the model changing, not the dice); conditional: a row per class."""
        rng = torch.Generator(device=self.device).manual_seed(self.sample_seed)
        n = self.num_fixed_samples
        cond = self.sample_labels(n)
        if cond is not None:
            classes = int(self.generator.n_classes)
            per_class = max(1, n // classes)
            cond = torch.arange(classes, device=self.device).repeat_interleave(per_class)
            images = self.decode(self.sample_codes(len(cond), cond, rng))
            return images.cpu(), per_class
        return self.decode(self.sample_codes(n, None, rng)).cpu(), None

    def forward(self, codes: Tensor, labels: Tensor | None = None) -> Tensor:  # type: ignore[override]
        """The transformer's logits of code sequences (B, T) → (B, T, vocab)."""
        return self.generator(codes, labels)
