"""GFP-GAN: blind restoration with a generative prior (Wang et al. 2021, "Towards Real-World Blind
Face Restoration with Generative Facial Prior", arXiv:2101.04061).

G (``networks/gfpgan.py``) maps a degraded image x to a restored ŷ: a degradation-removal U-Net
gives a latent code (W+) and multi-resolution spatial features; a pretrained StyleGAN2 synthesis
network (the generative prior, a checkpoint of this framework's ``model=stylegan2``, frozen or
fine-tuned) is driven by that code, its features modulated by Channel-Split SFT layers. D judges
restored against clean images (the reference: a StyleGAN2 discriminator, trained from scratch).

The objective (Sec. 3.4, eq. 5-8; the reference's ``GFPGANModel.optimize_parameters``,
``gfpgan/models/gfpgan_model.py``, with ``options/train_gfpgan_v1.yml``'s weights)::

    L_G = λ_l1 · L1(ŷ, y)                       pixel_weight       0.1
        + λ_pyr · Σ_r L1(rgb_r, y↓r)              pyramid_weight     1    (the first pyramid_steps)
        + λ_per · Σ_l w_l · L1(φ_l(ŷ), φ_l(y))    perceptual_weight  1    (eq. 5, "L_rec")
        + λ_sty · Σ_l w_l · L1(Gram φ_l(ŷ), Gram φ_l(y))   style_weight 50
        + λ_adv · softplus(-D(ŷ))                adversarial_weight 0.1  (eq. 6, loss group)
        + λ_id · L1(η(ŷ), η(y))                   identity_weight    10   (eq. 8)
    L_D = softplus(-D(y)) + softplus(D(ŷ)) (+ lazy R1, the loss group's regulariser)

- the pyramid (the reference's "image pyramid loss", removed after 50k iterations): the U-Net
  decoder's RGB output at each resolution r against y downsampled by successive bilinear halvings
  (``construct_img_pyramid``);
- φ: the ``perceptual`` group's network. With VGG19 the reference's layers and weights (before
  ReLU: conv1_2 0.1, conv2_2 0.1, conv3_4 1, conv4_4 1, conv5_4 1); otherwise equal weights on
  the network's spatial layers (the style term needs feature maps);
- η: the identity network (the reference: ArcFace on grey 128 px faces). Here any feature
  network of the perceptual interface, by default the dataset's domain classifier's penultimate
  features (``model.identity``), which makes the term class-preserving on digits;
- the facial-component losses (eq. 7), on when the datamodule declares ``regions`` (fixed boxes,
  ``data/restoration.py``) and ``component_gan_weight`` or ``component_style_weight`` is > 0: one
  :class:`~gan_research.networks.gfpgan.FacialComponentDiscriminator` D_r per region r, judging the
  crop of ŷ and y in its box, and ::

      L_G += λ_comp · Σ_r BCE(D_r(ŷ_r), 1)                              component_gan_weight   1
           + λ_cs · Σ_r Σ_k c_k · L1(Gram ψ_k(ŷ_r), Gram ψ_k(y_r))      component_style_weight 200
      L_D_r = BCE(D_r(y_r), 1) + BCE(D_r(ŷ_r), 0)

  (the reference's ``gan_component_opt``: a vanilla GAN loss, BCE with logits on D_r's patch map,
  non-saturating for G; ψ_0, ψ_1: D_r's features after its conv3 and conv5, c = (0.5, 1): the
  reference's ``_comp_style``; Gram matrices normalised by C·H·W as its ``_gram_mat``; y_r's
  features without gradient). Logged unweighted: ``train/g_component_gan``,
  ``train/g_component_style``, ``train/d_component`` (Σ_r L_D_r). The D_r are trained after D, on
  the same restoration (detached), with one Adam step over all of them (the reference steps one
  Adam per region: the same update), at ``component_lr`` (2e-3) with betas (0.9, 0.99) (the
  reference's ``optim_component``). Deviations: the regions are fixed boxes, not the reference's
  per-image landmarks (``FFHQ_eye_mouth_landmarks_512.pth``, not part of this framework), so a
  crop is a slice of the image, no ``roi_align`` resampling to 80 / 120 px; any number of named
  regions instead of left eye, right eye and mouth; D_r sees no label flips, instance noise or
  label smoothing (the reference has none), and takes one update per step whatever
  ``schedule.n_critic`` (on the first chunk, the one G updates on). Without regions the family
  has no component modules, parameters or optimiser groups: its checkpoints are those of before.

One step follows the reference's order: the G update, then the D update on the same restoration
(detached), then the component discriminators' update (when there are regions). With
``schedule.n_critic = k`` the batch is split in k parts: G and D update on the first, D alone on
the others (on fresh restorations without gradient).

Optimisers: the component discriminators' parameters are a second parameter group of D's
optimiser (``component_lr``, the reference's betas when the optimiser has betas), so the family
keeps the two optimisers every family has (``finish_step``, the checkpoints, the divergence
rollback), the optimiser toggle freezes them in the G phase, and ``schedule.lr_decay`` scales
them as D's (the reference's scheduler decays every optimiser). Their update is a step of that
optimiser with only their gradients (D's are cleared first: Adam leaves a parameter without a
gradient as it is), and does not count as a D update (lazy R1).

The component discriminators are made when the data is known (:meth:`GFPGAN.check_data`, which
``gan-train``'s ``build`` calls before the optimisers exist and before a checkpoint is checked or
restored). ``gan-eval`` restores the weights first and checks the data after, so a checkpoint
holding component discriminators makes them when it is loaded (:meth:`GFPGAN.load_state_dict`),
and :meth:`GFPGAN.check_data` then requires the data's regions to be theirs.

Evaluation restores with the prior's noise inputs fixed (``noise_mode="const"``), so the scores
of a checkpoint are the same every time; training draws them (``"random"``, the reference's
``randomize_noise=True``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_research.errors import ConfigError
from gan_research.families.base import GeneratorLoss
from gan_research.families.image_to_image import ImageToImageModule
from gan_research.losses.perceptual import feature_network_or_none, gram_matrix
from gan_research.networks.gfpgan import MIN_COMPONENT_SIZE, FacialComponentDiscriminator
from gan_research.utils.validation import check_positive_int
from gan_research.utils.weights import keep_out_of_checkpoints

#: The reference's perceptual layers and weights on VGG19 (``perceptual_opt.layer_weights``).
VGG_LAYER_WEIGHTS = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
#: The component style loss's weights of D_r's two feature maps (the reference's ``_comp_style``:
#: ``L1(Gram feat[0]) * 0.5 + L1(Gram feat[1])``).
COMPONENT_STYLE_WEIGHTS = (0.5, 1.0)
#: Adam's betas of the component discriminators (the reference's ``setup_optimizers``).
COMPONENT_BETAS = (0.9, 0.99)
#: Where the component discriminators sit in the module (and in its checkpoints).
COMPONENTS = "component_discriminators"


def image_pyramid(images: Tensor, sizes: list[int]) -> list[Tensor]:
    """``images`` at each of ``sizes`` (ascending, the last its own size) by successive bilinear
    halvings, as the reference's ``construct_img_pyramid`` (half-pixel centres, no antialiasing)."""
    if int(images.shape[-1]) != sizes[-1]:
        raise ValueError(
            f"image_pyramid: the last size must be the images' own ({images.shape[-1]}), got {sizes}"
        )
    levels = [images]
    for size in reversed(sizes[:-1]):
        down = F.interpolate(levels[0], scale_factor=0.5, mode="bilinear", align_corners=False)
        if down.shape[-1] != size:
            raise ValueError(f"image_pyramid: sizes must halve, got {sizes}")
        levels.insert(0, down)
    return levels


