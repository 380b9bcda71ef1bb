"""The metric suite of a run: what evaluation during training and gan-eval compute."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from gan_research.data.digits import DigitsDataModule
from gan_research.data.mixtures import GaussianMixture2D, RingMixture
from gan_research.data.stacked_digits import StackedDigitsDataModule
from gan_research.data.translation import DigitsEdgesDataModule
from gan_research.errors import CheckpointError, ConfigError
from gan_research.evaluate import evaluate_checkpoint
from gan_research.metrics.classifier import DomainClassifier, save_classifier
from gan_research.metrics.inception import InceptionWeightsError
from gan_research.metrics.suite import MetricSuite
from gan_research.train import train
from gan_research.utils.data_spec import DataKind
from gan_research.utils.jsonl_logger import read_records


def real_sampler(x: torch.Tensor):
    state = {"i": 0}

    def sample(n: int) -> torch.Tensor:
        out = x[state["i"] : state["i"] + n]
        state["i"] += n
        return out

    return sample


def test_mixture_suite_on_real_and_collapsed_samplers():
    dm = RingMixture(num_samples=5000, seed=0)
    suite = MetricSuite(collapse={"min_modes_fraction": 0.5})
    suite.prepare(dm)
    good = suite.evaluate_sampler(real_sampler(dm.train_set.x))
    assert good["val/modes_recovered"] == 8
    # P(‖x − μ‖ ≤ 3σ) for a 2-D Gaussian is 1 − exp(−9/2) ≈ 98.89%.
    assert good["val/high_quality"] == pytest.approx(98.89, abs=0.5)
    assert good["val/kl_uniform"] < 0.01
    assert good["val/collapse"] == 0.0
    one_mode = dm.modes[0].expand(2500, 2).clone()
    bad = suite.evaluate_sampler(lambda n: one_mode[:n])
    assert bad["val/modes_recovered"] == 1
    assert bad["val/kl_uniform"] == pytest.approx(torch.log(torch.tensor(8.0)).item(), rel=1e-6)
    assert bad["val/collapse"] == 1.0
    assert "modes_recovered" in suite.last_collapse_reasons[0]


@pytest.fixture(scope="module")
def digits_suite(tmp_path_factory, seed_digits_classifier):
    dm = DigitsDataModule(image_size=32)
    data_dir = tmp_path_factory.mktemp("data")
    # The classifier a first run trains into its data directory (conftest trains it once per
    # session, through the same domain_classifier call the suite makes when the file is missing).
    seed_digits_classifier(data_dir)
    suite = MetricSuite(num_samples=1000, data_dir=str(data_dir), kid_subsets=10, is_splits=2)
    suite.prepare(dm)
    return dm, suite, data_dir


def test_digits_suite_uses_the_domain_classifier(digits_suite):
    dm, suite, data_dir = digits_suite
    assert suite.feature_network == "classifier"
    assert (data_dir / "classifiers" / "digits_32.pt").is_file()
    assert list((data_dir / "stats").glob("fid-real_digits_train_digits_32px_n1000.pt"))
    images = dm.train_set.x
    images = images.float() / 127.5 - 1 if images.dtype == torch.uint8 else images
    real = suite.evaluate_sampler(real_sampler(images[:1000]))
    # Names carry the feature network, so nobody reads them as Inception numbers.
    for key in (
        "val/fid_digits",
        "val/kid_digits",
        "val/is_digits",
        "val/precision_digits",
        "val/recall_digits",
        "val/density_digits",
        "val/coverage_digits",
        "val/diversity_digits",
        "val/classes_covered",
    ):
        assert key in real, key
    assert "val/fid" not in real
    # The same 1000 images as the real side: 0 up to float32 feature round-off.
    assert real["val/fid_digits"] == pytest.approx(0.0, abs=1e-4)
    assert real["val/classes_covered"] == 10
    assert real["val/coverage_digits"] > 0.95
    assert real["val/is_digits"] > 5

    collapsed = images[:1].expand(1000, -1, -1, -1).clone()
    bad = suite.evaluate_sampler(lambda n: collapsed[:n])
    assert bad["val/classes_covered"] == 1
    assert bad["val/diversity_digits"] == pytest.approx(0.0, abs=1e-9)
    assert bad["val/fid_digits"] > real["val/fid_digits"] + 10
    assert bad["val/coverage_digits"] < 0.1


def test_evaluation_during_training_and_gan_eval(make_cfg, tmp_path):
    cfg = make_cfg(
        "experiment=ring8_wgan_gp",
        "metrics=default",
        "metrics.every_n_steps=2",
        "schedule.max_steps=4",
        "dataset.num_samples=3000",
        "trainer.enable_progress_bar=false",
        "logger=none",
        "callbacks.progress_bar=null",
    )
    # gan-eval reads the run's own composed config, which a `gan-train` run saves there.
    run_dir = Path(cfg.paths.output_dir)
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    result = train(cfg)
    records = read_records(result["run_dir"] / "metrics.jsonl")
    evals = [r for r in records if "val/modes_recovered" in r and "status" not in r]
    assert [r["step"] for r in evals] == [2, 4]
    assert "val/modes_recovered" in result["metrics"]  # what sweeps read back from train()

    out = evaluate_checkpoint(result["run_dir"], "last.ckpt", cfg.metrics)
    assert out["step"] == 4
    assert set(out["metrics"]) >= {"val/modes_recovered", "val/high_quality", "val/kl_uniform"}
    json.dumps(out)
    with pytest.raises(CheckpointError, match="available"):
        evaluate_checkpoint(result["run_dir"], "nope.ckpt", cfg.metrics)


def test_missing_inception_weights_fail_before_training(make_cfg, monkeypatch, tmp_path):
    monkeypatch.delenv("GAN_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    cfg = make_cfg("metrics=inception")
    with pytest.raises(InceptionWeightsError, match="weights-inception-2015-12-05"):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


def test_digits_suite_scores_conditional_samplers(digits_suite):
    dm, _, data_dir = digits_suite
    # The fixture's classifier, without KID/IS/PRDC and with 500 samples (~50 a class): cheaper.
    suite = MetricSuite(num_samples=500, data_dir=str(data_dir), kinds=("fid",), prdc=False)
    suite.prepare(dm)
    images, labels = dm.train_set.x[:500], dm.train_set.y[:500]
    images = images.float() / 127.5 - 1 if images.dtype == torch.uint8 else images

    def labelled(offset: int):
        state = {"i": 0}

        def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
            i = state["i"]
            state["i"] += n
            return images[i : i + n], (labels[i : i + n] + offset) % 10

        return sample

    right, swapped = suite.evaluate_sampler(labelled(0)), suite.evaluate_sampler(labelled(1))
    assert right["val/class_accuracy_digits"] > 0.95
    # The real side's own images and labels: every class's FID is 0 up to round-off.
    assert right["val/intra_fid_digits"] == pytest.approx(0.0, abs=1e-4)
    assert swapped["val/class_accuracy_digits"] < 0.05
    assert swapped["val/intra_fid_digits"] > right["val/fid_digits"] + 10
    # FID sees the same images both times; only the per-class metrics tell them apart.
    assert swapped["val/fid_digits"] == right["val/fid_digits"]
    assert len(suite.last_per_class["intra_fid_digits"]) == 10


# --------------------------------------------------------------------------- the declaration decides


class RenamedStacked(StackedDigitsDataModule):
    """Stacked digits under another name: what the data is comes from its declaration."""

    name = "my_stacked_images"


class DigitsNamedStacked(DigitsDataModule):
    """Plain labelled digits (kind images) under the stacked dataset's name."""

    name = "stacked_digits"


