"""The Fashion-MNIST GAN of seed 004, layer for layer from its Keras summary, in PyTorch.

Seed 004 (Spanish lecture notes, "Aplicación") builds a small convolutional GAN for
Fashion-MNIST in Keras and prints ``model.summary()`` for both networks; these classes
reproduce those tables in NCHW: same layers in the same order, same output shapes, same
parameter counts (G 1,340,164 trainable + 258 batch-norm statistics, D 1,113,345). The
overall recipe (strided transposed convolutions, LeakyReLU, batch norm, tanh output) is the
DCGAN of Radford et al. 2016 (arXiv:1511.06434).

Keras → PyTorch translations, none of which changes the function class:
- Reshape((7, 7, 128)) of NHWC becomes Unflatten to (128, 7, 7); Flatten runs over C×H×W
  instead of H×W×C. Both only permute the units of the adjacent Dense layer.
- padding='same' for an even kernel pads 1 before and 2 after (TensorFlow puts the odd
  pixel at the end); see :class:`KerasSameConv2d`. For the stride-2, kernel-4 transposed
  convolutions 'same' pads symmetrically, which is PyTorch ``padding=1``.
- BatchNormalization defaults are momentum=0.99 (weight of the *old* running value) and
  epsilon=1e-3; PyTorch's momentum is the weight of the *new* batch value, hence 0.01.
- Weights start as in Keras: Glorot-uniform kernels (PyTorch's xavier_uniform_ computes the
  same bound, also for transposed kernels), zero biases.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from gan_research.errors import ConfigError
from gan_research.utils.validation import check_fraction, check_positive_int

IMAGE_SIZE = 28
CHANNELS = 1

# Keras BatchNormalization defaults, translated (see the module docstring).
_KERAS_BN = {"momentum": 0.01, "eps": 1e-3}


class KerasSameConv2d(nn.Conv2d):
    """Stride-1 Conv2d with Keras/TensorFlow ``padding='same'``: (k-1)//2 before, k//2 after.

    PyTorch's own ``padding='same'`` splits the padding the same way (verified in the tests),
    but warns on every even kernel because it builds a padded copy internally; we build that
    copy explicitly.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__(in_channels, out_channels, kernel_size, stride=1, padding=0)
        before, after = (kernel_size - 1) // 2, kernel_size // 2
        self._keras_pad = (before, after, before, after)  # F.pad order: left, right, top, bottom

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(F.pad(x, self._keras_pad))


def _check_image(owner: str, image_size: object, channels: object) -> None:
    if image_size != IMAGE_SIZE or channels != CHANNELS:
        raise ConfigError(
            f"{owner}: this architecture (the Fashion-MNIST GAN of seed 004) only handles "
            f"{IMAGE_SIZE}×{IMAGE_SIZE}×{CHANNELS} images, got image_size={image_size!r}, "
            f"channels={channels!r}. Use dataset=fashion_mnist or dataset=mnist, or model=dcgan "
            "for other sizes."
        )


def _keras_init(module: nn.Module) -> None:
    """Keras defaults: glorot_uniform kernels, zero biases (batch norm keeps 1/0 in both)."""
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)


class SeedFashionGenerator(nn.Module):
    """Seed 004's generator: Dense → two upsampling blocks → two 28×28 conv blocks → tanh.

    ``latent_dim`` defaults to 128 because the table's Dense(6272) has 809,088 parameters =
    128·6272 + 6272. ``leaky_slope`` defaults to 0.2, the slope of the tutorial the seed
    follows; a bare ``keras.layers.LeakyReLU()`` would use 0.3. ``image_size``/``channels``
    exist only so a config can pass the dataset's shape and get a clear error if it is not 28×28×1.
    """

    def __init__(
        self, latent_dim: int = 128, leaky_slope: float = 0.2, image_size: int = 28, channels: int = 1
    ):
        super().__init__()
        owner = type(self).__name__
        _check_image(owner, image_size, channels)
        self.latent_dim = check_positive_int(owner, "latent_dim", latent_dim)
        slope = check_fraction(owner, "leaky_slope", leaky_slope)
        self.output_shape: tuple[int, ...] = (CHANNELS, IMAGE_SIZE, IMAGE_SIZE)

        # One module per row of the seed's Keras table, in its order (BN *after* the
        # activation, as the seed has it); the last row, Conv2D with activation='tanh',
        # is a conv followed by Tanh here.
        self.main = nn.Sequential(
            nn.Linear(latent_dim, 7 * 7 * 128),  # dense
            nn.LeakyReLU(slope),
            nn.Unflatten(1, (128, 7, 7)),  # reshape
            nn.ConvTranspose2d(128, 128, 4, stride=2, padding=1),  # conv2d_transpose: 14×14
            nn.LeakyReLU(slope),
            nn.BatchNorm2d(128, **_KERAS_BN),
            nn.ConvTranspose2d(128, 1, 4, stride=2, padding=1),  # conv2d_transpose_1: 28×28
            nn.LeakyReLU(slope),
            nn.BatchNorm2d(1, **_KERAS_BN),
            KerasSameConv2d(1, 128, 4),  # conv2d
            nn.LeakyReLU(slope),
            KerasSameConv2d(128, 128, 4),  # conv2d_1
            nn.LeakyReLU(slope),
            KerasSameConv2d(128, 1, 4),  # conv2d_2
            nn.Tanh(),
        )
        self.apply(_keras_init)

    def forward(self, z: Tensor) -> Tensor:
        """Map noise (B, latent_dim) to images (B, 1, 28, 28) in [-1, 1]."""
        return self.main(z)


class SeedFashionDiscriminator(nn.Module):
    """Seed 004's discriminator: four valid 5×5 convs (28→24→20→16→12) with dropout, one Dense.

    The seed's last layer has a sigmoid; this one returns the logit of shape (B,), and the
    losses apply the sigmoid through BCE-with-logits: the same loss as Keras'
    binary_crossentropy on probabilities, but numerically stable. (The seed's prose says the
    flatten block ends "con tanh", but its D outputs 0.49 for "undecided" and is trained with
    binary cross-entropy on 1/0 labels: a sigmoid output, i.e. a logit here.)
    """

    def __init__(
        self, dropout: float = 0.4, leaky_slope: float = 0.2, image_size: int = 28, channels: int = 1
    ):
        super().__init__()
        owner = type(self).__name__
        _check_image(owner, image_size, channels)
        slope = check_fraction(owner, "leaky_slope", leaky_slope)
        rate = check_fraction(owner, "dropout", dropout)
        self.input_shape: tuple[int, ...] = (CHANNELS, IMAGE_SIZE, IMAGE_SIZE)

        layers: list[nn.Module] = []
        for c_in, c_out in [(1, 32), (32, 64), (64, 128), (128, 256)]:  # conv2d_3 … conv2d_6
            layers += [nn.Conv2d(c_in, c_out, 5), nn.LeakyReLU(slope), nn.Dropout(rate)]
        layers += [
            nn.Flatten(),  # 256·12·12 = 36,864 units, in C×H×W order (Keras: H×W×C)
            nn.Dropout(rate),
            nn.Linear(256 * 12 * 12, 1),  # dense_1, without its sigmoid
        ]
        self.main = nn.Sequential(*layers)
        self.apply(_keras_init)

    def forward(self, x: Tensor) -> Tensor:
        """Map images (B, 1, 28, 28) to logits of shape (B,)."""
        return self.main(x).squeeze(1)
