"""The captions of the digits: attributes measured on hand-made images, their bins, the caption
templates, reading a caption back, and the vocabulary."""

from __future__ import annotations

import io
import math
from itertools import product

import pytest
import torch
import torch.nn.functional as F

from gan_research.data.captions import (
    ATTRIBUTES,
    BIN_WORDS,
    NUM_TEMPLATES,
    PAD,
    TEMPLATES,
    UNK,
    AttributeBins,
    Vocabulary,
    caption_requirements,
    caption_variants,
    captions_hold,
    measure_attributes,
    parse_caption,
    template_max_length,
    tokenize,
)

SIZE = 64
SUPERSAMPLE = 4


@pytest.fixture(autouse=True)
def _one_thread():
    # Two threads on a shared two-core machine make these small tensor ops slower, not faster.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def render(inside, size: int = SIZE, ink: float = 1.0) -> torch.Tensor:
    """A (1, 1, size, size) image in [-1, 1] whose pixels are covered where ``inside(x, r)`` holds
    (x to the right, r the row downwards, both in pixels), anti-aliased by 4x4 supersampling."""
    fine = (torch.arange(size * SUPERSAMPLE, dtype=torch.float64) + 0.5) / SUPERSAMPLE
    r, x = torch.meshgrid(fine, fine, indexing="ij")
    covered = inside(x, r).to(torch.float32)[None, None]
    coverage = F.avg_pool2d(covered, SUPERSAMPLE)
    return (coverage * ink * 2 - 1).float()


def bar(left: float, top: float, width: float, height: float, shear: float = 0.0):
    """A parallelogram: a ``width`` x ``height`` bar whose rows shift right by ``shear`` per pixel up
    (x -> x + shear * y with y up, about the bar's middle row): right-leaning for shear > 0."""
    middle = top + height / 2

    def inside(x, r):
        start = left + shear * (middle - r)
        return (r >= top) & (r < top + height) & (x >= start) & (x < start + width)

    return inside


def measure(image: torch.Tensor) -> dict[str, float]:
    return {name: float(value[0]) for name, value in measure_attributes(image).items()}


# --------------------------------------------------------------------------- attributes
def test_a_vertical_bar_is_upright_and_its_size_and_thickness_are_its_height_and_width() -> None:
    got = measure(render(bar(left=20, top=12, width=6, height=40)))
    assert got["slant"] == pytest.approx(0.0, abs=1e-6)
    assert got["size"] == pytest.approx(40 / SIZE, rel=1e-3)
    # A stroke of width t and length L: 2 * area / perimeter = t * L / (L + t) (up to 2%: the
    # corner-grid gradient cuts each corner of the outline a little short).
    assert got["thickness"] == pytest.approx(6 * 40 / 46 / SIZE, rel=0.02)


@pytest.mark.parametrize("shear", [-0.4, -0.15, 0.2, 0.35])
def test_a_sheared_bar_has_the_shear_it_was_made_with(shear: float) -> None:
    upright = measure(render(bar(left=26, top=10, width=6, height=44)))
    sheared = measure(render(bar(left=26, top=10, width=6, height=44, shear=shear)))
    assert sheared["slant"] == pytest.approx(shear, abs=0.01)
    # Shearing moves rows sideways only: the vertical extent is the same.
    assert sheared["size"] == pytest.approx(upright["size"], abs=1e-3)
    # The stroke keeps its horizontal width, so its perpendicular width is width / sqrt(1 + s^2).
    assert sheared["thickness"] == pytest.approx(upright["thickness"] / math.sqrt(1 + shear**2), rel=0.03)


def test_right_leaning_is_positive() -> None:
    # The top is to the right of the bottom: the rows nearer the top (smaller r) start further right.
    right = render(lambda x, r: (r >= 10) & (r < 50) & ((x - (40 - 0.3 * r)).abs() < 3))
    assert measure(right)["slant"] > 0.25


