"""Text-to-image metrics (gan_research.metrics.text_to_image) on captioned digits at 32 px with the
session's digits classifier, scoring hand-made caption -> image models (not GANs) whose answers are
known: each caption's own validation image (the real images' ceiling, exactly), another image of
the asked digit (right class, attributes at chance), an image of the next digit (wrong class),
blank images (agreement against a hand computation); the keys per stage, the resize of stages at
another size (equal to resizing by hand), the chunks and num_samples, and the refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from gan_research.data.captioned import CaptionedDigitsDataModule
from gan_research.data.captions import ATTRIBUTES, caption_requirements
from gan_research.data.digits import DigitsDataModule
from gan_research.errors import CheckpointError, ConfigError
from gan_research.metrics.text_to_image import TextToImageMetrics, resize_images

SIZE = 32  # the session's digits classifier is trained at 32 px
SCORED = 200  # captions scored by the shared evaluator: 20 per digit (the classes are interleaved)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, seed_digits_classifier) -> Path:
    """A data directory holding the session's digits classifier (trained once per test session)."""
    path = tmp_path_factory.mktemp("t2i-data")
    seed_digits_classifier(path)
    return path


@pytest.fixture(scope="module")
def datamodule() -> CaptionedDigitsDataModule:
    return CaptionedDigitsDataModule(image_size=SIZE, batch_size=64)


@pytest.fixture(scope="module")
def validation(datamodule) -> tuple[Tensor, Tensor, Tensor]:
    """Every validation (image, label, tokens), read here independently of the evaluator."""
    batches = list(datamodule.val_dataloader())
    return tuple(torch.cat([b[i] for b in batches]) for i in range(3))  # type: ignore[return-value]


def evaluator(data_dir: Path, **settings) -> TextToImageMetrics:
    # train_classifier_if_missing=False: a test that trained a classifier of its own would fail.
    settings = {"feature_network": "classifier", "batch_size": 64, **settings}
    return TextToImageMetrics(data_dir=str(data_dir), train_classifier_if_missing=False, **settings)


@pytest.fixture(scope="module")
def metrics(data_dir, datamodule) -> TextToImageMetrics:
    m = evaluator(data_dir, num_samples=SCORED)
    m.prepare(datamodule)
    return m


class Answers:
    """A caption -> image model from a table: ``stages`` maps a stage name to a function
    ``(position of the caption in the validation set, tokens, labels) -> images``. The evaluator
    asks for the captions in validation order, so the model keeps a position and checks that each
    call's captions are the next ones."""

    def __init__(self, validation: tuple[Tensor, Tensor, Tensor], stages: dict) -> None:
        self.tokens, self.labels = validation[2], validation[1]
        self.stages, self.position, self.calls = stages, 0, []

    def generate_from_captions(self, tokens: Tensor, labels: Tensor) -> dict[str, Tensor]:
        assert not torch.is_grad_enabled()
        n = len(tokens)
        where = slice(self.position, self.position + n)
        assert torch.equal(tokens, self.tokens[where]) and torch.equal(labels, self.labels[where])
        self.calls.append(n)
        out = {stage: make(torch.arange(self.position, self.position + n), tokens, labels)
               for stage, make in self.stages.items()}  # fmt: skip
        self.position += n
        return out


def asked_digits(datamodule, tokens: Tensor) -> list[int]:
    """The digit each caption names, read from its words."""
    return [caption_requirements(datamodule.vocabulary.decode(row))[0] for row in tokens]


def own_image(validation):
    return lambda index, tokens, labels: validation[0][index]


def digit_image(datamodule, validation, shift: int = 0):
    """The last validation image of digit (asked + shift) % 10: the right digit for shift 0, but
    not the caption's own image (its attributes ignore the caption)."""
    images, labels = validation[0], validation[1]
    last = {c: images[labels == c][-1] for c in range(10)}
    return lambda index, tokens, _: torch.stack(
        [last[(d + shift) % 10] for d in asked_digits(datamodule, tokens)]
    )


