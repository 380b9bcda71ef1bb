"""Captions for digits: attributes measured on the pixels, their tercile bins, caption templates,
reading a caption back, and the word-level vocabulary.

StackGAN (Zhang et al. 2017, "StackGAN: Text to Photo-realistic Image Synthesis with Stacked
Generative Adversarial Networks", arXiv:1612.03242) learns from images with several captions each
(CUB-200: ten per bird). No captioned data can be downloaded here, so the embedded task describes
scikit-learn's digits with words derived from the label and from three attributes measured on
the ink (:func:`measure_attributes`): stroke ``thickness``, ``slant`` and ``size``. Each attribute
is binned into three words at the terciles of the dataset's own values, per class
(:class:`AttributeBins`), stored so that generated images are binned with the *same* thresholds;
every image gets several phrasings (:func:`caption_variants`), and :func:`parse_caption` reads
back what a caption asks for, which is what a caption–image agreement metric checks on generated
images.

Everything here is a pure function of tensors and strings (no Lightning, no files).
"""

from __future__ import annotations

import hashlib
import operator
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import product
from typing import Any

import torch
from torch import Tensor

#: The measured attributes, in the order of every attribute tensor's last dimension.
ATTRIBUTES: tuple[str, ...] = ("thickness", "slant", "size")

#: The word of each bin (0, 1, 2) of each attribute: the bins are the dataset's terciles.
BIN_WORDS: dict[str, tuple[str, str, str]] = {
    "thickness": ("thin", "regular", "thick"),
    "slant": ("left-leaning", "upright", "right-leaning"),
    "size": ("small", "medium", "large"),
}

NUMBER_WORDS: tuple[str, ...] = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
)

#: The padding and unknown-word tokens, always the vocabulary's indices 0 and 1.
PAD, UNK = "<pad>", "<unk>"

# Ink below this mass (in pixels of full ink) is a blank image: its attributes are reported as 0.
_BLANK_MASS = 1e-3
# The central share of the ink whose vertical extent measures ``size`` (robust to stray pixels).
_SIZE_SHARE = 0.9


# --------------------------------------------------------------------------- attributes
def _ink(images: Tensor) -> Tensor:
    """Ink in [0, 1] per pixel, (B, H, W): bright pixels are ink (the digits are white on black)."""
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(
            f"measure_attributes expects float images (B, C, H, W) in [-1, 1], got {images.dtype} "
            f"of shape {tuple(images.shape)}"
        )
    # Channels are averaged: the grey digits repeated to RGB give the grey ink back.
    return ((images.detach().to(torch.float32).mean(dim=1) + 1.0) / 2.0).clamp(0.0, 1.0)


