"""The Inception feature network loads its weights from a local file, never the internet."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

from gan_research.errors import CheckpointError, ConfigError
from gan_research.metrics.fid import FeatureFID, metric_key
from gan_research.metrics.inception import (
    INCEPTION_WEIGHTS_ENV,
    INCEPTION_WEIGHTS_FILENAME,
    INCEPTION_WEIGHTS_URL,
    InceptionFeatures,
    InceptionWeightsError,
    images_to_uint8,
    resolve_inception_weights,
)


def _random_inception_state(seed: int) -> dict[str, torch.Tensor]:
    """A state dict with exactly the keys and shapes of torch-fidelity's InceptionV3, random values."""
    mp = pytest.MonkeyPatch()
    # Build the architecture without its download / load step.
    mp.setattr(tf_inception, "load_state_dict_from_url", lambda *a, **k: None)
    mp.setattr(tf_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None)
    try:
        torch.manual_seed(seed)
        net = tf_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    finally:
        mp.undo()
    return {k: v.clone() for k, v in net.state_dict().items()}


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("inception")
    paths = []
    for seed in (0, 1):
        path = folder / f"seed{seed}" / INCEPTION_WEIGHTS_FILENAME
        path.parent.mkdir()
        torch.save(_random_inception_state(seed), path)
        paths.append(path)
    return paths[0], paths[1]


@pytest.fixture(scope="module")
def inception(weight_files) -> InceptionFeatures:
    return InceptionFeatures(weights_path=weight_files[0])


@pytest.fixture
def no_weights_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    hub = tmp_path / "hub"
    hub.mkdir()
    monkeypatch.delenv(INCEPTION_WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    return hub


def test_features_come_from_the_weights_file(
    weight_files, inception: InceptionFeatures, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    assert (inception.name, inception.num_features) == ("inception", 2048)
    features = inception(images)
    assert features.shape == (2, 2048)
    assert torch.isfinite(features).all()
    assert inception.logits(images).shape == (2, 1008)

    # FID accumulates exactly these features (the same batch: no second pass).
    fid = FeatureFID(inception)
    fid.update(images, real=True)
    assert int(fid.real_features_num_samples) == 2
    torch.testing.assert_close(fid.real_features_sum, features.double().sum(0))
    assert fid.real_features_cov_sum.shape == (2048, 2048)
    assert fid.state_dict() == {}  # the 91 MB network stays out of checkpoints
    assert metric_key("fid", fid.feature_net.name) == "val/fid"

    monkeypatch.setenv(INCEPTION_WEIGHTS_ENV, str(weight_files[1]))
    other = InceptionFeatures()
    assert other.weights_path == weight_files[1]
    assert not torch.allclose(other(images[:1]), features[:1])


def test_explicit_path_wins_over_the_variable(weight_files, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(INCEPTION_WEIGHTS_ENV, str(weight_files[1]))
    assert resolve_inception_weights() == weight_files[1]
    assert resolve_inception_weights(str(weight_files[0])) == weight_files[0]


def test_one_pass_serves_fid_kid_and_is(inception: InceptionFeatures, monkeypatch) -> None:
    calls = []

    def fake_pass(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(x)
        return torch.zeros(len(x), 2048), torch.zeros(len(x), 1008)

    monkeypatch.setattr(inception.net, "_torch_fidelity_forward", fake_pass)
    images = torch.rand(1, 3, 8, 8) * 2 - 1
    features, logits = inception(images), inception.logits(images)
    assert len(calls) == 1
    assert calls[0].dtype == torch.uint8 and calls[0].shape == (1, 3, 8, 8)
    assert inception.features_and_logits(images) == (features, logits)
    images.add_(0.1)  # modified in place: recomputed
    inception(images)
    inception(images.clone())  # another tensor: recomputed
    assert len(calls) == 3
    with torch.inference_mode():  # no version counter to trust: always recomputed
        frozen = torch.zeros(1, 3, 8, 8)
        inception(frozen), inception.logits(frozen)
    assert len(calls) == 5


def test_hub_cache_is_found(weight_files, no_weights_anywhere: Path) -> None:
    cached = no_weights_anywhere / "checkpoints" / INCEPTION_WEIGHTS_FILENAME
    cached.parent.mkdir()
    cached.symlink_to(weight_files[0])
    assert resolve_inception_weights() == cached


def test_missing_weights_say_where_to_get_them(no_weights_anywhere: Path) -> None:
    with pytest.raises(InceptionWeightsError) as info:
        InceptionFeatures()
    message = str(info.value)
    assert isinstance(info.value, ConfigError)
    assert INCEPTION_WEIGHTS_FILENAME in message
    assert INCEPTION_WEIGHTS_URL in message
    assert str(no_weights_anywhere / "checkpoints" / INCEPTION_WEIGHTS_FILENAME) in message
    assert INCEPTION_WEIGHTS_ENV in message


def test_explicit_missing_path_is_named(tmp_path: Path, no_weights_anywhere: Path) -> None:
    missing = tmp_path / "nowhere" / "inception.pth"
    with pytest.raises(InceptionWeightsError, match=re.escape(str(missing))) as info:
        resolve_inception_weights(missing)
    assert INCEPTION_WEIGHTS_URL in str(info.value)


def test_env_var_pointing_nowhere_is_not_skipped(
    tmp_path: Path, no_weights_anywhere: Path, monkeypatch
) -> None:
    monkeypatch.setenv(INCEPTION_WEIGHTS_ENV, str(tmp_path / "typo.pth"))
    with pytest.raises(InceptionWeightsError, match=r"typo\.pth"):
        resolve_inception_weights()


def test_a_file_that_is_not_inception_weights_is_a_checkpoint_error(tmp_path: Path) -> None:
    wrong = tmp_path / INCEPTION_WEIGHTS_FILENAME
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(CheckpointError, match=re.escape(str(wrong))):
        InceptionFeatures(weights_path=wrong)
    wrong.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match=re.escape(str(wrong))):
        InceptionFeatures(weights_path=wrong)


def test_images_are_quantised_like_saved_pngs() -> None:
    images = torch.tensor([-1.0, -0.999, 0.0, 0.999, 1.0, 1.5, float("nan")]).reshape(1, 1, 1, 7)
    quantised = images_to_uint8(images)
    assert quantised.shape == (1, 3, 1, 7)
    assert quantised.dtype == torch.uint8
    # Same rounding as torchvision.utils.save_image on (x + 1) / 2.
    expected = ((images.nan_to_num(-1.0) + 1) / 2).mul(255).add(0.5).clamp(0, 255).to(torch.uint8)
    assert torch.equal(quantised[0, 0], expected[0, 0])
    assert quantised[0, :, 0, [0, 4]].tolist() == [[0, 255]] * 3
    with pytest.raises(ConfigError, match=r"\(2, 4, 8, 8\)"):
        images_to_uint8(torch.zeros(2, 4, 8, 8))


def test_grey_images_are_repeated_to_rgb() -> None:
    # Everything after quantisation is the same network, so equal bytes mean equal features.
    grey = torch.rand(2, 1, 16, 16) * 2 - 1
    assert torch.equal(images_to_uint8(grey), images_to_uint8(grey.repeat(1, 3, 1, 1)))
