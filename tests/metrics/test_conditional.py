"""Class accuracy and intra-class FID of class-conditional generators, alone and in the suite."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.linalg
import torch
from omegaconf import OmegaConf
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from gan_research.callbacks.evaluation import Evaluation
from gan_research.errors import ConfigError
from gan_research.evaluate import evaluate_checkpoint
from gan_research.metrics.conditional import ConditionalClassAccuracy, IntraClassFID
from gan_research.metrics.suite import MetricSuite
from gan_research.utils.data_spec import DataKind, DataSpec, Domain
from gan_research.utils.safe_config import ALLOWED_TARGET_PREFIXES

# --------------------------------------------------------------------------- class accuracy


def test_three_of_four_right_is_three_quarters_with_per_class_values() -> None:
    metric = ConditionalClassAccuracy(num_classes=4)
    intended = torch.tensor([0, 0, 1, 2])
    logits = torch.zeros(4, 4)
    logits[torch.arange(4), torch.tensor([0, 1, 1, 2])] = 5.0  # sample 1 (meant as 0) reads as 1
    metric.update(logits, intended)
    r = metric.compute()
    assert r["accuracy"].dtype == torch.float64
    assert float(r["accuracy"]) == 0.75
    assert r["per_class"][:3].tolist() == [0.5, 1.0, 1.0]
    assert math.isnan(float(r["per_class"][3]))  # no sample was generated for class 3
    assert int(r["num_samples"]) == 4


def test_class_accuracy_agrees_with_torchmetrics_over_batches() -> None:
    gen = torch.Generator().manual_seed(0)
    intended = torch.randint(5, (300,), generator=gen)
    logits = torch.randn(300, 5, generator=gen)
    logits[torch.arange(300), intended] += 1.0  # mostly right
    ours = ConditionalClassAccuracy(5)
    for lg, y in zip(logits.split(70), intended.split(70), strict=True):
        ours.update(lg, y)
    r = ours.compute()
    micro = MulticlassAccuracy(num_classes=5, average="micro")(logits, intended)
    per_class = MulticlassAccuracy(num_classes=5, average=None)(logits, intended)
    assert float(r["accuracy"]) == pytest.approx(float(micro), abs=1e-7)
    assert r["per_class"].float() == pytest.approx(per_class, abs=1e-6)
    # Predicted indices instead of scores give the same counts.
    again = ConditionalClassAccuracy(5)
    again.update(logits.argmax(1), intended)
    assert float(again.compute()["accuracy"]) == float(r["accuracy"])


def test_class_accuracy_checks_inputs_and_resets() -> None:
    metric = ConditionalClassAccuracy(3)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        metric.update(torch.tensor([0, 1]), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="integer"):
        metric.update(torch.tensor([0, 1]), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="2 entries for 3 samples"):
        metric.update(torch.tensor([0, 1, 2]), torch.tensor([0, 1]))
    with pytest.raises(ConfigError):
        ConditionalClassAccuracy(0)
    metric.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    metric.reset()
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert math.isnan(float(metric.compute()["accuracy"]))


def test_class_accuracy_states_merge_by_sum() -> None:
    # What DDP sync does with dist_reduce_fx="sum": two processes' halves equal one process.
    gen = torch.Generator().manual_seed(1)
    logits, intended = torch.randn(50, 4, generator=gen), torch.randint(4, (50,), generator=gen)
    whole, a, b = ConditionalClassAccuracy(4), ConditionalClassAccuracy(4), ConditionalClassAccuracy(4)
    whole.update(logits, intended)
    a.update(logits[:20], intended[:20])
    b.update(logits[20:], intended[20:])
    a.merge_state(b)
    assert torch.equal(a.compute()["per_class"].nan_to_num(-1), whole.compute()["per_class"].nan_to_num(-1))


# --------------------------------------------------------------------------- intra-FID


def _gaussian_classes(
    num_classes: int, per_class: int, dim: int, seed: int, shift: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Features of class k ~ N(3 e_k + shift, diag(0.5 + k/4)), float64, classes interleaved."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_classes).repeat(per_class)
    scale = 0.5 + labels.double().unsqueeze(1) / 4
    means = 3.0 * torch.eye(num_classes, dim, dtype=torch.float64)[labels]
    return means + shift + scale * torch.randn(len(labels), dim, generator=gen, dtype=torch.float64), labels


def _intra_fid(
    real: tuple[Tensor, Tensor], fake: tuple[Tensor, Tensor], batch: int = 37
) -> dict[str, Tensor]:
    metric = IntraClassFID(num_classes=int(real[1].max()) + 1, num_features=real[0].shape[1])
    metric.set_real(*real)
    for f, y in zip(fake[0].split(batch), fake[1].split(batch), strict=True):  # several updates
        metric.update(f, y)
    return metric.compute()


def _scipy_fid(real: np.ndarray, fake: np.ndarray) -> float:
    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_intra_fid_of_identical_class_sets_is_zero() -> None:
    data = _gaussian_classes(3, 40, 6, seed=0)
    r = _intra_fid(data, data)
    assert r["intra_fid"].dtype == torch.float64
    assert r["per_class"].shape == (3,)
    assert float(r["per_class"].abs().max()) < 1e-9


def test_intra_fid_grows_with_a_per_class_mean_shift() -> None:
    real = _gaussian_classes(3, 60, 6, seed=0)
    values = [
        float(_intra_fid(real, _gaussian_classes(3, 60, 6, seed=1, shift=s))["intra_fid"])
        for s in (0, 1, 2, 4)
    ]
    assert values == sorted(values) and len(set(values)) == 4
    # Shifting one class moves that class's value only.
    fake = _gaussian_classes(3, 60, 6, seed=1)
    shifted = fake[0].clone()
    shifted[fake[1] == 2] += 2.0
    before, after = _intra_fid(real, fake)["per_class"], _intra_fid(real, (shifted, fake[1]))["per_class"]
    assert torch.equal(before[:2], after[:2])
    assert float(after[2]) > float(before[2]) + 10  # ||shift||^2 = 6 * 2^2 = 24


def test_intra_fid_is_the_mean_of_per_class_scipy_fids() -> None:
    real = _gaussian_classes(4, 50, 5, seed=2)
    fake_features, fake_labels = _gaussian_classes(4, 30, 5, seed=3, shift=0.3)
    fake = (fake_features * 1.2, fake_labels)
    r = _intra_fid(real, fake)
    expected = [_scipy_fid(real[0][real[1] == k].numpy(), fake[0][fake[1] == k].numpy()) for k in range(4)]
    for ours, theirs in zip(r["per_class"].tolist(), expected, strict=True):
        assert abs(ours - theirs) / theirs < 1e-6
    assert abs(float(r["intra_fid"]) - np.mean(expected)) / np.mean(expected) < 1e-6


def test_intra_fid_keeps_the_real_side_across_reset_and_merges_by_sum() -> None:
    real = _gaussian_classes(3, 40, 4, seed=0)
    fake = _gaussian_classes(3, 40, 4, seed=1, shift=0.5)
    metric = IntraClassFID(3, 4)
    metric.set_real(*real)
    metric.update(*real)
    metric.reset()  # drops the generated side only
    assert metric.real_counts.tolist() == [40, 40, 40]
    assert int(metric.fake_count.sum()) == 0
    a, b = IntraClassFID(3, 4), IntraClassFID(3, 4)
    a.set_real(*real)
    a.update(fake[0][:50], fake[1][:50])
    b.update(fake[0][50:], fake[1][50:])
    a.merge_state(b)  # DDP's dist_reduce_fx="sum" on the generated side
    assert torch.allclose(a.compute()["per_class"], _intra_fid(real, fake)["per_class"], rtol=1e-12)


def test_intra_fid_small_classes_and_missing_real_side_are_clear_errors() -> None:
    metric = IntraClassFID(3, 2)
    metric.update(torch.randn(4, 2, dtype=torch.float64), torch.tensor([0, 0, 1, 1]))
    with pytest.raises(ConfigError, match="set_real"):
        metric.compute()
    metric.set_real(torch.randn(7, 2), torch.tensor([0, 0, 0, 1, 1, 2, 2]))
    # Class 2 has 2 real but no generated sample: named with both counts; classes 0 and 1 are fine.
    with pytest.raises(ValueError, match=r"class 2: 2 real, 0 generated") as info:
        metric.compute()
    assert "class 0" not in str(info.value) and "class 1" not in str(info.value)
    metric.update(torch.randn(1, 2), torch.tensor([2]))
    with pytest.raises(ValueError, match=r"class 2: 2 real, 1 generated"):
        metric.compute()
    metric.update(torch.randn(1, 2), torch.tensor([2]))
    assert math.isfinite(float(metric.compute()["intra_fid"]))
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        metric.update(torch.randn(3, 5), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        metric.update(torch.randn(1, 2), torch.tensor([-1]))


# --------------------------------------------------------------------------- in the suite

K, SIDE, PER_CLASS = 4, 4, 100


def _class_images(labels: Tensor, seed: int) -> Tensor:
    """(N, 1, 4, 4) images: noise (std 0.05), plus 0.5 on pixel k for class k: an "oracle"
    reads the class without error (10 standard deviations apart), pixels stay in [-1, 1]."""
    gen = torch.Generator().manual_seed(seed)
    x = 0.05 * torch.randn(len(labels), SIDE * SIDE, generator=gen)
    x[torch.arange(len(labels)), labels] += 0.5
    return x.view(-1, 1, SIDE, SIDE)


class OracleClassifier(nn.Module):
    """A stand-in domain classifier: logits read the class pixel, features are the first 6 pixels."""

    name = "toy"
    num_classes = K
    num_features = 6

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1)[:, : self.num_features]

    def logits(self, x: Tensor) -> Tensor:
        return 10 * x.flatten(1)[:, :K]


class TinyLabelled:
    """A labelled image datamodule of 4 x 100 images, batches (x, y) as the real ones yield."""

    name = "toy"
    sample_shape = (1, SIDE, SIDE)
    num_classes = K

    @property
    def spec(self) -> DataSpec:
        # Labelled images are their own domain, as GANDataModule declares them.
        domain = Domain("toy", labelled_data=lambda size: self)
        return DataSpec("toy", DataKind.IMAGES, self.sample_shape, K, 1, SIDE, domain=domain)

    def __init__(self) -> None:
        y = torch.arange(K).repeat(PER_CLASS)
        self.train_set = SimpleNamespace(x=_class_images(y, seed=0), y=y)

    def prepare_data(self) -> None:
        pass

    def setup(self, stage: str | None = None) -> None:
        pass

    def val_dataloader(self) -> list[tuple[Tensor, Tensor]]:
        x, y = self.train_set.x, self.train_set.y
        return [(x[i : i + 64], y[i : i + 64]) for i in range(0, len(x), 64)]


class OracleSuite(MetricSuite):
    def _build_feature_net(self) -> nn.Module:
        return OracleClassifier()


def conditional_sampler(seed: int, label_offset: int = 0):
    """A generator that draws images of class k for label k + ``label_offset`` (mod K)."""
    gen = torch.Generator().manual_seed(seed)

    def sample(n: int) -> tuple[Tensor, Tensor]:
        drawn = torch.randint(K, (n,), generator=gen)
        return _class_images(drawn, seed=int(torch.randint(2**31, (1,), generator=gen))), (
            drawn + label_offset
        ) % K

    return sample


UNCONDITIONAL_KEYS = {
    "val/fid_toy",
    "val/diversity_toy",
    "val/classes_covered",
    "val/kl_classes",
    "val/collapse",
}
CONDITIONAL_KEYS = {"val/class_accuracy_toy", "val/intra_fid_toy"}


@pytest.fixture
def oracle_suite(tmp_path: Path) -> OracleSuite:
    suite = OracleSuite(num_samples=400, kinds=("fid",), prdc=False, data_dir=str(tmp_path), batch_size=100)
    suite.prepare(TinyLabelled())
    return suite


def test_suite_tells_a_class_swapped_generator_from_a_correct_one(oracle_suite: OracleSuite) -> None:
    good = oracle_suite.evaluate_sampler(conditional_sampler(seed=1))
    swapped = oracle_suite.evaluate_sampler(conditional_sampler(seed=1, label_offset=1))
    assert set(good) == set(swapped) == UNCONDITIONAL_KEYS | CONDITIONAL_KEYS
    assert good["val/class_accuracy_toy"] == 1.0
    assert swapped["val/class_accuracy_toy"] == 0.0
    # The same images: FID cannot tell them apart, intra-FID can (class means 0.5 sqrt(2) apart).
    assert good["val/fid_toy"] == swapped["val/fid_toy"] < 0.05
    assert good["val/intra_fid_toy"] < 0.05
    assert swapped["val/intra_fid_toy"] > 0.4
    per_class = oracle_suite.last_per_class
    assert per_class["class_accuracy_toy"] == [0.0] * K
    assert len(per_class["intra_fid_toy"]) == K and min(per_class["intra_fid_toy"]) > 0.4


def test_unconditional_samplers_get_no_conditional_keys(oracle_suite: OracleSuite) -> None:
    conditional = conditional_sampler(seed=1)
    plain = oracle_suite.evaluate_sampler(lambda n: conditional(n)[0])
    assert set(plain) == UNCONDITIONAL_KEYS
    assert oracle_suite.last_per_class == {}
    # The conditional metrics were not fed meanwhile: a later conditional evaluation is unaffected.
    assert oracle_suite.evaluate_sampler(conditional_sampler(seed=1))["val/class_accuracy_toy"] == 1.0


def test_suite_refuses_inconsistent_samplers(oracle_suite: OracleSuite) -> None:
    calls = {"n": 0}
    conditional = conditional_sampler(seed=1)

    def flaky(n: int):
        calls["n"] += 1
        return conditional(n) if calls["n"] == 1 else conditional(n)[0]

    with pytest.raises(ValueError, match="some batches"):
        oracle_suite.evaluate_sampler(flaky)
    small = OracleSuite(num_samples=100, kinds=("fid",), prdc=False, data_dir=oracle_suite.data_dir)
    small.prepare(TinyLabelled())
    with pytest.raises(ValueError, match="integer class indices"):
        small.evaluate_sampler(lambda n: (torch.zeros(n, 1, SIDE, SIDE), torch.zeros(n, 2, dtype=torch.long)))


def test_suite_names_small_classes(oracle_suite: OracleSuite) -> None:
    def only_class_0(n: int) -> tuple[Tensor, Tensor]:
        labels = torch.zeros(n, dtype=torch.long)
        return _class_images(labels, seed=5), labels

    with pytest.raises(ConfigError, match=r"class 1: 100 real, 0 generated"):
        oracle_suite.evaluate_sampler(only_class_0)
    # The failed evaluation left no generated samples behind.
    assert oracle_suite.evaluate_sampler(conditional_sampler(seed=1))["val/intra_fid_toy"] < 0.05


def test_callback_asks_each_process_for_its_share(oracle_suite: OracleSuite) -> None:
    asked: list[int] = []
    conditional = conditional_sampler(seed=1)

    class Module:
        sampling_generator = nn.Linear(1, 1)
        device = torch.device("cpu")

        def sample_for_evaluation(self, n: int):
            asked.append(n)
            return conditional(n)

    callback = Evaluation(oracle_suite, every_n_steps=0)
    trainer = SimpleNamespace(global_step=5, world_size=2, loggers=[], callback_metrics={}, should_stop=False)
    results = callback.evaluate(trainer, Module())
    assert asked == [50, 50, 50, 50]  # num_samples 400 in batches of 100, half per process
    assert results["val/class_accuracy_toy"] == 1.0
    assert "val/class_accuracy_toy" in trainer.callback_metrics


# --------------------------------------------------------------------------- gan-eval


class TinyModel(nn.Module):
    """A "checkpointed" model for gan-eval: conditional or not, images from ``conditional_sampler``."""

    def __init__(self, conditional: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.generator_ema = None
        self.conditional = conditional
        self._sample = conditional_sampler(seed=1)

    def sample_for_evaluation(self, n: int) -> Tensor | tuple[Tensor, Tensor]:
        images, labels = self._sample(n)
        return (images, labels) if self.conditional else images


@pytest.mark.parametrize("conditional", [True, False])
def test_gan_eval_reports_conditional_metrics_only_for_conditional_models(
    conditional: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(MetricSuite, "_build_feature_net", lambda self: OracleClassifier())
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "checkpoints").mkdir()
    cfg = {
        "model": {"_target_": f"{__name__}.TinyModel", "conditional": conditional},
        "dataset": {"_target_": f"{__name__}.TinyLabelled"},
        "paths": {"output_dir": str(run_dir)},
        "name": "run",
    }
    OmegaConf.save(OmegaConf.create(cfg), run_dir / ".hydra" / "config.yaml")
    torch.save(
        {"state_dict": TinyModel().state_dict(), "global_step": 7}, run_dir / "checkpoints" / "last.ckpt"
    )
    metrics = OmegaConf.create(
        {
            "_target_": "x",
            "every_n_steps": 1,
            "evaluator": {
                "_target_": "gan_research.metrics.suite.MetricSuite",
                "num_samples": 400,
                "kinds": ["fid"],
                "prdc": False,
                "batch_size": 100,
                "data_dir": str(tmp_path / "data"),
            },
        }
    )
    # The fabricated run's model lives in this test module: allow it beside the project's targets.
    allowed = (*ALLOWED_TARGET_PREFIXES, __name__)
    out = evaluate_checkpoint(run_dir, "last.ckpt", metrics, device="cpu", allowed_targets=allowed)
    json.dumps(out)
    if conditional:
        assert set(out["metrics"]) == UNCONDITIONAL_KEYS | CONDITIONAL_KEYS
        assert out["metrics"]["val/class_accuracy_toy"] == 1.0
        assert set(out["per_class"]) == {"class_accuracy_toy", "intra_fid_toy"}
    else:
        assert set(out["metrics"]) == UNCONDITIONAL_KEYS
        assert "per_class" not in out
