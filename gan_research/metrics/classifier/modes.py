"""Mode counting on Stacked MNIST with a digits classifier (:func:`count_stacked_modes`)."""

from __future__ import annotations

import torch
from torch import Tensor

from gan_research.errors import ConfigError
from gan_research.metrics.classifier.network import DomainClassifier


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