def test_attributes_do_not_move_with_the_glyph_or_its_brightness() -> None:
    shape = bar(left=14, top=8, width=5, height=30, shear=0.25)
    moved = bar(left=14 + 9, top=8 + 13, width=5, height=30, shear=0.25)
    here, there = measure(render(shape)), measure(render(moved))
    dimmer = measure(render(shape, ink=0.5))
    for name in ATTRIBUTES:
        assert there[name] == pytest.approx(here[name], abs=1e-4), name
        assert dimmer[name] == pytest.approx(here[name], abs=1e-4), name


def test_a_thicker_stroke_is_thicker_and_a_diagonal_stroke_is_measured_as_thick_as_a_straight_one() -> None:
    thin = measure(render(bar(left=20, top=10, width=3, height=40)))
    thick = measure(render(bar(left=20, top=10, width=8, height=40)))
    assert thick["thickness"] > 2 * thin["thickness"]
    # A 45-degree stroke of width 6 and length 40: the isotropic perimeter keeps t * L / (L + t).
    centre = SIZE / 2

    def diagonal(x, r):
        across = ((x - centre) - (r - centre)) / math.sqrt(2)
        along = ((x - centre) + (r - centre)) / math.sqrt(2)
        return (across.abs() < 3) & (along.abs() < 20)

    assert measure(render(diagonal))["thickness"] == pytest.approx(6 * 40 / 46 / SIZE, rel=0.03)


def test_a_smaller_glyph_has_a_smaller_size() -> None:
    def ring(radius: float, width: float):
        return lambda x, r: (((x - 32) ** 2 + (r - 32) ** 2).sqrt() - radius).abs() < width / 2

    big, small = measure(render(ring(24, 5))), measure(render(ring(12, 5)))
    assert small["size"] < 0.6 * big["size"]
    # The central 90% of a ring's ink spans most of its outer diameter.
    assert 0.7 * 53 / SIZE < big["size"] < 53 / SIZE * 1.05


def test_a_few_stray_pixels_barely_change_the_size() -> None:
    clean = render(bar(left=20, top=16, width=6, height=32))
    speck = clean.clone()
    speck[0, 0, 1, 1] = speck[0, 0, 62, 60] = 1.0  # two pixels in the far corners
    assert measure(speck)["size"] == pytest.approx(measure(clean)["size"], rel=0.02)


def test_blank_images_measure_zero_and_batches_are_measured_per_image() -> None:
    images = torch.cat([-torch.ones(1, 1, SIZE, SIZE), render(bar(20, 10, 6, 40, shear=0.2))])
    got = measure_attributes(images)
    assert all(got[name].shape == (2,) and got[name][0] == 0 for name in ATTRIBUTES)
    assert got["slant"][1] == pytest.approx(0.2, abs=0.01)
    rgb = measure_attributes(images.expand(-1, 3, -1, -1))
    assert all(torch.allclose(rgb[name], got[name]) for name in ATTRIBUTES)
    with pytest.raises(ValueError, match="float images"):
        measure_attributes(torch.zeros(2, SIZE, SIZE))


# --------------------------------------------------------------------------- bins
def _values(*columns: list[float]) -> dict[str, torch.Tensor]:
    return {name: torch.tensor(column) for name, column in zip(ATTRIBUTES, columns, strict=True)}


def test_bins_cut_at_the_terciles_and_keep_their_thresholds() -> None:
    values = _values(list(range(9)), list(range(-4, 5)), [0.1 * i for i in range(9)])
    bins = AttributeBins.fit(values)
    assert bins.num_classes is None
    assert bins.thresholds["thickness"] == ((pytest.approx(8 / 3), pytest.approx(16 / 3)),)
    assigned = bins.assign(values)
    for name in ATTRIBUTES:
        assert assigned[name].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # Generated images are binned with the data's thresholds, not their own.
    assert bins.assign(_values([100.0], [-100.0], [0.4]))["thickness"].tolist() == [2]
    assert bins.assign(_values([100.0], [-100.0], [0.4]))["slant"].tolist() == [0]
    # A value on a threshold goes to the bin above it.
    exact = AttributeBins({name: ((1.0, 2.0),) for name in ATTRIBUTES})
    assert exact.assign(_values([1.0, 2.0], [0.99, 2.01], [0.0, 3.0]))["thickness"].tolist() == [1, 2]


