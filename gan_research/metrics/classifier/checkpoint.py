"""Domain classifier checkpoints: saving, loading and checking them, and where they live by default.

:func:`save_classifier` writes the weights with the architecture, the dataset, the held-out
accuracy and a SHA-256 of the weights (:func:`state_dict_sha256`), atomically;
:func:`load_classifier` reads them back with ``torch.load(weights_only=True)`` and verifies the
checksum; :func:`default_classifier_path` is where ``gan-classifier`` saves them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gan_research.errors import CheckpointError, ConfigError
from gan_research.metrics.classifier.network import DomainClassifier
from gan_research.utils.safe_config import describe_load_error

CHECKPOINT_FORMAT = "gan_research.domain_classifier/1"


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


def json_meta(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """``meta`` (how a network was trained) as plain JSON-like data, which
    ``torch.load(weights_only=True)`` reads back; ValueError if it holds anything else."""
    try:
        return json.loads(json.dumps(dict(meta or {})))
    except (TypeError, ValueError) as err:
        raise ValueError(f"meta must hold only numbers, strings, lists and dicts: {err}") from err


def save_atomically(checkpoint: Mapping[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary name beside ``path``, then renamed: a failure (or a reader in
    another process) never sees a half-written file where a good one was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(checkpoint, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    meta = json_meta(meta)
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
    save_atomically(checkpoint, path)
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
