"""The ``schedule`` config group: how the generator and the discriminator are trained against each other.

Shared by every family (``families/base.AdversarialModule`` reads it); a family's own
schedule-like settings (ProGAN's growth, StyleGAN's mixing) live in its model config.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from gan_research.errors import ConfigError

LR_DECAYS = ("none", "linear", "step")


@dataclass
class Schedule:
    """The ``schedule`` config group: how G and D are trained against each other.

    lr_g, lr_d, betas_g, betas_d: Adam settings of each network (read by the
        model's optimiser partials).
    n_critic: D updates per G update, each on a fresh real batch (WGAN, Alg. 1).
    max_steps: generator updates in the run (``trainer.max_steps`` defaults to it).
    label_smoothing: one-sided: D's real target is 1 - s (Salimans et al. 2016, Sec. 3.4).
    label_flip_prob: probability that a real/fake pair swaps roles in a D update
        (noisy labels, a trick of the seed notes).
    instance_noise: std of Gaussian noise added to every D input (Sønderby et al.
        2017; Arjovsky & Bottou 2017), decayed linearly to 0 over
        ``instance_noise_anneal_steps`` (0: constant).
    d_skip_threshold: skip a D update while its adversarial loss is below this
        value (seed 003: skip D training when its loss is already too low).
    d_reg_every: apply D regularisers every k D updates, scaled by k (lazy
        regularisation, Karras et al. 2020, Sec. 3.1).
    g_reg_every: the same for G regularisers (StyleGAN2's path-length penalty: every 4).
    ema_decay: decay of an exponential moving average of G's weights
        (Yazıcı et al. 2019); ``None`` disables it. Samples and evaluation use
        the EMA generator when it exists.
    ema_start_step: copy G's weights into the EMA until this step.
    lr_decay: "none", "linear" (to 0 at max_steps, starting at ``lr_decay_start`` ×
        max_steps) or "step" (multiplied by ``lr_decay_factor`` once, at ``lr_decay_start`` ×
        max_steps: SRGAN's 10⁻⁴ then 10⁻⁵, Ledig et al. 2017, §3.2).
    lr_decay_factor: the "step" decay's factor (0.1).
    pretrain_steps: generator-only steps before adversarial training starts: D is neither
        updated nor asked, G trains on its family's non-adversarial loss (SRResNet pre-training
        before SRGAN, Ledig et al. 2017, §3.2; taming-transformers' ``disc_start``). Only a
        family with such a loss (``pretrain_loss = True``) accepts a value > 0; a value >= max_steps
        is a run of pre-training alone (SRResNet).

    Mode-collapse remedies of the training step (families that support each say so with a class
    declaration; any other family refuses a non-default value when it is built):

    packing: PacGAN's m (Lin et al. 2018, "PacGAN: The power of two samples in generative
        adversarial networks", sec. 3): D judges packs of m samples concatenated along the channel
        (feature) axis, packs of real samples only or of fake samples only. The discriminator must be
        built for it (``model.discriminator.packing``, an input layer m times as wide). Each D update
        then reads m × ``dataset.batch_size`` samples, so ``dataset.batch_size`` counts packs, as in
        the reference code (``batch_size`` 100 packs per update), and every batch is a whole number of
        packs by construction.
    unrolled_steps: Metz et al. 2017, "Unrolled Generative Adversarial Networks" (arXiv:1611.02163),
        eq. 3–4: G's loss is taken against D after k unrolled gradient steps on the current real and
        fake batch (differentiated through them when ``unrolled_second_order``, the paper's eq. 12
        including the second term), leaving D's own weights untouched. 0: off.
    unrolled_lr: step size η of the unrolled D updates (eq. 3, a plain gradient step); null: lr_d.
    unrolled_second_order: backpropagate G's loss through the unrolled updates (true, the paper);
        false drops the second term of eq. 12 (D's unrolled weights as constants).
    feature_matching: weight λ of feature matching in G's loss (Salimans et al. 2016, "Improved
        Techniques for Training GANs", sec. 3.1): ‖E f(x) − E f(G(z))‖² over D's last hidden layer
        (the discriminator's ``features``), averaged over its entries. 0: off.
    feature_matching_only: G minimises λ·feature matching alone, without its adversarial term
        (Salimans et al.'s objective, which replaces G's loss); needs feature_matching > 0.
    """

    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas_g: tuple[float, float] = (0.5, 0.999)
    betas_d: tuple[float, float] = (0.5, 0.999)
    n_critic: int = 1
    max_steps: int = 2000
    label_smoothing: float = 0.0
    label_flip_prob: float = 0.0
    instance_noise: float = 0.0
    instance_noise_anneal_steps: int = 0
    d_skip_threshold: float | None = None
    d_reg_every: int = 1
    g_reg_every: int = 4
    ema_decay: float | None = None
    ema_start_step: int = 0
    lr_decay: str = "none"
    lr_decay_start: float = 0.5
    lr_decay_factor: float = 0.1
    pretrain_steps: int = 0
    packing: int = 1
    unrolled_steps: int = 0
    unrolled_lr: float | None = None
    unrolled_second_order: bool = True
    feature_matching: float = 0.0
    feature_matching_only: bool = False
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._coerce_types()
        checks = [
            (self.lr_g > 0, "lr_g", self.lr_g, "a positive float"),
            (self.lr_d > 0, "lr_d", self.lr_d, "a positive float"),
            (len(self.betas_g) == 2, "betas_g", self.betas_g, "two floats"),
            (len(self.betas_d) == 2, "betas_d", self.betas_d, "two floats"),
            (
                int(self.n_critic) == self.n_critic and self.n_critic >= 1,
                "n_critic",
                self.n_critic,
                "an int >= 1",
            ),
            (self.max_steps >= 1, "max_steps", self.max_steps, "an int >= 1"),
            (0 <= self.label_smoothing < 1, "label_smoothing", self.label_smoothing, "in [0, 1)"),
            (0 <= self.label_flip_prob < 0.5, "label_flip_prob", self.label_flip_prob, "in [0, 0.5)"),
            (self.instance_noise >= 0, "instance_noise", self.instance_noise, ">= 0"),
            (
                self.instance_noise_anneal_steps >= 0,
                "instance_noise_anneal_steps",
                self.instance_noise_anneal_steps,
                ">= 0",
            ),
            (self.d_reg_every >= 1, "d_reg_every", self.d_reg_every, "an int >= 1"),
            (self.g_reg_every >= 1, "g_reg_every", self.g_reg_every, "an int >= 1"),
            (
                self.ema_decay is None or 0 < self.ema_decay < 1,
                "ema_decay",
                self.ema_decay,
                "null or in (0, 1)",
            ),
            (self.lr_decay in LR_DECAYS, "lr_decay", self.lr_decay, f"one of {list(LR_DECAYS)}"),
            (0 <= self.lr_decay_start < 1, "lr_decay_start", self.lr_decay_start, "in [0, 1)"),
            (0 < self.lr_decay_factor < 1, "lr_decay_factor", self.lr_decay_factor, "in (0, 1)"),
            (self.pretrain_steps >= 0, "pretrain_steps", self.pretrain_steps, "an int >= 0"),
            (self.packing >= 1, "packing", self.packing, "an int >= 1 (1: no packing)"),
            (self.unrolled_steps >= 0, "unrolled_steps", self.unrolled_steps, "an int >= 0 (0: off)"),
            (
                self.unrolled_lr is None or self.unrolled_lr > 0,
                "unrolled_lr",
                self.unrolled_lr,
                "a positive float or null (lr_d)",
            ),
            (self.feature_matching >= 0, "feature_matching", self.feature_matching, ">= 0 (0: off)"),
            (
                not self.feature_matching_only or self.feature_matching > 0,
                "feature_matching_only",
                self.feature_matching_only,
                "false unless schedule.feature_matching > 0 (the weight of the only G term)",
            ),
        ]
        for ok, key, value, valid in checks:
            if not ok:
                raise ConfigError(f"schedule.{key}={value!r} is invalid: expected {valid}")
        if self.extra:
            raise ConfigError(f"unknown schedule keys {sorted(self.extra)}; valid keys: {schedule_keys()}")

    # Type of each key as written in a config: a wrong type (schedule.lr_g=abc) is one error naming
    # the key, not a TypeError from deep inside a comparison or an optimiser.
    _FLOATS = (
        "lr_g",
        "lr_d",
        "label_smoothing",
        "label_flip_prob",
        "instance_noise",
        "lr_decay_start",
        "lr_decay_factor",
        "feature_matching",
    )
    _INTS = (
        "n_critic",
        "max_steps",
        "instance_noise_anneal_steps",
        "d_reg_every",
        "g_reg_every",
        "ema_start_step",
        "pretrain_steps",
        "packing",
        "unrolled_steps",
    )
    _OPTIONAL_FLOATS = ("d_skip_threshold", "ema_decay", "unrolled_lr")
    _BOOLS = ("unrolled_second_order", "feature_matching_only")

    def _coerce_types(self) -> None:
        def bad(key: str, value: Any, valid: str) -> ConfigError:
            return ConfigError(f"schedule.{key}={value!r} is invalid: expected {valid}")

        for key in self._FLOATS + self._OPTIONAL_FLOATS:
            value = getattr(self, key)
            if value is None and key in self._OPTIONAL_FLOATS:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad(key, value, "a number" + (" or null" if key in self._OPTIONAL_FLOATS else ""))
            if not np.isfinite(value):
                raise bad(key, value, "a finite number")
            setattr(self, key, float(value))
        for key in self._INTS:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
                raise bad(key, value, "an integer")
            setattr(self, key, int(value))
        for key in ("betas_g", "betas_d"):
            value = getattr(self, key)
            ok = not isinstance(value, str) and hasattr(value, "__len__")
            items = list(value) if ok else []
            if (
                not ok
                or len(items) != 2
                or not all(
                    isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in items
                )
            ):
                raise bad(key, value if not ok else items, "two floats in [0, 1), e.g. [0.5, 0.999]")
            setattr(self, key, tuple(float(b) for b in items))
        for key in self._BOOLS:
            if not isinstance(getattr(self, key), bool):
                raise bad(key, getattr(self, key), "true or false")
        if not isinstance(self.lr_decay, str):
            raise bad("lr_decay", self.lr_decay, f"one of {list(LR_DECAYS)}")

    @property
    def samples_per_step(self) -> int:
        """Real samples one training step reads, in units of ``dataset.batch_size``: one batch per
        D update, each of ``packing`` samples per pack."""
        return self.n_critic * self.packing

    @classmethod
    def create(cls, **kwargs: Any) -> Schedule:
        """Build from config, turning unknown keys into one clear error."""
        known = set(schedule_keys())
        unknown = {k: v for k, v in kwargs.items() if k not in known}
        return cls(**{k: v for k, v in kwargs.items() if k in known}, extra=unknown)


def schedule_keys() -> list[str]:
    return [f.name for f in fields(Schedule) if f.name != "extra"]