def test_the_metrics_follow_the_declared_kind_not_the_name(tmp_path):
    suite = MetricSuite()
    assert RenamedStacked.kinds[0] is DataKind.STACKED
    assert suite.feature_network_for(RenamedStacked(image_size=8).spec) == "none"  # modes, per channel
    assert suite.feature_network_for(DigitsNamedStacked(image_size=8).spec) == "classifier"
    modes = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    mixture = GaussianMixture2D(modes=modes, std=0.01, num_samples=200, name="stacked_digits")
    assert suite.feature_network_for(mixture.spec) == "none"
    with pytest.raises(
        ConfigError, match=r"dataset 'digits_edges' \(paired image translation.*metrics=translation"
    ):
        suite.feature_network_for(DigitsEdgesDataModule().spec)

    # Scored as stacked data: an untrained digits classifier saved beforehand (no training here)
    # reads each channel; all-black samples are one mode.
    path = tmp_path / "digits_8.pt"
    save_classifier(DomainClassifier(channels=1, image_size=8, name="digits").freeze(), path, 0.0, "digits")
    stacked = MetricSuite(num_samples=64, batch_size=64, classifier_path=str(path), data_dir=str(tmp_path))
    stacked.prepare(RenamedStacked(image_size=8, num_samples=128))
    result = stacked.evaluate_sampler(lambda n: torch.full((n, 3, 8, 8), -1.0))
    assert set(result) == {"val/modes_covered", "val/kl_modes", "val/collapse"}
    assert result["val/modes_covered"] == 1

    # Scored as a mixture, whatever it is called: the mode protocol.
    points = MetricSuite(num_samples=100)
    points.prepare(mixture)
    result = points.evaluate_sampler(lambda n: modes[:1].expand(n, 2).clone())
    assert result["val/modes_recovered"] == 1 and "val/high_quality" in result
