"""Perceptual features and distances that need the metrics' machinery.

- :class:`ClassifierFeatures`: the framework's own domain classifier (``metrics/classifier/``)
  as a feature network for perceptual losses (``perceptual=classifier``), the offline choice on
  data that declares a domain (digits and their translation tasks): no ImageNet weights, and
  features of the data's own domain. It follows ``networks/perceptual.py``'s FeatureExtractor
  interface (``layers``, ``forward(x) -> dict``, ``prepare(datamodule)``), duck-typed because
  metrics sit beside, not above, networks in the layers.
- :class:`LPIPS`: the Learned Perceptual Image Patch Similarity of Zhang, Isola, Efros, Shechtman
  & Wang 2018 ("The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", CVPR),
  through torchmetrics 1.9's port of the reference code (``torchmetrics/functional/image/
  lpips.py``, ``_LPIPS``), with the ImageNet backbone read from a local file.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics.functional.image import lpips as tm_lpips

from gan_research.errors import CheckpointError, ConfigError
from gan_research.metrics.evaluator import describe, domain_classifier, spec_of
from gan_research.utils.data_spec import DataKind
from gan_research.utils.weights import WeightsFile, keep_out_of_checkpoints

__all__ = ["CLASSIFIER_LAYERS", "LPIPS", "LPIPS_BACKBONES", "ClassifierFeatures"]

#: The domain classifier's layers, in order: its three conv blocks and its penultimate features.
CLASSIFIER_LAYERS: tuple[str, ...] = ("block1", "block2", "block3", "features")

# What a run without a domain can use instead (the perceptual config group's other options).
_WITHOUT_A_DOMAIN = (
    "perceptual=vgg19 (ImageNet VGG19 from a local weights file) and perceptual=random (a seeded random "
    "network, no weights) work on any images"
)


class ClassifierFeatures(nn.Module):
    """Features of the dataset's domain classifier, by layer: ``block1`` (width channels, H/2),
    ``block2`` (2*width, H/4), ``block3`` (4*width, H/8) and ``features`` (B, num_features).

    The classifier is bound by :meth:`prepare`: the one of ``datamodule.spec.domain`` at the data's
    image size, loaded from ``<data_dir>/classifiers/<domain>_<size>.pt`` (or ``classifier_path``)
    and trained there once when missing, by the same function the evaluator uses
    (``metrics/evaluator.py``'s :func:`domain_classifier`), so a run's loss and its metrics see
    one classifier. Images pass through the domain's view (e.g. inverted digits are inverted
    back) and the classifier's own input conversion (channels, size) first. Frozen: no gradients
    to its weights, eval mode for good, kept out of checkpoints; gradients reach the input.

    Args:
        data_dir: root of the classifier cache (``${paths.data_dir}``).
        layers: the layers ``forward`` returns (in this order).
        classifier_path: the classifier checkpoint, instead of the cache's default path.
        train_if_missing: train and cache the classifier when its file is missing, as the
            evaluator does; False makes a missing file an error.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        layers: str | Iterable[str] = CLASSIFIER_LAYERS,
        classifier_path: str | None = None,
        train_if_missing: bool = True,
    ) -> None:
        super().__init__()
        names = (layers,) if isinstance(layers, str) else tuple(str(name) for name in layers)
        unknown = [name for name in names if name not in CLASSIFIER_LAYERS]
        if unknown or not names:
            got = f"unknown layer(s) {unknown}" if unknown else "no layers"
            raise ConfigError(
                f"perceptual (classifier).layers: {got}; valid names: {', '.join(CLASSIFIER_LAYERS)}"
            )
        self.layers: tuple[str, ...] = tuple(dict.fromkeys(names))
        self.data_dir = str(data_dir)
        self.classifier_path = classifier_path
        self.train_if_missing = bool(train_if_missing)
        self.classifier: nn.Module | None = None
        self.view: Any = None
        self._depth = max(CLASSIFIER_LAYERS.index(name) for name in self.layers) + 1
        # Follows .to() before the classifier exists, so prepare() puts it where the parent model is.
        self.register_buffer("_device_anchor", torch.empty(0), persistent=False)
        # Bound later by prepare(): a checkpoint written before (or without) it must still load.
        keep_out_of_checkpoints(self)

    def prepare(self, datamodule: Any) -> None:
        """Bind the classifier of the data's domain (loaded, or trained once and cached).

        Raises:
            ConfigError: the data declares no domain, or is stacked (its classifier reads one
                channel at a time), naming the options that work without one.
        """
        spec = spec_of(datamodule)
        if spec.domain is None:
            raise ConfigError(
                f"perceptual=classifier needs a dataset with a domain classifier; dataset {describe(spec)} "
                f"has none. {_WITHOUT_A_DOMAIN}"
            )
        if spec.kind is DataKind.STACKED:
            # As in metrics/suite.py: the digits classifier reads one channel (one digit) at a time, so
            # it is no feature space for the stacked images.
            raise ConfigError(
                f"perceptual=classifier: dataset {describe(spec)} uses its domain classifier "
                f"({spec.domain.name}) per channel, to count modes; it is no feature space for the stacked "
                f"images. {_WITHOUT_A_DOMAIN}"
            )
        classifier = domain_classifier(
            spec.domain,
            int(spec.sample_shape[-1]),
            data_dir=self.data_dir,
            classifier_path=self.classifier_path,
            train_if_missing=self.train_if_missing,
        )
        self.classifier = classifier.to(self._device_anchor.device)
        self.view = spec.domain.view

    def train(self, mode: bool = True) -> ClassifierFeatures:
        # Frozen (see the class docstring): a parent's train() must not switch dropout or batch norm on.
        return super().train(False)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Features ``{layer: tensor}`` of float images in [-1, 1], shape (B, C, H, W)."""
        if self.classifier is None:
            raise RuntimeError(
                "ClassifierFeatures.prepare(datamodule) must run before its features are asked for: "
                "it binds the domain classifier of the run's data"
            )
        h = self.classifier.prepare(self.view(x))
        body = self.classifier.body
        found: dict[str, Tensor] = {}
        for index, name in enumerate(CLASSIFIER_LAYERS[: self._depth]):
            # body[0:3] are the three conv blocks; body[3:] pools, flattens and projects to features.
            h = body[index](h) if index < 3 else body[3:](h)
            found[name] = h
        return {name: found[name] for name in self.layers}


# --------------------------------------------------------------------------- LPIPS
def _backbone(filename: str, description: str) -> WeightsFile:
    return WeightsFile(
        filename=filename,
        url=f"https://download.pytorch.org/models/{filename}",
        env="GAN_LPIPS_BACKBONE_WEIGHTS",
        key="lpips.weights",
        description=description,
        publisher="torchvision's",
    )


#: The ImageNet backbone file of each LPIPS network (what torchvision's download would fetch).
LPIPS_BACKBONES: dict[str, WeightsFile] = {
    "alex": _backbone("alexnet-owt-7be5be79.pth", "AlexNet ImageNet weights file"),
    "vgg": _backbone("vgg16-397923af.pth", "VGG16 ImageNet weights file"),
}


def _heads_file(net_type: str) -> Path:
    # The learned linear heads ship inside torchmetrics, beside its lpips.py (as _LPIPS finds them).
    return Path(inspect.getfile(tm_lpips)).parent / "lpips_models" / f"{net_type}.pth"


class LPIPS(nn.Module):
    """LPIPS distance (Zhang et al. 2018) between images in [-1, 1]: ``forward(x, y) -> (B,)``.

    torchmetrics' ``_LPIPS`` with ``pnet_rand=True`` and ``pretrained=False``, so neither torchvision
    nor torchmetrics loads anything; this class loads both parts with ``torch.load(weights_only=True)``:

    - the learned linear heads (version 0.1 of the paper's ``lin`` layers), shipped inside
      torchmetrics as ``lpips_models/<net>.pth``;
    - the backbone's ImageNet weights, torchvision's ``alexnet-owt-7be5be79.pth`` (``net_type=alex``,
      the paper's default) or ``vgg16-397923af.pth`` (``vgg``), found by
      :class:`~gan_research.utils.weights.WeightsFile` in ``weights``, ``$GAN_LPIPS_BACKBONE_WEIGHTS``
      or the torch hub cache. A missing file fails here, when LPIPS is built.

    Frozen (eval mode for good, no gradients to the weights, kept out of checkpoints); gradients
    reach the inputs, so it also serves as a loss. Grey images are repeated to RGB. AlexNet needs
    images of at least 32 x 32 (or ``resize``).

    Args:
        net_type: ``alex`` or ``vgg``.
        weights: the backbone file, or None to look at the variable and the hub cache.
        resize: resize inputs to this size first (torchmetrics' option), or None.
    """

    def __init__(
        self, net_type: str = "alex", weights: str | os.PathLike[str] | None = None, resize: int | None = None
    ) -> None:
        super().__init__()
        if net_type not in LPIPS_BACKBONES:
            raise ConfigError(f"LPIPS net_type {net_type!r} is not one of {list(LPIPS_BACKBONES)}")
        self.net_type = net_type
        source = LPIPS_BACKBONES[net_type]
        self.weights_path = source.resolve(weights)
        backbone = source.load(self.weights_path)
        # Built on the meta device, then given empty CPU storage that the two files fill: torchvision
        # builds the whole classifier too (61M parameters for AlexNet), and initialising weights that
        # are all replaced would cost a second and draw from the caller's RNG stream.
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            net = tm_lpips._NoTrainLpips(pretrained=False, net=net_type, pnet_rand=True, resize=resize)
        self.net = net.to_empty(device="cpu")
        # The input scaling's constants are made by its constructor, not loaded: rebuilt on the CPU.
        self.net.scaling_layer = tm_lpips.ScalingLayer()
        loaded = self._load_heads() | self._load_backbone(source, backbone)
        del backbone
        # Every tensor must have come from a file (`lins.N` is `linN` again): nothing left uninitialised.
        unfilled = {k for k in self.net.state_dict() if not k.startswith("lins.")} - loaded
        if unfilled:
            raise RuntimeError(
                f"LPIPS tensors {sorted(unfilled)[:3]} were not loaded (torchmetrics changed?)"
            )
        self.net.requires_grad_(False)
        keep_out_of_checkpoints(self)
        self.train(False)

    def _load_heads(self) -> set[str]:
        path = _heads_file(self.net_type)
        expected = {k for k in self.net.state_dict() if k.startswith("lin") and not k.startswith("lins.")}
        try:
            heads = torch.load(path, map_location="cpu", weights_only=True)
            missing, unexpected = self.net.load_state_dict(heads, strict=False)
        except Exception as err:  # a damaged torchmetrics install; the file is not the user's
            raise CheckpointError(
                f"torchmetrics' LPIPS heads {path} could not be loaded ({type(err).__name__}: {err}); "
                "reinstall torchmetrics"
            ) from err
        if unexpected or expected & set(missing):
            raise CheckpointError(
                f"torchmetrics' LPIPS heads {path} do not fit its network; reinstall torchmetrics"
            )
        return expected

    def _load_backbone(self, source: WeightsFile, state: dict[str, Tensor]) -> set[str]:
        # _LPIPS's backbone holds torchvision's `features` modules under their indices in slices
        # (net.slice2.3.weight is features.3.weight): renamed, checked, then loaded.
        wanted = {
            key: "features." + key.split(".", 2)[2] for key in self.net.state_dict() if key.startswith("net.")
        }
        mine = self.net.state_dict()
        wrong = [
            src for key, src in wanted.items() if src not in state or state[src].shape != mine[key].shape
        ]
        if wrong:
            raise source.bad_file(
                self.weights_path, f"its feature tensors {wrong[:3]} are missing or mis-shaped"
            )
        self.net.load_state_dict({key: state[src] for key, src in wanted.items()}, strict=False)
        return set(wanted)

    def train(self, mode: bool = True) -> LPIPS:
        # The published metric: dropout in the heads must stay off whatever a parent module does.
        return super().train(False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """LPIPS distance of each pair, shape (B,), for float images in [-1, 1] (B, 1 or 3, H, W)."""
        for name, images in (("x", x), ("y", y)):
            if images.ndim != 4 or images.shape[1] not in (1, 3) or not images.is_floating_point():
                raise ValueError(
                    f"LPIPS expects float images (B, 1 or 3, H, W) in [-1, 1]; {name} is "
                    f"{images.dtype} of shape {tuple(images.shape)}"
                )
        if x.shape != y.shape:
            raise ValueError(f"LPIPS compares images of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        if x.shape[1] == 1:
            x, y = x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)
        return self.net(x, y).reshape(len(x))