def _weight(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"model.{key}={value!r} is invalid: expected a float >= 0")
    return float(value)


def _bce(logits: Tensor, real: bool) -> Tensor:
    """The vanilla GAN loss (BCE with logits, mean over the patch map) against target 1 or 0."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


class GFPGAN(ImageToImageModule):
    """GFP-GAN: G(degraded) → restored with a StyleGAN2 prior; D judges restored against clean.

    Args:
        generator: ``networks.gfpgan.GFPGANGenerator`` (``forward(x, return_pyramid=True)``
            gives the image and the U-Net's RGB pyramid; ``noise_mode``).
        discriminator: any D of B images with ``input_shape`` (the reference's StyleGAN2 D).
        pixel_weight, pyramid_weight, perceptual_weight, style_weight, adversarial_weight,
            identity_weight: the λ of the module docstring (0 turns a term off).
        pyramid_steps: the pyramid loss applies while ``global_step < pyramid_steps`` (the
            reference's ``remove_pyramid_loss``: 50000).
        perceptual: the ``perceptual`` group's network (φ), or none.
        perceptual_layers: layer → weight (default: the reference's VGG19 weights when the network
            has those layers, else 1 on each of its spatial layers).
        identity: the identity network η (a feature network with ``layers``), or None.
        identity_layer: the layer of η compared (the domain classifier's ``features``).
        component_gan_weight, component_style_weight: λ_comp and λ_cs of the facial-component
            losses (the module docstring; the reference's 1 and 200), used when the data has
            ``regions``; both 0 turns the component discriminators off.
        component_lr: the component discriminators' learning rate (the reference's 2e-3).
        component_width: their first layer's width (the reference's 64).
        *args, **kwargs: those of :class:`~gan_research.families.image_to_image.ImageToImageModule`.

    Attributes:
        component_regions: ``{name: (y0, x0, y1, x1)}``, the data's regions the component losses
            use (empty without them).
        component_discriminators: one ``FacialComponentDiscriminator`` per region (an
            ``nn.ModuleDict``), or None.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        *args: Any,
        pixel_weight: float = 0.1,
        pyramid_weight: float = 1.0,
        pyramid_steps: int = 50_000,
        perceptual: Any = None,
        perceptual_weight: float = 1.0,
        style_weight: float = 50.0,
        perceptual_layers: dict[str, float] | None = None,
        adversarial_weight: float = 0.1,
        identity: Any = None,
        identity_layer: str = "features",
        identity_weight: float = 10.0,
        component_gan_weight: float = 1.0,
        component_style_weight: float = 200.0,
        component_lr: float = 2e-3,
        component_width: int = 64,
        **kwargs: Any,
    ) -> None:
        super().__init__(generator, discriminator, *args, **kwargs)
        if getattr(generator, "prior_source", "") is None and not getattr(generator, "prior_trainable", True):
            # A random decoder that is also frozen would train the U-Net against noise: the prior
            # is either loaded or trained (the prior-free ablation), never neither.
            raise ConfigError(
                "model.generator.prior_checkpoint=null with model.generator.prior_trainable=false would "
                "train against a random, frozen StyleGAN2 decoder; give a model=stylegan2 run's "
                "checkpoint (prior_checkpoint, or needs), or set model.generator.prior_trainable=true "
                "for the prior-free ablation (experiment=gfpgan_digits_no_prior)"
            )
        self.pixel_weight = _weight("pixel_weight", pixel_weight)
        self.pyramid_weight = _weight("pyramid_weight", pyramid_weight)
        self.perceptual_weight = _weight("perceptual_weight", perceptual_weight)
        self.style_weight = _weight("style_weight", style_weight)
        self.adversarial_weight = _weight("adversarial_weight", adversarial_weight)
        self.identity_weight = _weight("identity_weight", identity_weight)
        if isinstance(pyramid_steps, bool) or not isinstance(pyramid_steps, int) or pyramid_steps < 0:
            raise ConfigError(f"model.pyramid_steps={pyramid_steps!r} is invalid: expected an int >= 0")
        self.pyramid_steps = pyramid_steps

        perceptual = feature_network_or_none(perceptual)
        self.perceptual: nn.Module | None = None
        self.perceptual_layers: dict[str, float] = {}
        if perceptual is not None and (self.perceptual_weight > 0 or self.style_weight > 0):
            layers = tuple(getattr(perceptual, "layers", ()))
            if perceptual_layers is not None:
                weights = {str(k): float(v) for k, v in dict(perceptual_layers).items()}
            elif set(VGG_LAYER_WEIGHTS) <= set(layers):
                weights = dict(VGG_LAYER_WEIGHTS)
            else:
                # The classifier's penultimate vector has no Gram matrix: its conv blocks only.
                weights = {name: 1.0 for name in layers if name != "features"}
            unknown = sorted(set(weights) - set(layers))
            if unknown or not weights:
                raise ConfigError(
                    f"model.perceptual_layers: {unknown or 'no spatial layers'} not among the perceptual "
                    f"network's layers {list(layers)}"
                )
            # Frozen and fixed: its weights stay out of checkpoints (VGG19 would add 80 MB to each).
            self.perceptual = keep_out_of_checkpoints(perceptual)
            self.perceptual_layers = weights

        identity = feature_network_or_none(identity, key="model.identity")
        self.identity: nn.Module | None = None
        self.identity_layer = str(identity_layer)
        if identity is not None and self.identity_weight > 0:
            if self.identity_layer not in tuple(getattr(identity, "layers", ())):
                raise ConfigError(
                    f"model.identity_layer={identity_layer!r} is not a layer of model.identity: valid: "
                    f"{list(getattr(identity, 'layers', ()))}"
                )
            self.identity = keep_out_of_checkpoints(identity)

        self.component_gan_weight = _weight("component_gan_weight", component_gan_weight)
        self.component_style_weight = _weight("component_style_weight", component_style_weight)
        if isinstance(component_lr, bool) or not isinstance(component_lr, (int, float)) or component_lr <= 0:
            raise ConfigError(f"model.component_lr={component_lr!r} is invalid: expected a float > 0")
        self.component_lr = float(component_lr)
        self.component_width = check_positive_int("model", "component_width", component_width, form="key")
        # Made when the data is known (check_data): none without regions.
        self.component_regions: dict[str, tuple[int, int, int, int]] = {}
        self.component_discriminators: nn.ModuleDict | None = None

    # ----------------------------------------------------------------- checks
    def check_networks(self, generator: nn.Module, discriminator: nn.Module) -> None:
        """G restores (C, S, S) images at their size; D judges G's outputs."""
        super().check_networks(generator, discriminator)
        g_in, g_out = tuple(generator.input_shape), tuple(generator.output_shape)
        d_in = tuple(discriminator.input_shape)
        if g_in != g_out:
            raise ConfigError(
                f"GFP-GAN restores an image at its size, but model.generator maps {g_in} -> {g_out}"
            )
        if d_in != g_out:
            raise ConfigError(
                f"model.discriminator judges {d_in} images but model.generator makes {g_out}; set "
                f"model.discriminator.channels={g_out[0]} and model.discriminator.image_size={g_out[-1]}"
            )

    def check_data(self, datamodule: Any) -> None:
        """The image-to-image checks, then the component discriminators of the data's regions
        (``datamodule.regions``; none when it has none or both component weights are 0)."""
        super().check_data(datamodule)
        regions = dict(getattr(datamodule, "regions", None) or {})
        if self.component_gan_weight == 0 and self.component_style_weight == 0:
            regions = {}
        self.attach_components(regions)

    def attach_components(self, regions: dict[str, tuple[int, int, int, int]]) -> None:
        """Use ``regions`` (``{name: (y0, x0, y1, x1)}`` in pixels of G's images) for the component
        losses, making one discriminator per region unless they exist (made by an earlier call, or
        by :meth:`load_state_dict`), in which case their regions must be these."""
        size = int(self.generator.output_shape[-1])
        boxes: dict[str, tuple[int, int, int, int]] = {}
        for name, box in regions.items():
            y0, x0, y1, x1 = (int(v) for v in box)
            key = f"dataset.regions.{name}"
            if not (0 <= y0 < y1 <= size and 0 <= x0 < x1 <= size):
                raise ConfigError(
                    f"{key}={[y0, x0, y1, x1]} is not a box inside model.generator's {size} px images"
                )
            if min(y1 - y0, x1 - x0) < MIN_COMPONENT_SIZE:
                raise ConfigError(
                    f"{key}={[y0, x0, y1, x1]} is {y1 - y0}x{x1 - x0} px: the component discriminator "
                    f"halves its crop twice, so each side must be >= {MIN_COMPONENT_SIZE} px"
                )
            if hasattr(nn.ModuleDict(), name):
                raise ConfigError(f"{key}: the name {name!r} is reserved (nn.ModuleDict's); choose another")
            boxes[str(name)] = (y0, x0, y1, x1)
        if self.component_discriminators is not None:
            have = sorted(self.component_discriminators.keys())
            if have != sorted(boxes):
                raise ConfigError(
                    f"the model holds component discriminators of regions {have} (a checkpoint's), but "
                    f"dataset.regions declares {sorted(boxes)}: use the run's own dataset.regions"
                )
        elif boxes:
            self.component_discriminators = self._component_networks(list(boxes)).to(self.device)
        self.component_regions = boxes

    def _component_networks(self, names: list[str]) -> nn.ModuleDict:
        channels = int(self.generator.output_shape[0])
        return nn.ModuleDict(
            {name: FacialComponentDiscriminator(channels, self.component_width) for name in names}
        )

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """``nn.Module.load_state_dict``; a checkpoint of a run with regions loaded before the data
        is known (``gan-eval`` restores, then checks the data) makes its component discriminators
        first, named by its keys, so the weights load strictly; :meth:`check_data` then checks
        the data's regions against them."""
        prefix = f"{COMPONENTS}."
        names = list(dict.fromkeys(k.split(".")[1] for k in state_dict if k.startswith(prefix)))
        if names and self.component_discriminators is None:
            self.component_discriminators = self._component_networks(names).to(self.device)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def prepare_feature_network(self, datamodule: Any) -> None:
        """The perceptual network and the identity network read the data they need (the
        domain classifier is loaded or trained once) before anything is written."""
        super().prepare_feature_network(datamodule)
        prepare = getattr(self.identity, "prepare", None)
        if prepare is not None:
            prepare(datamodule)

    # ------------------------------------------------------------------ losses
    def feature_losses(self, restored: Tensor, clean: Tensor) -> tuple[Tensor, Tensor]:
        """(perceptual, style): the weighted L1 of φ's features and of their Gram matrices."""
        features = self.perceptual(restored)
        with torch.no_grad():
            targets = self.perceptual(clean)
        perceptual = restored.new_zeros(())
        style = restored.new_zeros(())
        for name, weight in self.perceptual_layers.items():
            perceptual = perceptual + weight * F.l1_loss(features[name], targets[name])
            if features[name].dim() == 4:
                style = style + weight * F.l1_loss(gram_matrix(features[name]), gram_matrix(targets[name]))
        return perceptual, style

    def identity_loss(self, restored: Tensor, clean: Tensor) -> Tensor:
        """L1 between η's features of the restoration and of the clean image (eq. 8)."""
        ours = self.identity(restored)[self.identity_layer]
        with torch.no_grad():
            target = self.identity(clean)[self.identity_layer]
        return F.l1_loss(ours, target)

    def generator_loss(self, degraded: Tensor, clean: Tensor) -> tuple[Tensor, GeneratorLoss]:
        """(the restoration, L_G of the module docstring with each term logged unweighted)."""
        restored, pyramid = self.generator(degraded, return_pyramid=True)
        terms: dict[str, Tensor] = {}
        loss = restored.new_zeros(())
        if self.pixel_weight > 0:
            terms["l1"] = F.l1_loss(restored, clean)
            loss = loss + self.pixel_weight * terms["l1"]
        if self.pyramid_weight > 0 and self.global_step < self.pyramid_steps:
            targets = image_pyramid(clean, [int(level.shape[-1]) for level in pyramid])
            terms["pyramid"] = sum(F.l1_loss(o, t) for o, t in zip(pyramid, targets, strict=True))
            loss = loss + self.pyramid_weight * terms["pyramid"]
        if self.perceptual is not None:
            terms["perceptual"], terms["style"] = self.feature_losses(restored, clean)
            loss = loss + self.perceptual_weight * terms["perceptual"] + self.style_weight * terms["style"]
        if self.adversarial_weight > 0:
            scores = self.discriminator(self.add_instance_noise(restored))
            real_scores = self.real_scores_for_generator(
                lambda: self.discriminator(self.add_instance_noise(clean))
            )
            terms["adv"] = self.objective.adversarial.generator_loss(scores, real_scores)
            loss = loss + self.adversarial_weight * terms["adv"]
        if self.component_discriminators is not None:
            gan, style = self.component_generator_losses(restored, clean)
            terms["component_gan"] = gan
            loss = loss + self.component_gan_weight * gan
            if style is not None:
                terms["component_style"] = style
                loss = loss + self.component_style_weight * style
        if self.identity is not None:
            terms["identity"] = self.identity_loss(restored, clean)
            loss = loss + self.identity_weight * terms["identity"]
        return restored, GeneratorLoss(loss, terms)

    def crop(self, images: Tensor, region: str) -> Tensor:
        """The ``region`` box of ``images`` (B, C, S, S): a slice (the boxes are fixed)."""
        y0, x0, y1, x1 = self.component_regions[region]
        return images[:, :, y0:y1, x0:x1]

    def component_generator_losses(self, restored: Tensor, clean: Tensor) -> tuple[Tensor, Tensor | None]:
        """(Σ_r BCE(D_r(ŷ_r), 1), Σ_r Σ_k c_k · L1(Gram ψ_k(ŷ_r), Gram ψ_k(y_r)) or None when
        ``component_style_weight`` is 0), unweighted: G's side of eq. 7 (the reference's
        ``l_g_gan_left_eye`` … and ``comp_style_loss``). The D_r are frozen by the G phase's
        optimiser toggle; the clean crops' features carry no gradient."""
        assert self.component_discriminators is not None
        gan = restored.new_zeros(())
        style = restored.new_zeros(()) if self.component_style_weight > 0 else None
        for name in self.component_regions:
            net = self.component_discriminators[name]
            logits, features = net(self.crop(restored, name), return_features=True)
            gan = gan + _bce(logits, real=True)
            if style is not None:
                with torch.no_grad():
                    _, targets = net(self.crop(clean, name), return_features=True)
                for weight, ours, target in zip(COMPONENT_STYLE_WEIGHTS, features, targets, strict=True):
                    style = style + weight * F.l1_loss(gram_matrix(ours), gram_matrix(target))
        return gan, style

    def component_discriminator_step(self, clean: Tensor, restored: Tensor, opt_d: Any) -> dict[str, Tensor]:
        """One update of every D_r: Σ_r BCE(D_r(y_r), 1) + BCE(D_r(ŷ_r), 0) (``restored`` without
        gradient to G), one step of D's optimiser over their parameter group; logs
        ``train/d_component`` and ``train/d_component_grad_norm``."""
        assert self.component_discriminators is not None
        with self.optimizer_phase(opt_d):
            loss = clean.new_zeros(())
            for name in self.component_regions:
                net = self.component_discriminators[name]
                loss = loss + _bce(net(self.crop(clean, name)), real=True)
                loss = loss + _bce(net(self.crop(restored, name)), real=False)
            # D's gradients are cleared here and none is made: only the D_r step.
            grad_norm = self.backward_and_step(opt_d, loss, counts_as_step=False)
        return {"train/d_component": loss.detach(), "train/d_component_grad_norm": grad_norm}

    # ------------------------------------------------------------- optimisers
    def configure_optimizers(self) -> Any:
        """The base's two optimisers (and LR schedules); with component discriminators, D's
        optimiser holds their parameters as a second group (``component_lr``, betas (0.9, 0.99)
        when it has betas), added before the schedules are made so they scale it too."""
        components = self.component_discriminators
        if components is None:
            return super().configure_optimizers()
        make_d = self._optimizer_d

        def with_components(params: Any) -> torch.optim.Optimizer:
            optimizer = make_d(params=params)
            group: dict[str, Any] = {"params": list(components.parameters()), "lr": self.component_lr}
            if "betas" in optimizer.defaults:
                group["betas"] = COMPONENT_BETAS
            optimizer.add_param_group(group)
            return optimizer

        self._optimizer_d = with_components
        try:
            return super().configure_optimizers()
        finally:
            self._optimizer_d = make_d

    # ------------------------------------------------------------------- step
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        chunks = self.critic_chunks(batch[0], batch[1])
        degraded, clean = chunks[0]
        # The reference's order: G (D frozen by the optimiser toggle), then D on that restoration.
        with self.optimizer_phase(opt_g):
            restored, g_loss = self.generator_loss(degraded, clean)
            logs = self.generator_update(opt_g, g_loss)
        logs.update(self.unconditional_discriminator_step(clean, restored.detach(), opt_d))
        if self.component_discriminators is not None:
            logs.update(self.component_discriminator_step(clean, restored.detach(), opt_d))
        for degraded_k, clean_k in chunks[1:]:
            with torch.no_grad():
                restored_k = self.generator(degraded_k)
            logs.update(self.unconditional_discriminator_step(clean_k, restored_k, opt_d))
        self.finish_step(logs, batch_size=degraded.shape[0])

    # -------------------------------------------------------------- inference
    @torch.no_grad()
    def translate(self, a: Tensor, z: Tensor | None = None) -> Tensor:
        """Restorations with the prior's noise inputs fixed (reproducible scores and grids)."""
        net = self.translator(self.sampling_generator)
        mode = getattr(net, "noise_mode", None)
        if mode is None:
            return super().translate(a, z)
        net.noise_mode = "const"
        try:
            return super().translate(a, z)
        finally:
            net.noise_mode = mode
