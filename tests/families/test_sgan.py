"""Semi-supervised GAN: the labelled subset, Salimans' (K+1)-class D, test accuracy, config errors."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate

from gan_research.errors import ConfigError
from gan_research.families.sgan import SemiSupervisedGAN, select_labeled
from gan_research.train import build, train
from gan_research.utils.data_spec import DataKind, DataSpec
from gan_research.utils.jsonl_logger import read_records

# Tiny SGAN on 16x16 digits with a fifth of each class held out (1438 training digits).
TINY_SGAN = (
    "model=sgan",
    "model.generator.ngf=8",
    "model.discriminator.ndf=8",
    "dataset.batch_size=8",
    "dataset.image_size=16",
    "dataset.test_fraction=0.2",
)


def params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.named_parameters())


def fit(cfg, model, datamodule) -> None:
    trainer = instantiate(cfg.trainer, callbacks=[], logger=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=datamodule)


def same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    pa, pb = params(a), params(b)
    return all(torch.equal(pa[k], pb[k]) for k in pa)


def test_only_the_labelled_subsets_labels_are_used(make_cfg):
    cfg = make_cfg(*TINY_SGAN, "schedule.max_steps=3")
    models = {}
    for variant in ("reference", "other_labels_scrambled", "subset_labels_changed"):
        objs = build(cfg)
        model, labels = objs["model"], objs["datamodule"].train_set.y
        if variant == "other_labels_scrambled":
            others = torch.ones(len(labels), dtype=torch.bool)
            others[model.labeled_indices] = False
            scrambled = torch.randint(10, (int(others.sum()),), generator=torch.Generator().manual_seed(3))
            assert not torch.equal(scrambled, labels[others])
            labels[others] = scrambled
        if variant == "subset_labels_changed":
            # The control: the test can see a label change when one matters.
            model._labeled_y = (model._labeled_y + 1) % 10
        fit(cfg, model, objs["datamodule"])
        models[variant] = model
    reference = models["reference"]
    for name in ("generator", "discriminator"):
        assert same(getattr(reference, name), getattr(models["other_labels_scrambled"], name)), name
    assert not same(reference.discriminator, models["subset_labels_changed"].discriminator)


def test_labelled_subset_is_class_balanced_and_reproducible(make_cfg):
    objs = build(make_cfg(*TINY_SGAN, "model.num_labeled=50", "model.labeled_seed=7"))
    model, train_set = objs["model"], objs["datamodule"].train_set
    indices = model.labeled_indices
    assert len(indices) == 50 and len(indices.unique()) == 50
    assert torch.equal(train_set.y[indices].bincount(minlength=10), torch.full((10,), 5))
    assert torch.equal(indices, select_labeled(train_set.y, 50, 10, seed=7))
    assert not torch.equal(indices, select_labeled(train_set.y, 50, 10, seed=8))
    assert torch.equal(model._labeled_x, train_set.x[indices])
    assert torch.equal(model._labeled_y, train_set.y[indices])


def test_score_is_logsumexp_of_the_logits_and_d_loss_is_salimans_l_unsupervised(make_cfg):
    model = build(make_cfg(*TINY_SGAN))["model"]
    torch.manual_seed(0)
    real, fake = torch.randn(6, 1, 16, 16), torch.randn(6, 1, 16, 16)
    real_score, real_logits = model.discriminate(real, None)
    fake_score, fake_logits = model.discriminate(fake, None)
    assert real_logits.shape == (6, 10)
    assert torch.allclose(real_score, torch.logsumexp(real_logits, dim=1))
    # Salimans et al. 2016, sec. 5: D(x) = Z(x) / (Z(x) + 1) with Z = sum_k exp(l_k).
    z_real, z_fake = real_logits.double().exp().sum(1), fake_logits.double().exp().sum(1)
    l_unsup = -(z_real / (z_real + 1)).log().mean() - (1 / (z_fake + 1)).log().mean()
    d_adv = model.objective.adversarial.discriminator_loss(real_score, fake_score)
    assert d_adv.item() == pytest.approx(l_unsup.item(), rel=1e-5)


@pytest.mark.parametrize("generator_loss", ["feature_matching", "adversarial"])
def test_step_trains_both_networks_and_logs_the_supervised_loss(make_cfg, monkeypatch, generator_loss):
    cfg = make_cfg(*TINY_SGAN, f"model.generator_loss={generator_loss}", "schedule.max_steps=1")
    objs = build(cfg)
    model = objs["model"]
    g0, d0 = params(model.generator), params(model.discriminator)
    d_changed_in_g_step = []
    original = SemiSupervisedGAN.generator_step

    def spy(self, real, opt_g, labels=None):
        before = params(self.discriminator)
        out = original(self, real, opt_g, labels)
        d_changed_in_g_step.append(changed(before, self.discriminator))
        return out

    monkeypatch.setattr(SemiSupervisedGAN, "generator_step", spy)
    fit(cfg, model, objs["datamodule"])
    assert changed(g0, model.generator) and changed(d0, model.discriminator)
    assert d_changed_in_g_step == [False]
    logs = model.last_step_logs
    for key in ("train/sup_loss", "train/sup_acc", "train/d_sup", "train/g_loss"):
        assert key in logs, key
    assert ("train/g_feature_matching" in logs) == (generator_loss == "feature_matching")


def test_feature_matching_loss_matches_the_mean_features(make_cfg):
    model = build(make_cfg(*TINY_SGAN))["model"]
    torch.manual_seed(0)
    real, fake = torch.randn(8, 1, 16, 16), torch.randn(8, 1, 16, 16)
    features = model.discriminator.net.features
    expected = (features(real).flatten(1).mean(0) - features(fake).flatten(1).mean(0)).pow(2).mean()
    assert model.feature_matching_loss(real, fake).item() == pytest.approx(expected.item(), rel=1e-5)
    assert model.feature_matching_loss(fake, fake).item() == pytest.approx(0.0, abs=1e-10)


def test_test_accuracy_is_reported_and_is_the_accuracy_on_the_test_set(make_cfg):
    cfg = make_cfg(*TINY_SGAN, "model.eval_every_n_steps=2", "schedule.max_steps=3")
    result = train(cfg)
    assert result["status"] == "finished"
    records = read_records(result["run_dir"] / "metrics.jsonl")
    reported = {
        r["step"]: r["val/test_accuracy"] for r in records if "val/test_accuracy" in r and "status" not in r
    }
    assert sorted(reported) == [2, 3]  # every 2 steps and at the end
    model, test_set = result["model"], result["datamodule"].test_set
    model.discriminator.eval()
    with torch.no_grad():
        direct = (model.discriminator(test_set.x)[1].argmax(1) == test_set.y).float().mean().item()
    assert reported[3] == pytest.approx(direct, abs=1e-6)
    assert result["metrics"]["val/test_accuracy"] == pytest.approx(direct, abs=1e-6)
    assert result["trainer"].callback_metrics["val/test_accuracy"].item() == pytest.approx(direct, abs=1e-6)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.num_labeled=5"], r"model.num_labeled=5 is invalid.*multiple of model.num_classes=10"),
        (["model.num_labeled=105"], r"model.num_labeled=105 is invalid"),
        (
            ["model.num_labeled=2000"],
            r"model.num_labeled=2000 is larger than the training set \(1438 samples\)",
        ),
        (["model.num_labeled=1430"], r"model.num_labeled=1430 needs 143 .* class \d has only 1\d\d"),
        (
            ["dataset.test_fraction=0.0"],
            r"dataset 'digits' has none: set dataset.test_fraction \(e.g. dataset.test_fraction=0.2\)",
        ),
        (["loss=wgan_gp"], r"loss=minimax or loss=non_saturating"),
        (["model.generator_loss=moment"], r"model.generator_loss='moment'.*feature_matching"),
        (["model.discriminator.adversarial_head=true"], r"adversarial_head=True"),
    ],
)
def test_config_errors_name_the_value(make_cfg, overrides, message):
    with pytest.raises(ConfigError, match=message):
        build(make_cfg(*TINY_SGAN, *overrides))


def test_unlabelled_data_is_a_config_error(make_cfg):
    model = build(make_cfg(*TINY_SGAN))["model"]
    spec = DataSpec("image_folder", DataKind.IMAGES, (1, 16, 16), num_classes=None, channels=1, image_size=16)
    folder = SimpleNamespace(spec=spec)
    with pytest.raises(ConfigError, match=r"dataset 'image_folder' has no labels"):
        model.check_data(folder)


def test_experiment_runs_and_reports_test_accuracy(make_cfg):
    cfg = make_cfg(
        "experiment=sgan_digits",
        "model.generator.ngf=8",
        "model.discriminator.ndf=8",
        "dataset.batch_size=8",
        "dataset.image_size=16",
        "schedule.max_steps=2",
    )
    assert (cfg.dataset.test_fraction, cfg.model.num_labeled) == (0.2, 100)
    assert cfg.optimized_metric == "val/test_accuracy"
    result = train(cfg)
    assert result["status"] == "finished" and result["trainer"].global_step == 2
    assert 0.0 <= result["metrics"]["val/test_accuracy"] <= 1.0
