"""What every GAN family shares: the training schedule, the two optimisers,
generator EMA, the fixed noise batch, and the order of one optimiser phase.

A family subclasses :class:`AdversarialModule` and writes its own
``training_step`` from :meth:`optimizer_phase` blocks, in its paper's order; everything
family-specific (conditioning, auxiliary heads, extra losses) stays in the
family's own file. What every step ends with is written once, here:

- a D update: the family computes, inside ``optimizer_phase(opt_d)``, what D minimises
  and returns it as a :class:`DiscriminatorLoss`; :meth:`discriminator_update` does the rest
  (skip test ``schedule.d_skip_threshold``, :meth:`backward_and_step`, weight clipping,
  :meth:`count_d_update`) and returns the update's logs (losses, balance diagnostics);
- a G update: likewise with a :class:`GeneratorLoss` and :meth:`generator_update`;
- the end of the step: :meth:`finish_step` (grad-norm ratio, generator EMA, LR schedulers,
  learning-rate and instance-noise logs, :meth:`log_step`).

Each hook returns what it computes (losses, logs); nothing of one step is handed to the next
hook through attributes of the module.

Step semantics: one training step = ``schedule.n_critic`` discriminator
updates followed by one generator update, and ``trainer.global_step`` counts
generator updates (StudioGAN / StyleGAN convention). Lightning's manual
optimisation would otherwise count every ``optimizer.step()``, which makes
``trainer.max_steps`` and checkpoint intervals depend on ``n_critic``.
"""

from __future__ import annotations

import copy
import random
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.core.optimizer import LightningOptimizer
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from gan_research.errors import ConfigError
from gan_research.families.schedule import Schedule
from gan_research.losses import GANObjective, WassersteinLoss, supports_label_smoothing
from gan_research.losses.feature_matching import mean_feature_matching
from gan_research.utils.data_spec import DataKind, DataKindError, DataSpec, require_kind

OptimizerFactory = Callable[..., torch.optim.Optimizer]


@dataclass(frozen=True)
class DiscriminatorLoss:
    """What one D update minimises, as the family computed it
    (:meth:`AdversarialModule.discriminator_update` takes it from there).

    Args:
        loss: the total D minimises, summed in the family's own order and weights.
        adversarial: its adversarial part, which the skip test (``schedule.d_skip_threshold``)
            and the Wasserstein estimate read.
        real_scores, fake_scores: D's scores of the real and fake batch (the balance diagnostics).
        terms: the further terms of ``loss`` (penalties, auxiliary losses), logged as ``train/d_<name>``.
        logs: diagnostics that are not part of the loss, logged under their own keys.
    """

    loss: Tensor
    adversarial: Tensor
    real_scores: Tensor
    fake_scores: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)
    logs: dict[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class GeneratorLoss:
    """What one G update minimises (see :meth:`AdversarialModule.generator_update`).

    Args:
        loss: the total G minimises.
        terms: its parts (or other values) logged as ``train/g_<name>``.
        logs: diagnostics logged under their own keys.
    """

    loss: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)
    logs: dict[str, Tensor] = field(default_factory=dict)


