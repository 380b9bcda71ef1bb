"""Translation metrics: L1, PSNR, SSIM against their formulas; cycle errors; FID wiring."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_research.data.translation import DigitsEdgesDataModule, DigitsInvertedDataModule
from gan_research.errors import ConfigError
from gan_research.metrics.classifier import DomainClassifier, save_classifier
from gan_research.metrics.translation import (
    MappedFeatures,
    MeanAbsoluteError,
    TranslationMetrics,
    psnr_metric,
    ssim_metric,
    to_unit_range,
)
from gan_research.utils.data_spec import DataKind, DataSpec, Domain


class PairedData:
    """The part of a translation datamodule the metrics read: its declaration and validation pairs."""

    def __init__(
        self,
        a: Tensor,
        b: Tensor,
        name: str = "toy_pairs",
        paired: bool = True,
        batch: int = 5,
        domain: Domain | None = None,
    ):
        self.a, self.b, self.name, self.paired, self.batch, self.domain = a, b, name, paired, batch, domain

    @property
    def spec(self) -> DataSpec:
        kind = DataKind.PAIRED if self.paired else DataKind.UNPAIRED
        c, size = self.b.shape[1], self.b.shape[-1]
        return DataSpec(self.name, kind, (c, size, size), None, c, size, self.a.shape[1], self.domain)

    def prepare_data(self) -> None:
        pass

    def setup(self, stage: str | None = None) -> None:
        pass

    def val_dataloader(self):
        return list(zip(self.a.split(self.batch), self.b.split(self.batch), strict=True))


class ToyFeatures(nn.Module):
    """A fixed random projection as feature network (name, num_features, forward)."""

    name = "toy"
    num_features = 8

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, self.num_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x.flatten(1).float())


def images(n: int, c: int = 1, size: int = 16, seed: int = 0) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, size, size, generator=gen) * 2 - 1


def gaussian_ssim(x: Tensor, y: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """SSIM (Wang et al. 2004, eq. 13) per image with a Gaussian window over reflect-padded
    images, mean over pixels and channels; images in [0, 1] (L = 1)."""
    c1, c2 = 0.01**2, 0.03**2
    coords = torch.arange(window, dtype=torch.float64) - (window - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    kernel = torch.outer(g, g)[None, None]
    channels = x.shape[1]
    kernel = kernel.expand(channels, 1, window, window)

    pad = (window - 1) // 2

    def filt(t: Tensor) -> Tensor:
        return F.conv2d(F.pad(t, (pad, pad, pad, pad), mode="reflect"), kernel, groups=channels)

    mu_x, mu_y = filt(x), filt(y)
    var_x = (filt(x * x) - mu_x**2).clamp_min(0)
    var_y = (filt(y * y) - mu_y**2).clamp_min(0)
    cov = filt(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(1)


def test_l1_is_the_mean_absolute_error_over_updates():
    x, y = images(6, 3, seed=1), images(6, 3, seed=2)
    metric = MeanAbsoluteError()
    metric.update(x[:2], y[:2])
    metric.update(x[2:], y[2:])
    assert metric.compute().dtype == torch.float64
    assert float(metric.compute()) == pytest.approx(float((x.double() - y.double()).abs().mean()), rel=1e-12)


def test_psnr_is_the_mean_of_per_image_psnr_in_unit_range():
    x, y = images(4, 3, seed=3), images(4, 3, seed=4)
    x01, y01 = to_unit_range(x), to_unit_range(y)
    metric = psnr_metric()
    metric.update(x01[:1], y01[:1])
    metric.update(x01[1:], y01[1:])
    mse = ((x01 - y01) ** 2).flatten(1).mean(1)
    expected = (10 * torch.log10(1.0 / mse)).mean()
    # torchmetrics converts to decibels with a float32 10 / ln(10): agreement to ~1e-8.
    assert float(metric.compute()) == pytest.approx(float(expected), rel=1e-6)
    # The same as PSNR of the [-1, 1] images with data range 2.
    mse_signed = ((x.double() - y.double()) ** 2).flatten(1).mean(1)
    assert float(expected) == pytest.approx(float((10 * torch.log10(4.0 / mse_signed)).mean()), rel=1e-9)


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_matches_the_gaussian_window_formula(channels):
    x = to_unit_range(images(3, channels, size=24, seed=5))
    # A correlated target, so SSIM is far from 0 and from 1.
    y = (0.7 * x + 0.3 * to_unit_range(images(3, channels, size=24, seed=6))).clamp(0, 1)
    metric = ssim_metric()
    metric.update(x, y)
    expected = gaussian_ssim(x, y).mean()
    assert 0.2 < float(expected) < 0.95
    assert float(metric.compute()) == pytest.approx(float(expected), abs=1e-6)


def test_identical_images_score_perfectly_and_fid_is_zero(monkeypatch):
    a = images(12, 3, seed=7)
    dm = PairedData(a, a.clone())
    monkeypatch.setattr(TranslationMetrics, "_feature_net", lambda self, size: ToyFeatures(3 * 16 * 16))
    metrics = TranslationMetrics(feature_network="inception", batch_size=5)
    metrics.prepare(dm)
    r = metrics.evaluate_translator(lambda x: x.clone())
    assert r["val/l1"] == 0.0
    assert math.isinf(r["val/psnr"]) or r["val/psnr"] > 100
    assert r["val/ssim"] == pytest.approx(1.0, abs=1e-9)
    assert r["val/fid_toy"] == pytest.approx(0.0, abs=1e-6)
    assert "val/cycle_l1" not in r
    # A worse translator scores worse; evaluating again starts from clean states.
    worse = metrics.evaluate_translator(lambda x: (x + 0.5 * images(len(x), 3, seed=8)).clamp(-1, 1))
    assert worse["val/l1"] > 0.1 and worse["val/psnr"] < 30 and worse["val/ssim"] < 0.9
    assert worse["val/fid_toy"] > 1e-3
    again = metrics.evaluate_translator(lambda x: x.clone())
    assert again["val/l1"] == 0.0 and again["val/fid_toy"] == pytest.approx(0.0, abs=1e-6)


def test_values_match_direct_formulas_over_batches():
    a, b = images(7, 1, seed=9), images(7, 1, seed=10)
    dm = PairedData(a, b, batch=3)
    metrics = TranslationMetrics(feature_network="none", batch_size=2)
    metrics.prepare(dm)

    def translate(x: Tensor) -> Tensor:
        return 0.5 * x  # G(a) = a / 2

    r = metrics.evaluate_translator(translate)
    out = 0.5 * a
    assert r["val/l1"] == pytest.approx(float((out.double() - b.double()).abs().mean()), rel=1e-12)
    mse = ((to_unit_range(out) - to_unit_range(b)) ** 2).flatten(1).mean(1)
    assert r["val/psnr"] == pytest.approx(float((10 * torch.log10(1 / mse)).mean()), rel=1e-6)
    ssim = gaussian_ssim(to_unit_range(out), to_unit_range(b)).mean()
    assert r["val/ssim"] == pytest.approx(float(ssim), abs=1e-6)
    assert set(r) == {"val/l1", "val/psnr", "val/ssim"}


def test_cycle_errors_and_unpaired_data():
    a, b = images(6, 1, seed=11), images(6, 1, seed=12)
    dm = PairedData(a, b, paired=False)
    metrics = TranslationMetrics(feature_network="none")
    metrics.prepare(dm)
    r = metrics.evaluate_translator(lambda x: -x, translate_back=lambda y: -y + 0.25)
    # F(G(a)) = a + 0.25 and G(F(b)) = b - 0.25: both errors 0.25 per pixel; no paired metrics.
    assert r["val/cycle_l1"] == pytest.approx(0.25, rel=1e-6)
    assert r["val/cycle_l1_b"] == pytest.approx(0.25, rel=1e-6)
    assert set(r) == {"val/cycle_l1", "val/cycle_l1_b"}


def test_num_samples_caps_the_pairs():
    a = images(10, 1, seed=13)
    metrics = TranslationMetrics(num_samples=6, feature_network="none")
    metrics.prepare(PairedData(a, a, batch=4))
    assert len(metrics.a) == 6 and torch.equal(metrics.a, a[:6])


def _digits_domain(view=lambda x: x) -> Domain:
    return Domain("digits", labelled_data=lambda size: None, view=view)


def test_feature_network_choices():
    a = images(4, 1, seed=14)
    with pytest.raises(ConfigError, match="valid"):
        TranslationMetrics(feature_network="vgg")
    unlabelled = PairedData(a, a, name="paired_folder").spec
    with pytest.raises(ConfigError, match="inception or none") as info:
        TranslationMetrics(feature_network="classifier").feature_network_for(unlabelled)
    # The message describes the dataset from its declaration.
    assert "dataset 'paired_folder' (paired image translation" in str(info.value)
    assert TranslationMetrics().feature_network_for(unlabelled) == "inception"
    # Any dataset declaring a domain classifier gets it, whatever its name.
    for view in (lambda x: x, lambda x: -x):
        declared = PairedData(a, a, name="anything", domain=_digits_domain(view)).spec
        assert TranslationMetrics().feature_network_for(declared) == "classifier"


def test_translation_metrics_refuse_one_domain_data():
    spec = DataSpec("ring8", DataKind.MIXTURE, (2,), num_classes=8)
    with pytest.raises(
        ConfigError, match=r"scores paired .* dataset 'ring8' \(2-D points.*8 modes\).*metrics=default"
    ):
        TranslationMetrics().feature_network_for(spec)


@pytest.mark.parametrize(
    ("datamodule", "sign"),
    [(DigitsEdgesDataModule, 1.0), (DigitsInvertedDataModule, -1.0)],
    ids=["edges", "inverted"],
)
def test_digit_targets_use_the_digits_classifier(tmp_path, datamodule, sign):
    torch.manual_seed(0)
    classifier = DomainClassifier(channels=1, image_size=16, name="digits").freeze()
    path = tmp_path / "digits_16.pt"
    save_classifier(classifier, path, 0.0, "digits")
    a = images(8, 1, seed=15)
    b = images(8, 1, seed=16)
    # The domain these tasks declare (spec.domain): the digits classifier and their view of B.
    domain = datamodule().spec.domain
    metrics = TranslationMetrics(classifier_path=str(path))
    metrics.prepare(PairedData(a, b, domain=domain))
    r = metrics.evaluate_translator(lambda x: x.clone())
    assert "val/fid_digits" in r and r["val/fid_digits"] > 0
    net = metrics.fid.feature_net
    assert isinstance(net, MappedFeatures) and net.name == "digits"
    # digits_inverted's targets are -x of digits: the classifier sees them inverted back.
    assert torch.allclose(net(b), net.net(sign * b))
