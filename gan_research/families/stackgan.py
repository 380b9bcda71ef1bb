"""The StackGAN family (Zhang et al. 2017, "StackGAN: Text to Photo-realistic Image Synthesis with
Stacked Generative Adversarial Networks", ICCV 2017, arXiv:1612.03242): text → a low-resolution
image (stage I) → a higher-resolution one (stage II), each stage a conditional GAN on a caption's
embedding.

- The caption embedding φ_t comes from a frozen text encoder the framework trains once on the
  data's captions and caches (``model.text_encoder``: Reed et al. 2016's joint embedding,
  ``metrics/text_encoder.py``; the paper uses Reed et al.'s pre-trained char-CNN-RNN). It is
  passed by config, prepared with the data before training (as the perceptual networks are) and
  kept out of checkpoints: the cache holds it.
- Conditioning augmentation (sec. 3.1): G draws c = μ(φ_t) + σ(φ_t) ⊙ ε and adds
  ``kl_weight`` · D_KL(N(μ, Σ) ‖ N(0, I)) to its loss (eq. 6 with λ; the reference's
  ``TRAIN.COEFF.KL`` is 2.0, the paper's λ 1).
- The discriminator is matching-aware (Reed et al. 2016, GAN-CLS; StackGAN sec. 3.2): besides
  (real image, its caption) as real and (fake, its caption) as fake, (real image, a caption of
  another class: the datamodule's ``mismatched``) is fake. D's text input is the generator's CA
  mean μ, detached, as the reference code (``miscc/utils.py``, ``compute_discriminator_loss``).
  D's loss is the reference's L_real + (L_fake + L_wrong) / 2, written with the ``loss`` group as
  ½ L(real, fake) + ½ L(real, wrong); G's is the loss group's on D(fake, μ) plus the KL term.
  With an unconditional head on D (stage II, as the reference's STAGE2_D), its pair (real, fake)
  is added and the total halved: real terms weigh ½ each as in the reference, the three fake
  terms ¼, ¼, ½ (the reference: ⅓ each), a documented simplification that keeps every
  adversarial loss of the ``loss`` group usable.
- ``stage: 2`` trains stage II on the frozen stage-I generator of an earlier run (``needs``;
  ``model.stage1_run``), as the paper (sec. 3.3: "the Stage-I GAN is fixed"): the stage-I
  generator is rebuilt from that run's recorded config (``utils/earlier_run.py``), its EMA (or
  trained) weights loaded, and its images fed to stage II with the same z and caption.

Per step: D's update, then G's on the same fakes (the reference's order). The evaluator
(``metrics=text_to_image``) calls :meth:`generate_from_captions`; grids: caption | stage I |
stage II (stage I nearest-upsampled to stage II's size).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor, nn

from gan_research.errors import ConfigError
from gan_research.families.base import (
    AdversarialModule,
    DiscriminatorLoss,
    GeneratorLoss,
    require_attributes,
)
from gan_research.networks.stackgan import kl_divergence
from gan_research.utils.data_spec import DataKind
from gan_research.utils.earlier_run import load_run_weights, network_from_run
from gan_research.utils.images import convert_channels
from gan_research.utils.weights import initial_weights_needed, keep_out_of_checkpoints

STAGE1_KEY = "model.stage1_run"
_HOW_TO_MAKE = (
    "Train stage I first (gan-train experiment=stackgan_digits, or a model=stackgan run with "
    "model.stage=1) and point model.stage1_run at its run directory"
)
# Cells of the caption column in the sample grid, and the grid's smallest cell (images are
# nearest-upsampled to it, so 16 px digits and their captions are legible).
_CAPTION_CELLS = 4
_GRID_SIDE = 64
_EVAL_CHUNK = 256


def caption_tiles(texts: list[str], side: int, cells: int, channels: int) -> Tensor:
    """Each caption drawn in white on black over ``cells`` square tiles of ``side`` px, (len(texts)
    * cells, channels, side, side) in [-1, 1], the tiles of one caption consecutive (a grid row).
    PIL's default bitmap font (about 6 px a character, 11 px a line), wrapped to the width."""
    width = side * cells
    font = ImageFont.load_default()
    per_line = max(1, width // 6 - 1)
    tiles = []
    for text in texts:
        lines, line = [], ""
        for word in text.split():
            candidate = f"{line} {word}".strip()
            if len(candidate) > per_line and line:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
        canvas = Image.new("L", (width, side), 0)
        ImageDraw.Draw(canvas).multiline_text((2, 2), "\n".join(lines), fill=255, font=font, spacing=1)
        image = torch.tensor(list(canvas.getdata()), dtype=torch.float32).view(1, side, width) / 127.5 - 1.0
        tiles.extend(image[:, :, i * side : (i + 1) * side] for i in range(cells))
    return convert_channels(torch.stack(tiles), channels)


class StackGAN(AdversarialModule):
    """StackGAN stage I or II (see the module docstring).

    Args:
        generator: ``StageIGenerator`` (stage 1) or ``StageIIGenerator`` (stage 2): forward
            ``(z or stage-I image, embedding) -> (image, mu, logvar)``.
        discriminator: ``StageIDiscriminator`` / ``StageIIDiscriminator``: forward
            ``(image, mu, unconditional=False)``.
        text_encoder: the frozen caption encoder (``forward(tokens) -> (B, out_dim)``,
            ``prepare(datamodule)``).
        stage: 1 or 2.
        stage1_run: stage 2's stage-I run directory (``${needs.stackgan_digits}``); None at stage 1.
        kl_weight: λ of the conditioning augmentation's KL term.
        *args, **kwargs: those of :class:`~gan_research.families.base.AdversarialModule`.
    """

    data_kinds = (DataKind.CAPTIONED,)
    #: The evaluator calls generate_from_captions (metrics=text_to_image).
    evaluation_output = "captions"
    evaluation_output_description = "images generated from captions"
    # Stage I draws z; the fixed noise batch is registered here (stage II's G takes images).
    latent_input = False

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        *args: Any,
        text_encoder: nn.Module,
        stage: int = 1,
        stage1_run: str | None = None,
        kl_weight: float = 2.0,
        **kwargs: Any,
    ) -> None:
        if stage not in (1, 2):
            raise ConfigError(f"model.stage={stage!r} is invalid; valid: 1 (text -> image), 2 (refinement)")
        self.stage = int(stage)
        super().__init__(generator, discriminator, *args, **kwargs)
        if isinstance(kl_weight, bool) or not isinstance(kl_weight, int | float) or kl_weight < 0:
            raise ConfigError(f"model.kl_weight={kl_weight!r} is invalid: expected a number >= 0")
        self.kl_weight = float(kl_weight)
        require_attributes("text_encoder", text_encoder, ("out_dim", "prepare"), "a caption encoder")
        if int(text_encoder.out_dim) != int(generator.text_dim):
            raise ConfigError(
                f"model.text_encoder embeds captions to {text_encoder.out_dim} dimensions but "
                f"model.generator.text_dim={generator.text_dim}; set them equal"
            )
        self.text_encoder = keep_out_of_checkpoints(text_encoder)
        self.stage1: nn.Module | None = None
        if self.stage == 2:
            if stage1_run is None or str(stage1_run) in ("", "None"):
                raise ConfigError(f"model.stage=2 needs {STAGE1_KEY}. {_HOW_TO_MAKE}.")
            stage1, checkpoint = network_from_run(
                stage1_run,
                key=STAGE1_KEY,
                how_to_make=_HOW_TO_MAKE,
                requires=("latent_dim", "output_shape", "text_dim"),
                kind="a StackGAN stage-I generator (a model=stackgan run with model.stage=1)",
            )
            if tuple(stage1.output_shape) != tuple(generator.input_shape):
                raise ConfigError(
                    f"{STAGE1_KEY}: its stage-I generator makes {tuple(stage1.output_shape)} images but "
                    f"model.generator (stage II) reads {tuple(generator.input_shape)}; set "
                    f"model.generator.stage1_size={stage1.output_shape[-1]}"
                )
            if int(stage1.text_dim) != int(generator.text_dim):
                raise ConfigError(
                    f"{STAGE1_KEY}: its stage-I generator reads {stage1.text_dim}-dimensional embeddings, "
                    f"stage II {generator.text_dim}: both stages use one text encoder"
                )
            if initial_weights_needed():
                load_run_weights(stage1, checkpoint, key=STAGE1_KEY, how_to_make=_HOW_TO_MAKE)
            self.stage1 = stage1.requires_grad_(False).eval()
        self.latent_dim = int(self.stage1.latent_dim if self.stage1 is not None else generator.latent_dim)
        gen = torch.Generator().manual_seed(self.sample_seed)
        self.register_buffer(
            "fixed_noise", torch.randn(self.num_fixed_samples, self.latent_dim, generator=gen)
        )
        self.fixed_captions: tuple[Tensor, Tensor, list[str]] | None = None

    # ----------------------------------------------------------------- checks
    def check_networks(self, generator: nn.Module, discriminator: nn.Module) -> None:
        """G maps (z or the stage-I image, an embedding) to images D judges with a text input."""
        g_attrs = ("text_dim", "output_shape") + (("latent_dim",) if self.stage == 1 else ("input_shape",))
        require_attributes(
            "generator", generator, g_attrs, f"StackGAN stage {self.stage} needs its stage's G"
        )
        require_attributes("discriminator", discriminator, ("input_shape", "text_dim"), "a StackGAN D")
        if tuple(generator.output_shape) != tuple(discriminator.input_shape):
            raise ConfigError(
                f"model.generator makes {tuple(generator.output_shape)} images but model.discriminator "
                f"judges {tuple(discriminator.input_shape)}; give both the same image_size and channels"
            )
        if int(discriminator.text_dim) != int(generator.condition_dim):
            raise ConfigError(
                f"model.discriminator reads {discriminator.text_dim}-dimensional text (the CA mean) but "
                f"the generator's condition_dim is {generator.condition_dim}; set them equal"
            )

    def check_data(self, datamodule: Any) -> None:
        spec = datamodule.spec
        self.check_data_kind(spec)
        if tuple(spec.sample_shape) != tuple(self.generator.output_shape):
            raise ConfigError(
                f"dataset '{spec.name}' has images of shape {tuple(spec.sample_shape)}, but stage "
                f"{self.stage}'s generator makes {tuple(self.generator.output_shape)}: set "
                "dataset.image_size to the last stage's size"
            )
        self.text_encoder.prepare(datamodule)

    def train(self, mode: bool = True) -> StackGAN:
        super().train(mode)
        if self.stage1 is not None:
            self.stage1.eval()  # frozen: batch norm keeps the stage-I run's statistics
        return self

    # ---------------------------------------------------------------- sampling
    def sample_latent(self, n: int) -> Tensor:
        return self.draw_global(n, lambda m: torch.randn(m, self.latent_dim, device=self.device))

    @torch.no_grad()
    def embed(self, tokens: Tensor) -> Tensor:
        return self.text_encoder(tokens.to(self.device))

    def stage_images(self, generator: nn.Module, z: Tensor, embedding: Tensor) -> dict[str, Any]:
        """What ``generator`` (the training or the sampling one) makes of (z, φ_t): the stage-I
        images (frozen stage I at stage 2) and this stage's images with its CA's μ and log σ²."""
        if self.stage1 is None:
            image, mu, logvar = generator(z, embedding)
            return {"stage1": image, "image": image, "mu": mu, "logvar": logvar}
        with torch.no_grad():
            low, _, _ = self.stage1(z, embedding)
        image, mu, logvar = generator(low, embedding)
        return {"stage1": low, "stage2": image, "image": image, "mu": mu, "logvar": logvar}

    @torch.no_grad()
    def generate_from_captions(self, tokens: Tensor, labels: Tensor | None = None) -> dict[str, Tensor]:
        """Images of every stage for these captions (the evaluator's call), sampling networks in
        eval mode, a fresh z per caption."""
        gen = self.sampling_generator
        was_training = gen.training
        gen.eval()
        try:
            out: dict[str, list[Tensor]] = {}
            for chunk in tokens.split(_EVAL_CHUNK):
                images = self.stage_images(gen, self.sample_latent(len(chunk)), self.embed(chunk))
                for name in ("stage1", "stage2"):
                    if name in images:
                        out.setdefault(name, []).append(images[name].clamp(-1, 1))
            return {name: torch.cat(chunks) for name, chunks in out.items()}
        finally:
            gen.train(was_training)

    # ------------------------------------------------------------------- step
    def scores(self, image: Tensor, mu: Tensor) -> tuple[Tensor, Tensor | None]:
        """D's conditional logits of (image, μ) and, with an unconditional head, its unconditional ones."""
        if getattr(self.discriminator, "has_unconditional_head", False):
            return self.discriminator(image, mu, unconditional=True)
        return self.discriminator(image, mu), None

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        if self.schedule.n_critic != 1:
            raise RuntimeError("StackGAN takes one D update per G update (schedule.n_critic=1)")
        image, _, tokens, wrong = batch
        opt_g, opt_d = self.optimizers()
        embedding, wrong_embedding = self.embed(tokens), self.embed(wrong)
        made = self.stage_images(self.generator, self.sample_latent(image.shape[0]), embedding)
        fake, mu, logvar = made["image"], made["mu"], made["logvar"]
        with torch.no_grad():
            wrong_mu, _ = self.generator.ca.encode(wrong_embedding)
        logs = self.discriminator_step(image, fake.detach(), mu.detach(), wrong_mu, opt_d)
        logs.update(self.generator_step(image, fake, mu, logvar, opt_g))
        self.finish_step(logs, batch_size=image.shape[0])

    def discriminator_step(
        self, real: Tensor, fake: Tensor, mu: Tensor, wrong_mu: Tensor, opt_d: Any
    ) -> dict[str, Tensor]:
        """The matching-aware D update: (real, μ) real; (fake, μ) and (real, μ of a mismatched
        caption) fake (see the module docstring for the weights)."""
        adversarial = self.objective.adversarial
        target = 1.0 - self.schedule.label_smoothing
        real_in, fake_in = self.flip_labels(real, fake)
        real_in, fake_in = self.add_instance_noise(real_in), self.add_instance_noise(fake_in)
        with self.optimizer_phase(opt_d):
            real_s, real_u = self.scores(real_in, mu)
            fake_s, fake_u = self.scores(fake_in, mu)
            wrong_s, _ = self.scores(real_in, wrong_mu)
            d_adv = 0.5 * adversarial.discriminator_loss(real_s, fake_s, real_target=target)
            d_adv = d_adv + 0.5 * adversarial.discriminator_loss(real_s, wrong_s, real_target=target)
            if real_u is not None and fake_u is not None:
                d_adv = 0.5 * (d_adv + adversarial.discriminator_loss(real_u, fake_u, real_target=target))
            penalties = self.discriminator_regularization(lambda x: self.scores(x, mu)[0], real_in, fake_in)
            d_loss = d_adv + sum(penalties.values()) if penalties else d_adv
            logs = {"train/d_wrong": wrong_s.detach().mean()}
            return self.discriminator_update(
                opt_d, DiscriminatorLoss(d_loss, d_adv, real_s, fake_s, penalties, logs)
            )

    def generator_step(
        self, real: Tensor, fake: Tensor, mu: Tensor, logvar: Tensor, opt_g: Any
    ) -> dict[str, Tensor]:
        """G's update: the adversarial loss on D(fake, μ) (and its unconditional head) + λ·KL."""
        adversarial = self.objective.adversarial
        with self.optimizer_phase(opt_g):
            fake_s, fake_u = self.scores(self.add_instance_noise(fake), mu.detach())
            real_scores = self.real_scores_for_generator(lambda: self.scores(real, mu.detach()))
            real_s, real_u = real_scores if real_scores is not None else (None, None)
            g_adv = adversarial.generator_loss(fake_s, real_s)
            if fake_u is not None:
                g_adv = 0.5 * (g_adv + adversarial.generator_loss(fake_u, real_u))
            kl = kl_divergence(mu, logvar)
            loss = g_adv + self.kl_weight * kl
            return self.generator_update(opt_g, GeneratorLoss(loss, {"adv": g_adv, "kl": kl}))

    # ------------------------------------------------------------------- grids
    def on_fit_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and self.fixed_captions is None:
            n = min(self.num_fixed_samples, 8)
            _, labels, tokens = datamodule.first_validation_batch(n)
            texts = [datamodule.vocabulary.decode(t) for t in tokens]
            self.fixed_captions = (tokens.cpu(), labels.cpu(), texts)

    def grid_samples(self) -> tuple[Tensor, int]:
        """caption | stage I | stage II (stage I alone at stage 1), a fixed caption and z per row."""
        if self.fixed_captions is None:
            raise RuntimeError("StackGAN's grid needs the validation captions: fit first")
        tokens, _, texts = self.fixed_captions
        z = self.fixed_noise[: len(tokens)]
        gen = self.sampling_generator
        was_training = gen.training
        gen.eval()
        try:
            with torch.no_grad():
                images = self.stage_images(gen, z, self.embed(tokens))
        finally:
            gen.train(was_training)
        final = images["image"].clamp(-1, 1).cpu()
        side, channels = max(final.shape[-1], _GRID_SIDE), final.shape[1]
        tiles = caption_tiles(texts, side, _CAPTION_CELLS, channels)
        columns = [tiles.view(len(texts), _CAPTION_CELLS, channels, side, side)]
        stages = [images["stage1"]] if "stage2" in images else []
        for stage in [*stages, final]:
            columns.append(
                F.interpolate(stage.clamp(-1, 1).cpu(), size=(side, side), mode="nearest")[:, None]
            )
        return torch.cat(columns, dim=1).flatten(0, 1), _CAPTION_CELLS + len(columns) - 1