class AdversarialModule(pl.LightningModule):
    """Base LightningModule of the GAN families (manual optimisation).

    Args:
        generator: nn.Module with ``latent_dim`` and ``output_shape``.
        discriminator: nn.Module with ``input_shape`` returning scores of shape (B,); None for a
            family that declares ``adversarial = False`` (it then has one optimiser, G's).
        loss: the adversarial objective (``loss`` config group).
        schedule: the training schedule (``schedule`` config group).
        optimizer_g, optimizer_d: partially applied optimisers (``_partial_: true``).
        num_fixed_samples: size of the fixed noise batch used for sample grids.
        sample_seed: seed of that batch, so grids of different runs are comparable.
        width: the model config's size knob (``model.width``): the networks' base width, which
            the network configs read by interpolation (``ngf: ${model.width}``), so one key
            resizes any model; kept here only so it is a documented, recorded argument. None for
            fixed architectures.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module | None,
        loss: GANObjective,
        schedule: Schedule,
        optimizer_g: OptimizerFactory,
        optimizer_d: OptimizerFactory,
        num_fixed_samples: int = 64,
        sample_seed: int = 1234,
        width: int | None = None,
    ) -> None:
        super().__init__()
        if width is not None and (isinstance(width, bool) or not isinstance(width, int) or width < 1):
            raise ConfigError(f"model.width={width!r} is invalid: expected a positive integer (or null)")
        self.width = width
        self.automatic_optimization = False
        if (discriminator is None) == self.adversarial:
            raise ConfigError(
                f"{type(self).__name__} trains {'against' if self.adversarial else 'without'} a "
                f"discriminator, but model.discriminator is {'null' if discriminator is None else 'set'}; "
                f"{'configure one' if self.adversarial else 'set model.discriminator=null'}"
            )
        self.check_networks(generator, discriminator)
        self.check_remedies(discriminator, schedule)
        if discriminator is not None:
            self.check_critic_normalisation(discriminator, loss)
        if schedule.label_smoothing > 0 and not supports_label_smoothing(loss.adversarial):
            raise ConfigError(
                f"schedule.label_smoothing={schedule.label_smoothing} needs a loss with real-label targets "
                f"(minimax, non_saturating, lsgan); loss {loss.adversarial!r} has none"
            )
        self.generator = generator
        self.discriminator = discriminator
        self.objective = loss
        self.schedule = schedule
        if schedule.pretrain_steps > 0 and not self.pretrain_loss:
            raise ConfigError(
                f"schedule.pretrain_steps={schedule.pretrain_steps}: {type(self).__name__} has no "
                "non-adversarial generator loss to pre-train on; set schedule.pretrain_steps=0 "
                "(families that accept it declare pretrain_loss = True, e.g. model=srgan)"
            )
        self._optimizer_g = optimizer_g
        self._optimizer_d = optimizer_d
        self.generator_ema: nn.Module | None = None
        if schedule.ema_decay is not None:
            self.generator_ema = copy.deepcopy(generator).requires_grad_(False)
        self.num_fixed_samples = num_fixed_samples
        self.sample_seed = sample_seed
        if self.latent_input:
            gen = torch.Generator().manual_seed(sample_seed)
            self.register_buffer(
                "fixed_noise", torch.randn(num_fixed_samples, generator.latent_dim, generator=gen)
            )
        # Counts D updates (not part of global_step) for lazy regularisation; saved in checkpoints.
        self.register_buffer("d_updates", torch.zeros((), dtype=torch.long))
        # Host-side copy of d_updates, so the lazy-regularisation test needs no device sync per
        # D update; read from the buffer once (after any checkpoint restore), then kept in step.
        self._d_updates_host: int | None = None
        self.last_step_logs: dict[str, Tensor] = {}

    # ------------------------------------------------------------ declarations
    #: The kinds of data the family learns from (``datamodule.spec.kind``); checked from the
    #: class alone before the networks are built, so a wrong dataset is named first.
    data_kinds: ClassVar[tuple[DataKind, ...]] = (DataKind.IMAGES, DataKind.STACKED, DataKind.MIXTURE)
    #: Whether the family reads class labels (``spec.num_classes`` must be set).
    needs_labels: ClassVar[bool] = False
    #: Whether G has a non-adversarial loss to train on alone (SRGAN's content loss), so the
    #: family accepts ``schedule.pretrain_steps`` > 0 (see :attr:`pretraining`).
    pretrain_loss: ClassVar[bool] = False
    #: Whether the family trains against a discriminator. False: a generator trained alone (a
    #: maximum-likelihood stage such as VQGAN's transformer); ``model.discriminator`` is null, the
    #: module has one optimiser (G's) and the ``loss`` group is not used.
    adversarial: ClassVar[bool] = True
    #: Whether the family's step packs D's inputs (``schedule.packing``, PacGAN).
    packs_samples: ClassVar[bool] = False
    #: Whether the family's G phase can take its loss against an unrolled D (``schedule.unrolled_steps``).
    unrolls_discriminator: ClassVar[bool] = False
    #: Whether the family's G phase adds feature matching (``schedule.feature_matching``).
    matches_features: ClassVar[bool] = False
    #: What ``sample_for_evaluation`` returns, matched against an evaluator's ``scores``:
    #: ``samples`` (images or points, or (samples, labels)); image-to-image families: ``translations``.
    evaluation_output: ClassVar[str] = "samples"
    #: The same in words, for the message when an evaluator reads another output.
    evaluation_output_description: ClassVar[str] = "a generator's samples"

    @classmethod
    def check_data_kind(cls, spec: DataSpec, who: str | None = None) -> None:
        """Raise :class:`~gan_research.utils.data_spec.DataKindError` unless the family learns
        from data of ``spec``'s kind (and labels, when it reads them); ``who`` names the model
        in the message (the config option, where the caller knows it)."""
        require_kind(spec, cls.data_kinds, who or f"model {cls.__name__}", labelled=cls.needs_labels)

    # ----------------------------------------------------------------- checks
    # Whether G maps noise (B, latent_dim) to samples. Image-to-image families (pix2pix,
    # CycleGAN) map images to images: no latent, no fixed noise batch.
    latent_input: bool = True
    # The networks ``torch.compile`` speeds up (``callbacks.fast_path.compile``): those the family
    # calls only through their forward. nn.Module.compile swaps the forward alone, so a network
    # used through other methods (StyleGAN's mapping/synthesis) would run uncompiled.
    compilable: tuple[str, ...] = ("generator", "discriminator")

    def check_networks(self, generator: nn.Module, discriminator: nn.Module) -> None:
        """The networks' contract (``gan_research.networks``): G has ``latent_dim`` and
        ``output_shape``, D has ``input_shape`` and scores what G produces."""
        require_attributes("generator", generator, ("latent_dim", "output_shape"))
        require_attributes("discriminator", discriminator, ("input_shape",))
        # A packing D (PacGAN) judges m samples concatenated along the first (channel) axis.
        packing = int(getattr(discriminator, "packing", 1))
        produced = tuple(generator.output_shape)
        judged = (produced[0] * packing, *produced[1:]) if produced else produced
        if judged != tuple(discriminator.input_shape):
            packs = f" in packs of {packing}" if packing > 1 else ""
            raise ConfigError(
                f"model.generator produces {produced} but model.discriminator expects "
                f"{tuple(discriminator.input_shape)}{packs}"
            )

    def check_remedies(self, discriminator: nn.Module | None, schedule: Schedule) -> None:
        """The step's mode-collapse remedies (``schedule.packing``, ``unrolled_steps``,
        ``feature_matching``) need a family and a discriminator that declare them: a packing D
        (``packing``), a family whose G phase unrolls D (:attr:`unrolls_discriminator`) or adds
        feature matching (:attr:`matches_features`, with a D that has ``features``)."""
        name = type(self).__name__
        d_name = type(discriminator).__name__ if discriminator is not None else "none"
        d_packing = int(getattr(discriminator, "packing", 1)) if discriminator is not None else 1
        if schedule.packing != d_packing:
            if schedule.packing > 1 and not hasattr(discriminator, "packing"):
                raise ConfigError(
                    f"schedule.packing={schedule.packing}: model.discriminator ({d_name}) does not take "
                    "packs; expected schedule.packing=1 or a discriminator built with a `packing` argument"
                )
            raise ConfigError(
                f"schedule.packing={schedule.packing} but model.discriminator.packing={d_packing}: "
                "set both to the same m"
            )
        if schedule.packing > 1 and not self.packs_samples:
            raise ConfigError(
                f"schedule.packing={schedule.packing}: {name}'s step does not pack D's inputs; "
                "expected schedule.packing=1"
            )
        if schedule.unrolled_steps > 0 and not self.unrolls_discriminator:
            raise ConfigError(
                f"schedule.unrolled_steps={schedule.unrolled_steps}: {name}'s generator phase does not "
                "unroll the discriminator; expected schedule.unrolled_steps=0"
            )
        if schedule.feature_matching > 0:
            if not self.matches_features:
                raise ConfigError(
                    f"schedule.feature_matching={schedule.feature_matching}: {name}'s generator phase has "
                    "no feature-matching term; expected schedule.feature_matching=0"
                )
            if not callable(getattr(discriminator, "features", None)):
                raise ConfigError(
                    f"schedule.feature_matching={schedule.feature_matching}: model.discriminator "
                    f"({d_name}) has no `features` method (its last hidden layer); expected "
                    "schedule.feature_matching=0 or a discriminator that has one"
                )

    def feature_matching_loss(self, real_in: Tensor, fake_in: Tensor) -> Tensor:
        """Salimans et al. 2016 (arXiv:1606.03498), sec. 3.1: ‖E f(x) − E f(G(z))‖² over D's last
        hidden layer ``discriminator.features``, averaged over its entries; ``real_in``, ``fake_in``:
        D's inputs of the step (packed, with instance noise); real features carry no gradient."""
        return mean_feature_matching(
            self.discriminator.features(real_in), self.discriminator.features(fake_in)
        )

    def check_critic_normalisation(self, discriminator: nn.Module, loss: GANObjective) -> None:
        """Refuse a gradient penalty (WGAN-GP) or R1 on a batch-normalised discriminator.

        The penalties constrain each sample's own input gradient ∇_x D(x). Under batch norm (in
        training mode, where the penalties run) D(x_i) depends on every sample of the batch
        through the batch statistics, so the gradient penalised is not the sample's own and
        the Lipschitz constraint is not the one the loss means. Gulrajani et al. 2017
        (arXiv:1704.00028, sec. 4, "no critic batch normalization") use layer norm instead.
        Refused rather than switched: a config that composed before still trains the same
        network, or stops here with the fix.

        Batch norm is found by its modules (any ``_BatchNorm``: BatchNorm1d/2d/3d, SyncBatchNorm),
        so a network without a ``norm`` option is checked too; the key to change is the ``norm``
        a network declares (its attribute, the value of its ``norm`` argument), first found in
        module order (``model.discriminator.norm``, for CycleGAN's pair ``...d_a.norm``).
        """
        penalties = [
            f"loss.regularizers.{name}: {type(reg).__name__}"
            for name, reg in loss.regularizers.items()
            if getattr(reg, "needs_per_sample_critic", False)
        ]
        if not penalties:
            return
        # torch's common base class of the batch norms; InstanceNorm and GroupNorm are not ones.
        batch_norms = [
            name
            for name, m in discriminator.named_modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        ]
        if not batch_norms:
            return
        penalty = f"a gradient penalty ({', '.join(penalties)})"
        why = (
            "the penalty constrains each sample's own input gradient, and batch statistics make it "
            "depend on the rest of the batch (Gulrajani et al. 2017, sec. 4: no critic batch "
            "normalization, layer norm instead)"
        )
        declared = next(
            (
                (path, module)
                for path, module in discriminator.named_modules()
                if getattr(module, "norm", None) == "batch"
            ),
            None,
        )
        valid = [n for n in getattr(declared[1], "norms", ()) if n != "batch"] if declared else []
        if declared is None or not valid:
            raise ConfigError(
                f"model.discriminator ({type(discriminator).__name__}) has batch norm (layers "
                f"{batch_norms}) and no per-sample norm option, with {penalty}: {why}. Use a "
                "discriminator without batch norm, or a loss without a gradient penalty"
            )
        path = declared[0]
        key = ".".join(["model.discriminator", *([path] if path else []), "norm"])
        fix = "layer" if "layer" in valid else valid[0]
        others = [n for n in valid if n != fix]
        raise ConfigError(
            f"{key}=batch with {penalty}: {why}. Set {key}={fix}"
            + (f" (or {', '.join(others)})" if others else "")
            + ", or use a loss without a gradient penalty"
        )

    def check_data(self, datamodule: Any) -> None:
        """Fail before training when the family or its networks cannot model the dataset's samples."""
        spec: DataSpec = datamodule.spec
        self.check_data_kind(spec)
        data_shape = tuple(spec.sample_shape)
        out = tuple(self.generator.output_shape)
        if out == data_shape:
            return
        if len(out) != len(data_shape):
            # Points vs images: the networks are of the other kind; the entry point lists the datasets.
            kinds = (DataKind.MIXTURE,) if len(out) == 1 else (DataKind.IMAGES, DataKind.STACKED)
            raise DataKindError(
                f"the generator {type(self.generator).__name__} produces samples of shape {out} "
                f"({'2-D points' if len(out) == 1 else 'images'}), but dataset '{spec.name}' is "
                f"{spec.kind.describe()} of shape {data_shape}",
                kinds,
            )
        raise ConfigError(
            f"the generator {type(self.generator).__name__} produces samples of shape {out}, "
            f"but dataset '{spec.name}' has samples of shape {data_shape}: set the network's "
            "image_size/channels to the dataset's (model.generator.image_size=...)"
        )

    # ------------------------------------------------------- exact resume
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Latents, gradient-penalty mixes, label flips and instance noise come from the global
        # RNGs; with their states saved, a resumed run draws what an uninterrupted one would.
        checkpoint["rng_states"] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Applied when training starts: restoring a checkpoint must not be undone by anything
        # that draws random numbers between the restore and the first resumed step.
        self._rng_to_restore = checkpoint.get("rng_states")
        self._d_updates_host = None  # re-read from the restored buffer

    def rng_at_train_start(self, states: dict[str, Any]) -> None:
        """Start training from these RNG states (``on_train_start``) unless a checkpoint brings its own."""
        self._rng_to_restore = states

    def on_train_start(self) -> None:
        states = getattr(self, "_rng_to_restore", None)
        if states is not None:
            set_rng_states(states)
            self._rng_to_restore = None

    # ------------------------------------------------------------- optimisers
    def configure_optimizers(self) -> Any:
        opt_g = self._optimizer_g(params=self.generator.parameters())
        optimizers = [opt_g]
        if self.discriminator is not None:
            optimizers.append(self._optimizer_d(params=self.discriminator.parameters()))
        decay = self.schedule.lr_decay
        if decay == "none":
            return optimizers
        max_steps = self.trainer.max_steps
        if max_steps is None or max_steps < 1:
            raise ConfigError(f"schedule.lr_decay={decay} needs a finite trainer.max_steps")
        start = int(self.schedule.lr_decay_start * max_steps)
        factor = self.schedule.lr_decay_factor

        def linear(step: int) -> float:
            return 1.0 - max(0, step - start) / max(1, max_steps - start)

        def stepped(step: int) -> float:
            return factor if step >= start else 1.0

        rule = linear if decay == "linear" else stepped
        schedulers = [torch.optim.lr_scheduler.LambdaLR(o, rule) for o in optimizers]
        return optimizers, schedulers

    @property
    def pretraining(self) -> bool:
        """Whether this step is one of ``schedule.pretrain_steps``' generator-only steps."""
        return self.global_step < self.schedule.pretrain_steps

    @contextmanager
    def optimizer_phase(self, optimizer: LightningOptimizer) -> Iterator[None]:
        """Lightning's GAN order: toggle → (zero_grad → backward → step inside) → untoggle.

        ``toggle_optimizer`` freezes every parameter not owned by ``optimizer``,
        so the G phase cannot change D's weights and vice versa.
        """
        self.toggle_optimizer(optimizer)
        try:
            yield
        finally:
            self.untoggle_optimizer(optimizer)

    def backward_and_step(
        self, optimizer: LightningOptimizer, loss: Tensor, *, counts_as_step: bool
    ) -> Tensor:
        """zero_grad → manual_backward → step; returns the gradient norm of the stepped parameters.

        ``counts_as_step=False`` (D updates) steps through the strategy directly:
        the precision plugin still unscales / skips non-finite fp16 steps, but
        Lightning's step counter (``global_step``) only counts G updates.
        The norm stays a device tensor (no host sync); it is the G/D balance
        diagnostic ``train/g_grad_norm`` / ``train/d_grad_norm``.
        """
        optimizer.zero_grad(set_to_none=True)
        ddp = self._ddp_model()
        # DDP's reducer expects one backward per forward, each parameter ready once; a GAN step
        # has n_critic + 1 backward passes over alternating halves of the module. So its hooks are
        # bypassed (no_sync) and the stepped parameters' gradients averaged here: one all-reduce
        # of one flat buffer per optimiser step, and no search for unused parameters.
        with ddp.no_sync() if ddp is not None else nullcontext():
            self.manual_backward(loss)
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if ddp is not None and grads:
            average_across_processes(grads, self.trainer.world_size)
        grad_norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=self.device)
        scale = self.grad_scale()
        if scale is not None:
            # Under fp16 the gradients are still multiplied by the loss scale here.
            grad_norm = grad_norm / scale
        if counts_as_step:
            optimizer.step()
        else:
            self.trainer.strategy.optimizer_step(optimizer.optimizer, closure=_no_closure)
        return grad_norm.detach()

    # -------------------------------------------------------- step skeleton
    def discriminator_update(self, opt_d: LightningOptimizer, d: DiscriminatorLoss) -> dict[str, Tensor]:
        """The end of one D update, called inside ``optimizer_phase(opt_d)``: skip it when its
        adversarial loss is below ``schedule.d_skip_threshold``, else backward, step, clip D's
        weights (``loss.weight_clip``) and count it; returns the update's logs.

        Logs: ``train/d_loss``, ``train/d_<term>``, the balance diagnostics, the family's own
        ``logs``, ``train/d_grad_norm`` (when stepped) and ``train/d_skipped`` (when skipping is on).
        """
        threshold = self.schedule.d_skip_threshold
        # The .item() host sync happens only when skipping is configured; under DDP the
        # decision is taken on the mean loss, so every process skips (or not) together.
        skip = threshold is not None and self.all_gather(d.adversarial.detach()).mean().item() < threshold
        if not skip:
            d_grad_norm = self.backward_and_step(opt_d, d.loss, counts_as_step=False)
            self.clip_discriminator_weights()
            self.count_d_update()
        logs = {
            "train/d_loss": d.loss.detach(),
            **{f"train/d_{name}": value.detach() for name, value in d.terms.items()},
            **self.balance_diagnostics(
                d.real_scores.detach(), d.fake_scores.detach(), d.adversarial.detach()
            ),
            **d.logs,
        }
        if not skip:
            logs["train/d_grad_norm"] = d_grad_norm
        if threshold is not None:
            logs["train/d_skipped"] = torch.tensor(float(skip))
        return logs

    def real_scores_for_generator(self, score_real: Callable[[], Tensor]) -> Tensor | None:
        """D's scores of the step's real batch for G's adversarial loss, when the loss is
        relativistic (``loss.adversarial.relativistic``), else None, without the extra D forward.
        Taken without gradient: they do not depend on G, and D is not updated in G's phase."""
        if not self.objective.adversarial.relativistic:
            return None
        with torch.no_grad():
            return score_real()

    def generator_update(self, opt_g: LightningOptimizer, g: GeneratorLoss) -> dict[str, Tensor]:
        """The end of one G update, called inside ``optimizer_phase(opt_g)``: backward and step
        (a step of ``global_step``); returns ``train/g_loss``, ``train/g_<term>``,
        ``train/g_grad_norm`` and the family's own ``logs``."""
        g_grad_norm = self.backward_and_step(opt_g, g.loss, counts_as_step=True)
        return {
            "train/g_loss": g.loss.detach(),
            **{f"train/g_{name}": value.detach() for name, value in g.terms.items()},
            "train/g_grad_norm": g_grad_norm,
            **g.logs,
        }

    def finish_step(self, logs: dict[str, Tensor], batch_size: int) -> None:
        """The end of a training step, after its last update: the G/D gradient-norm ratio, the
        generator EMA, the LR schedulers, the learning-rate and instance-noise logs, then
        :meth:`log_step` of ``logs`` (``batch_size``: the step's samples per update)."""
        if "train/d_grad_norm" in logs and "train/g_grad_norm" in logs:
            # >> 1: G is pushed much harder than D learns (D dominating); << 1: the reverse.
            logs["train/grad_norm_ratio"] = logs["train/g_grad_norm"] / logs["train/d_grad_norm"].clamp_min(
                1e-12
            )
        self.update_ema()
        optimizers = self.optimizers()
        # The rates this step's updates used, read before the schedulers move them on.
        # Host tensors: logging them needs no device copy, and only happens on logging steps.
        # A family without a discriminator has G's optimiser only (not a list).
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        for name, opt in zip(("g", "d"), optimizers, strict=False):
            logs[f"train/lr_{name}"] = torch.tensor(opt.param_groups[0]["lr"])
        self.step_lr_schedulers()
        if self.schedule.instance_noise > 0:
            logs["train/instance_noise"] = torch.tensor(self.instance_noise_std())
        self.log_step(logs, batch_size=batch_size)

    def log_step(self, logs: dict[str, Tensor], batch_size: int) -> None:
        """Log a training step's metrics on Lightning's logging steps (``trainer.log_every_n_steps``).

        ``self.log`` costs about 1 ms per key on CPU (Lightning's result
        bookkeeping), which for a small network is more than the step itself, so
        steps that Lightning would not forward to the loggers are not logged at
        all; the last step always is, so the final metrics are the final step's.
        ``train/d_loss`` and ``train/g_loss`` also go to the progress bar, and
        every step's values stay readable as ``last_step_logs`` (the divergence
        guard watches them without a host sync).
        """
        self.last_step_logs = logs
        trainer = self.trainer
        last_step = trainer.max_steps is not None and self.global_step >= trainer.max_steps
        # Private, but it is the exact rule Lightning applies to decide what reaches the loggers.
        if not (trainer._logger_connector.should_update_logs or last_step):
            return
        self._forget_unlogged(logs)
        self.log_dict(logs, on_step=True, on_epoch=False, batch_size=batch_size)
        # A generator-only step (schedule.pretrain_steps) has no D loss.
        for key in ("d_loss", "g_loss"):
            if f"train/{key}" in logs:
                self.log(key, logs[f"train/{key}"], prog_bar=True, logger=False, on_step=True)

    def _forget_unlogged(self, logs: dict[str, Tensor]) -> None:
        """Drop from Lightning's step results the ``train/*`` keys this step does not log.

        Lightning keeps every key logged earlier in the epoch and hands its last value to the
        loggers at each later step, so a term computed only on some steps (a lazy R1, a loss that
        stops after ``pyramid_steps``) would be recorded with a stale value at steps where it was
        not computed (and reported so after the run). Private API (``trainer._results``, keyed
        ``"<hook>.<name>"``), as ``should_update_logs`` above."""
        results = getattr(self.trainer, "_results", None)
        if not results:
            return
        stale = [
            key
            for key in results
            if key.startswith("training_step.train/") and key.split(".", 1)[1] not in logs
        ]
        for key in stale:
            del results[key]
            # ...and from what the trainer reports after the run (train() returns callback_metrics).
            name = key.split(".", 1)[1]
            self.trainer.callback_metrics.pop(name, None)
            self.trainer.logged_metrics.pop(name, None)

    def step_lr_schedulers(self) -> None:
        schedulers = self.lr_schedulers()
        if schedulers is None:
            return
        with warnings.catch_warnings():
            # During generator-only steps (schedule.pretrain_steps) D's optimiser has not stepped
            # yet; its schedule still follows the global step, which is what torch warns about.
            warnings.filterwarnings(
                "ignore", message="Detected call of `lr_scheduler.step", category=UserWarning
            )
            for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
                scheduler.step()

    # ------------------------------------------------------------ D-side tricks
    def instance_noise_std(self) -> float:
        s = self.schedule
        if s.instance_noise == 0 or s.instance_noise_anneal_steps == 0:
            return s.instance_noise
        return s.instance_noise * max(0.0, 1.0 - self.global_step / s.instance_noise_anneal_steps)

    def add_instance_noise(self, x: Tensor) -> Tensor:
        std = self.instance_noise_std()
        return x + std * torch.randn_like(x) if std > 0 else x

    def flip_labels(self, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
        """Swap the roles of a random subset of real/fake pairs (noisy labels)."""
        (real, _), (fake, _) = self.flip_pairs((real, None), (fake, None))
        return real, fake

    def flip_pairs(self, real: tuple[Tensor, Any], fake: tuple[Tensor, Any]) -> tuple[tuple, tuple]:
        """:meth:`flip_labels` for ``(samples, condition)`` pairs: a flipped sample keeps its
        condition (class label, code), so a conditional D sees consistent pairs."""
        p = self.schedule.label_flip_prob
        if p == 0:
            return real, fake
        (x_real, c_real), (x_fake, c_fake) = real, fake
        flip = torch.rand(x_real.shape[0], device=x_real.device) < p

        def swap(a: Any, b: Any) -> tuple[Any, Any]:
            if not isinstance(a, Tensor) or not isinstance(b, Tensor):
                return a, b
            mask = flip.view(-1, *([1] * (a.dim() - 1)))
            return torch.where(mask, b, a), torch.where(mask, a, b)

        x_real, x_fake = swap(x_real, x_fake)
        c_real, c_fake = swap(c_real, c_fake)
        return (x_real, c_real), (x_fake, c_fake)

    def clip_discriminator_weights(self) -> None:
        c = self.objective.weight_clip
        if c is not None:
            with torch.no_grad():
                for p in self.discriminator.parameters():
                    p.clamp_(-c, c)

    def discriminator_regularization(
        self, score_fn: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor
    ) -> dict[str, Tensor]:
        """Weighted regulariser terms due at this D update (lazy: every ``d_reg_every``)."""
        every = self.schedule.d_reg_every
        if not self.objective.regularizers or self.d_update_count() % every != 0:
            return {}
        scale = self.grad_scale()
        return {
            name: reg(score_fn, real, fake, grad_scale=scale) * every
            for name, reg in self.objective.regularizers.items()
        }

    def d_update_count(self) -> int:
        """D updates so far (the ``d_updates`` buffer, without reading the device every time)."""
        if self._d_updates_host is None:
            self._d_updates_host = int(self.d_updates)
        return self._d_updates_host

    def count_d_update(self) -> None:
        self._d_updates_host = self.d_update_count() + 1
        self.d_updates += 1

    def grad_scale(self) -> Tensor | float | None:
        """The fp16 loss scale (``16-mixed``), else None: gradients are scaled by it until the step.

        The scale tensor itself where the scaler has one: ``GradScaler.get_scale()`` would copy it
        to the host, a device synchronisation per optimiser step.
        """
        if self._trainer is None:
            return None
        scaler = getattr(self._trainer.precision_plugin, "scaler", None)
        if scaler is None or not scaler.is_enabled():
            return None
        # _get_scale_async is GradScaler's own sync-free accessor (None before the first scaled backward).
        scale = scaler._get_scale_async()
        return scale if scale is not None else float(scaler.get_scale())

    def balance_diagnostics(
        self, real_scores: Tensor, fake_scores: Tensor, d_adv: Tensor
    ) -> dict[str, Tensor]:
        """Cheap G/D balance signals from scores D already computed (no extra forward, no host sync).

        d_acc_real/d_acc_fake near 1 with a growing gap means D dominates and G's
        gradients vanish; both near 1/2 early on means D learns nothing.
        """
        adversarial = self.objective.adversarial
        threshold = adversarial.decision_threshold(real_scores, fake_scores)
        logs = {
            "train/d_real": real_scores.mean(),
            "train/d_fake": fake_scores.mean(),
            "train/d_gap": real_scores.mean() - fake_scores.mean(),
            "train/d_acc_real": (real_scores > threshold).float().mean(),
            "train/d_acc_fake": (fake_scores <= threshold).float().mean(),
        }
        if adversarial.probabilistic:
            logs["train/p_real"] = torch.sigmoid(real_scores).mean()
            logs["train/p_fake"] = torch.sigmoid(fake_scores).mean()
        if isinstance(adversarial, WassersteinLoss):
            # The critic's estimate of W(P_r, P_g) (Arjovsky et al. 2017, eq. 3),
            # up to its Lipschitz constant.
            logs["train/wasserstein_estimate"] = -d_adv
        return logs

    # ---------------------------------------------------------------- G side
    def sample_latent(self, n: int) -> Tensor:
        """``n`` latents per process. Under DDP every process draws the whole global batch from
        its (identically seeded) RNG and keeps its own slice, so W processes with batch n train
        on exactly the latents one process with batch W * n would."""
        return self.draw_global(n, lambda m: torch.randn(m, self.generator.latent_dim, device=self.device))

    def draw_global(self, n: int, draw: Callable[[int], Tensor]) -> Tensor:
        """``draw(m)`` of the whole global batch, this process's slice of ``n`` (see :meth:`sample_latent`).
        Every random input of a fake batch (labels, latent codes) is drawn this way."""
        world = self._trainer.world_size if self._trainer is not None else 1
        if world == 1:
            return draw(n)
        rank = self.trainer.global_rank
        return draw(world * n)[rank * n : (rank + 1) * n]

    def _ddp_model(self) -> DistributedDataParallel | None:
        model = getattr(self._trainer.strategy, "model", None) if self._trainer is not None else None
        return model if isinstance(model, DistributedDataParallel) else None

    def update_ema(self) -> None:
        if self.generator_ema is None:
            return
        decay = self.schedule.ema_decay if self.global_step >= self.schedule.ema_start_step else 0.0
        with torch.no_grad():
            ema_params = list(self.generator_ema.parameters())
            params = [p.detach() for p in self.generator.parameters()]
            torch._foreach_lerp_(ema_params, params, 1.0 - decay)
            # BatchNorm statistics are not averaged: the EMA network uses G's current ones.
            for b_ema, b in zip(self.generator_ema.buffers(), self.generator.buffers(), strict=True):
                b_ema.copy_(b)

    @property
    def sampling_generator(self) -> nn.Module:
        """The generator to sample and evaluate with: the EMA one when enabled."""
        return self.generator_ema if self.generator_ema is not None else self.generator

    @torch.no_grad()
    def generate(self, z: Tensor | None = None, n: int | None = None, condition: Any = None) -> Tensor:
        """Samples from the sampling generator in eval mode (BatchNorm running statistics);
        ``condition`` is the generator's second input in conditional families."""
        if z is None:
            z = self.sample_latent(n if n is not None else self.fixed_noise.shape[0])
        gen = self.sampling_generator
        was_training = gen.training
        gen.eval()
        try:
            z = z.to(self.device)
            return gen(z) if condition is None else gen(z, condition)
        finally:
            gen.train(was_training)

    def sample_for_evaluation(self, n: int) -> Tensor | tuple[Tensor, Tensor]:
        """``n`` samples for the metrics. Conditional families return ``(samples, labels)``, the
        class each sample was generated for, which the per-class metrics (class accuracy,
        intra-class FID) read."""
        return self.generate(n=n)

    def grid_samples(self) -> tuple[Tensor, int | None]:
        """The sample grid of the fixed noise batch and its row length (None: the callback's).

        Conditional families order it a row per class."""
        return self.generate(self.fixed_noise), None

    def extra_grids(self) -> dict[str, tuple[Tensor, int]]:
        """Further grids a family logs beside the sample grid (InfoGAN's latent traversals,
        StyleGAN's style mixing), by name: ``samples/<name>/step_NNNNNNN.png``."""
        return {}

    def forward(self, z: Tensor) -> Tensor:
        return self.generator(z)


def require_attributes(name: str, net: nn.Module, attrs: tuple[str, ...], needs: str = "") -> None:
    """Raise ConfigError unless ``net`` (``model.<name>``) has every attribute of the networks'
    contract in ``attrs``; ``needs`` says what kind of network the family expects."""
    missing = [a for a in attrs if not hasattr(net, a)]
    if missing:
        raise ConfigError(
            f"model.{name} ({type(net).__name__}) lacks attribute(s) {missing}"
            + (f"; {needs}" if needs else "")
        )


def average_across_processes(grads: list[Tensor], world_size: int) -> None:
    """Average gradients over the process group in place with one all-reduce of a flat buffer."""
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    flat.div_(world_size)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def rng_states() -> dict[str, Any]:
    """The global RNG states (torch, CUDA, numpy, python) in a form ``weights_only`` loads."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        # numpy's state holds an ndarray, which weights_only loading refuses: store a tensor.
        "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]),
        "python": random.getstate(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
    name, keys, *rest = states["numpy"]
    np.random.set_state((name, keys.numpy(), *rest))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))


def _no_closure() -> None:
    return None
