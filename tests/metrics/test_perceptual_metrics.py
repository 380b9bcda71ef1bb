"""Perceptual features and distances of metrics/perceptual.py: the domain classifier as a feature
network (bound by prepare, like the evaluator's), and LPIPS with a backbone read from a local file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from gan_research.config import CONFIG_DIR
from gan_research.errors import CheckpointError, ConfigError
from gan_research.metrics.classifier import DomainClassifier, default_classifier_path, save_classifier
from gan_research.metrics.perceptual import LPIPS, LPIPS_BACKBONES, ClassifierFeatures
from gan_research.utils.data_spec import DataKind, DataSpec, Domain

LPIPS_ENV = "GAN_LPIPS_BACKBONE_WEIGHTS"
ALEX_FILE = "alexnet-owt-7be5be79.pth"


@pytest.fixture(autouse=True)
def one_thread():
    # These networks' small inputs gain nothing from intra-op threads, and on shared cores the
    # threads spin against each other (seconds instead of milliseconds on a busy machine).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------- the classifier's features
class FakeData:
    """A datamodule as far as ClassifierFeatures reads one: its declaration."""

    def __init__(self, domain: Domain | None, kind: DataKind = DataKind.IMAGES, channels: int = 1) -> None:
        self.spec = DataSpec(
            name="toy",
            kind=kind,
            sample_shape=(channels, 16, 16),
            num_classes=10,
            channels=channels,
            image_size=16,
            domain=domain,
        )


def _no_training(size: int) -> None:
    raise AssertionError("the cached classifier must be loaded, not trained")


@pytest.fixture
def cached_classifier(tmp_path: Path) -> DomainClassifier:
    """A tiny (untrained) digits classifier saved where the evaluator's cache looks for it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = DomainClassifier(channels=1, image_size=16, width=4, num_features=8, name="digits").freeze()
    save_classifier(model, default_classifier_path(tmp_path, "digits", 16), 0.5, "digits")
    return model


def _from_config(data_dir: Path, **values: object) -> ClassifierFeatures:
    root = OmegaConf.create({"paths": {"data_dir": str(data_dir)}})
    root.perceptual = OmegaConf.load(Path(CONFIG_DIR) / "perceptual" / "classifier.yaml")
    for key, value in values.items():
        root.perceptual[key] = value
    return instantiate(root.perceptual)


def test_classifier_layers_come_from_the_cached_classifier(
    tmp_path: Path, cached_classifier: DomainClassifier
) -> None:
    features = _from_config(tmp_path, train_if_missing=False)
    assert features.layers == ("block1", "block2", "block3", "features")
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    with pytest.raises(RuntimeError, match=r"prepare\(datamodule\)"):
        features(x)
    features.prepare(FakeData(Domain("digits", labelled_data=_no_training)))
    out = features(x)
    assert tuple(out) == features.layers
    # A strided stem (H/2), then two blocks with a 2x pool each (H/4, H/8); the penultimate vector.
    assert out["block1"].shape == (2, 4, 8, 8)
    assert out["block2"].shape == (2, 8, 4, 4)
    assert out["block3"].shape == (2, 16, 2, 2)
    assert out["features"].shape == (2, 8)
    torch.testing.assert_close(out["features"], cached_classifier(x))


def test_the_domains_view_is_applied(tmp_path: Path, cached_classifier: DomainClassifier) -> None:
    inverted = ClassifierFeatures(tmp_path, layers=("block2",), train_if_missing=False)
    inverted.prepare(FakeData(Domain("digits", labelled_data=_no_training, view=lambda x: -x)))
    plain = ClassifierFeatures(tmp_path, layers="block2", train_if_missing=False)
    plain.prepare(FakeData(Domain("digits", labelled_data=_no_training)))
    x = torch.rand(1, 1, 16, 16) * 2 - 1
    torch.testing.assert_close(inverted(x)["block2"], plain(-x)["block2"])


def test_classifier_features_are_frozen_and_stay_out_of_checkpoints(
    tmp_path: Path, cached_classifier: DomainClassifier
) -> None:
    features = ClassifierFeatures(tmp_path, layers=("block1",), train_if_missing=False)
    parent = nn.ModuleDict({"head": nn.Linear(2, 2), "perceptual": features})
    before = parent.state_dict()  # written before prepare bound the classifier
    features.prepare(FakeData(Domain("digits", labelled_data=_no_training)))
    assert set(parent.state_dict()) == {"head.weight", "head.bias"}
    parent.load_state_dict(before)  # strict: the classifier's tensors are not expected
    parent.train()
    assert not any(m.training for m in features.modules())
    x = (torch.rand(1, 1, 16, 16) * 2 - 1).requires_grad_(True)
    features(x)["block1"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in features.parameters())