def measure_attributes(images: Tensor) -> dict[str, Tensor]:
    """Stroke thickness, slant and size of each image's ink, each a float tensor (B,).

    ``images``: (B, C, H, W) in [-1, 1] (C = 1, or grey repeated to 3), ink = bright pixels; the ink
    of a pixel is ``(x + 1) / 2``, so anti-aliased and blurred strokes count with their coverage and
    no binarisation threshold is involved. All three are invariant to translating the glyph (they
    use central moments and extents only) and to scaling its brightness (ratios of ink sums).

    - ``thickness``: ``2 * A / P / H``, ink area ``A`` (sum of ink) over ink perimeter ``P`` (the
      total variation of the ink, isotropic, on the pixel-corner grid of the zero-padded image: the
      length of a straight edge at 0 or 45 degrees, and, like ``A``, unchanged by blurring an
      edge), in units of the image height ``H``. For a stroke of width ``t`` and length ``L`` it is
      ``t * L / (L + t) / H``, the stroke width for long strokes: a mean stroke width that needs no
      skeleton, so it works on soft generated images. Shearing a stroke keeps its perpendicular
      width, and so does this measure.
    - ``slant``: the shear of the ink, ``cov(x, y) / var(y)`` from its second moments with ``x`` to
      the right and ``y`` **up** (row index down, negated), i.e. horizontal displacement per unit
      height: positive when the top of the glyph is to the right of its bottom (right-leaning),
      0 for an upright glyph, ``s`` for a glyph sheared by ``x -> x + s * y``. Invariant to
      translation and to scaling the glyph (a ratio of moments).
    - ``size``: the height of the band holding the central 90% of the ink (rows between its 5%
      and 95% mass quantiles, each row's ink spread evenly over it), divided by 0.9 so that a
      uniform bar gives its full height, over the image height: the ink's vertical extent,
      robust to a few stray pixels where a bounding box is not, and unchanged by shearing.

    Blank images (no ink) give 0 for all three.
    """
    ink = _ink(images)
    _, height, width = ink.shape
    mass = ink.sum(dim=(1, 2))
    blank = mass < _BLANK_MASS
    safe_mass = mass.clamp_min(_BLANK_MASS)
    # Pixel centres; y points up so that a positive slant leans right.
    xs = torch.arange(width, dtype=torch.float32, device=ink.device) + 0.5
    ys = -(torch.arange(height, dtype=torch.float32, device=ink.device) + 0.5)
    column_mass, row_mass = ink.sum(dim=1), ink.sum(dim=2)  # (B, W), (B, H)
    # Moments from the row and column sums and one product (no (B, H, W) temporaries: the measure
    # runs over whole datasets at 64 px), in float64 so that E[y^2] - E[y]^2 loses nothing.
    m, xs64, ys64 = safe_mass.double(), xs.double(), ys.double()
    mean_x = column_mass.double() @ xs64 / m
    mean_y = row_mass.double() @ ys64 / m
    var_y = row_mass.double() @ (ys64 * ys64) / m - mean_y * mean_y
    cov_xy = (ink.double() @ xs64) @ ys64 / m - mean_x * mean_y
    slant = (cov_xy / var_y.clamp_min(1e-6)).float()

    thickness = 2.0 * mass / _perimeter(ink).clamp_min(1e-6) / height
    size = _central_extent(row_mass, safe_mass) / height

    zero = torch.zeros_like(mass)
    return {
        "thickness": torch.where(blank, zero, thickness),
        "slant": torch.where(blank, zero, slant),
        "size": torch.where(blank, zero, size),
    }


def _perimeter(ink: Tensor) -> Tensor:
    """Total variation of the ink (B,): the length of its outline for a binary glyph.

    The gradient is taken at the pixel corners of the zero-padded image (a 2x2 difference, the
    mean of the two horizontal and of the two vertical differences), and its length summed: a
    straight edge of length L gives L along an axis and along a diagonal (where the sum of
    absolute differences would give sqrt(2) * L).
    """
    padded = torch.nn.functional.pad(ink, (1, 1, 1, 1))
    top_left, top_right = padded[:, :-1, :-1], padded[:, :-1, 1:]
    bottom_left, bottom_right = padded[:, 1:, :-1], padded[:, 1:, 1:]
    gx = (top_right - top_left + bottom_right - bottom_left) / 2
    gy = (bottom_left - top_left + bottom_right - top_right) / 2
    return torch.sqrt(gx * gx + gy * gy).sum(dim=(1, 2))


def _central_extent(row_mass: Tensor, mass: Tensor) -> Tensor:
    """Rows between the 5% and 95% quantiles of each image's ink, / 0.9 (B,), in pixels.

    Each row's ink is spread evenly over the row, so the cumulative ink is piecewise linear and
    its quantiles move continuously with the glyph (no jumps of a whole row).
    """
    share = (1.0 - _SIZE_SHARE) / 2
    cumulative = row_mass.cumsum(dim=1) / mass[:, None]  # (B, H), ends at 1
    targets = torch.tensor([share, 1.0 - share], device=row_mass.device).expand(len(row_mass), 2).contiguous()
    row = torch.searchsorted(cumulative, targets).clamp_max(row_mass.shape[1] - 1)  # (B, 2)
    in_row = row_mass.gather(1, row) / mass[:, None]
    before = cumulative.gather(1, row) - in_row
    position = row.to(torch.float32) + (targets - before) / in_row.clamp_min(1e-12)
    return (position[:, 1] - position[:, 0]) / _SIZE_SHARE