def test_per_class_bins_give_each_class_its_thirds() -> None:
    # Class 1's values are all larger than class 0's: one set of terciles would bin them apart.
    labels = torch.tensor([0] * 6 + [1] * 6)
    column = [float(i) for i in range(6)] + [float(10 + i) for i in range(6)]
    values = _values(column, column, column)
    bins = AttributeBins.fit(values, labels, num_classes=2)
    assert bins.num_classes == 2
    assigned = bins.assign(values, labels)["size"]
    assert assigned.tolist() == [0, 0, 1, 1, 2, 2] * 2
    # The class asked for picks the thresholds: 5 is "large" for class 0 and "small" for class 1.
    probe = _values([5.0, 5.0], [5.0, 5.0], [5.0, 5.0])
    assert bins.assign(probe, torch.tensor([0, 1]))["size"].tolist() == [2, 0]
    with pytest.raises(ValueError, match="needs labels"):
        bins.assign(probe)
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.1"):
        bins.assign(probe, torch.tensor([0, 2]))


def test_bins_round_trip_through_a_weights_only_checkpoint() -> None:
    bins = AttributeBins.fit(
        _values([1.0, 2, 3, 4], [4.0, 3, 2, 1], [0.5, 0.6, 0.7, 0.8]), torch.tensor([0, 0, 1, 1])
    )
    buffer = io.BytesIO()
    torch.save({"bins": bins.to_dict()}, buffer)
    buffer.seek(0)
    loaded = AttributeBins.from_dict(torch.load(buffer, weights_only=True)["bins"])
    assert loaded == bins
    images = torch.cat([render(bar(20, 10, 4, 40)), render(bar(20, 10, 8, 30, shear=0.3))])
    assert loaded.bin_images(images, torch.tensor([0, 1])).shape == (2, 3)


def test_bad_thresholds_are_refused() -> None:
    with pytest.raises(ValueError, match="low <= high"):
        AttributeBins({name: ((2.0, 1.0),) for name in ATTRIBUTES})
    with pytest.raises(ValueError, match="thresholds for"):
        AttributeBins({"size": ((0.0, 1.0),)})
    with pytest.raises(ValueError, match="low <= high"):
        AttributeBins({name: ((float("nan"), 1.0),) for name in ATTRIBUTES})


# --------------------------------------------------------------------------- templates
def test_caption_variants_phrase_one_description_many_ways() -> None:
    captions = caption_variants(7, {"thickness": 2, "slant": 1, "size": 0})
    assert NUM_TEMPLATES >= 5 and len(captions) == NUM_TEMPLATES == len(set(captions))
    assert captions == caption_variants(7, {"size": 0, "slant": 1, "thickness": 2})  # deterministic
    assert captions[0] == "a thick upright seven"
    assert "a small 7 standing upright" in captions
    assert "an upright seven with bold strokes" in captions  # the article follows the next word
    assert "the number seven" in captions  # one template names the digit only
    assert caption_variants(8, {"thickness": 0, "slant": 2, "size": 1})[0] == "a thin right-leaning eight"
    assert caption_variants(1, {"thickness": 1, "slant": 0, "size": 2})[5] == "the number one"


@pytest.mark.parametrize(
    "label, bins",
    [(10, {"thickness": 0, "slant": 0, "size": 0}), (True, {"thickness": 0, "slant": 0, "size": 0}),
     (3, {"thickness": 3, "slant": 0, "size": 0}), (3, {"thickness": 0, "slant": 0})],
)  # fmt: skip
def test_caption_variants_refuse_what_is_not_a_description(label, bins) -> None:
    with pytest.raises(ValueError, match="caption"):
        caption_variants(label, bins)


