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

Modules: :mod:`~gan_research.metrics.classifier.network` (:class:`DomainClassifier`),
:mod:`~gan_research.metrics.classifier.training` (:func:`train_classifier`),
:mod:`~gan_research.metrics.classifier.checkpoint` (saving, loading, the checksum, the default
path), :mod:`~gan_research.metrics.classifier.modes` (:func:`count_stacked_modes`) and
:mod:`~gan_research.metrics.classifier.cli` (``gan-classifier``, the console script's
``gan_research.metrics.classifier:main``). Every name is importable from this package.
"""

from gan_research.metrics.classifier.checkpoint import (
    CHECKPOINT_FORMAT,
    default_classifier_path,
    load_classifier,
    save_classifier,
    state_dict_sha256,
)
from gan_research.metrics.classifier.cli import CONFIG_DIR, main, run
from gan_research.metrics.classifier.modes import count_stacked_modes
from gan_research.metrics.classifier.network import MIN_IMAGE_SIZE, DomainClassifier
from gan_research.metrics.classifier.training import evaluate_accuracy, split_indices, train_classifier

__all__ = [
    "CHECKPOINT_FORMAT",
    "CONFIG_DIR",
    "MIN_IMAGE_SIZE",
    "DomainClassifier",
    "count_stacked_modes",
    "default_classifier_path",
    "evaluate_accuracy",
    "load_classifier",
    "main",
    "run",
    "save_classifier",
    "split_indices",
    "state_dict_sha256",
    "train_classifier",
]
