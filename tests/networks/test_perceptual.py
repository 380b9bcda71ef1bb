"""Perceptual feature networks (networks/perceptual.py) and the weights-file lookup (utils/weights.py).

The VGG19 weights file is fabricated: torchvision's ``vgg19().features`` layout with random values
(plus a classifier tensor the loader must ignore), written by the test, since nothing may be
downloaded. Found via the config key, the variable and the hub cache; a missing file is one line
naming all three and the URL; a planted pickle is refused, never run.
"""

from __future__ import annotations

import pathlib
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from gan_research.config import CONFIG_DIR
from gan_research.errors import CheckpointError, ConfigError, user_error_in
from gan_research.networks.perceptual import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VGG19_LAYERS,
    VGG19_WEIGHTS,
    RandomFeatures,
    VGG19Features,
)

FILENAME = "vgg19-dcbaabe7.pth"
URL = "https://download.pytorch.org/models/vgg19-dcbaabe7.pth"
ENV = "GAN_VGG19_WEIGHTS"
PERCEPTUAL = Path(CONFIG_DIR) / "perceptual"


@pytest.fixture(autouse=True)
def one_thread():
    # These networks' small inputs gain nothing from intra-op threads, and on shared cores the
    # threads spin against each other (seconds instead of milliseconds on a busy machine).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file shaped like torchvision's vgg19-dcbaabe7.pth: ``features.N.*`` and ``classifier.*``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        features = make_layers(
            cfgs["E"]
        )  # torchvision's vgg19(weights=None).features, without its classifier
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.6.bias"] = torch.zeros(1000)  # the real file has a classifier: ignored
    path = tmp_path_factory.mktemp("vgg") / FILENAME
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def vgg(vgg_file: Path) -> VGG19Features:
    return VGG19Features(weights=vgg_file, layers=("conv1_1", "relu1_1", "relu2_2", "pool2"))


@pytest.fixture
def nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No variable, and an empty torch hub directory (through $TORCH_HOME, as users move it)."""
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # in case anything called torch.hub.set_dir
    return tmp_path / "torch" / "hub" / "checkpoints"


def _vgg_config(**values: Any) -> Any:
    cfg = OmegaConf.load(PERCEPTUAL / "vgg19.yaml")
    for key, value in values.items():
        cfg[key] = value
    try:
        return instantiate(cfg)
    except InstantiationException as err:
        # Hydra wraps what the constructor raised; the entry points show ours (errors.user_error_in).
        raise user_error_in(err) or err from None


def _first_conv(vgg_file: Path) -> tuple[torch.Tensor, torch.Tensor]:
    state = torch.load(vgg_file, weights_only=True)
    return state["features.0.weight"], state["features.0.bias"]


# --------------------------------------------------------------------------- finding the file
def test_the_config_key_names_the_file(vgg_file: Path, nowhere: Path) -> None:
    net = _vgg_config(weights=str(vgg_file), layers=["conv1_1"])
    assert isinstance(net, VGG19Features)
    assert net.weights_path == vgg_file
    weight, bias = _first_conv(vgg_file)
    assert torch.equal(net.net[0].weight, weight) and torch.equal(net.net[0].bias, bias)


def test_the_variable_names_the_file(vgg_file: Path, nowhere: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, str(vgg_file))
    assert VGG19Features(layers=("conv1_1",)).weights_path == vgg_file


def test_the_hub_cache_is_found(vgg_file: Path, nowhere: Path) -> None:
    nowhere.mkdir(parents=True)
    (nowhere / FILENAME).symlink_to(vgg_file)
    net = VGG19Features(layers=("conv1_1",))
    assert net.weights_path == nowhere / FILENAME
    assert torch.equal(net.net[0].weight, _first_conv(vgg_file)[0])


def test_a_missing_file_is_one_line_naming_the_three_places_and_the_url(nowhere: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _vgg_config()  # weights: null, as the config ships
    message = str(info.value)
    assert "\n" not in message
    assert "perceptual.weights (not set)" in message
    assert f"${ENV} (not set)" in message
    assert f"{nowhere / FILENAME} (missing)" in message
    assert URL in message


def test_an_explicit_path_that_does_not_exist_is_not_skipped(
    vgg_file: Path, tmp_path: Path, nowhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nowhere.mkdir(parents=True)
    (nowhere / FILENAME).symlink_to(vgg_file)  # a fallback that must not be used
    typo = tmp_path / "typo.pth"
    with pytest.raises(ConfigError, match=r"perceptual\.weights=.*typo\.pth.*does not exist"):
        VGG19Features(weights=typo)
    monkeypatch.setenv(ENV, str(typo))
    with pytest.raises(ConfigError, match=rf"{ENV}=.*typo\.pth"):
        VGG19Features()


class _Payload:
    """Unpickling this creates ``marker``: the stand-in for code a planted file would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Path]]:
        return (pathlib.Path.touch, (self.marker,))


def test_a_planted_pickle_is_refused_not_run(tmp_path: Path, nowhere: Path) -> None:
    marker = tmp_path / "PWNED"
    evil = tmp_path / FILENAME
    torch.save({"features.0.weight": _Payload(marker)}, evil)
    with pytest.raises(CheckpointError, match="other than tensors") as info:
        VGG19Features(weights=evil)
    assert not marker.exists()
    assert "\n" not in str(info.value) and str(evil) in str(info.value)
    assert "weights_only=False" not in str(info.value)


def test_a_file_that_is_not_vgg19_is_a_checkpoint_error(tmp_path: Path) -> None:
    wrong = tmp_path / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in make_layers(cfgs["A"]).state_dict().items()}, wrong)
    with pytest.raises(CheckpointError, match="not VGG19") as info:
        VGG19Features(weights=wrong, layers=("conv1_1",))
    assert URL in str(info.value)
    torch.save([torch.zeros(1)], wrong)
    with pytest.raises(CheckpointError, match="holds a list"):
        VGG19_WEIGHTS.load(wrong)


