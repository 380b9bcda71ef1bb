"""Blocks shared by several architectures: DCGAN initialisation and optional spectral norm.

Only code that more than one network file needs lives here; everything specific to
one architecture stays in that architecture's file.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

# Layers whose weight is a linear map; the ones spectral normalisation constrains.
_LINEAR_MAPS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def dcgan_weights_init(module: nn.Module) -> None:
    """Initialise one module as DCGAN does; use as ``network.apply(dcgan_weights_init)``.

    Radford, Metz & Chintala 2016 (arXiv:1511.06434), sec. 4: "All weights were
    initialized from a zero-centered Normal distribution with standard deviation 0.02".
    Batch-norm scales get N(1, 0.02) and shifts 0, exactly the ``weights_init`` of the
    PyTorch reference (pytorch/examples, dcgan/main.py). Other modules keep PyTorch's defaults.
    """
    if isinstance(module, _CONVS):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, _BATCH_NORMS) and module.affine:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def apply_spectral_norm(network: nn.Module) -> nn.Module:
    """Spectrally normalise every linear and convolutional layer of ``network`` in place.

    Miyato et al. 2018, "Spectral Normalization for GANs" (arXiv:1802.05957), eq. 8:
    W_SN = W / sigma(W), with sigma estimated by one power iteration per forward pass.
    Uses the parametrisation API, so the raw weight is ``parametrizations.weight.original``.
    Call it after any custom initialisation: registering runs power iterations on the
    weight as it is at that moment.
    """
    for module in list(network.modules()):
        if isinstance(module, _LINEAR_MAPS):
            spectral_norm(module)
    return network