def blank(index, tokens, labels):
    return torch.full((len(tokens), 1, SIZE, SIZE), -1.0)


def stage_keys(stage: str) -> set[str]:
    return {
        f"val/fid_digits_{stage}",
        f"val/caption_class_accuracy_{stage}",
        f"val/attribute_agreement_{stage}",
        *(f"val/{name}_agreement_{stage}" for name in ATTRIBUTES),
    }


REAL_KEYS = stage_keys("real") - {"val/fid_digits_real"}


def of_stage(results: dict[str, float], stage: str) -> dict[str, float]:
    """A stage's values with the stage cut from the keys (to compare stages)."""
    suffix = f"_{stage}"
    return {k.removesuffix(suffix): v for k, v in results.items() if k.endswith(suffix)}


def test_keys_per_stage_and_summary(metrics, validation) -> None:
    def stage1(index: Tensor, *_: Tensor) -> Tensor:
        return F.avg_pool2d(validation[0][index], 2)  # 16 px, as StackGAN's first stage is smaller

    results = metrics.evaluate(Answers(validation, {"stage1": stage1, "stage2": own_image(validation)}))
    assert set(results) == stage_keys("stage1") | stage_keys("stage2") | REAL_KEYS
    assert all(0.0 <= v <= 1.0 for k, v in results.items() if "fid" not in k)
    assert metrics.summary() == {
        "num_samples": SCORED,
        "feature_network": "classifier",
        "stages": ["stage1", "stage2"],
    }
    assert metrics.last_collapse_reasons == []
    assert metrics.feature_network == "classifier"


def test_own_images_score_exactly_the_real_ceiling(metrics, validation, datamodule) -> None:
    """Each caption's own image scores what the real images score (agreement 1.0 on the digits:
    their captions were written from the same measure); another image of the asked digit keeps the
    class but its attributes agree only by chance (1/3: the bins are terciles per class)."""
    model = Answers(validation, {"own": own_image(validation), "a": digit_image(datamodule, validation)})
    results = metrics.evaluate(model)
    real, own, a = of_stage(results, "real"), of_stage(results, "own"), of_stage(results, "a")
    assert real["val/attribute_agreement"] == 1.0
    assert all(real[f"val/{name}_agreement"] == 1.0 for name in ATTRIBUTES)
    assert real["val/caption_class_accuracy"] >= 0.97
    assert {k: v for k, v in own.items() if "fid" not in k} == real
    # The same images as the real side: 0 up to the rounding of the matrix square root.
    assert abs(own["val/fid_digits"]) < 1e-4
    assert a["val/caption_class_accuracy"] >= 0.95
    assert 0.15 <= a["val/attribute_agreement"] <= 0.55
    assert a["val/fid_digits"] > 10.0  # ten images for 200 captions
    assert model.calls == [64, 64, 64, 8]


def test_wrong_digit_and_blank_images(metrics, validation, datamodule) -> None:
    model = Answers(
        validation,
        {"own": own_image(validation), "next": digit_image(datamodule, validation, 1), "blank": blank},
    )
    results = metrics.evaluate(model)
    assert results["val/caption_class_accuracy_next"] <= 0.05
    # A blank image is one class to the classifier: right for about a tenth of the captions.
    assert results["val/caption_class_accuracy_blank"] <= 0.3
    assert results["val/fid_digits_blank"] > 5 * results["val/fid_digits_next"] > 5 * 10.0
    # Blank images measure 0 for every attribute: binned by hand with each caption's class.
    said_by_caption = [caption_requirements(datamodule.vocabulary.decode(t)) for t in validation[2][:SCORED]]
    labels = torch.tensor([label for label, _ in said_by_caption])
    said = torch.tensor([bins for _, bins in said_by_caption])
    zeros = {name: torch.zeros(SCORED) for name in ATTRIBUTES}
    bins = datamodule.attribute_bins.assign(zeros, labels)
    measured = torch.stack([bins[name] for name in ATTRIBUTES], dim=1)
    named = said >= 0
    expected = ((measured == said) & named).sum().double() / named.sum()
    assert results["val/attribute_agreement_blank"] == pytest.approx(float(expected), abs=1e-12)
    assert 0.2 < results["val/attribute_agreement_blank"] < 0.5  # near chance, 1/3
    for a, name in enumerate(ATTRIBUTES):
        share = (measured[:, a] == said[:, a])[named[:, a]].double().mean()
        assert results[f"val/{name}_agreement_blank"] == pytest.approx(float(share), abs=1e-12)


