"""InceptionV3 features for FID, KID and IS, from a local weights file only.

The network is torch-fidelity's port of the 2015-12-05 TensorFlow Inception graph
(the one behind published FID/IS numbers since Heusel et al. 2017 and Salimans et
al. 2016), run through torchmetrics' ``NoTrainInceptionV3`` with the
TensorFlow-compatible bilinear resize (``antialias=False``): PyTorch's antialiased
resize shifts FID by several points, so numbers would not be comparable with
published ones.

Our machines have no internet, so the weights are never downloaded here: they are
looked for in the config, the ``GAN_INCEPTION_WEIGHTS`` variable and the torch hub
cache, and a missing file is an error saying where to get it and where to put it
(``utils/weights.py``'s :class:`WeightsFile`, shared with the perceptual backbones).

The file is read by this module with ``torch.load(weights_only=True)`` (nothing that
loads a file may run code), never by torch-fidelity, whose loader unpickles
with ``weights_only=False``: a planted file in any of the three places would run code.
Its SHA-256 cannot be checked instead: only the first 8 hex digits (``6726825d``, the
file name's suffix) are published, and tests use fabricated files of the same name.
"""

from __future__ import annotations

import io
import os
import weakref
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import Tensor, nn
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torchmetrics.image.fid import NoTrainInceptionV3

from gan_research.errors import CheckpointError, ConfigError
from gan_research.utils.safe_config import one_line
from gan_research.utils.weights import WeightsFile, WeightsFileMissing

#: Where torch-fidelity publishes the weights (the file its own download would fetch).
INCEPTION_WEIGHTS_URL: str = URL_INCEPTION_V3
#: ``weights-inception-2015-12-05-6726825d.pth``; the hub cache keeps it under this name.
INCEPTION_WEIGHTS_FILENAME: str = Path(urlparse(URL_INCEPTION_V3).path).name
#: Environment variable naming the weights file.
INCEPTION_WEIGHTS_ENV: str = "GAN_INCEPTION_WEIGHTS"
#: Config key naming the weights file.
INCEPTION_WEIGHTS_KEY: str = "metrics.inception_weights"


class InceptionWeightsError(WeightsFileMissing):
    """The InceptionV3 weights file is missing or not where the config says."""


#: The file, where it is published and where this machine may hold it (``utils/weights.py``).
INCEPTION_WEIGHTS = WeightsFile(
    filename=INCEPTION_WEIGHTS_FILENAME,
    url=INCEPTION_WEIGHTS_URL,
    env=INCEPTION_WEIGHTS_ENV,
    key=INCEPTION_WEIGHTS_KEY,
    description="InceptionV3 weights file",
    publisher="torch-fidelity's",
    error=InceptionWeightsError,
)


def hub_weights_path() -> Path:
    """Where ``torch.hub`` (and so torch-fidelity) caches the weights file."""
    return INCEPTION_WEIGHTS.hub_path()


def resolve_inception_weights(path: str | os.PathLike[str] | None = None) -> Path:
    """Locate the InceptionV3 weights file, without touching the network.

    Looks, in order, at ``path`` (the ``metrics.inception_weights`` config key), the
    ``GAN_INCEPTION_WEIGHTS`` environment variable and the torch hub cache
    (``torch.hub.get_dir()/checkpoints/weights-inception-2015-12-05-6726825d.pth``).
    A path given explicitly (argument or variable) must exist: silently using some
    other file would hide a typo.

    Raises:
        InceptionWeightsError: naming every place looked at, the URL the file is
            published at and where to put it.
    """
    return INCEPTION_WEIGHTS.resolve(path)


def _bad_weights_file(path: Path, problem: str) -> CheckpointError:
    return INCEPTION_WEIGHTS.bad_file(path, problem)


def load_inception_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """The weights file's state dict, read with ``torch.load(weights_only=True)``.

    Issue 13, item 4: the file may come from anywhere (a config key, a variable, a hub
    cache anyone could have written); unpickling only tensors and plain containers means
    a planted file is refused instead of run.

    Raises:
        CheckpointError: the file is unreadable, holds other objects, or is not a state dict.
    """
    return INCEPTION_WEIGHTS.load(path)