def test_parse_caption_inverts_every_template() -> None:
    for label, values in product(range(10), product(range(3), repeat=3)):
        bins = dict(zip(ATTRIBUTES, values, strict=True))
        for template, caption in zip(TEMPLATES, caption_variants(label, bins), strict=True):
            parsed_label, parsed = parse_caption(caption)
            assert parsed_label == label, caption
            for name in ATTRIBUTES:
                expected = bins[name] if "{" + name + "[" in template else None
                assert parsed[name] == expected, (caption, name)


def test_parse_caption_of_free_text() -> None:
    assert parse_caption("A BOLD, big 3 -- tilted right!") == (3, {"thickness": 2, "slant": 2, "size": 2})
    assert parse_caption("a bird with red wings") == (None, {name: None for name in ATTRIBUTES})
    # Two values of one thing ask for neither.
    assert parse_caption("a thin bold 4 or 5") == (None, {"thickness": None, "slant": None, "size": None})
    assert caption_requirements("the number nine") == (9, [-1, -1, -1])


def test_captions_hold_when_every_thing_they_name_is_the_image_s() -> None:
    caption_labels = torch.tensor([7, 7, 3, -1])
    caption_bins = torch.tensor([[2, -1, -1], [-1, -1, -1], [0, 0, 0], [-1, 1, -1]])
    image_labels = torch.tensor([7, 7, 3])
    image_bins = torch.tensor([[2, 1, 0], [0, 1, 0], [0, 0, 0]])
    holds = captions_hold(caption_labels, caption_bins, image_labels, image_bins)
    assert holds.tolist() == [
        [True, False, False],  # a thick seven
        [True, True, False],  # any seven
        [False, False, True],
        [True, True, False],  # anything upright
    ]
    # Without attributes the class alone decides (class-labelled captions, as on CUB).
    none = torch.zeros(4, 0, dtype=torch.int64)
    assert captions_hold(caption_labels, none, image_labels, none[:3]).tolist()[2] == [False, False, True]


# --------------------------------------------------------------------------- vocabulary
def test_the_template_vocabulary_holds_every_caption_word_in_a_fixed_order() -> None:
    vocabulary = Vocabulary.from_templates()
    assert vocabulary.words[:2] == (PAD, UNK) and vocabulary.pad_index == 0 and vocabulary.unk_index == 1
    assert list(vocabulary.words[2:]) == sorted(vocabulary.words[2:])
    assert Vocabulary.from_templates() == vocabulary and Vocabulary(reversed(vocabulary.words)) == vocabulary
    assert Vocabulary.from_templates().sha256 == vocabulary.sha256
    words = {word for name in ATTRIBUTES for word in BIN_WORDS[name]} | {"seven", "7", "digit", "strokes"}
    assert words <= set(vocabulary.words)
    longest = 0
    for label, values in product(range(10), product(range(3), repeat=3)):
        for caption in caption_variants(label, dict(zip(ATTRIBUTES, values, strict=True))):
            tokens = vocabulary.encode(caption, template_max_length())
            assert vocabulary.unk_index not in tokens.tolist(), caption
            assert vocabulary.decode(tokens) == " ".join(tokenize(caption))
            longest = max(longest, int((tokens != 0).sum()))
    assert longest == template_max_length()


def test_encode_pads_cuts_and_marks_unknown_words() -> None:
    vocabulary = Vocabulary.from_texts(["A red bird.", "a Red, red wing", "blue"], min_count=2)
    assert vocabulary.words == (PAD, UNK, "a", "red")
    tokens = vocabulary.encode("A red WING", 5)
    assert tokens.dtype == torch.int64 and tokens.tolist() == [2, 3, 1, 0, 0]
    assert vocabulary.encode("a red red red", 2).tolist() == [2, 3]
    assert vocabulary.encode_all(["red", "a"], 3).tolist() == [[3, 0, 0], [2, 0, 0]]
    assert vocabulary.decode(tokens) == "a red <unk>"
    assert tokenize("Left-leaning, it's 7!") == ["left-leaning", "it", "s", "7"]
    with pytest.raises(ValueError, match="max_len"):
        vocabulary.encode("a", 0)