def test_stages_at_another_size_are_resized_to_the_real_size(metrics, validation) -> None:
    """A 16 px stage scores as its bilinear upsampling to 32 px; a 64 px stage as its antialiased
    bilinear downsampling (resized here by hand)."""

    def low(index: Tensor, *_: Tensor) -> Tensor:
        return F.interpolate(validation[0][index], size=(16, 16), mode="bilinear", antialias=True)

    def high(index: Tensor, *_: Tensor) -> Tensor:
        return F.interpolate(validation[0][index], size=(64, 64), mode="bicubic").clamp(-1, 1)

    def low_by_hand(*args: Tensor) -> Tensor:
        return F.interpolate(low(*args), size=(SIZE, SIZE), mode="bilinear", align_corners=False)

    def high_by_hand(*args: Tensor) -> Tensor:
        return F.interpolate(high(*args), size=(SIZE, SIZE), mode="bilinear", antialias=True)

    stages = {"low": low, "low_by_hand": low_by_hand, "high": high, "high_by_hand": high_by_hand}
    results = metrics.evaluate(Answers(validation, stages))
    assert of_stage(results, "low") == of_stage(results, "low_by_hand")
    assert of_stage(results, "high") == of_stage(results, "high_by_hand")
    # The 16 px digits are still digits (the classifier reads them) but not the same images.
    assert of_stage(results, "low")["val/caption_class_accuracy"] >= 0.9
    assert of_stage(results, "low")["val/fid_digits"] > 0.01
    same = validation[0][:4]
    assert resize_images(same, (SIZE, SIZE)) is same


def test_num_samples_limits_the_captions_scored(data_dir, datamodule, validation) -> None:
    m = evaluator(data_dir, num_samples=24, batch_size=10)
    m.prepare(datamodule)
    model = Answers(validation, {"own": own_image(validation)})
    results = m.evaluate(model)
    assert model.calls == [10, 10, 4] and model.position == 24
    assert m.summary()["num_samples"] == 24
    assert results["val/attribute_agreement_own"] == results["val/attribute_agreement_real"] == 1.0


def test_refuses_non_captioned_data_with_one_line(data_dir) -> None:
    with pytest.raises(ConfigError) as error:
        evaluator(data_dir).prepare(DigitsDataModule(image_size=SIZE))
    message = str(error.value)
    assert "\n" not in message
    assert "TextToImageMetrics scores captioned images" in message and "dataset=captioned_digits" in message


def test_a_missing_classifier_fails_in_prepare(tmp_path, datamodule) -> None:
    with pytest.raises(CheckpointError, match="gan-classifier dataset=digits"):
        evaluator(tmp_path).prepare(datamodule)


def test_bad_models_and_settings_are_refused(metrics, validation) -> None:
    with pytest.raises(ValueError, match="'real'"):
        metrics.evaluate(Answers(validation, {"real": own_image(validation)}))
    with pytest.raises(ConfigError, match="generate_from_captions"):
        metrics.evaluate(object())
    for bad in ({"num_samples": 1}, {"feature_network": "vgg"}, {"batch_size": 0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            TextToImageMetrics(**bad)


def test_the_metrics_option_builds_the_evaluator(make_cfg) -> None:
    from hydra.utils import instantiate

    cfg = make_cfg("dataset=captioned_digits", "metrics=text_to_image", "metrics.num_samples=50")
    built = instantiate(cfg.metrics.evaluator)
    assert isinstance(built, TextToImageMetrics)
    assert (built.num_samples, built.requested_feature_network, built.batch_size) == (50, "auto", 64)
    assert built.data_dir == Path(cfg.paths.data_dir)
