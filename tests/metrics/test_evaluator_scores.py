"""Evaluators declare what they read from a model (``scores``) and families what they make
(``evaluation_output``); a mismatch is refused before anything runs, naming the options that fit."""

from __future__ import annotations

import pytest
from hydra.utils import get_class

from gan_research.config import CONFIG_DIR, _evaluator_target, metrics_options
from gan_research.errors import ConfigError
from gan_research.families.base import AdversarialModule
from gan_research.families.image_to_image import ImageToImageModule
from gan_research.metrics.evaluator import require_scores
from gan_research.metrics.suite import MetricSuite
from gan_research.metrics.translation import TranslationMetrics
from gan_research.utils.data_spec import DataKind


def test_every_metrics_option_declares_what_it_scores():
    from pathlib import Path

    for path in sorted((Path(CONFIG_DIR) / "metrics").glob("*.yaml")):
        target = _evaluator_target(path)
        if target is not None:
            evaluator = get_class(target)
            # What it reads, and the same in words for the mismatch message.
            assert isinstance(getattr(evaluator, "scores", None), str), path.stem
            assert isinstance(getattr(evaluator, "scores_description", None), str), path.stem


def test_families_declare_their_evaluation_output():
    assert AdversarialModule.evaluation_output == "samples"
    assert ImageToImageModule.evaluation_output == "translations"


def test_metrics_options_filter_on_data_kind_and_model_output():
    # Image data whose model makes translations: a style (style transfer), a reconstruction (VQGAN).
    assert metrics_options(DataKind.IMAGES, "translations") == ["reconstruction", "style_transfer"]
    assert metrics_options(DataKind.CAPTIONED, "captions") == ["text_to_image"]
    assert "default" in metrics_options(DataKind.IMAGES, "samples")
    assert "style_transfer" not in metrics_options(DataKind.IMAGES, "samples")
    paired = metrics_options(DataKind.PAIRED, "translations")
    assert {"translation", "super_resolution"} <= set(paired) and "default" not in paired


class _Translator:
    evaluation_output = "translations"


class _Sampler:
    evaluation_output = "samples"


def test_require_scores_refuses_a_mismatch_and_says_what_fits():
    suite = MetricSuite.__new__(MetricSuite)
    with pytest.raises(ConfigError, match=r"scores a generator's samples.*makes translations.*use metrics=x"):
        require_scores(suite, _Translator(), "use metrics=x")
    require_scores(suite, _Sampler(), "unused")  # matching: no error
    require_scores(TranslationMetrics.__new__(TranslationMetrics), _Translator(), "unused")
    require_scores(suite, object(), "unused")  # an undeclared model is not checked
    # A family describes its own output (a new kind of output needs no table in the metrics).
    with pytest.raises(ConfigError, match=r"makes translations of input images; use metrics=y"):
        require_scores(suite, ImageToImageModule.__new__(ImageToImageModule), "use metrics=y")