# --------------------------------------------------------------------------- bins
Thresholds = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class AttributeBins:
    """Two thresholds per attribute (and per class), cutting its values into bins 0, 1, 2
    (:data:`BIN_WORDS`); a value equal to a threshold goes to the bin above it.

    :meth:`fit` puts them at the terciles of a dataset's measured attributes, so each word
    describes a third of the real images; the same object then bins generated images (a
    generator's "thick" is the data's "thick"). :meth:`to_dict` / :meth:`from_dict` store it as
    plain numbers (a checkpoint loaded with ``weights_only=True`` can hold it).

    **Per class** when fitted with labels (``thresholds[name][c]`` for class ``c``): the moments
    measure a glyph's shape as well as its style. On the digits, one set of terciles for all
    classes calls 174 of the 178 sevens "right-leaning" (a seven's bar over a stem falling to the
    left shears the ink to the right however it is written), all 181 fours "small" and no seven
    "left-leaning": words that name the class again. Terciles within each class make every word
    a third of every digit, so a caption's attributes say something its label does not. A
    generated image is then binned with the thresholds of the class its caption asks for.
    Without labels, ``thresholds[name]`` holds one pair, used for every image.

    Args:
        thresholds: per attribute of :data:`ATTRIBUTES`, a tuple of ``(low, high)`` pairs: one
            (all images) or one per class.
    """

    thresholds: Mapping[str, Thresholds]

    def __post_init__(self) -> None:
        if set(self.thresholds) != set(ATTRIBUTES):
            raise ValueError(
                f"AttributeBins needs thresholds for {list(ATTRIBUTES)}, got {list(self.thresholds)}"
            )
        clean: dict[str, Thresholds] = {}
        for name in ATTRIBUTES:
            pairs = tuple((float(low), float(high)) for low, high in self.thresholds[name])
            # NaN compares unequal to itself, so `low <= high` also refuses it.
            if not pairs or any(not low <= high for low, high in pairs):
                raise ValueError(
                    f"AttributeBins: {name} needs (low, high) pairs with low <= high, "
                    f"got {self.thresholds[name]}"
                )
            clean[name] = pairs
        if len({len(pairs) for pairs in clean.values()}) != 1:
            raise ValueError("AttributeBins: every attribute needs as many threshold pairs (classes)")
        object.__setattr__(self, "thresholds", clean)

    @property
    def num_classes(self) -> int | None:
        """The classes with thresholds of their own, or None when one pair serves every image."""
        count = len(self.thresholds[ATTRIBUTES[0]])
        return None if count == 1 else count

    @classmethod
    def fit(
        cls, attributes: Mapping[str, Tensor], labels: Tensor | None = None, num_classes: int | None = None
    ) -> AttributeBins:
        """Thresholds at the 1/3 and 2/3 quantiles of each attribute's values, within each class
        of ``labels`` (0..``num_classes`` - 1; default: the largest label + 1) if given."""
        if labels is None:
            groups = [torch.ones(len(attributes[ATTRIBUTES[0]]), dtype=torch.bool)]
        else:
            labels = labels.detach().cpu().to(torch.int64).reshape(-1)
            count = int(labels.max()) + 1 if num_classes is None else int(num_classes)
            groups = [labels == c for c in range(count)]
        quantiles = torch.tensor([1 / 3, 2 / 3], dtype=torch.float64)
        thresholds = {}
        for name in ATTRIBUTES:
            values = attributes[name].detach().cpu().to(torch.float64).reshape(-1)
            pairs = []
            for c, members in enumerate(groups):
                if not bool(members.any()):
                    raise ValueError(f"AttributeBins.fit: no values of {name} for class {c}")
                low, high = torch.quantile(values[members], quantiles).tolist()
                pairs.append((low, high))
            thresholds[name] = tuple(pairs)
        return cls(thresholds)

    def assign(self, attributes: Mapping[str, Tensor], labels: Tensor | None = None) -> dict[str, Tensor]:
        """The bin (int64: 0, 1 or 2) of each value, per attribute; per-class thresholds need the
        class of each value (``labels``: the label its caption asks for, for a generated image)."""
        out = {}
        for name in ATTRIBUTES:
            values = attributes[name].detach().to(torch.float64)
            table = torch.tensor(self.thresholds[name], dtype=torch.float64, device=values.device)
            if self.num_classes is None:
                low, high = table[0, 0], table[0, 1]
            else:
                if labels is None:
                    raise ValueError(
                        "these AttributeBins are per class: assign(attributes, labels) needs labels"
                    )
                index = labels.to(device=values.device, dtype=torch.int64)
                if bool(((index < 0) | (index >= self.num_classes)).any()):
                    raise ValueError(f"labels must be in 0..{self.num_classes - 1}")
                low, high = table[index, 0], table[index, 1]
            out[name] = (values >= low).to(torch.int64) + (values >= high).to(torch.int64)
        return out

    def bin_images(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        """The bins of :func:`measure_attributes` of ``images``, (B, 3) int64 in :data:`ATTRIBUTES` order."""
        bins = self.assign(measure_attributes(images), labels)
        return torch.stack([bins[name] for name in ATTRIBUTES], dim=1)

    @staticmethod
    def words(bins: Mapping[str, int]) -> dict[str, str]:
        """The word of each attribute's bin: ``{"slant": 2}`` -> ``{"slant": "right-leaning"}``."""
        return {name: BIN_WORDS[name][int(b)] for name, b in bins.items()}

    def to_dict(self) -> dict[str, list[list[float]]]:
        return {name: [list(pair) for pair in self.thresholds[name]] for name in ATTRIBUTES}

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[Sequence[float]]]) -> AttributeBins:
        return cls({name: tuple((float(p[0]), float(p[1])) for p in pairs) for name, pairs in data.items()})


