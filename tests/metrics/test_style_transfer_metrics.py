"""Style-transfer metrics: the first ``num_samples`` validation content images, the family's
unweighted loss terms averaged over them with each batch weighted by its size, and the
refusals (no preparation, a module without ``style_terms``, bad settings, paired data)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from gan_research.data.digits import DigitsDataModule
from gan_research.data.translation import DigitsEdgesDataModule
from gan_research.errors import ConfigError
from gan_research.metrics.style_transfer import StyleTransferMetrics
from gan_research.train import build
from tests.conftest import compose_config


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits() -> DigitsDataModule:
    dm = DigitsDataModule(image_size=16, batch_size=4)
    dm.setup("fit")
    return dm


def first_images(datamodule, n: int) -> torch.Tensor:
    return torch.cat([batch[0] for batch in datamodule.val_dataloader()])[:n]


class FakeStyleTransfer:
    """``translate`` and ``style_terms`` of a style-transfer family, recording what they were given.

    The terms: content = mean of the content images, style = the chunk's size, tv = 0.25 + mean
    of the stylised images."""

    def __init__(self, translate: Callable[[torch.Tensor], torch.Tensor] = lambda a: a) -> None:
        self._translate = translate
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def translate(self, a: torch.Tensor) -> torch.Tensor:
        return self._translate(a)

    def style_terms(self, content: torch.Tensor, stylised: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls.append((content.clone(), stylised.clone()))
        return {
            "content": content.mean(),
            "style": torch.tensor(float(len(content))),
            "tv": 0.25 + stylised.mean(),
        }


def test_prepare_takes_the_first_num_samples_validation_images(digits) -> None:
    metrics = StyleTransferMetrics(num_samples=10, batch_size=4)
    rng = torch.get_rng_state()
    metrics.prepare(digits)
    # Reading the loader leaves the training RNG stream where it was.
    assert torch.equal(torch.get_rng_state(), rng)
    assert metrics.content is not None and metrics.content.shape == (10, 1, 16, 16)
    torch.testing.assert_close(metrics.content, first_images(digits, 10), rtol=0, atol=0)
    assert metrics.summary() == {"num_samples": 10}
    assert metrics.feature_network == "perceptual" and metrics.last_collapse_reasons == []


def test_evaluate_returns_the_batch_size_weighted_means(digits) -> None:
    # 10 images in batches of 4: chunks of 4, 4 and 2.
    metrics = StyleTransferMetrics(num_samples=10, batch_size=4)
    metrics.prepare(digits)
    module = FakeStyleTransfer()
    r = metrics.evaluate(module)
    assert set(r) == {"val/content_loss", "val/style_loss", "val/tv"}
    assert [len(c) for c, _ in module.calls] == [4, 4, 2]
    for content, stylised in module.calls:
        assert torch.equal(content, stylised)  # translate is the identity
    images = first_images(digits, 10)
    torch.testing.assert_close(torch.cat([c for c, _ in module.calls]), images, rtol=0, atol=0)
    # Weighted by size: the mean over the 10 images, not the mean of the 3 chunk means.
    assert r["val/content_loss"] == pytest.approx(float(images.mean()), rel=1e-6)
    assert r["val/style_loss"] == pytest.approx((4 * 4 + 4 * 4 + 2 * 2) / 10)  # 3.6, not 10/3
    assert r["val/tv"] == pytest.approx(0.25 + float(images.mean()), rel=1e-6)
    assert metrics.summary() == {"num_samples": 10}


def test_the_terms_are_of_the_content_and_its_translation(digits) -> None:
    metrics = StyleTransferMetrics(num_samples=6, batch_size=6)
    metrics.prepare(digits)
    module = FakeStyleTransfer(translate=lambda a: -a)
    r = metrics.evaluate(module)
    (content, stylised), *rest = module.calls
    assert not rest and torch.equal(stylised, -content)
    mean = float(first_images(digits, 6).mean())
    assert r["val/content_loss"] == pytest.approx(mean, rel=1e-6)
    assert r["val/tv"] == pytest.approx(0.25 - mean, rel=1e-6)
    assert r["val/style_loss"] == 6.0


def test_num_samples_beyond_the_data_scores_what_there_is() -> None:
    dm = DigitsDataModule(image_size=8, batch_size=512)
    metrics = StyleTransferMetrics(num_samples=5000, batch_size=1000)
    metrics.prepare(dm)
    assert metrics.summary() == {"num_samples": 1797}
    module = FakeStyleTransfer()
    r = metrics.evaluate(module)
    assert [len(c) for c, _ in module.calls] == [1000, 797]
    assert r["val/style_loss"] == pytest.approx((1000**2 + 797**2) / 1797)


def test_evaluate_before_prepare_is_refused() -> None:
    with pytest.raises(RuntimeError, match=r"prepare\(datamodule\) must run before"):
        StyleTransferMetrics(num_samples=4, batch_size=2).evaluate(FakeStyleTransfer())


def test_a_module_without_style_terms_is_refused(digits) -> None:
    class Translator:
        def translate(self, a: torch.Tensor) -> torch.Tensor:
            return a

    metrics = StyleTransferMetrics(num_samples=4, batch_size=2)
    metrics.prepare(digits)
    with pytest.raises(ConfigError) as info:
        metrics.evaluate(Translator())
    message = str(info.value)
    assert "metrics=style_transfer" in message and "Translator has no style_terms" in message


@pytest.mark.parametrize("key", ["num_samples", "batch_size"])
@pytest.mark.parametrize("value", [0, -3, 1.5, True, "8", None])
def test_bad_settings_are_refused(key, value) -> None:
    with pytest.raises(ConfigError) as info:
        StyleTransferMetrics(**{key: value})
    assert f"metrics.{key}={value!r}" in str(info.value) and "int >= 1" in str(info.value)


def test_paired_data_is_refused() -> None:
    metrics = StyleTransferMetrics(num_samples=4, batch_size=2)
    with pytest.raises(ConfigError) as info:
        metrics.prepare(DigitsEdgesDataModule(batch_size=8))
    message = str(info.value)
    assert "StyleTransferMetrics scores images" in message
    assert "'digits_edges' (paired" in message
    assert metrics.content is None and metrics.summary() == {"num_samples": 0}


def test_the_metrics_of_the_experiment_are_the_family_terms_on_all_images(tmp_path) -> None:
    cfg = compose_config(
        [
            "experiment=style_transfer_digits",
            "metrics=style_transfer",  # TINY's metrics=none wins over the experiment's otherwise
            "model.width=4",
            "model.generator.n_blocks=1",
            "dataset.image_size=16",
            "perceptual.channels=[8,8,8,8]",
            "metrics.num_samples=6",
            "metrics.batch_size=4",
            "threads=1",
        ],
        tmp_path / "run",
    )
    objs = build(cfg)
    evaluator, model = objs["evaluation"].evaluator, objs["model"]
    assert isinstance(evaluator, StyleTransferMetrics) and evaluator.summary() == {"num_samples": 6}
    r = evaluator.evaluate(model)
    # Every term is a mean over images (instance norm: an image's stylisation ignores its batch),
    # so the chunks of 4 and 2, weighted, give the terms of the 6 images at once.
    content = evaluator.content
    with torch.no_grad():
        terms = model.style_terms(content, model.translate(content))
    assert r["val/content_loss"] == pytest.approx(float(terms["content"]), rel=1e-4)
    assert r["val/style_loss"] == pytest.approx(float(terms["style"]), rel=1e-4)
    assert r["val/tv"] == pytest.approx(float(terms["tv"]), rel=1e-4)
    assert all(v > 0 for v in r.values())
