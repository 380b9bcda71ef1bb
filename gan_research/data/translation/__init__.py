"""Image-to-image translation data (pix2pix, CycleGAN): pairs ``(a, b)`` or two unpaired domains.

Four datamodules, all yielding training batches ``(a, b)`` of float images in [-1, 1]:

- :class:`PairedFolderDataModule`: the layout of the pix2pix datasets (facades, maps,
  cityscapes, edges2shoes, ...): ``root/train`` and ``root/val`` (or ``root/test``) hold
  images with A in the left half and B in the right half.
- :class:`UnpairedFolderDataModule`: the layout of the CycleGAN datasets (horse2zebra, ...):
  ``root/trainA``, ``root/trainB``, ``root/testA``, ``root/testB``.
- :class:`DigitsEdgesDataModule` (paired) and :class:`DigitsInvertedDataModule` (unpaired):
  embedded tasks built from scikit-learn's digits, no download.

**Random jitter** follows the reference implementation's ``--preprocess resize_and_crop``
(pix2pix sec. 6.2: "resizing the 256x256 input images to 286x286 and then randomly cropping
back to size 256x256", plus mirroring; ``data/base_dataset.py`` of
junyanz/pytorch-CycleGAN-and-pix2pix): every image is resized to ``load_size`` once, when
it is loaded (the resize is deterministic, so doing it once gives the reference's pixels),
and each training sample is cropped to ``crop_size`` at a random offset and flipped with
probability 1/2 when ``flip``. Paired data gets the same crop and flip in ``a`` and ``b``
(``aligned_dataset.py``: one ``get_params`` for both); unpaired data draws them, and the
B image itself, independently of ``a`` (``unaligned_dataset.py``: ``index_B`` uniform at
random). Validation images are resized straight to ``crop_size``: no crop, no flip.

**Reproducible jitter, exact resume.** The jitter draws no random numbers from any
generator with state. The training sampler (:class:`KeyedRandomSampler`) pairs every
index with its *draw number* ``k`` (permutation number * dataset size + position in that
permutation), and a sample's crop offsets, flip and (unpaired) B index are a counter-based
hash (SplitMix64, Steele et al. 2014) of ``(seed, k, stream)``. So the jitter is a pure
function of the seed and the position in the data stream: identical for two datamodules
with the same seed, with any ``num_workers`` or prefetching, under DDP (a rank's sample
has the draw number it has in the one-process stream), and after a resume, since
``fast_forward`` restores the permutation count with the sampler's position. The global
torch RNG is never touched.

**Memory.** Images are held in memory (uint8 for the folder datasets, float32 for the
digits), resized to ``load_size``: the pix2pix/CycleGAN datasets are small (facades: 400
training pairs, 0.2 GB at 286 px; maps: 1,096, 0.5 GB; horse2zebra: 2,401 images, 0.6 GB),
and in-memory tensors batch by indexing, move to the GPU with ``callbacks.fast_path``,
and crop on the fly there. The edges2shoes/edges2handbags sets (50k/137k pairs, 25/70 GB
at 286 px) do not fit: use a subset, or a smaller ``load_size``.

**Modules.** :mod:`~gan_research.data.translation.jitter` (the keyed sampler, the jitter hash,
the batched crop and flip), :mod:`~gan_research.data.translation.base` (the in-memory ``(a, b)``
dataset and the shared datamodule), :mod:`~gan_research.data.translation.folders` (the pix2pix
and CycleGAN folder layouts) and :mod:`~gan_research.data.translation.digits` (the embedded
digits tasks). Every name is importable from this package, as the configs' ``_target_``s are.
"""

from gan_research.data.translation.base import TranslationDataModule, TranslationDataset
from gan_research.data.translation.digits import (
    DigitsEdgesDataModule,
    DigitsInvertedDataModule,
    check_digit_split,
    digit_images,
    digit_splits,
    edge_map,
)
from gan_research.data.translation.folders import (
    DIRECTIONS,
    PairedFolderDataModule,
    UnpairedFolderDataModule,
    list_images,
    load_image,
    load_side_by_side,
)
from gan_research.data.translation.jitter import KeyedRandomSampler, crop_and_flip, jitter_draws

__all__ = [
    "DIRECTIONS",
    "DigitsEdgesDataModule",
    "DigitsInvertedDataModule",
    "KeyedRandomSampler",
    "PairedFolderDataModule",
    "TranslationDataModule",
    "TranslationDataset",
    "UnpairedFolderDataModule",
    "check_digit_split",
    "crop_and_flip",
    "digit_images",
    "digit_splits",
    "edge_map",
    "jitter_draws",
    "list_images",
    "load_image",
    "load_side_by_side",
]