# --------------------------------------------------------------------------- captions
# Phrasings of each bin. Every phrase belongs to one attribute only, so a caption reads back
# unambiguously (parse_caption); "alt" and "phrase" are the synonyms the templates vary.
_PHRASES: dict[str, dict[str, tuple[str, str, str]]] = {
    "thickness": {"adj": BIN_WORDS["thickness"], "alt": ("light", "normal", "bold")},
    "slant": {
        "adj": BIN_WORDS["slant"],
        "phrase": ("leaning to the left", "standing upright", "leaning to the right"),
        "alt": ("tilted left", "straight", "tilted right"),
    },
    "size": {"adj": BIN_WORDS["size"], "alt": ("little", "medium-sized", "big")},
}

#: The caption templates: ``{word}`` is the number word, ``{digit}`` the numeral, and
#: ``{<attribute>[<form>]}`` a phrase of :data:`_PHRASES`. They differ in word order, in
#: synonyms and in which attributes they mention (all three, two, or none but the label).
TEMPLATES: tuple[str, ...] = (
    "a {thickness[adj]} {slant[adj]} {word}",
    "the digit {digit}, {size[adj]} in size, with {thickness[adj]} strokes",
    "a {size[adj]} {digit} {slant[phrase]}",
    "a {size[alt]} {word} drawn with {thickness[alt]} lines, {slant[alt]}",
    "handwritten {word}: {thickness[adj]}, {size[adj]} and {slant[adj]}",
    "the number {word}",
    "a {slant[adj]} {word} with {thickness[alt]} strokes",
    "a {size[adj]} {thickness[adj]} {digit}",
)
NUM_TEMPLATES = len(TEMPLATES)

# "a" before a vowel sound is "an" ("an upright eight"); "one" starts with a consonant sound.
_ARTICLE = re.compile(r"\ba (?=(?:[aeiu]|o(?!ne\b)))")


