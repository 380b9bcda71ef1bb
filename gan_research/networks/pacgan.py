"""The networks of PacGAN's 2-D experiments (Lin, Khetan, Fanti & Oh 2018, arXiv:1712.04086):
the ring and the grid of Gaussians.

Layer for layer the reference code, fjxmlzn/PacGAN,
``synthetic_data_experiments/2DRing_GAN&PacGAN/{config.py,pacgan_task.py}`` (the 2DGrid
experiment builds the same networks; both are written with blocks bricks on top of ALI's code):

- generator (``decoder``): a blocks ``MLP`` with dims [2, 400, 400, 400, 400, 2], each hidden
  layer a bias-free Linear followed by BatchNormalization and a Rectifier, the output Linear
  with a bias (``use_bias = True`` set on it after allocation) and no activation;
- discriminator: three ``LinearMaxout`` layers of 200 units with 5 pieces (the first reading
  ``2 * num_packing`` inputs), then ``Linear(200, 1)``: a raw logit (the loss applies softplus);
- every weight N(0, 0.02) (``weights_init_std``), every bias 0 (``biases_init``); batch-norm
  scales 1 and shifts 0 (blocks' BatchNormalization is not ``Initializable`` and keeps its own
  defaults).

The experiments train both with Adam (lr 1e-4, beta1 0.8) on batches of 100, and without the
dropout the task file could add (``with_dropout=False``); that lives in the config, not here.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from gan_research.networks.collapse import Maxout, collapse_layers
from gan_research.networks.layers import apply_spectral_norm
from gan_research.networks.mlp import MLPGenerator
from gan_research.utils.validation import check_positive_int

# config.py: "weights_init_std": 0.02, "biases_init": Constant(0.0).
_WEIGHTS_INIT_STD = 0.02


def _pacgan_init(module: nn.Module) -> None:
    """IsotropicGaussian(0.02) weights and zero biases on every Linear, as the reference's bricks."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, 0.0, _WEIGHTS_INIT_STD)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class PacGANGenerator(MLPGenerator):
    """PacGAN's 2-D generator: (Linear without bias → BatchNorm1d → ReLU) × ``num_layers``, Linear.

    The reference's ``decoder`` (module docstring): :class:`MLPGenerator` with batch norm, and the
    reference's initialisation. Batch norm follows blocks' BatchNormalization: eps 1e-4 (its default
    ``epsilon``) and running statistics updated with momentum 0.05 (the task's ``bn_updates``:
    ``m * 0.05 + p * 0.95``). One difference stays: blocks keeps a running standard deviation,
    PyTorch a running variance.
    """

    def __init__(self, latent_dim: int = 2, hidden_dim: int = 400, num_layers: int = 4, output_dim: int = 2):
        super().__init__(
            latent_dim, hidden_dim, num_layers, output_dim, batch_norm=True, bn_eps=1e-4, bn_momentum=0.05
        )
        self.apply(_pacgan_init)


class MaxoutDiscriminator(nn.Module):
    """PacGAN's 2-D discriminator: ``num_layers`` Maxout layers, then a Linear to one raw logit.

    The reference's ``discriminator`` (module docstring) with the defaults: three
    :class:`~gan_research.networks.collapse.Maxout` layers of 200 units × 5 pieces, then
    Linear(200, 1). ``packing``: the first layer reads ``input_dim * packing`` features, packs
    made by :func:`~gan_research.networks.collapse.pack` in the training step (the reference's
    ``num_xdim * num_packing``). ``spectral_norm`` normalises every Linear after the
    initialisation (Miyato et al. 2018, arXiv:1802.05957). ``minibatch_discrimination`` /
    ``minibatch_std``: as for
    :class:`~gan_research.networks.mlp.MLPDiscriminator`, inserted after the last Maxout layer,
    before the output Linear; not in the reference, off by default.
    """

    def __init__(
        self,
        input_dim: int = 2,
        hidden_dim: int = 200,
        num_layers: int = 3,
        pieces: int = 5,
        packing: int = 1,
        spectral_norm: bool = False,
        minibatch_discrimination: Mapping[str, object] | None = None,
        minibatch_std: int | None = None,
    ):
        super().__init__()
        owner = type(self).__name__
        check_positive_int(owner, "input_dim", input_dim)
        check_positive_int(owner, "hidden_dim", hidden_dim)
        check_positive_int(owner, "num_layers", num_layers)
        check_positive_int(owner, "pieces", pieces)
        self.packing = check_positive_int(owner, "packing", packing)
        self.input_shape: tuple[int, ...] = (input_dim * packing,)

        collapse, added = collapse_layers(owner, hidden_dim, minibatch_discrimination, minibatch_std)
        layers: list[nn.Module] = []
        width = input_dim * packing
        for _ in range(num_layers):
            layers.append(Maxout(width, hidden_dim, pieces))
            width = hidden_dim
        layers.append(nn.Linear(width + added, 1))
        self.main = nn.Sequential(*layers)
        self.collapse = collapse  # after main: its keys (if any) follow main's in the state dict
        self.main.apply(_pacgan_init)
        if spectral_norm:
            # After the init: registering runs power iterations on the current weights.
            apply_spectral_norm(self.main)

    def features(self, x: Tensor) -> Tensor:
        """The last Maxout layer's output (B, hidden_dim), before minibatch discrimination / std."""
        hidden: Tensor = self.main[:-1](x)
        return hidden

    def forward(self, x: Tensor) -> Tensor:
        """Map samples (or packs) of shape (B, input_dim * packing) to logits of shape (B,)."""
        logits: Tensor = self.main[-1](self.collapse(self.features(x)))
        return logits.squeeze(1)