def _build_network(state: dict[str, Tensor], features: list[str]) -> NoTrainInceptionV3:
    """torchmetrics' InceptionV3 holding ``state``, without its own loader touching any user file.

    torch-fidelity's constructor insists on loading weights itself (from a path with
    ``weights_only=False``, or from the internet). It is given an in-memory copy of the state
    dict already read safely: a pickle this process wrote from plain tensors, so its
    ``weights_only=False`` load has nothing foreign to run.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return NoTrainInceptionV3(
        name="inception-v3-compat",
        features_list=features,
        feature_extractor_weights_path=buffer,  # type: ignore[arg-type]  # torch.load takes files too
        antialias=False,
    )


def images_to_uint8(images: Tensor) -> Tensor:
    """Quantise images in [-1, 1] to 3-channel uint8 in [0, 255], as Inception expects.

    Rounds exactly as ``torchvision.utils.save_image`` does, so the FID of samples in
    memory equals the FID of the same samples written to PNG and read back (how
    reference implementations see them). Grey images are repeated to RGB; uint8
    input is taken as already quantised.
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ConfigError(
            f"Inception features need images of shape (B, 1 or 3, H, W), got {tuple(images.shape)}; "
            "use a dataset with 1 or 3 channels or a domain feature network."
        )
    if images.dtype != torch.uint8:
        # NaN (a diverged generator) has no uint8 value; map it to black so the metric
        # reports a bad score instead of depending on undefined casts.
        scaled = torch.nan_to_num(images.float(), nan=-1.0)
        images = ((scaled + 1.0) * 127.5 + 0.5).clamp(0.0, 255.0).to(torch.uint8)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return images


class InceptionFeatures(nn.Module):
    """InceptionV3 pool features (2048-d) and logits (1008) of images in [-1, 1].

    The feature network behind ``val/fid``, ``val/kid`` (pool features) and
    ``val/is`` (``logits``, torch-fidelity's ``logits_unbiased``). Any image size
    works: the network resizes to 299x299 itself, like the reference code.

    Args:
        weights_path: the weights file; ``None`` looks at ``GAN_INCEPTION_WEIGHTS``
            and the torch hub cache (see :func:`resolve_inception_weights`).
    """

    name: str = "inception"
    num_features: int = 2048
    num_classes: int = 1008

    def __init__(self, weights_path: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self.weights_path = resolve_inception_weights(weights_path)
        state = load_inception_state_dict(self.weights_path)
        try:
            # One network yields both outputs; "logits_unbiased" is what torch-fidelity and
            # torchmetrics feed IS (the fc layer without its bias).
            self.net = _build_network(state, [str(self.num_features), "logits_unbiased"])
        except RuntimeError as err:  # load_state_dict: missing, unexpected or mis-shaped tensors
            raise _bad_weights_file(
                self.weights_path, f"its tensors do not fit the network ({one_line(str(err), 200)})"
            ) from err
        del state
        self.requires_grad_(False)
        self._memo: tuple[weakref.ref[Tensor], int, tuple[Tensor, Tensor]] | None = None

    def features_and_logits(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Pool features (B, 2048) and logits (B, 1008) from one pass."""
        # FID, KID and IS each ask for the same generated batch; on a CPU one Inception
        # pass is about a second per few images, so the last batch's outputs are kept
        # (the same tensor object, unmodified since: same in-place version counter).
        # Inference tensors (Lightning validation) have no version counter, so an in-place
        # change could not be seen: those are always recomputed.
        version = None if images.is_inference() else images._version
        memo = self._memo
        if version is not None and memo is not None and memo[0]() is images and memo[1] == version:
            return memo[2]
        # torchmetrics' forward keeps only the first requested output; its
        # _torch_fidelity_forward returns all of them.
        pool, logits = self.net._torch_fidelity_forward(images_to_uint8(images))
        outputs = (pool.reshape(len(images), -1), logits)
        self._memo = None if version is None else (weakref.ref(images), version, outputs)
        return outputs

    def forward(self, images: Tensor) -> Tensor:
        """2048-d pool features, shape (B, 2048)."""
        return self.features_and_logits(images)[0]

    def logits(self, images: Tensor) -> Tensor:
        """Class logits for the Inception Score, shape (B, 1008)."""
        return self.features_and_logits(images)[1]

    def __getstate__(self) -> dict[str, Any]:
        # A weak reference cannot be pickled (DDP spawn, torch.save of the module).
        return {**super().__getstate__(), "_memo": None}

    def train(self, mode: bool = True) -> InceptionFeatures:
        # Batch-norm statistics are part of the published network: never training mode.
        return super().train(False)