def _check_description(label: Any, attributes: Mapping[str, Any]) -> tuple[int, dict[str, int]]:
    """``(label, bins)`` as plain ints (numpy or 0-d tensor integers accepted), or ValueError."""

    def as_int(value: Any) -> int | None:
        if isinstance(value, bool):
            return None
        try:
            return operator.index(value)
        except TypeError:
            return None

    digit = as_int(label)
    if digit is None or not 0 <= digit < len(NUMBER_WORDS):
        raise ValueError(f"caption label must be a digit 0..9, got {label!r}")
    if set(attributes) != set(ATTRIBUTES):
        raise ValueError(f"caption attributes must be bins of {list(ATTRIBUTES)}, got {dict(attributes)}")
    bins = {}
    for name in ATTRIBUTES:
        value = as_int(attributes[name])
        if value is None or not 0 <= value < 3:
            raise ValueError(f"caption attribute {name} must be a bin 0, 1 or 2, got {attributes[name]!r}")
        bins[name] = value
    return digit, bins


def caption_variants(label: int, attributes: Mapping[str, int]) -> list[str]:
    """One caption per template (:data:`TEMPLATES`, in order) for a digit ``label`` whose
    attributes fall in ``attributes`` bins (``{"thickness": 2, "slant": 1, "size": 0}``).

    Deterministic: the same arguments give the same list. E.g. label 7, thick, upright, small:
    ``"a thick upright seven"``, ``"the digit 7, small in size, with thick strokes"``,
    ``"a small 7 standing upright"``, ``"a little seven drawn with bold lines, straight"``, ...
    """
    digit, bins = _check_description(label, attributes)
    fields: dict[str, Any] = {"word": NUMBER_WORDS[digit], "digit": str(digit)}
    for name in ATTRIBUTES:
        fields[name] = {form: words[bins[name]] for form, words in _PHRASES[name].items()}
    return [_ARTICLE.sub("an ", template.format(**fields)) for template in TEMPLATES]


_TOKEN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def tokenize(text: str) -> list[str]:
    """Lower-cased words, punctuation stripped (hyphenated words such as ``left-leaning`` kept whole)."""
    return _TOKEN.findall(str(text).lower())


@cache
def _phrase_table() -> tuple[tuple[tuple[str, ...], str, int], ...]:
    """(phrase tokens, attribute, bin) for every phrasing, longest phrase first."""
    entries = {
        (tuple(tokenize(phrase)), name, b)
        for name, forms in _PHRASES.items()
        for words in forms.values()
        for b, phrase in enumerate(words)
    }
    return tuple(sorted(entries, key=lambda e: (-len(e[0]), e[0])))


def parse_caption(text: str) -> tuple[int | None, dict[str, int | None]]:
    """What a caption asks for: ``(label, {attribute: bin})``, None where it says nothing.

    The label is a numeral (``7``) or a number word (``seven``); an attribute is any phrasing of
    one of its bins in the templates (``thick``, ``bold``; ``leaning to the right``, ``tilted
    right``). A caption naming two different values of one thing (``a thin bold 7``) asks for
    neither: that entry is None. Inverts :func:`caption_variants` for every template.
    """
    tokens = tokenize(text)
    found: dict[str, set[int]] = {name: set() for name in ATTRIBUTES}
    labels: set[int] = set()
    table = _phrase_table()
    position = 0
    while position < len(tokens):
        for phrase, name, b in table:
            if tuple(tokens[position : position + len(phrase)]) == phrase:
                found[name].add(b)
                position += len(phrase)
                break
        else:
            token = tokens[position]
            if token.isdigit() and len(token) == 1:
                labels.add(int(token))
            elif token in NUMBER_WORDS:
                labels.add(NUMBER_WORDS.index(token))
            position += 1
    label = labels.pop() if len(labels) == 1 else None
    return label, {name: (values.pop() if len(values) == 1 else None) for name, values in found.items()}


def caption_requirements(text: str) -> tuple[int, list[int]]:
    """:func:`parse_caption` as integers: ``(label, [bin per attribute])``, -1 where unsaid."""
    label, bins = parse_caption(text)
    return (-1 if label is None else label), [
        (-1 if bins[name] is None else bins[name]) for name in ATTRIBUTES
    ]


