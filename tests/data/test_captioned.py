"""Captioned datamodules: the digits with generated captions and the CUB / Oxford-102 folder
layout: declarations, batches, caption draws, mismatched captions, fixed validation, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gan_research.data.captioned import (
    CaptionedDataset,
    CaptionedDigitsDataModule,
    CaptionedFolderDataModule,
    interleaved_order,
)
from gan_research.data.captions import ATTRIBUTES, NUM_TEMPLATES, caption_variants, parse_caption, tokenize
from gan_research.data.digits import DigitsDataModule
from gan_research.errors import ConfigError, DataError
from gan_research.utils.data_spec import DataKind


@pytest.fixture(autouse=True)
def _one_thread():
    # Two threads on a shared two-core machine make these small tensor ops slower, not faster.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits() -> CaptionedDigitsDataModule:
    dm = CaptionedDigitsDataModule(image_size=16, batch_size=32)
    dm.setup("fit")
    return dm


def words(dm, tokens: torch.Tensor) -> str:
    return dm.vocabulary.decode(tokens)


def as_read(caption: str) -> str:
    """A caption as its tokens decode: lower-case words, punctuation stripped."""
    return " ".join(tokenize(caption))


# --------------------------------------------------------------------------- digits
def test_declaration_is_known_before_the_data_is_read() -> None:
    dm = CaptionedDigitsDataModule(image_size=16, channels=3)
    spec = dm.spec
    assert CaptionedDigitsDataModule.kinds == (DataKind.CAPTIONED,) and spec.kind is DataKind.CAPTIONED
    assert (spec.num_classes, spec.channels, spec.image_size, spec.sample_shape) == (10, 3, 16, (3, 16, 16))
    # A captioned digit is a digit: the digits classifier scores it, trained on the plain digits.
    assert spec.domain is not None and spec.domain.name == "digits"
    assert isinstance(spec.domain.labelled_data(16), DigitsDataModule)
    assert dm.max_caption_length >= 9 and len(dm.vocabulary) > 40
    assert dm._train_set is None  # nothing above opened the data


def test_training_batches_are_image_label_caption_mismatched(digits) -> None:
    x, y, tokens, mismatched = next(iter(digits.train_dataloader()))
    length = digits.max_caption_length
    assert x.shape == (32, 1, 16, 16) and x.dtype == torch.float32 and -1 <= x.min() <= x.max() <= 1
    assert y.dtype == tokens.dtype == mismatched.dtype == torch.int64
    assert tokens.shape == mismatched.shape == (32, length)
    for label, caption, wrong in zip(y.tolist(), tokens, mismatched, strict=True):
        assert parse_caption(words(digits, caption))[0] == label
        # The mismatched caption names another digit: it never describes the image.
        assert parse_caption(words(digits, wrong))[0] not in (label, None)


def test_each_sample_draws_one_of_its_captions_per_epoch_seeded(digits) -> None:
    dataset = digits.train_set
    image = 123
    own = {as_read(c) for c in digits.captions(image)}
    draws = [words(digits, dataset[(image, key)][2]) for key in range(60)]
    assert set(draws) == own  # every one of its 5 captions comes up, and only those
    again = [words(digits, dataset[(image, key)][2]) for key in range(60)]
    assert draws == again  # a function of (seed, draw number)
    other_seed = CaptionedDataset(
        dataset.x, dataset.y, dataset.tokens, dataset.counts, dataset.image_bins, dataset.caption_bins,
        dataset.caption_labels, seed=1,
    )  # fmt: skip
    assert [words(digits, other_seed[(image, key)][2]) for key in range(60)] != draws


def test_mismatched_captions_come_from_other_classes_and_differ_from_the_image_s_own(digits) -> None:
    dataset = digits.train_set
    items = [(i, key) for key, i in enumerate(range(0, len(dataset), 3))]
    _, y, tokens, wrong = dataset.__getitems__(items)
    for (i, _), label, caption, other in zip(items, y.tolist(), tokens, wrong, strict=True):
        assert as_read(words(digits, caption)) in {as_read(c) for c in digits.captions(i)}
        assert words(digits, other) not in {as_read(c) for c in digits.captions(i)}
        assert parse_caption(words(digits, other))[0] != label
    # Drawn from all the other classes, not from one neighbour.
    assert len({parse_caption(words(digits, other))[0] for other in wrong}) == 10


def test_same_seed_same_batches_and_a_resumed_loader_continues_where_it_stopped() -> None:
    first = CaptionedDigitsDataModule(image_size=8, batch_size=16)
    batches = []
    for k, batch in enumerate(first.train_dataloader()):
        batches.append(batch)
        if k == 3:
            break
    resumed = CaptionedDigitsDataModule(image_size=8, batch_size=16)
    resumed.load_state_dict({"batches_consumed": 3})
    for got, expected in zip(next(iter(resumed.train_dataloader())), batches[3], strict=True):
        assert torch.equal(got, expected)
    again = next(iter(CaptionedDigitsDataModule(image_size=8, batch_size=16).train_dataloader()))
    assert all(torch.equal(a, b) for a, b in zip(again, batches[0], strict=True))


def test_captions_cycle_through_the_templates_and_bins_are_thirds_of_every_class(digits) -> None:
    dataset = digits.train_set
    for i in (0, 1, 7, 1796):
        bins = dict(zip(ATTRIBUTES, dataset.image_bins[i].tolist(), strict=True))
        variants = caption_variants(int(dataset.y[i]), bins)
        assert digits.captions(i) == [variants[(i + j) % NUM_TEMPLATES] for j in range(5)]
    # Per-class terciles: each word describes a third of each digit.
    for c in range(10):
        members = dataset.image_bins[dataset.y == c]
        for a in range(len(ATTRIBUTES)):
            counts = torch.bincount(members[:, a], minlength=3)
            assert int(counts.max() - counts.min()) <= 2, (c, ATTRIBUTES[a], counts)
    assert digits.attribute_bins.num_classes == 10
    measured = digits.attributes
    assert torch.equal(
        digits.attribute_bins.bin_images(dataset.x[:50], dataset.y[:50]), dataset.image_bins[:50]
    )
    assert set(measured) == set(ATTRIBUTES) and measured["size"].shape == (1797,)


def test_validation_is_fixed_and_cycles_through_the_classes(digits) -> None:
    x, y, tokens = digits.first_validation_batch(25)
    assert y.tolist() == list(range(10)) * 2 + list(range(5))
    assert x.shape == (25, 1, 16, 16) and tokens.shape == (25, digits.max_caption_length)
    batches = list(digits.val_dataloader())
    assert sum(len(b[0]) for b in batches) == 1797 and all(len(b) == 4 for b in batches)
    assert torch.equal(batches[0][2][:25], tokens) and torch.equal(batches[0][1][:25], y)
    again = next(iter(digits.val_dataloader()))
    assert all(torch.equal(a, b) for a, b in zip(again, batches[0], strict=True))
    # Every image once, each with its first caption.
    order = digits.val_set.order
    assert sorted(order.tolist()) == list(range(1797))
    assert words(digits, tokens[3]) == as_read(digits.captions(int(order[3]))[0])


def test_interleaved_order_keeps_each_class_in_its_order() -> None:
    labels = torch.tensor([2, 0, 0, 1, 2, 0])
    assert interleaved_order(labels).tolist() == [1, 3, 0, 2, 4, 5]


def test_rgb_digits_repeat_the_grey_channel() -> None:
    dm = CaptionedDigitsDataModule(image_size=8, channels=3, batch_size=8)
    x = next(iter(dm.train_dataloader()))[0]
    assert x.shape == (8, 3, 8, 8) and torch.equal(x[:, 0], x[:, 2])


@pytest.mark.parametrize("bad", [0, NUM_TEMPLATES + 1, True])
def test_captions_per_image_is_checked(bad) -> None:
    with pytest.raises(ConfigError, match="captions_per_image"):
        CaptionedDigitsDataModule(captions_per_image=bad)


# --------------------------------------------------------------------------- folders
BIRDS = {
    "001.Black_footed_Albatross": {
        "Black_Footed_Albatross_0001": (
            "This bird is dark BROWN, with a long hooked bill.\n\nA large brown seabird.\n"
        ),
        "Black_Footed_Albatross_0002": "A brown bird with long wings!\n",
    },
    "002.Laysan_Albatross": {
        "Laysan_Albatross_0001": "a white bird, grey wings\nwhite head; yellow beak\nthe bird soars\n",
        "Laysan_Albatross_0002": "White bird with a yellow bill.\n",
        "Laysan_Albatross_0003": "this white-bodied bird glides\n",
    },
}


def write_birds(root: Path, birds=BIRDS) -> None:
    rng = np.random.default_rng(0)
    for class_dir, images in birds.items():
        (root / "images" / class_dir).mkdir(parents=True, exist_ok=True)
        (root / "text" / class_dir).mkdir(parents=True, exist_ok=True)
        for name, captions in images.items():
            pixels = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "images" / class_dir / f"{name}.jpg", quality=90)
            (root / "text" / class_dir / f"{name}.txt").write_text(captions)


def test_folder_layout_loads_images_classes_and_captions(tmp_path: Path) -> None:
    write_birds(tmp_path)
    (tmp_path / "text" / "002.Laysan_Albatross" / "extra_caption_only.txt").write_text("ignored\n")
    dm = CaptionedFolderDataModule(root=tmp_path, image_size=16, batch_size=4)
    assert dm.spec.kind is DataKind.CAPTIONED and dm.spec.sample_shape == (3, 16, 16)
    assert dm.num_classes == 2 and dm.classes == sorted(BIRDS) and dm.spec.domain is None
    vocabulary = dm.vocabulary
    assert {"brown", "white-bodied", "bill", "this"} <= set(vocabulary.words)
    assert "BROWN" not in vocabulary and "bill." not in vocabulary and "ignored" not in vocabulary
    assert dm.max_caption_length == len(tokenize("This bird is dark BROWN, with a long hooked bill."))
    dm.setup("fit")
    assert dm.train_set.y.tolist() == [0, 0, 1, 1, 1]
    assert dm.captions(0) == ["This bird is dark BROWN, with a long hooked bill.", "A large brown seabird."]
    assert dm.captions(2) == ["a white bird, grey wings", "white head; yellow beak", "the bird soars"]
    x, y, tokens, wrong = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32 and -1 <= x.min() <= x.max() <= 1
    assert tokens.shape == wrong.shape == (4, dm.max_caption_length)
    by_class = [
        {as_read(c) for i in range(5) if dm.train_set.y[i] == k for c in dm.captions(i)} for k in (0, 1)
    ]
    for label, caption, other in zip(y.tolist(), tokens, wrong, strict=True):
        assert words(dm, caption) in by_class[label]
        assert words(dm, other) in by_class[1 - label]  # a caption of the other class
    first = dm.first_validation_batch(3)[1]
    assert first.tolist() == [0, 1, 0]


def test_folder_options_cut_captions_and_count_words(tmp_path: Path) -> None:
    write_birds(tmp_path)
    dm = CaptionedFolderDataModule(
        root=tmp_path, image_size=8, channels=1, batch_size=2, captions_per_image=1, max_caption_length=3,
        min_word_count=3,
    )  # fmt: skip
    assert dm.captions(0) == ["This bird is dark BROWN, with a long hooked bill."]
    assert set(dm.vocabulary.words[2:]) == {"a", "bird", "with"}  # in 3 of the first captions or more
    assert dm.train_set.tokens.shape == (5, 1, 3)
    assert words(dm, dm.train_set[0][2]) == "<unk> bird <unk>"
    assert dm.sample_shape == (1, 8, 8)


def _one_line_error(dm: CaptionedFolderDataModule) -> str:
    with pytest.raises(DataError) as caught:
        dm.setup("fit")
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_folder_errors_name_the_path_and_the_layout(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    message = _one_line_error(CaptionedFolderDataModule(root=missing, batch_size=1))
    assert str(missing) in message and "does not exist" in message and "<class>/<name>.txt" in message

    write_birds(tmp_path / "no_text")
    for f in (tmp_path / "no_text" / "text").rglob("*.txt"):
        f.unlink()
    for d in sorted((tmp_path / "no_text" / "text").iterdir()):
        d.rmdir()
    (tmp_path / "no_text" / "text").rmdir()
    message = _one_line_error(CaptionedFolderDataModule(root=tmp_path / "no_text", batch_size=1))
    assert f"{tmp_path / 'no_text' / 'text'} is not a folder" in message and "expected" in message

    write_birds(tmp_path / "uncaptioned")
    gone = tmp_path / "uncaptioned" / "text" / "002.Laysan_Albatross" / "Laysan_Albatross_0002.txt"
    gone.unlink()
    message = _one_line_error(CaptionedFolderDataModule(root=tmp_path / "uncaptioned", batch_size=1))
    assert "1 of 5 images have no caption file" in message and str(gone) in message
    assert str(gone.parents[2] / "images" / "002.Laysan_Albatross" / "Laysan_Albatross_0002.jpg") in message

    write_birds(tmp_path / "blank")
    blank = tmp_path / "blank" / "text" / "001.Black_footed_Albatross" / "Black_Footed_Albatross_0002.txt"
    blank.write_text("\n  \n...\n")
    message = _one_line_error(CaptionedFolderDataModule(root=tmp_path / "blank", batch_size=1))
    assert f"caption file {blank} holds no caption" in message

    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "text").mkdir()
    message = _one_line_error(CaptionedFolderDataModule(root=tmp_path / "empty", batch_size=1))
    assert "no image files" in message and str(tmp_path / "empty" / "images") in message

    write_birds(tmp_path / "empty_class")
    (tmp_path / "empty_class" / "images" / "003.Sooty_Albatross").mkdir()
    message = _one_line_error(CaptionedFolderDataModule(root=tmp_path / "empty_class", batch_size=1))
    assert "['003.Sooty_Albatross']" in message and "hold no images" in message

    write_birds(tmp_path / "flat")
    Image.new("RGB", (8, 8)).save(tmp_path / "flat" / "images" / "loose.jpg")
    message = _one_line_error(CaptionedFolderDataModule(root=tmp_path / "flat", batch_size=1))
    assert "outside class subfolders" in message and "loose.jpg" in message


def test_folder_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"dataset\.root"):
        CaptionedFolderDataModule(root="???")
    with pytest.raises(ConfigError, match="max_caption_length"):
        CaptionedFolderDataModule(root="x", max_caption_length=0)
