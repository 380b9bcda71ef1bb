"""The text encoder the framework trains itself: a joint embedding of captions and images.

StackGAN (Zhang et al. 2017, arXiv:1612.03242, sec. 4) conditions on the caption embeddings of
Reed et al. 2016 ("Learning Deep Representations of Fine-Grained Visual Descriptions",
arXiv:1605.05395): a text encoder φ trained with an image encoder θ so that a caption scores
highest with the images it describes, then frozen. Those encoders were trained on CUB and
Oxford-102 and cannot be downloaded here, so :func:`train_text_encoder` trains one on the run's
captioned data (``data/captioned.py``) and :class:`TextEncoderFeatures` caches it, as the domain
classifier is (``metrics/classifier/``).

**The loss** is Reed et al.'s symmetric structured joint embedding loss (their eq. 3-5 with the
hinge surrogate, as in their ``JointEmbeddingLoss`` applied twice, image→text and text→image):
with compatibility ``F(v, t) = θ(v)ᵀ φ(t)`` for a batch of B image–caption pairs,

    L = 1/B Σ_{(i, j): t_j false of v_i} [ max(0, m + F(v_i, t_j) − F(v_i, t_i))
                                           + max(0, m + F(v_i, t_j) − F(v_j, t_j)) ]

(``m``: ``margin``, 1 in the paper): image ``v_i`` must score its own caption above ``t_j``, and
caption ``t_j`` its own image above ``v_i``. Reed et al. draw one image per class into a minibatch so
that every other caption is a negative; here batches are random and a pair counts as a negative
only when the caption is *false* of the image (:func:`~gan_research.data.captions.captions_hold`):
on the digits, a caption naming another digit or another bin of an attribute it names ("the
number seven" is true of every seven); on class-labelled folders (CUB), a caption of another class,
Reed et al.'s own definition of a match.

**Measured on the digits** (``captioned_digits`` at 64 px, the defaults here and in
``networks/text_encoder.py``: 12 epochs, batch 64, Adam 2e-3, margin 1, seed 0; 24 s on one
loaded CPU thread): each of the 1,795 captions of the 359 held-out digits (20%, never trained on)
retrieves the held-out image that scores highest; that image is of the caption's class for
98.6% of captions (top-1 caption→image class agreement; chance 10%), and the caption is true of
it (its class and every attribute bin it names) for 55.4% (chance 2.4%: the mean share of the
held-out images a caption is true of). Mean ``F(v, t)``: 8.6 over true pairs, -1.8 over false
ones. The attribute words are tercile bins of continuous measures, so images near a threshold
are ambiguous and the match figure cannot reach 100%; 20 epochs gave 62.5% (52 s).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gan_research.data.captioned import CaptionedDataset
from gan_research.data.captions import Vocabulary, captions_hold
from gan_research.errors import CheckpointError, ConfigError
from gan_research.metrics.classifier.checkpoint import json_meta, save_atomically, state_dict_sha256
from gan_research.metrics.classifier.training import _cpu_threads, split_indices
from gan_research.utils.data_spec import DataKind, require_kind
from gan_research.utils.safe_config import describe_load_error
from gan_research.utils.validation import check_positive_float, check_positive_int
from gan_research.utils.weights import keep_out_of_checkpoints

__all__ = [
    "CHECKPOINT_FORMAT",
    "TextEncoderFeatures",
    "default_text_encoder_path",
    "describe_factory",
    "joint_embedding_loss",
    "load_text_encoder",
    "retrieval_accuracy",
    "save_text_encoder",
    "train_text_encoder",
]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "gan_research.text_encoder/1"

#: Builds a text encoder: ``factory(vocab_size=V)`` → an ``nn.Module`` with ``out_dim``, ``hparams``
#: (its constructor's keyword arguments) and ``forward(tokens (B, L) int64) -> (B, out_dim)``;
#: ``networks/text_encoder.py``'s ``TextEncoder``, passed by config (``_partial_: true``).
TextEncoderFactory = Callable[..., nn.Module]
#: Builds the image side: ``factory(channels=C, out_dim=D)`` → ``forward(images) -> (B, D)``;
#: ``networks/text_encoder.py``'s ``ImageEncoder``.
ImageEncoderFactory = Callable[..., nn.Module]

# Scores of at most this many captions against all images at once when measuring retrieval.
_EVAL_CHUNK = 1024


def describe_factory(factory: Callable[..., Any]) -> dict[str, Any]:
    """``{"target": "module.Class", "kwargs": {...}}`` of a class or a ``functools.partial`` of one
    (what Hydra's ``_partial_: true`` makes): part of a cache key, so other networks get another file."""
    kwargs: dict[str, Any] = {}
    while isinstance(factory, functools.partial):
        if factory.args:
            raise ConfigError(f"text encoder networks take keyword arguments only, got {factory.args!r}")
        kwargs = {**factory.keywords, **kwargs}
        factory = factory.func
    target = f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', repr(factory))}"
    try:
        return json_meta({"target": target, "kwargs": dict(sorted(kwargs.items()))})
    except ValueError as err:
        raise ConfigError(f"{target}'s arguments must be plain numbers and strings: {err}") from err


def joint_embedding_loss(
    image_embeddings: Tensor, text_embeddings: Tensor, holds: Tensor, margin: float = 1.0
) -> Tensor:
    """Reed et al. 2016's symmetric structured hinge loss (module docstring) of a batch.

    Args:
        image_embeddings, text_embeddings: (B, D), row i a matching pair.
        holds: (B captions, B images) bool, whether caption j is true of image i (``holds[j, i]``);
            only false pairs are negatives. The diagonal must be true.
    """
    scores = image_embeddings @ text_embeddings.T  # scores[i, j] = F(v_i, t_j)
    matched = scores.diagonal()
    negative = (~holds.T).to(scores.dtype)  # negative[i, j]: caption j is false of image i
    image_to_text = (margin + scores - matched[:, None]).clamp_min(0)  # row i: v_i with each t_j
    text_to_image = (margin + scores - matched[None, :]).clamp_min(0)  # column j: t_j with each v_i
    return ((image_to_text + text_to_image) * negative).sum() / len(scores)


def _images(dataset: CaptionedDataset, index: Tensor) -> Tensor:
    x = dataset.x[index.to(dataset.x.device)]
    return x.to(torch.float32).div_(127.5).sub_(1.0) if x.dtype == torch.uint8 else x.to(torch.float32)


def _captions(dataset: CaptionedDataset, index: Tensor, caption: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(tokens, named label, named bins)`` of caption ``caption[k]`` of image ``index[k]``."""
    tokens = dataset.tokens[index.to(dataset.tokens.device), caption.to(dataset.tokens.device)].long()
    return tokens, dataset.caption_labels[index, caption], dataset.caption_bins[index, caption]


@torch.no_grad()
def retrieval_accuracy(
    text_encoder: nn.Module, image_encoder: nn.Module, dataset: CaptionedDataset, indices: Tensor
) -> dict[str, float]:
    """Caption → image retrieval among the images ``indices``: each of their captions picks the
    image with the highest ``F(v, t)``. Returns ``class_top1`` (the picked image has the caption's
    class), ``match_top1`` (the caption is true of it: class and named attribute bins),
    ``match_chance`` (a random image's chance of the latter), ``captions`` (how many queries), and
    the mean ``F(v, t)`` over all caption–image pairs the caption is true of (``score_true``) and
    false of (``score_false``)."""
    device = next(text_encoder.parameters()).device
    was = text_encoder.training, image_encoder.training
    text_encoder.eval()
    image_encoder.eval()
    try:
        image_embeddings = torch.cat(
            [image_encoder(_images(dataset, chunk).to(device)) for chunk in indices.split(_EVAL_CHUNK)]
        )
        counts = dataset.counts[indices]
        owner = indices.repeat_interleave(counts)
        caption = torch.cat([torch.arange(int(c)) for c in counts])
        labels, bins = dataset.y[indices].cpu(), dataset.image_bins[indices]
        class_hits = match_hits = true_pairs = 0
        chance = true_sum = false_sum = 0.0
        for chunk in torch.arange(len(owner)).split(_EVAL_CHUNK):
            tokens, named, said = _captions(dataset, owner[chunk], caption[chunk])
            scores = (text_encoder(tokens.to(device)) @ image_embeddings.T).cpu()  # (captions, images)
            best = scores.argmax(dim=1)
            holds = captions_hold(named, said, labels, bins)
            class_hits += int((labels[best] == named).sum())
            match_hits += int(holds[torch.arange(len(best)), best].sum())
            chance += float(holds.double().mean(dim=1).sum())
            true_pairs += int(holds.sum())
            true_sum += float(scores[holds].double().sum())
            false_sum += float(scores[~holds].double().sum())
    finally:
        text_encoder.train(was[0])
        image_encoder.train(was[1])
    total = max(1, len(owner))
    false_pairs = len(owner) * len(indices) - true_pairs
    return {
        "class_top1": class_hits / total,
        "match_top1": match_hits / total,
        "match_chance": chance / total,
        "captions": len(owner),
        "score_true": true_sum / max(1, true_pairs),
        "score_false": false_sum / max(1, false_pairs),
    }


def _check_test_fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ConfigError(f"text_encoder.test_fraction must be a number in (0, 1), got {value!r}")
    return float(value)


def _check_seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"text_encoder.seed must be an integer, got {value!r}")
    return value


def _captioned_dataset(datamodule: Any, who: str) -> CaptionedDataset:
    spec = datamodule.spec
    require_kind(spec, (DataKind.CAPTIONED,), who, why="it embeds an image's captions")
    datamodule.setup("fit")
    dataset = datamodule.train_set
    if not isinstance(dataset, CaptionedDataset):
        raise ConfigError(
            f"{who}: dataset '{spec.name}' declares captioned images but its training set is a "
            f"{type(dataset).__name__}, not a CaptionedDataset (data/captioned.py)"
        )
    return dataset


def train_text_encoder(
    datamodule: Any,
    text_encoder: TextEncoderFactory,
    image_encoder: ImageEncoderFactory,
    epochs: int = 12,
    batch_size: int = 64,
    lr: float = 2e-3,
    margin: float = 1.0,
    seed: int = 0,
    test_fraction: float = 0.2,
    device: str | torch.device | None = None,
    num_threads: int | None = 1,
) -> tuple[nn.Module, dict[str, float]]:
    """Train a text encoder and an image encoder jointly on captioned data (module docstring);
    return the text encoder (frozen, eval mode) and its retrieval figures on held-out images.

    The training images are split by ``seed`` (:func:`split_indices`, ``test_fraction`` held out
    for :func:`retrieval_accuracy`). Each step takes ``batch_size`` images in a seeded random order
    and one of each image's captions at random, and minimises :func:`joint_embedding_loss` with
    Adam (``lr``). The networks are built inside a forked, seeded RNG, so the caller's random
    stream is left as it was and the same arguments give the same encoder. ``num_threads`` caps
    torch's CPU threads meanwhile (see :func:`~gan_research.metrics.classifier.train_classifier`).
    """
    who = "the text encoder"
    epochs = check_positive_int("text_encoder", "epochs", epochs, form="key")
    batch_size = check_positive_int("text_encoder", "batch_size", batch_size, form="key")
    lr = check_positive_float("text_encoder", "lr", lr, form="key")
    margin = check_positive_float("text_encoder", "margin", margin, form="key")
    test_fraction = _check_test_fraction(test_fraction)
    seed = _check_seed(seed)
    dataset = _captioned_dataset(datamodule, who)
    vocabulary: Vocabulary = datamodule.vocabulary
    channels = int(datamodule.spec.channels)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    train_idx, test_idx = split_indices(len(dataset), test_fraction, seed)
    batch = min(batch_size, len(train_idx))
    steps_per_epoch = max(1, len(train_idx) // batch)

    with _cpu_threads(num_threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text = text_encoder(vocab_size=len(vocabulary)).to(device)
        image = image_encoder(channels=channels, out_dim=int(text.out_dim)).to(device)
        optimizer = torch.optim.Adam([*text.parameters(), *image.parameters()], lr=lr)
        generator = torch.Generator().manual_seed(seed + 1)
        text.train()
        image.train()
        for epoch in range(epochs):
            order = train_idx[torch.randperm(len(train_idx), generator=generator)]
            total = 0.0
            for step in range(steps_per_epoch):
                # The last partial batch is dropped (batch norm, and the order changes each epoch).
                index = order[step * batch : (step + 1) * batch]
                caption = (torch.rand(len(index), generator=generator) * dataset.counts[index]).long()
                tokens, named, said = _captions(dataset, index, caption)
                holds = captions_hold(named, said, dataset.y[index].cpu(), dataset.image_bins[index])
                loss = joint_embedding_loss(
                    image(_images(dataset, index).to(device)),
                    text(tokens.to(device)),
                    holds.to(device),
                    margin,
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.item()
            log.info("text encoder epoch %d/%d: loss %.4f", epoch + 1, epochs, total / steps_per_epoch)
        retrieval = retrieval_accuracy(text, image, dataset, test_idx)
    log.info(
        "text encoder of %s: caption->image top-1 class %.3f, match %.3f on %d held-out captions",
        datamodule.spec.name,
        retrieval["class_top1"],
        retrieval["match_top1"],
        retrieval["captions"],
    )
    return _frozen(text.cpu()), retrieval


def _frozen(module: nn.Module) -> nn.Module:
    module.requires_grad_(False)
    return module.eval()


# --------------------------------------------------------------------------- checkpoints
def default_text_encoder_path(data_dir: str | Path, dataset: str, image_size: int, key: str) -> Path:
    """The cache file of a text encoder: ``<data_dir>/text_encoders/<dataset>_<size>_<key>.pt``."""
    return Path(data_dir) / "text_encoders" / f"{dataset}_{image_size}_{key}.pt"


def save_text_encoder(
    encoder: nn.Module, path: str | Path, *, key: str, vocabulary: Vocabulary, meta: Mapping[str, Any]
) -> str:
    """Write ``encoder`` with its ``hparams``, the cache ``key``, the vocabulary and ``meta`` (JSON-like:
    dataset, settings, retrieval figures) and a SHA-256 of the weights, atomically; return the checksum."""
    state_dict = {k: v.detach().cpu().clone() for k, v in encoder.state_dict().items()}
    checksum = state_dict_sha256(state_dict)
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "state_dict": state_dict,
        "hparams": json_meta(encoder.hparams),
        "key": str(key),
        "vocabulary": list(vocabulary.words),
        "vocabulary_sha256": vocabulary.sha256,
        "meta": json_meta(meta),
        "sha256": checksum,
        "torch_version": str(torch.__version__),
    }
    save_atomically(checkpoint, Path(path))
    return checksum


def load_text_encoder(
    path: str | Path,
    text_encoder: TextEncoderFactory,
    key: str | None = None,
    vocabulary: Vocabulary | None = None,
) -> nn.Module:
    """Load a :func:`save_text_encoder` file with ``torch.load(weights_only=True)``, check its format,
    checksum, ``key`` and ``vocabulary`` (when given), rebuild it with ``text_encoder(**hparams)``:
    the frozen encoder, with ``retrieval`` and ``sha256`` attached. Every failure is one
    CheckpointError line naming the file."""
    path = Path(path)
    fix = "delete it and the next run trains the text encoder again"
    if not path.is_file():
        raise CheckpointError(f"text encoder checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # weights_only=True refuses objects; damaged files fail in many ways
        raise CheckpointError(
            f"text encoder checkpoint {path} could not be read: {describe_load_error(err)}; {fix}"
        ) from err
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a text encoder checkpoint (format {CHECKPOINT_FORMAT!r}); {fix}"
        )
    missing = [
        k
        for k in ("state_dict", "hparams", "key", "vocabulary_sha256", "sha256", "meta")
        if k not in checkpoint
    ]
    if missing:
        raise CheckpointError(f"text encoder checkpoint {path} lacks {missing}; {fix}")
    actual = state_dict_sha256(checkpoint["state_dict"])
    if actual != checkpoint["sha256"]:
        raise CheckpointError(
            f"text encoder checkpoint {path} fails its checksum (stored {checkpoint['sha256'][:12]}, weights "
            f"hash to {actual[:12]}): the file was modified or corrupted; {fix}"
        )
    if key is not None and checkpoint["key"] != key:
        raise CheckpointError(
            f"text encoder checkpoint {path} was trained for other data or settings (key "
            f"{checkpoint['key']}, this run's is {key}: dataset, image size, vocabulary, captions or "
            f"training settings differ); point at the right file, or {fix}"
        )
    if vocabulary is not None and checkpoint["vocabulary_sha256"] != vocabulary.sha256:
        raise CheckpointError(
            f"text encoder checkpoint {path} was trained on another vocabulary (sha256 "
            f"{checkpoint['vocabulary_sha256'][:12]}, the data's is {vocabulary.sha256[:12]}); {fix}"
        )
    try:
        with torch.random.fork_rng(devices=[]):  # the weights are replaced: leave the RNG alone
            encoder = text_encoder(**checkpoint["hparams"])
        encoder.load_state_dict(checkpoint["state_dict"])
    except (TypeError, ValueError, RuntimeError) as err:  # ConfigError is a ValueError
        raise CheckpointError(
            f"text encoder checkpoint {path} does not fit the configured text encoder ({err}); {fix}"
        ) from err
    encoder.retrieval = dict(checkpoint["meta"].get("retrieval", {}))
    encoder.sha256 = actual
    return _frozen(encoder)


def _captions_sha256(dataset: CaptionedDataset) -> str:
    """SHA-256 of the encoded captions, their counts and the labels: the data the encoder learns."""
    digest = hashlib.sha256()
    for tensor in (dataset.y, dataset.counts, dataset.tokens, dataset.image_bins):
        digest.update(tensor.detach().cpu().contiguous().to(torch.int64).numpy().tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------- the feature network
class TextEncoderFeatures(nn.Module):
    """A frozen caption encoder for text-to-image families: ``forward(tokens) -> (B, out_dim)``.

    Bound by :meth:`prepare` (a family calls it in ``check_data``, as with the perceptual feature
    networks): loaded from ``path`` or the cache file
    ``<data_dir>/text_encoders/<dataset>_<size>_<key>.pt``, and trained there once by
    :func:`train_text_encoder` when missing (``train_if_missing``). ``key`` hashes the dataset's
    name, image size and channels, the vocabulary's SHA-256, the encoded captions and the training
    settings (networks included), so a change of any of them trains another file instead of
    reusing a stale one. The file is written atomically and read with ``weights_only=True``; a
    corrupt or foreign file is one CheckpointError line naming it.

    Frozen: eval mode for good, no gradients to its weights, kept out of checkpoints (the cache
    holds them); ``out_dim`` is known at construction, before :meth:`prepare`, for sizing the
    network that reads the embeddings. The retrieval figures measured when it was trained are
    ``retrieval`` after :meth:`prepare`.

    Args:
        data_dir: root of the cache (``${paths.data_dir}``).
        text_encoder, image_encoder: the networks' factories (module docstring's aliases), e.g.
            ``functools.partial(TextEncoder, out_dim=128)``; by config, ``_partial_: true``.
        path: the checkpoint, instead of the cache's file (it must carry this run's key).
        train_if_missing: train and cache the encoder when its file is missing; False makes a
            missing file an error.
        epochs, batch_size, lr, margin, seed, test_fraction: :func:`train_text_encoder`'s settings.
    """

    def __init__(
        self,
        data_dir: str | Path,
        text_encoder: TextEncoderFactory,
        image_encoder: ImageEncoderFactory,
        path: str | None = None,
        train_if_missing: bool = True,
        epochs: int = 12,
        batch_size: int = 64,
        lr: float = 2e-3,
        margin: float = 1.0,
        seed: int = 0,
        test_fraction: float = 0.2,
    ) -> None:
        super().__init__()
        self.data_dir = str(data_dir)
        self.text_encoder_factory = text_encoder
        self.image_encoder_factory = image_encoder
        self.path = path
        self.train_if_missing = bool(train_if_missing)
        self.settings: dict[str, Any] = {
            "epochs": check_positive_int("text_encoder", "epochs", epochs, form="key"),
            "batch_size": check_positive_int("text_encoder", "batch_size", batch_size, form="key"),
            "lr": check_positive_float("text_encoder", "lr", lr, form="key"),
            "margin": check_positive_float("text_encoder", "margin", margin, form="key"),
            "seed": _check_seed(seed),
            "test_fraction": _check_test_fraction(test_fraction),
        }
        self.networks = {
            "text_encoder": describe_factory(text_encoder),
            "image_encoder": describe_factory(image_encoder),
        }
        # out_dim without building weights: a probe on the meta device draws nothing, allocates nothing.
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            self.out_dim = int(text_encoder(vocab_size=2).out_dim)
        self.encoder: nn.Module | None = None
        self.retrieval: dict[str, float] = {}
        self.cache_path: Path | None = None
        # Follows .to() before the encoder exists, so prepare() puts it where the parent model is.
        self.register_buffer("_device_anchor", torch.empty(0), persistent=False)
        keep_out_of_checkpoints(self)

    def cache_key(self, datamodule: Any) -> str:
        """The 16-hex-digit key of this encoder for ``datamodule``'s data (class docstring)."""
        dataset = _captioned_dataset(datamodule, "text encoder features")
        spec = datamodule.spec
        what = {
            "dataset": spec.name,
            "image_size": spec.image_size,
            "channels": spec.channels,
            "vocabulary": datamodule.vocabulary.sha256,
            "captions": _captions_sha256(dataset),
            "settings": self.settings,
            "networks": self.networks,
        }
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]

    def prepare(self, datamodule: Any) -> None:
        """Bind the encoder of ``datamodule``'s captions: loaded, or trained once and cached."""
        spec = datamodule.spec
        key = self.cache_key(datamodule)
        vocabulary: Vocabulary = datamodule.vocabulary
        path = (
            Path(self.path)
            if self.path
            else default_text_encoder_path(self.data_dir, spec.name, spec.image_size, key)
        )
        if not path.is_file():
            if not self.train_if_missing:
                raise CheckpointError(
                    f"text encoder checkpoint {path} does not exist (train_if_missing=false); set it true to "
                    "train and cache the encoder there"
                )
            log.info("training the text encoder of %s once; it is cached at %s", spec.name, path)
            encoder, retrieval = train_text_encoder(
                datamodule, self.text_encoder_factory, self.image_encoder_factory, **self.settings
            )
            meta = {
                "dataset": spec.name,
                "image_size": spec.image_size,
                "settings": self.settings,
                "networks": self.networks,
                "retrieval": retrieval,
            }
            save_text_encoder(encoder, path, key=key, vocabulary=vocabulary, meta=meta)
        encoder = load_text_encoder(path, self.text_encoder_factory, key=key, vocabulary=vocabulary)
        if int(encoder.out_dim) != self.out_dim:
            raise CheckpointError(
                f"text encoder checkpoint {path} embeds to {encoder.out_dim}, not {self.out_dim}"
            )
        self.encoder = encoder.to(self._device_anchor.device)
        self.retrieval = dict(encoder.retrieval)
        self.cache_path = path

    def train(self, mode: bool = True) -> TextEncoderFeatures:
        # Frozen (class docstring): a parent's train() must not switch dropout or batch norm on.
        return super().train(False)

    def forward(self, tokens: Tensor) -> Tensor:
        """Sentence embeddings (B, out_dim) of word indices (B, L) of the data's vocabulary."""
        if self.encoder is None:
            raise RuntimeError(
                "TextEncoderFeatures.prepare(datamodule) must run before captions are embedded: it binds "
                "the encoder trained on the run's captions"
            )
        return self.encoder(tokens)
