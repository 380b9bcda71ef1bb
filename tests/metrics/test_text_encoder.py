"""The text encoder: its networks, Reed et al.'s joint embedding loss, a short training run that
separates matching from mismatched pairs, and the cache behind TextEncoderFeatures."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

from gan_research.data.captioned import CaptionedDigitsDataModule
from gan_research.data.digits import DigitsDataModule
from gan_research.errors import CheckpointError, ConfigError
from gan_research.metrics import text_encoder as te
from gan_research.metrics.text_encoder import (
    TextEncoderFeatures,
    describe_factory,
    joint_embedding_loss,
    load_text_encoder,
    train_text_encoder,
)
from gan_research.networks.text_encoder import ImageEncoder, TextEncoder

# Tiny networks and a short run: seconds on one CPU thread.
TEXT = functools.partial(TextEncoder, embed_dim=16, hidden=16, out_dim=16)
IMAGE = functools.partial(ImageEncoder, width=8, input_size=16)
SHORT = {"epochs": 3, "batch_size": 64, "lr": 3e-3}


@pytest.fixture(autouse=True)
def _one_thread():
    # Two threads on a shared two-core machine make these small networks slower, not faster.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits() -> CaptionedDigitsDataModule:
    dm = CaptionedDigitsDataModule(image_size=16, batch_size=64)
    dm.setup("fit")
    return dm


@pytest.fixture(scope="module")
def cache(tmp_path_factory, digits) -> tuple[Path, TextEncoderFeatures]:
    """One prepared TextEncoderFeatures (trained once into a fresh cache) for the module."""
    data_dir = tmp_path_factory.mktemp("data")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        features = TextEncoderFeatures(data_dir, TEXT, IMAGE, **SHORT)
        features.prepare(digits)
    finally:
        torch.set_num_threads(threads)
    return data_dir, features


# --------------------------------------------------------------------------- networks
def test_text_encoder_pools_over_real_words_only() -> None:
    torch.manual_seed(0)
    encoder = TextEncoder(vocab_size=20, embed_dim=8, hidden=8, out_dim=6).eval()
    tokens = torch.tensor([[5, 6, 7, 0, 0], [3, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    out = encoder(tokens)
    assert out.shape == (3, 6)
    # Padding after the last word changes nothing: the GRU runs packed, the mean skips it.
    longer = torch.cat([tokens, torch.zeros(3, 4, dtype=torch.int64)], dim=1)
    assert torch.allclose(encoder(longer), out, atol=1e-6)
    assert torch.allclose(encoder(tokens[:2, :3]), out[:2], atol=1e-6)
    assert torch.allclose(out[2], encoder.project.bias)  # no words: the projection's bias
    assert encoder.hparams == {"vocab_size": 20, "embed_dim": 8, "hidden": 8, "out_dim": 6, "pad_index": 0}
    with pytest.raises(ValueError, match="word indices"):
        encoder(torch.zeros(2, 3))
    with pytest.raises(ConfigError, match="vocab_size"):
        TextEncoder(vocab_size=1)


def test_image_encoder_embeds_any_size_to_out_dim() -> None:
    encoder = ImageEncoder(channels=3, out_dim=12, width=4, input_size=16)
    assert encoder(torch.zeros(2, 3, 64, 64)).shape == (2, 12)
    assert encoder(torch.zeros(2, 3, 16, 16)).shape == (2, 12)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        encoder(torch.zeros(2, 1, 16, 16))
    with pytest.raises(ConfigError, match="power of two"):
        ImageEncoder(input_size=12)


# --------------------------------------------------------------------------- the loss
def test_joint_embedding_loss_is_reed_s_symmetric_hinge_over_false_pairs_only() -> None:
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    texts = torch.tensor([[2.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    # scores[i, j] = images[i] . texts[j]
    scores = images @ texts.T
    holds = torch.ones(3, 3, dtype=torch.bool)
    assert joint_embedding_loss(images, texts, holds).item() == 0.0  # every pair true: no negatives
    holds = torch.eye(3, dtype=torch.bool)
    expected = 0.0
    for i in range(3):
        for j in range(3):
            if i != j:
                expected += max(0.0, 1 + scores[i, j] - scores[i, i])  # image i ranks its caption first
                expected += max(0.0, 1 + scores[i, j] - scores[j, j])  # caption j ranks its image first
    assert joint_embedding_loss(images, texts, holds).item() == pytest.approx(expected / 3)
    # A caption true of another image (holds[j, i]) is no negative for it.
    holds[1, 0] = True
    fewer = expected - max(0.0, 1 + scores[0, 1] - scores[0, 0]) - max(0.0, 1 + scores[0, 1] - scores[1, 1])
    assert joint_embedding_loss(images, texts, holds).item() == pytest.approx(fewer / 3)


# --------------------------------------------------------------------------- training
def test_a_short_run_scores_matching_pairs_above_mismatched_ones(digits, cache) -> None:
    _, features = cache
    retrieval = features.retrieval  # measured on the 359 held-out digits, with the image encoder
    # F(v, t) of the held-out caption-image pairs: higher where the caption is true of the image.
    assert retrieval["score_true"] > retrieval["score_false"] + 1.0  # by more than the hinge's margin
    assert retrieval["class_top1"] > 0.5  # chance: 0.1
    assert retrieval["match_top1"] > 3 * retrieval["match_chance"]
    # On a fixed batch of training pairs: each image's own caption against its mismatched one.
    before = torch.random.get_rng_state()
    _, labels, tokens, mismatched = digits.val_set.__getitems__(list(range(256)))
    with torch.no_grad():
        matched_text, wrong_text = features(tokens), features(mismatched)
    assert torch.equal(torch.random.get_rng_state(), before)
    # The text encoder alone: a caption's embedding is nearer the other captions of its digit
    # than those of other digits, and the mismatched caption lies away from the matched one.
    similarity = torch.nn.functional.cosine_similarity(matched_text, wrong_text).mean()
    assert similarity < 0.5
    normed = torch.nn.functional.normalize(matched_text, dim=1)
    cosine = normed @ normed.T
    same = labels[:, None] == labels[None, :]
    assert cosine[same].mean() > cosine[~same].mean() + 0.3


def test_training_is_seeded_and_leaves_the_caller_s_random_stream(digits) -> None:
    state = torch.random.get_rng_state()
    encoder, retrieval = train_text_encoder(digits, TEXT, IMAGE, epochs=1, batch_size=128, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    again, _ = train_text_encoder(digits, TEXT, IMAGE, epochs=1, batch_size=128, seed=3)
    for a, b in zip(encoder.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert not any(p.requires_grad for p in encoder.parameters()) and not encoder.training
    assert retrieval["captions"] == 5 * 359


def test_training_refuses_data_without_captions() -> None:
    with pytest.raises(ConfigError, match="captioned images"):
        train_text_encoder(DigitsDataModule(image_size=8), TEXT, IMAGE)


# --------------------------------------------------------------------------- the cache
def test_features_are_frozen_and_sized_before_prepare(cache) -> None:
    data_dir, features = cache
    assert TextEncoderFeatures(data_dir, TEXT, IMAGE).out_dim == 16
    tokens = torch.tensor([[2, 3, 4, 0], [5, 0, 0, 0]])
    assert features(tokens).shape == (2, 16)
    features.train()
    assert not features.training and not features.encoder.training
    assert not any(p.requires_grad for p in features.parameters())
    assert features.state_dict() == {}  # the cache holds the weights, not the family's checkpoints
    with pytest.raises(RuntimeError, match="prepare"):
        TextEncoderFeatures(data_dir, TEXT, IMAGE)(tokens)


def test_a_second_prepare_loads_the_cache_without_training(cache, digits, monkeypatch) -> None:
    data_dir, features = cache
    path = features.cache_path
    assert path.parent == data_dir / "text_encoders" and path.name.startswith("captioned_digits_16_")
    stamp = path.stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("the cached encoder was trained again")

    monkeypatch.setattr(te, "train_text_encoder", no_training)
    second = TextEncoderFeatures(data_dir, TEXT, IMAGE, **SHORT)
    second.prepare(digits)
    assert second.cache_path == path and path.stat().st_mtime_ns == stamp
    tokens = digits.train_set.tokens[:8, 0].long()
    assert torch.equal(second(tokens), features(tokens))
    assert second.retrieval == features.retrieval
    # Other settings are another key, so another file (here: not there, and not to be trained).
    other = TextEncoderFeatures(data_dir, TEXT, IMAGE, **{**SHORT, "epochs": 4}, train_if_missing=False)
    assert other.cache_key(digits) != second.cache_key(digits)
    with pytest.raises(CheckpointError, match="does not exist"):
        other.prepare(digits)


def test_a_cache_file_of_other_settings_is_refused(cache, digits) -> None:
    _, features = cache
    other = TextEncoderFeatures("unused", TEXT, IMAGE, epochs=5, path=str(features.cache_path))
    with pytest.raises(CheckpointError) as caught:
        other.prepare(digits)
    message = str(caught.value)
    assert str(features.cache_path) in message and "other data or settings" in message and "\n" not in message
    # The file rebuilds the architecture it stores; a factory of another network cannot take it.
    bigger = functools.partial(TextEncoder, embed_dim=16, hidden=16, out_dim=32)
    assert load_text_encoder(features.cache_path, bigger).out_dim == 16
    with pytest.raises(CheckpointError, match="does not fit the configured text encoder"):
        load_text_encoder(features.cache_path, IMAGE)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "tampered"])
def test_a_corrupt_cache_file_is_one_line_naming_it(cache, digits, tmp_path, damage) -> None:
    _, features = cache
    data = features.cache_path.read_bytes()
    path = tmp_path / "text_encoders" / features.cache_path.name
    path.parent.mkdir()
    if damage == "garbage":
        path.write_bytes(b"this is not a checkpoint")
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:
        checkpoint = torch.load(features.cache_path, weights_only=True)
        checkpoint["state_dict"]["project.bias"] += 1
        torch.save(checkpoint, path)
    broken = TextEncoderFeatures(tmp_path, TEXT, IMAGE, **SHORT)
    with pytest.raises(CheckpointError) as caught:
        broken.prepare(digits)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    assert ("checksum" in message) if damage == "tampered" else ("could not be read" in message)


def test_features_refuse_data_without_captions(tmp_path) -> None:
    with pytest.raises(ConfigError, match="captioned images"):
        TextEncoderFeatures(tmp_path, TEXT, IMAGE).prepare(DigitsDataModule(image_size=8))


def test_factories_are_described_for_the_cache_key() -> None:
    assert describe_factory(TEXT) == {
        "target": "gan_research.networks.text_encoder.TextEncoder",
        "kwargs": {"embed_dim": 16, "hidden": 16, "out_dim": 16},
    }
    assert describe_factory(functools.partial(TEXT, out_dim=8))["kwargs"]["out_dim"] == 8
    with pytest.raises(ConfigError, match="keyword"):
        describe_factory(functools.partial(TextEncoder, 10))
