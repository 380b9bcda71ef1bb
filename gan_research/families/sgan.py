"""The semi-supervised GAN (Odena 2016, arXiv:1606.01583; Salimans, Goodfellow, Zaremba,
Cheung, Radford & Chen 2016, arXiv:1606.03498, sec. 5).

D is a classifier over K classes plus "generated" (K + 1 classes). Its head gives K logits
l_1..l_K; the generated class's logit is fixed at l_{K+1} = 0, which loses nothing since a
softmax is invariant to shifting all logits (sec. 5). Then, with Z(x) = Σ_k exp(l_k(x)),

    D(x) = 1 - p(y = K + 1 | x) = Z(x) / (Z(x) + 1) = σ(logsumexp_k l_k(x)),

so the real/fake logit D hands to the adversarial loss is ``logsumexp(l)``
(``AuxiliaryDCGANDiscriminator(adversarial_head=False)``). With the minimax or
non-saturating loss, D's adversarial loss -E log σ(s(x_real)) - E log(1 - σ(s(G(z)))) is
exactly Salimans' L_unsupervised = -E_x log D(x) - E_z log(1 - D(G(z))) (sec. 5), hence
those two losses are the only ones accepted. D's loss adds
L_supervised = -E_{(x, y) labelled} log p(y | x, y < K + 1), the cross entropy of the K
logits (the normalisation by Z cancels), weighted by ``supervised_weight``.

Labels: ``num_labeled`` training samples, ``num_labeled / num_classes`` of each class
drawn with a generator seeded by ``labeled_seed``, are the labelled set; it is chosen when
the run is built (``check_data``) from ``datamodule.train_set`` and kept for the fit. No
other label is ever read: the real batches reach D without their labels
(``real_condition`` is not called), and every D update adds a batch of
``labeled_batch_size`` (default: the D batch size) drawn with replacement from the
labelled set. The labelled draws, like every random input of a step, use ``draw_global``,
so under DDP each process trains on its slice of what one process would draw.

G: ``generator_loss=feature_matching`` (the default, sec. 3.1 and 5: it gave Salimans'
best semi-supervised classifiers) minimises ||E f(x_real) - E f(G(z))||² over D's last
hidden map f (``net.features``), averaged over its entries as in their code; the real
batch is the last D update's, its features recomputed without gradient under the D
being trained against. ``adversarial`` uses the configured loss on the logsumexp score.

Test accuracy (``val/test_accuracy``): D's argmax over the K logits, in eval mode, on the
datamodule's held-out ``test_set`` (``dataset.test_fraction`` for digits), every
``eval_every_n_steps`` generator steps and at the end of training; it goes to every logger
and ``trainer.callback_metrics`` (so ``optimized_metric: val/test_accuracy`` works).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from gan_research.errors import ConfigError
from gan_research.families.base import GeneratorLoss
from gan_research.families.gan import GAN, LossTerms
from gan_research.losses import MinimaxLoss
from gan_research.losses.feature_matching import mean_feature_matching
from gan_research.utils.data_spec import DataKind

GENERATOR_LOSSES = ("feature_matching", "adversarial")
# Test images per D forward when measuring the test accuracy.
_EVAL_BATCH = 500


def select_labeled(labels: Tensor, num_labeled: int, num_classes: int, seed: int) -> Tensor:
    """Positions of a class-balanced labelled subset: ``num_labeled / num_classes`` of each class.

    Drawn class by class (0..K-1) from one generator seeded with ``seed``, returned in
    ascending order. Raises ConfigError when a class has fewer samples than its share.
    """
    per_class = num_labeled // num_classes
    generator = torch.Generator().manual_seed(seed)
    picks = []
    for c in range(num_classes):
        members = (labels == c).nonzero().view(-1)
        if len(members) < per_class:
            raise ConfigError(
                f"model.num_labeled={num_labeled} needs {per_class} labelled samples of each of the "
                f"{num_classes} classes, but class {c} has only {len(members)} training samples; "
                f"use model.num_labeled <= {num_classes * len(members)}"
            )
        picks.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(picks).sort().values


class SemiSupervisedGAN(GAN):
    """Semi-supervised GAN: G(z) → image; D(x) → (logsumexp of K logits, K class logits).

    Args:
        num_classes: K, the classes of the dataset (checked against the datamodule).
        num_labeled: labelled training samples, a multiple of ``num_classes`` (class-balanced).
        labeled_seed: seed of the choice of the labelled samples.
        labeled_batch_size: labelled samples per D update (None: the D batch size).
        supervised_weight: weight of L_supervised in D's loss (1 in Salimans et al.).
        generator_loss: ``feature_matching`` or ``adversarial`` (see the module docstring).
        eval_every_n_steps: generator steps between test-accuracy evaluations (0: at the end only).
        **kwargs: those of :class:`~gan_research.families.base.AdversarialModule`.
    """

    # Its own feature matching (model.generator_loss) replaces the step's G phase; the schedule's
    # remedies of that phase (unrolling, schedule.feature_matching) would be silently skipped there.
    unrolls_discriminator: ClassVar[bool] = False
    matches_features: ClassVar[bool] = False

    # Feature matching calls D's body (net.features) directly, which nn.Module.compile does not reach.
    compilable: tuple[str, ...] = ("generator",)

    data_kinds = (DataKind.IMAGES,)
    needs_labels = True

    def __init__(
        self,
        *args: Any,
        num_classes: int = 10,
        num_labeled: int = 100,
        labeled_seed: int = 0,
        labeled_batch_size: int | None = None,
        supervised_weight: float = 1.0,
        generator_loss: str = "feature_matching",
        eval_every_n_steps: int = 500,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)

        def is_int(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        if not is_int(num_classes) or num_classes < 2:
            raise ConfigError(f"model.num_classes must be an integer >= 2, got {num_classes!r}")
        if not is_int(num_labeled) or num_labeled < num_classes or num_labeled % num_classes:
            raise ConfigError(
                f"model.num_labeled={num_labeled!r} is invalid: the labelled subset is class-balanced, so it "
                f"must be a multiple of model.num_classes={num_classes} and at least {num_classes} "
                f"(e.g. {10 * num_classes})"
            )
        if not is_int(labeled_seed):
            raise ConfigError(f"model.labeled_seed must be an integer, got {labeled_seed!r}")
        if labeled_batch_size is not None and (not is_int(labeled_batch_size) or labeled_batch_size < 1):
            raise ConfigError(
                f"model.labeled_batch_size must be null (the D batch size) or an integer >= 1, "
                f"got {labeled_batch_size!r}"
            )
        if isinstance(supervised_weight, bool) or not isinstance(supervised_weight, (int, float)):
            raise ConfigError(f"model.supervised_weight must be a number >= 0, got {supervised_weight!r}")
        if supervised_weight < 0:
            raise ConfigError(f"model.supervised_weight must be a number >= 0, got {supervised_weight!r}")
        if generator_loss not in GENERATOR_LOSSES:
            raise ConfigError(
                f"model.generator_loss={generator_loss!r} is invalid; valid values: {list(GENERATOR_LOSSES)}"
            )
        if not is_int(eval_every_n_steps) or eval_every_n_steps < 0:
            raise ConfigError(
                "model.eval_every_n_steps must be an integer >= 0 (0: only at the end), "
                f"got {eval_every_n_steps!r}"
            )
        if not isinstance(self.objective.adversarial, MinimaxLoss):
            raise ConfigError(
                "the semi-supervised GAN reads D's logsumexp score as the logit of P(real) (Salimans "
                "et al. 2016, sec. 5), which needs loss=minimax or loss=non_saturating; "
                f"got {self.objective.adversarial!r}"
            )
        d = self.discriminator
        if (
            getattr(d, "num_outputs", None) != num_classes
            or getattr(d, "adversarial_head", None) is not False
        ):
            raise ConfigError(
                f"model.discriminator ({type(d).__name__}) must be a K-class discriminator whose score "
                "is the logsumexp of its logits: an AuxiliaryDCGANDiscriminator with "
                f"num_outputs: ${{model.num_classes}} (= {num_classes}) and adversarial_head: false; got "
                f"num_outputs={getattr(d, 'num_outputs', None)!r}, "
                f"adversarial_head={getattr(d, 'adversarial_head', None)!r}"
            )
        self.num_classes = num_classes
        self.num_labeled = num_labeled
        self.labeled_seed = labeled_seed
        self.labeled_batch_size = labeled_batch_size
        self.supervised_weight = float(supervised_weight)
        self.generator_loss = generator_loss
        self.eval_every_n_steps = eval_every_n_steps
        self.labeled_indices: Tensor | None = None
        self._labeled_source: Any = None
        self._labeled_x: Tensor | None = None
        self._labeled_y: Tensor | None = None
        self._last_eval_step = -1

    # ----------------------------------------------------------------- checks
    def check_data(self, datamodule: Any) -> None:
        """Labelled data of ``num_classes`` classes, a held-out test split, enough labelled samples."""
        super().check_data(datamodule)
        name, classes = datamodule.spec.name, datamodule.spec.num_classes
        if classes != self.num_classes:
            raise ConfigError(
                f"model.num_classes={self.num_classes} but dataset '{name}' has {classes} classes; "
                f"set model.num_classes={classes}"
            )
        self.require_test_set(datamodule)
        self.prepare_labeled(datamodule.train_set)

    def require_test_set(self, datamodule: Any) -> Any:
        test_set = getattr(datamodule, "test_set", None)
        if test_set is None:
            name = getattr(datamodule, "name", type(datamodule).__name__)
            hint = (
                "set dataset.test_fraction (e.g. dataset.test_fraction=0.2)"
                if hasattr(datamodule, "test_fraction")
                else "use a dataset with a held-out split (dataset=digits dataset.test_fraction=0.2)"
            )
            raise ConfigError(
                f"the semi-supervised GAN reports val/test_accuracy on a held-out test split, but dataset "
                f"'{name}' has none: {hint}"
            )
        return test_set

    def prepare_labeled(self, train_set: Any) -> None:
        """Choose the labelled subset of ``train_set`` (an InMemoryDataset with ``x`` and ``y``)."""
        labels = getattr(train_set, "y", None)
        if not isinstance(labels, Tensor):
            raise ConfigError(
                "the semi-supervised GAN picks its labelled subset from an in-memory training set "
                f"with labels (.x, .y); got {type(train_set).__name__}"
            )
        if self.num_labeled > len(labels):
            raise ConfigError(
                f"model.num_labeled={self.num_labeled} is larger than the training set "
                f"({len(labels)} samples); use at most {len(labels) - len(labels) % self.num_classes}"
            )
        self.labeled_indices = select_labeled(labels, self.num_labeled, self.num_classes, self.labeled_seed)
        # Copied now: later changes to the dataset's labels cannot reach the supervised loss.
        x, y = train_set.__getitems__(self.labeled_indices.tolist())
        self._labeled_x, self._labeled_y = x.clone(), y.clone()
        self._labeled_source = train_set

    def on_fit_start(self) -> None:
        datamodule = self.trainer.datamodule
        self.require_test_set(datamodule)
        if self._labeled_source is not datamodule.train_set:
            self.prepare_labeled(datamodule.train_set)
        self._labeled_x = self._labeled_x.to(self.device)
        self._labeled_y = self._labeled_y.to(self.device)

    # ------------------------------------------------------------------ hooks
    def discriminate(self, x: Tensor, condition: Any) -> tuple[Tensor, Tensor]:
        # (logsumexp of the K logits, the K logits).
        return self.discriminator(x)

    def discriminator_extra_losses(
        self, real_extra: Tensor, fake_extra: Tensor, real_condition: Any, fake_condition: Any
    ) -> LossTerms:
        """L_supervised on a labelled batch drawn with replacement from the labelled subset, with
        its diagnostics ``train/sup_loss`` (unweighted) and ``train/sup_acc``."""
        if self._labeled_x is None:
            raise RuntimeError("the labelled subset is chosen at fit start (on_fit_start) or by check_data")
        size = self.labeled_batch_size or real_extra.shape[0]
        labeled = self._labeled_x.to(self.device)
        index = self.draw_global(size, lambda m: torch.randint(len(labeled), (m,), device=self.device))
        targets = self._labeled_y.to(self.device)[index]
        _, logits = self.discriminate(self.add_instance_noise(labeled[index]), None)
        ce = F.cross_entropy(logits.float(), targets)
        logs = {
            "train/sup_loss": ce.detach(),
            "train/sup_acc": (logits.detach().argmax(dim=1) == targets).float().mean(),
        }
        return LossTerms({"sup": self.supervised_weight * ce}, logs)

    def discriminator_step(self, real: Tensor, opt_d: Any, labels: Tensor | None = None) -> dict[str, Tensor]:
        # The real batch's labels are dropped here: only the labelled subset's labels are used.
        return super().discriminator_step(real, opt_d, None)

    def generator_step(self, real: Tensor, opt_g: Any, labels: Tensor | None = None) -> dict[str, Tensor]:
        """G's update; with feature matching, against ``real``, the last D update's real batch
        (its labels are dropped, as in the D update)."""
        if self.generator_loss == "adversarial":
            return super().generator_step(real, opt_g)
        # Feature matching replaces G's adversarial loss, while the hooks can only add terms
        # to it; so this G phase is its own, in the same order (toggle, backward, step).
        with self.optimizer_phase(opt_g):
            fake = self.generate_fake(self.sample_latent(real.shape[0]), None)
            loss = self.feature_matching_loss(real, self.add_instance_noise(fake))
            return self.generator_update(opt_g, GeneratorLoss(loss, {"feature_matching": loss}))

    def feature_matching_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        """||E f(x_real) - E f(G(z))||² over D's last hidden map, averaged over its entries
        (Salimans et al. 2016, sec. 3.1); ``real`` is the last D update's real batch, whose
        features are taken without gradient (instance noise added as to every D input)."""
        features = self.discriminator.net.features
        with torch.no_grad():
            real_features = features(self.add_instance_noise(real))
        return mean_feature_matching(real_features, features(fake))

    # ---------------------------------------------------------- test accuracy
    @torch.no_grad()
    def test_accuracy(self, dataset: Any) -> float:
        """Fraction of ``dataset`` (an InMemoryDataset) whose argmax over D's K logits is its
        label, with D in eval mode."""
        d = self.discriminator
        was_training = d.training
        d.eval()
        correct = 0
        try:
            for start in range(0, len(dataset), _EVAL_BATCH):
                x, y = dataset.__getitems__(list(range(start, min(start + _EVAL_BATCH, len(dataset)))))
                logits = d(x.to(self.device))[1]
                correct += int((logits.argmax(dim=1) == y.to(logits.device)).sum())
        finally:
            d.train(was_training)
        return correct / len(dataset)

    def evaluate_test_accuracy(self) -> float | None:
        """Log ``val/test_accuracy`` at this step to every logger and ``trainer.callback_metrics``."""
        trainer = self.trainer
        step = trainer.global_step
        if step == self._last_eval_step:
            return None
        self._last_eval_step = step
        accuracy = self.test_accuracy(self.require_test_set(trainer.datamodule))
        for logger in trainer.loggers:
            logger.log_metrics({"val/test_accuracy": accuracy}, step=step)
        trainer.callback_metrics["val/test_accuracy"] = torch.tensor(accuracy)
        return accuracy

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        every = self.eval_every_n_steps
        if every and self.trainer.global_step % every == 0:
            self.evaluate_test_accuracy()

    def on_train_end(self) -> None:
        self.evaluate_test_accuracy()