def test_data_without_a_domain_names_the_options_that_work(tmp_path: Path) -> None:
    features = ClassifierFeatures(tmp_path)
    with pytest.raises(ConfigError, match="has none") as info:
        features.prepare(FakeData(None))
    assert "perceptual=vgg19" in str(info.value) and "perceptual=random" in str(info.value)
    stacked = FakeData(Domain("digits", labelled_data=_no_training), kind=DataKind.STACKED, channels=3)
    with pytest.raises(ConfigError, match=r"per channel.*perceptual=random"):
        features.prepare(stacked)
    with pytest.raises(ConfigError, match=r"block4.*block1, block2, block3, features"):
        ClassifierFeatures(tmp_path, layers=("block4",))


# --------------------------------------------------------------------------- LPIPS
@pytest.fixture(scope="module")
def alex_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """torchvision's AlexNet ``features`` tensors, random values, under the published file's name
    (the real file also holds ``classifier.*``, which LPIPS does not use)."""
    # torchvision's alexnet().features layout (indices 0-12), built alone: its 61M-parameter
    # classifier would take a second to initialise.
    conv, relu, pool = nn.Conv2d, nn.ReLU, lambda: nn.MaxPool2d(3, 2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        features = nn.Sequential(
            conv(3, 64, 11, 4, 2), relu(), pool(), conv(64, 192, 5, padding=2), relu(), pool(),
            conv(192, 384, 3, padding=1), relu(), conv(384, 256, 3, padding=1), relu(),
            conv(256, 256, 3, padding=1), relu(), pool(),
        )  # fmt: skip
    path = tmp_path_factory.mktemp("lpips") / ALEX_FILE
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    return path


@pytest.fixture(scope="module")
def lpips(alex_file: Path) -> LPIPS:
    return LPIPS(net_type="alex", weights=alex_file)


@pytest.fixture
def nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(LPIPS_ENV, raising=False)
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    return hub / "checkpoints"


def test_lpips_is_zero_for_identical_images_and_positive_otherwise(lpips: LPIPS, alex_file: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1
    y = torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1
    same, different = lpips(x, x), lpips(x, y)
    assert same.shape == different.shape == (2,)
    assert torch.all(same == 0)
    assert torch.all(different > 0)
    # The backbone holds the file's tensors.
    state = torch.load(alex_file, weights_only=True)
    assert torch.equal(lpips.net.net.slice1[0].weight, state["features.0.weight"])


def test_lpips_takes_grey_images_and_passes_gradients(lpips: LPIPS) -> None:
    grey = torch.rand(1, 1, 32, 32) * 2 - 1
    other = torch.rand(1, 1, 32, 32) * 2 - 1
    torch.testing.assert_close(lpips(grey, other), lpips(grey.repeat(1, 3, 1, 1), other.repeat(1, 3, 1, 1)))
    fake = grey.clone().requires_grad_(True)
    lpips(fake, other).sum().backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in lpips.parameters())
    assert lpips.state_dict() == {} and not lpips.train().training


def test_lpips_backbone_from_the_variable(alex_file: Path, nowhere: Path, monkeypatch) -> None:
    monkeypatch.setenv(LPIPS_ENV, str(alex_file))
    assert LPIPS().weights_path == alex_file


def test_missing_lpips_backbone_is_one_line_naming_the_three_places(nowhere: Path) -> None:
    with pytest.raises(ConfigError) as info:
        LPIPS(net_type="alex")
    message = str(info.value)
    assert "\n" not in message
    assert "lpips.weights (not set)" in message
    assert f"${LPIPS_ENV} (not set)" in message
    assert f"{nowhere / ALEX_FILE} (missing)" in message
    assert "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth" in message
    assert LPIPS_BACKBONES["vgg"].filename == "vgg16-397923af.pth"


def test_wrong_backbone_file_or_net_type(tmp_path: Path) -> None:
    wrong = tmp_path / "vgg16-397923af.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, wrong)  # VGG's first conv, not AlexNet's
    with pytest.raises(CheckpointError, match=r"not torchvision's AlexNet ImageNet weights file alexnet-owt"):
        LPIPS(net_type="alex", weights=wrong)
    with pytest.raises(ConfigError, match=r"'squeeze'.*'alex', 'vgg'"):
        LPIPS(net_type="squeeze")
