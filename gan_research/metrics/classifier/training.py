"""A domain classifier: a small CNN trained on the labelled dataset itself.

Inception-v3 features (FID, IS, KID) describe ImageNet photographs; for 32x32
digits or clothing they are weak and their weights cannot be downloaded on
offline machines. A classifier trained on the dataset itself is the usual
replacement (the "domain-specific FID/IS" of MNIST GAN papers, and the
classifier that counts the 1000 modes of Stacked MNIST in Metz et al. 2017,
VEEGAN and PacGAN). It is a *feature network*: ``forward`` gives penultimate
features for FID/KID, ``logits`` the class scores for IS and mode counting.

``gan-classifier dataset=digits`` trains one and saves it to
``${paths.data_dir}/classifiers/digits_32.pt`` (:func:`default_classifier_path`).
Checkpoints carry a SHA-256 of the weights, so a metric computed with a
classifier names exactly which one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra
import torch
import torch.nn.functional as F
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.utils.data import Dataset, default_collate

from gan_research.config import CONFIG_DIR
from gan_research.data.base import check_positive_int
from gan_research.errors import CheckpointError, ConfigError, GanResearchError, exit_with_error, user_error_in
from gan_research.utils.data_spec import DataKind
from gan_research.utils.images import convert_channels
from gan_research.utils.safe_config import describe_load_error

__all__ = [
    "DomainClassifier",
    "count_stacked_modes",
    "default_classifier_path",
    "load_classifier",
    "main",
    "run",
    "save_classifier",
    "split_indices",
    "state_dict_sha256",
    "train_classifier",
]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "gan_research.domain_classifier/1"
# Three 2x poolings: smaller inputs would pool away to nothing.
MIN_IMAGE_SIZE = 8
# Batch size for inference over many images (evaluation, mode counting).
_EVAL_BATCH = 512


# --------------------------------------------------------------------------- the network
def _conv_block(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    layers = [
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]
    return nn.Sequential(*layers, nn.MaxPool2d(2)) if stride == 1 else nn.Sequential(*layers)


class DomainClassifier(nn.Module):
    """Three conv blocks (width, 2*width, 4*width), a 4x4 pool, a ``num_features`` layer, a linear head.

    Feature-network interface (metrics depend on it): ``name`` (the dataset, for
    log keys such as ``val/fid_digits``), ``num_features``, ``num_classes``,
    ``image_size``, ``channels``; ``forward(x) -> (B, num_features)`` and
    ``logits(x) -> (B, num_classes)`` for float images in [-1, 1], shape (B, C, H, W).
    Inputs of another size are resized bilinearly to ``image_size``; grey inputs
    to an RGB classifier are repeated, RGB inputs to a grey one converted with
    the luma weights (as the datamodules do).

    After :meth:`freeze` (what :func:`train_classifier` and
    :func:`load_classifier` return) the network stays in eval mode even when a
    parent module calls ``train()``, like torchmetrics' ``NoTrainInceptionV3``:
    batch-norm statistics and dropout must not change a metric's value.
    """

    def __init__(
        self,
        channels: int = 1,
        image_size: int = 32,
        num_classes: int = 10,
        width: int = 16,
        num_features: int = 128,
        dropout: float = 0.3,
        name: str = "domain",
    ) -> None:
        super().__init__()
        owner = "classifier"
        if channels not in (1, 3) or isinstance(channels, bool):
            raise ConfigError(f"{owner}.channels must be 1 (grey) or 3 (RGB), got {channels!r}")
        image_size = check_positive_int("image_size", image_size, owner)
        if image_size < MIN_IMAGE_SIZE:
            raise ConfigError(f"{owner}.image_size must be at least {MIN_IMAGE_SIZE}, got {image_size}")
        self.num_classes = check_positive_int("num_classes", num_classes, owner)
        if self.num_classes < 2:
            raise ConfigError(f"{owner}.num_classes must be at least 2, got {num_classes}")
        self.width = check_positive_int("width", width, owner)
        self.num_features = check_positive_int("num_features", num_features, owner)
        if not 0.0 <= float(dropout) < 1.0:
            raise ConfigError(f"{owner}.dropout must be in [0, 1), got {dropout!r}")
        self.channels = int(channels)
        self.image_size = image_size
        self.dropout_p = float(dropout)
        self.name = str(name)
        self._frozen = False

        self.body = nn.Sequential(
            # A strided first conv (a ResNet-style stem) rather than conv + pool at full
            # resolution: a third of the CPU time per step, the same accuracy on digits.
            _conv_block(channels, width, stride=2),
            _conv_block(width, 2 * width),
            _conv_block(2 * width, 4 * width),
            # A fixed 4x4 grid keeps where strokes are (a global average would not) at any image_size.
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(4 * width * 16, num_features),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(num_features, num_classes)

    @property
    def hparams(self) -> dict[str, Any]:
        """The constructor arguments that fix the architecture (saved in checkpoints)."""
        return {
            "channels": self.channels,
            "image_size": self.image_size,
            "num_classes": self.num_classes,
            "width": self.width,
            "num_features": self.num_features,
            "dropout": self.dropout_p,
        }

    def freeze(self) -> DomainClassifier:
        """Eval mode for good and no gradients to the weights: the state a metric needs."""
        self._frozen = True
        self.requires_grad_(False)
        return self.train(False)

    def train(self, mode: bool = True) -> DomainClassifier:
        return super().train(mode and not self._frozen)

    def prepare(self, x: Tensor) -> Tensor:
        """Bring float images in [-1, 1] to this network's channels, size and dtype."""
        if x.ndim != 4:
            raise ValueError(
                f"{self.name} classifier expects images (B, C, H, W), got shape {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            # torchmetrics' image metrics default to uint8 input; silently scaling it would be wrong.
            raise ValueError(
                f"{self.name} classifier expects float images in [-1, 1], got {x.dtype}; "
                "convert uint8 images with x / 127.5 - 1"
            )
        x = x.to(self.head.weight.dtype)
        if x.shape[1] != self.channels:
            x = convert_channels(x, self.channels)
        if x.shape[-2:] != (self.image_size, self.image_size):
            downscale = x.shape[-2] > self.image_size or x.shape[-1] > self.image_size
            x = F.interpolate(
                x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False,
                antialias=downscale,
            )  # fmt: skip
        return x

    def forward(self, x: Tensor) -> Tensor:
        """Penultimate features (B, num_features) of float images in [-1, 1]."""
        return self.body(self.prepare(x))

    def logits(self, x: Tensor) -> Tensor:
        """Class scores (B, num_classes) of float images in [-1, 1]."""
        return self.head(self.dropout(self(x)))

    @torch.no_grad()
    def predict(self, x: Tensor, batch_size: int = _EVAL_BATCH) -> Tensor:
        """Predicted class (B,) of many images, in batches (switch to eval mode first)."""
        device = self.head.weight.device
        if len(x) == 0:
            return torch.zeros(0, dtype=torch.int64, device=x.device)
        preds = [self.logits(chunk.to(device)).argmax(dim=1) for chunk in x.split(batch_size)]
        return torch.cat(preds).to(x.device)


# --------------------------------------------------------------------------- training
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
        torch.set_num_threads(min(before, check_positive_int("num_threads", num_threads, "classifier")))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_args(epochs: Any, lr: Any, batch_size: Any, test_fraction: Any, max_shift: Any) -> None:
    check_positive_int("epochs", epochs, "classifier")
    check_positive_int("batch_size", batch_size, "classifier")
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


# --------------------------------------------------------------------------- checkpoints
def default_classifier_path(data_dir: str | Path, dataset: str, image_size: int) -> Path:
    """Where ``gan-classifier`` saves the classifier of ``dataset`` at ``image_size`` by default."""
    return Path(data_dir) / "classifiers" / f"{dataset}_{image_size}.pt"


def state_dict_sha256(state_dict: Mapping[str, Tensor]) -> str:
    """SHA-256 of a state dict: every tensor's name, dtype, shape and bytes, in sorted-name order."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        # Name, dtype and shape are hashed too, so e.g. a reshaped tensor changes the digest.
        digest.update(f"{key}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _create_command(path: Path, dataset: str | None) -> str:
    if dataset is None:
        # default_classifier_path names files <dataset>_<image_size>.pt.
        match = re.fullmatch(r"(.+)_(\d+)", path.stem)
        dataset = match.group(1) if match else "<dataset>"
    return f"gan-classifier dataset={dataset} out={path}"


def save_classifier(
    model: DomainClassifier,
    path: str | Path,
    test_accuracy: float,
    dataset_name: str,
    meta: Mapping[str, Any] | None = None,
) -> str:
    """Write ``model`` with its architecture, dataset, accuracy and weight checksum; return the checksum.

    ``meta`` (how it was trained) must be JSON-like (numbers, strings, lists,
    dicts), which ``torch.load(weights_only=True)`` can read back. The file is
    written to a temporary name and renamed, so a failure never leaves a
    half-written file where a good one was.
    """
    path = Path(path)
    state_dict = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    checksum = state_dict_sha256(state_dict)
    try:
        meta = json.loads(json.dumps(dict(meta or {})))
    except (TypeError, ValueError) as err:
        raise ValueError(f"meta must hold only numbers, strings, lists and dicts: {err}") from err
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "state_dict": state_dict,
        "hparams": model.hparams,
        "dataset": str(dataset_name),
        "image_size": model.image_size,
        "test_accuracy": float(test_accuracy),
        "sha256": checksum,
        "meta": meta,
        "torch_version": str(torch.__version__),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(checkpoint, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return checksum


def load_classifier(
    path: str | Path, map_location: str | torch.device = "cpu", dataset: str | None = None
) -> DomainClassifier:
    """Load a checkpoint of :func:`save_classifier`, verify its checksum, return the frozen classifier.

    ``dataset`` only fills in the ``gan-classifier`` command that error messages
    suggest (by default it is read from a ``<dataset>_<size>.pt`` file name).
    The returned model also carries ``test_accuracy`` and ``sha256``.
    """
    path = Path(path)
    command = _create_command(path, dataset)
    if not path.is_file():
        raise CheckpointError(
            f"domain classifier checkpoint {path} does not exist; create it with `{command}`"
        )
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # weights_only=True refuses objects; damaged files fail in many ways
        raise CheckpointError(
            f"domain classifier checkpoint {path} could not be read: {describe_load_error(err)}. "
            f"Recreate it with `{command}`"
        ) from err
    required = ("state_dict", "hparams", "dataset", "sha256", "test_accuracy")
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a domain classifier checkpoint (expected format {CHECKPOINT_FORMAT!r}); "
            f"create one with `{command}`"
        )
    missing = [key for key in required if key not in checkpoint]
    if missing:
        raise CheckpointError(
            f"domain classifier checkpoint {path} lacks {missing}; recreate it with `{command}`"
        )
    actual = state_dict_sha256(checkpoint["state_dict"])
    if actual != checkpoint["sha256"]:
        raise CheckpointError(
            f"domain classifier checkpoint {path} fails its checksum (stored sha256 {checkpoint['sha256']}, "
            f"weights hash to {actual}): the file was modified or corrupted. Recreate it with `{command}`"
        )
    try:
        model = DomainClassifier(**checkpoint["hparams"], name=checkpoint["dataset"])
        model.load_state_dict(checkpoint["state_dict"])
    except (ConfigError, TypeError, RuntimeError) as err:
        raise CheckpointError(
            f"domain classifier checkpoint {path} does not fit this version's DomainClassifier ({err}); "
            f"recreate it with `{command}`"
        ) from err
    model.test_accuracy = float(checkpoint["test_accuracy"])
    model.sha256 = actual
    return model.to(map_location).freeze()


# --------------------------------------------------------------------------- Stacked MNIST modes
@torch.no_grad()
def count_stacked_modes(classifier: DomainClassifier, images: Tensor) -> Tensor:
    """Mode index 100*c0 + 10*c1 + c2 (0..999) of each 3-channel Stacked-MNIST image (B,).

    Each channel is classified separately with a 1-channel, 10-class digits
    classifier (Metz et al. 2017; Srivastava et al. 2017, VEEGAN; Lin et al.
    2018, PacGAN), e.g. the one ``gan-classifier dataset=digits`` trains.
    Counting the distinct values gives the number of modes a generator covers.
    """
    if classifier.channels != 1 or classifier.num_classes != 10:
        raise ConfigError(
            f"count_stacked_modes needs a 1-channel, 10-class digits classifier, got {classifier.channels} "
            f"channel(s) and {classifier.num_classes} classes (name {classifier.name!r}); train one with "
            "`gan-classifier dataset=digits`"
        )
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"count_stacked_modes expects images (B, 3, H, W), got shape {tuple(images.shape)}")
    classifier.eval()
    batch, _, height, width = images.shape
    digits = classifier.predict(images.reshape(batch * 3, 1, height, width)).view(batch, 3)
    return digits @ torch.tensor([100, 10, 1], dtype=torch.int64, device=digits.device)


# --------------------------------------------------------------------------- gan-classifier
def _instantiate_dataset(node: DictConfig) -> Any:
    try:
        return instantiate(node)
    except InstantiationException as err:
        # Hydra wraps constructor errors; surface ours (they already name the bad value).
        ours = user_error_in(err)
        if ours is not None:
            raise ours from None
        raise ConfigError(f"could not build the dataset: {err}") from err


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train the classifier ``cfg`` describes (conf/classifier.yaml), save it, return what was made."""
    datamodule = _instantiate_dataset(cfg.dataset)
    image_size = int(datamodule.sample_shape[-1]) if len(datamodule.sample_shape) == 3 else 0
    out = (
        Path(cfg.out)
        if cfg.get("out")
        else default_classifier_path(cfg.paths.data_dir, datamodule.name, image_size)
    )
    started = time.perf_counter()
    model, accuracy = train_classifier(
        datamodule,
        epochs=cfg.epochs,
        lr=cfg.lr,
        seed=cfg.seed,
        batch_size=cfg.batch_size,
        test_fraction=cfg.test_fraction,
        width=cfg.width,
        num_features=cfg.num_features,
        dropout=cfg.dropout,
        max_shift=cfg.max_shift,
        weight_decay=cfg.weight_decay,
        device=cfg.get("device"),
        num_threads=cfg.get("num_threads"),
    )
    seconds = time.perf_counter() - started
    meta = {
        key: OmegaConf.to_container(cfg[key], resolve=True) if isinstance(cfg[key], DictConfig) else cfg[key]
        for key in ("seed", "epochs", "lr", "batch_size", "test_fraction", "max_shift", "weight_decay")
    }
    meta["dataset_config"] = OmegaConf.to_container(cfg.dataset, resolve=True)
    meta["train_seconds"] = round(seconds, 2)
    checksum = save_classifier(model, out, accuracy, datamodule.name, meta)
    print(f"{datamodule.name} classifier: test accuracy {accuracy:.4f} ({seconds:.1f} s)")
    print(f"sha256 {checksum}")
    print(f"saved to {out}")
    return {"model": model, "test_accuracy": accuracy, "sha256": checksum, "path": out, "seconds": seconds}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="classifier")
def main(cfg: DictConfig) -> float:
    """``gan-classifier dataset=<name> [out=<path>] [epochs=...]``: train and save a domain classifier."""
    try:
        return run(cfg)["test_accuracy"]
    except GanResearchError as err:
        # One clear line for bad input instead of a traceback (printed once, not logged too).
        exit_with_error(err)


if __name__ == "__main__":
    main()