def captions_hold(
    caption_labels: Tensor, caption_bins: Tensor, image_labels: Tensor, image_bins: Tensor
) -> Tensor:
    """Whether each caption is true of each image: (B captions, N images) bool.

    A caption holds for an image when the label it names (-1: none) is the image's and every
    attribute bin it names (-1: none) is the image's. ``caption_bins`` (B, A) and ``image_bins``
    (N, A) with A attributes (A = 0: the label alone decides, as for class-labelled captions).
    """
    holds = (caption_labels[:, None] < 0) | (caption_labels[:, None] == image_labels[None, :])
    if caption_bins.shape[-1]:
        said = caption_bins[:, None, :]
        holds = holds & ((said < 0) | (said == image_bins[None, :, :])).all(dim=-1)
    return holds


# --------------------------------------------------------------------------- vocabulary
class Vocabulary:
    """Words to indices: ``<pad>`` is 0, ``<unk>`` 1, then the words in sorted order.

    The order depends on the set of words only, so a text encoder's checkpoint stays valid for
    the same words however they were collected; :attr:`sha256` names the vocabulary in cache keys.
    """

    pad_index = 0
    unk_index = 1

    def __init__(self, words: Iterable[str]) -> None:
        self.words: tuple[str, ...] = (PAD, UNK, *sorted(set(words) - {PAD, UNK}))
        self._index = {word: i for i, word in enumerate(self.words)}

    @classmethod
    def from_templates(cls) -> Vocabulary:
        """Every word the caption templates can produce (:func:`caption_variants`)."""
        return cls(word for caption in _all_template_captions() for word in tokenize(caption))

    @classmethod
    def from_texts(cls, texts: Iterable[str], min_count: int = 1) -> Vocabulary:
        """The words of ``texts`` (:func:`tokenize`) seen at least ``min_count`` times."""
        counts = Counter(word for text in texts for word in tokenize(text))
        return cls(word for word, n in counts.items() if n >= min_count)

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.words == other.words

    def __hash__(self) -> int:
        return hash(self.words)

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} words, sha256={self.sha256[:12]})"

    @property
    def sha256(self) -> str:
        """SHA-256 of the words in index order."""
        return hashlib.sha256("\n".join(self.words).encode()).hexdigest()

    def index(self, word: str) -> int:
        return self._index.get(word, self.unk_index)

    def encode(self, text: str, max_len: int) -> Tensor:
        """The word indices of ``text`` (int64, (max_len,)): cut at ``max_len``, padded with 0."""
        return self.encode_all([text], max_len)[0]

    def encode_all(self, texts: Sequence[str], max_len: int) -> Tensor:
        """:meth:`encode` of each text, (N, max_len)."""
        if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
            raise ValueError(f"max_len must be a positive integer, got {max_len!r}")
        rows = []
        for text in texts:
            ids = [self.index(word) for word in tokenize(text)[:max_len]]
            rows.append(ids + [self.pad_index] * (max_len - len(ids)))
        # One tensor from plain lists: a tensor per caption costs more than tokenising it.
        return torch.tensor(rows, dtype=torch.int64).view(len(rows), max_len)

    def decode(self, tokens: Tensor | Sequence[int]) -> str:
        """The words of ``tokens`` joined by spaces, padding left out."""
        ids = tokens.tolist() if isinstance(tokens, Tensor) else list(tokens)
        return " ".join(self.words[i] for i in ids if i != self.pad_index)


@cache
def _all_template_captions() -> tuple[str, ...]:
    return tuple(
        caption
        for label in range(len(NUMBER_WORDS))
        for bins in product(range(3), repeat=len(ATTRIBUTES))
        for caption in caption_variants(label, dict(zip(ATTRIBUTES, bins, strict=True)))
    )


@cache
def template_max_length() -> int:
    """The most words any template caption has: the token length that holds every caption."""
    return max(len(tokenize(caption)) for caption in _all_template_captions())