# --------------------------------------------------------------------------- the features
def test_asked_layers_come_back_with_their_shapes(vgg: VGG19Features) -> None:
    out = vgg(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert tuple(out) == ("conv1_1", "relu1_1", "relu2_2", "pool2")
    assert out["conv1_1"].shape == (2, 64, 32, 32)
    assert out["relu2_2"].shape == (2, 128, 16, 16)
    assert out["pool2"].shape == (2, 128, 8, 8)
    # Only the modules up to the deepest asked layer exist (and run).
    assert len(vgg.net) == VGG19_LAYERS.index("pool2") + 1


def test_names_follow_torchvisions_indices() -> None:
    with torch.device("meta"):  # the layout only
        assert len(VGG19_LAYERS) == len(make_layers(cfgs["E"]))
    assert VGG19_LAYERS[:5] == ("conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1")
    assert (VGG19_LAYERS.index("relu5_4"), VGG19_LAYERS[-1]) == (35, "pool5")


def test_before_and_after_the_activation_differ(vgg: VGG19Features) -> None:
    out = vgg(torch.rand(1, 3, 16, 16) * 2 - 1)
    assert (out["conv1_1"] < 0).any()
    assert (out["relu1_1"] >= 0).all()
    # The ReLU does not overwrite the conv output it was given.
    assert torch.equal(out["relu1_1"], out["conv1_1"].clamp(min=0))


def test_normalisation_is_imagenets(vgg: VGG19Features, vgg_file: Path) -> None:
    x = torch.rand(1, 3, 8, 8) * 2 - 1
    weight, bias = _first_conv(vgg_file)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406) and IMAGENET_STD == (0.229, 0.224, 0.225)
    by_hand = F.conv2d(((x + 1) / 2 - mean) / std, weight, bias, padding=1)
    torch.testing.assert_close(vgg(x)["conv1_1"], by_hand)
    raw = VGG19Features(weights=vgg_file, layers=("conv1_1",), normalize=False)
    torch.testing.assert_close(raw(x)["conv1_1"], F.conv2d(x, weight, bias, padding=1))


def test_grey_input_equals_its_rgb_repeat(vgg: VGG19Features) -> None:
    grey = torch.rand(2, 1, 16, 16) * 2 - 1
    rgb = vgg(grey.repeat(1, 3, 1, 1))
    for name, value in vgg(grey).items():
        torch.testing.assert_close(value, rgb[name])


def test_unknown_layer_lists_the_valid_names(vgg_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"relu6_1.*conv1_1, relu1_1.*relu5_4, pool5"):
        VGG19Features(weights=vgg_file, layers=("relu6_1",))
    with pytest.raises(ConfigError, match="scale1, scale2"):
        RandomFeatures(layers=("relu1_1",), channels=(4, 4))


def test_frozen_weights_but_gradients_reach_the_input(vgg: VGG19Features) -> None:
    parent = nn.Sequential(nn.Conv2d(3, 3, 1), vgg)
    parent.train()
    assert not vgg.training and not any(m.training for m in vgg.modules())
    assert not any(p.requires_grad for p in vgg.parameters())
    x = (torch.rand(1, 3, 8, 8) * 2 - 1).requires_grad_(True)
    vgg(x)["relu2_2"].square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_weights_stay_out_of_a_parents_checkpoint(vgg: VGG19Features) -> None:
    # 80 MB of published weights are not training state; a strict load of the parent still works.
    parent = nn.ModuleDict({"head": nn.Linear(2, 2), "features": vgg})
    state = parent.state_dict()
    assert set(state) == {"head.weight", "head.bias"}
    before = vgg.net[0].weight.clone()
    parent.load_state_dict(state)
    # A checkpoint that did carry (other) copies of them does not overwrite the file's weights.
    parent.load_state_dict({**state, "features.net.0.weight": torch.zeros_like(before)})
    assert torch.equal(vgg.net[0].weight, before)


# --------------------------------------------------------------------------- random features
def test_random_features_are_fixed_by_their_seed_alone() -> None:
    torch.manual_seed(1)
    first = RandomFeatures(seed=3, channels=(4, 8))
    torch.manual_seed(2)
    state = torch.random.get_rng_state()
    second = RandomFeatures(seed=3, channels=(4, 8))
    assert torch.equal(torch.random.get_rng_state(), state)  # the global stream is not consumed
    other = RandomFeatures(seed=4, channels=(4, 8))
    x = torch.rand(1, 3, 8, 8) * 2 - 1
    for name in ("scale1", "scale2"):
        assert torch.equal(first(x)[name], second(x)[name])
    assert not torch.equal(first(x)["scale2"], other(x)["scale2"])


def test_random_features_config_gives_the_scales() -> None:
    cfg = OmegaConf.load(PERCEPTUAL / "random.yaml")
    cfg.channels = [4, 8, 8, 16]
    net = instantiate(cfg)
    assert isinstance(net, RandomFeatures) and net.layers == ("scale1", "scale2", "scale3", "scale4")
    out = net(torch.rand(2, 1, 16, 16) * 2 - 1)
    assert [tuple(v.shape) for v in out.values()] == [
        (2, 4, 16, 16),
        (2, 8, 8, 8),
        (2, 8, 4, 4),
        (2, 16, 2, 2),
    ]
    assert all((v >= 0).all() for v in out.values())
    assert not any(p.requires_grad for p in net.parameters())


def test_none_option_is_an_empty_node() -> None:
    node = OmegaConf.load(PERCEPTUAL / "none.yaml")
    assert len(node) == 0 and "_target_" not in node
