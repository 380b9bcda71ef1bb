"""Training a :class:`DomainClassifier` on a labelled image datamodule (:func:`train_classifier`).

A deterministic train/held-out split of the datamodule's training data (:func:`split_indices`),
random translations as augmentation, AdamW with a one-cycle schedule, the held-out accuracy
(:func:`evaluate_accuracy`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from gan_research.errors import ConfigError
from gan_research.metrics.classifier.network import _EVAL_BATCH, DomainClassifier
from gan_research.utils.data_spec import DataKind
from gan_research.utils.validation import check_positive_int

log = logging.getLogger(__name__)


def _fetch(dataset: Dataset, indices: Tensor) -> tuple[Tensor, Tensor]:
    """A batch (x float in [-1, 1], y int64) of ``dataset`` at ``indices``."""
    getitems = getattr(dataset, "__getitems__", None)
    if getitems is not None:
        # InMemoryDataset cuts a whole batch by tensor indexing.
        x, y = getitems(indices.tolist())
    else:
        x, y = default_collate([dataset[i] for i in indices.tolist()])
    return x.to(torch.float32), torch.as_tensor(y, dtype=torch.int64)


def _random_shift(x: Tensor, max_shift: float, generator: torch.Generator) -> Tensor:
    """Translate each image by up to ``max_shift`` pixels (border pixels repeat)."""
    batch, _, height, width = x.shape
    # affine_grid works in [-1, 1] coordinates: one pixel is 2 / size.
    shift = (torch.rand(batch, 2, generator=generator) * 2 - 1) * max_shift
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0] = 1.0
    theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = shift[:, 0] * 2 / width
    theta[:, 1, 2] = shift[:, 1] * 2 / height
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def split_indices(num_samples: int, test_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """A deterministic (train, test) split of ``range(num_samples)``, the same for the same seed."""
    perm = torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed))
    num_test = min(num_samples - 1, max(1, round(num_samples * test_fraction)))
    return perm[num_test:], perm[:num_test]


@torch.no_grad()
def evaluate_accuracy(
    model: DomainClassifier, dataset: Dataset, indices: Tensor, batch_size: int = _EVAL_BATCH
) -> float:
    """Fraction of ``dataset[indices]`` that ``model`` classifies correctly (in eval mode)."""
    was_training = model.training
    model.eval()
    device = model.head.weight.device
    correct = 0
    for chunk in indices.split(batch_size):
        x, y = _fetch(dataset, chunk)
        correct += int((model.logits(x.to(device)).argmax(dim=1).cpu() == y).sum())
    model.train(was_training)
    return correct / max(1, len(indices))


@contextmanager
def _cpu_threads(num_threads: int | None) -> Iterator[None]:
    """Run the block with torch's intra-op CPU threads capped at ``num_threads`` (None: unchanged)."""
    before = torch.get_num_threads()
    if num_threads is not None:
        wanted = check_positive_int("classifier", "num_threads", num_threads, form="key")
        torch.set_num_threads(min(before, wanted))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_args(epochs: Any, lr: Any, batch_size: Any, test_fraction: Any, max_shift: Any) -> None:
    check_positive_int("classifier", "epochs", epochs, form="key")
    check_positive_int("classifier", "batch_size", batch_size, form="key")
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0:
        raise ConfigError(f"classifier.lr must be a positive number, got {lr!r}")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, int | float):
        raise ConfigError(f"classifier.test_fraction must be a number in (0, 1), got {test_fraction!r}")
    if not 0 < test_fraction < 1:
        raise ConfigError(f"classifier.test_fraction must be in (0, 1), got {test_fraction!r}")
    if isinstance(max_shift, bool) or not isinstance(max_shift, int | float) or max_shift < 0:
        raise ConfigError(f"classifier.max_shift must be a number of pixels >= 0, got {max_shift!r}")


def train_classifier(
    datamodule: Any,
    epochs: int = 8,
    lr: float = 3e-3,
    seed: int = 0,
    batch_size: int = 64,
    test_fraction: float = 0.2,
    width: int = 16,
    num_features: int = 128,
    dropout: float = 0.3,
    max_shift: float = 2.0,
    weight_decay: float = 1e-4,
    device: str | torch.device | None = None,
    num_threads: int | None = 1,
) -> tuple[DomainClassifier, float]:
    """Train a :class:`DomainClassifier` on a labelled image datamodule; return it (frozen) and its accuracy.

    The datamodule's training data is split deterministically by ``seed`` into
    train and held-out test parts (``test_fraction``); digits has no official
    split, and GAN datamodules only expose the training set. AdamW with a
    one-cycle learning-rate schedule (peak ``lr``), random translations of up to
    ``max_shift`` pixels as augmentation. Seeds only a forked RNG, so the caller's
    random stream is left as it was.

    ``num_threads`` caps torch's CPU threads while training (restored after;
    None leaves them alone). One thread is the default because this network's
    ops are too small to gain from intra-op parallelism, and on shared cores
    the threads spin against each other: 5 epochs on digits took 3.8 s with
    one thread and 23 s with two on a busy 2-core machine, same accuracy.
    """
    _check_args(epochs, lr, batch_size, test_fraction, max_shift)
    # What the data is comes from its declaration (datamodule.spec), not from its name.
    spec = datamodule.spec
    name = spec.name
    if not spec.is_image or len(spec.sample_shape) != 3:
        raise ConfigError(
            f"dataset {spec.name!r} is not an image dataset ({spec.kind.describe()}); the domain "
            "classifier needs labelled images (a dataset that declares classes)"
        )
    if spec.num_classes is None:
        hint = (
            " (a flat image folder? put each class in its own subfolder of dataset.root)"
            if spec.kind is DataKind.IMAGES
            else ""
        )
        raise ConfigError(
            f"dataset {spec.name!r} ({spec.kind.describe()}) has no labels; the domain classifier needs "
            f"labelled images{hint}"
        )
    channels, image_size, _ = datamodule.sample_shape
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    datamodule.prepare_data()
    datamodule.setup("fit")
    dataset = datamodule.train_set
    train_idx, test_idx = split_indices(len(dataset), float(test_fraction), seed)
    steps_per_epoch = max(1, len(train_idx) // batch_size)

    with _cpu_threads(num_threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DomainClassifier(
            channels=channels,
            image_size=image_size,
            num_classes=datamodule.num_classes,
            width=width,
            num_features=num_features,
            dropout=dropout,
            name=name,
        ).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch
        )
        generator = torch.Generator().manual_seed(seed + 1)
        model.train()
        for epoch in range(epochs):
            order = train_idx[torch.randperm(len(train_idx), generator=generator)]
            total_loss = 0.0
            for step in range(steps_per_epoch):
                # The last partial batch is dropped: a batch of one breaks batch norm, and the
                # order changes every epoch, so every sample is still seen.
                x, y = _fetch(dataset, order[step * batch_size : (step + 1) * batch_size])
                if max_shift > 0:
                    x = _random_shift(x, float(max_shift), generator)
                loss = F.cross_entropy(model.logits(x.to(device)), y.to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                total_loss += loss.item()
            log.info("epoch %d/%d: train loss %.4f", epoch + 1, epochs, total_loss / steps_per_epoch)
        model.freeze()
        accuracy = evaluate_accuracy(model, dataset, test_idx)
    log.info("%s classifier: test accuracy %.4f on %d held-out images", name, accuracy, len(test_idx))
    return model, accuracy
