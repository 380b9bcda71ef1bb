"""The class-conditional families (cGAN with concat or projection D, AC-GAN, SAGAN):
their training steps, label handling, grids, errors and experiments."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from gan_research.errors import ConfigError
from gan_research.families.acgan import ACGAN
from gan_research.families.cgan import ConditionalGAN
from gan_research.families.gan import GAN
from gan_research.train import build, train
from gan_research.utils.jsonl_logger import read_records
from tests.families.test_gan import changed, fit, params

CONDITIONAL_MODELS = ("cgan", "cgan_projection", "acgan", "sagan")


@pytest.mark.parametrize("model", CONDITIONAL_MODELS)
def test_a_step_updates_both_networks_with_labels(make_cfg, model):
    cfg = make_cfg(f"model={model}", "schedule.max_steps=2")
    objs = build(cfg)
    module = objs["model"]
    assert isinstance(module, ConditionalGAN)
    g0, d0 = params(module.generator), params(module.discriminator)
    fit(cfg, module, objs["datamodule"])
    assert changed(g0, module.generator) and changed(d0, module.discriminator)


def test_real_pairs_carry_dataset_labels_and_fake_pairs_sampled_ones(make_cfg, monkeypatch):
    cfg = make_cfg("model=cgan", "schedule.max_steps=1")
    objs = build(cfg)
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    batches: list[tuple[torch.Tensor, torch.Tensor]] = []
    original_d, original_step = ConditionalGAN.discriminate, GAN.discriminator_step

    def record(self, x, condition):
        calls.append((x.detach().clone(), condition.clone()))
        return original_d(self, x, condition)

    def record_batch(self, real, opt_d, labels=None):
        batches.append((real.clone(), labels.clone()))
        return original_step(self, real, opt_d, labels)

    monkeypatch.setattr(ConditionalGAN, "discriminate", record)
    monkeypatch.setattr(GAN, "discriminator_step", record_batch)
    fit(cfg, objs["model"], objs["datamodule"])
    ((real, labels),) = batches
    # D step: real pairs first, then fake pairs; the G step scores one more fake batch.
    assert len(calls) == 3
    assert torch.equal(calls[0][0], real) and torch.equal(calls[0][1], labels)
    fake_labels = calls[1][1]
    assert fake_labels.shape == labels.shape and fake_labels.dtype == torch.long
    assert int(fake_labels.min()) >= 0 and int(fake_labels.max()) < 10


def test_flipped_pairs_keep_their_labels(make_cfg):
    module = build(make_cfg("model=cgan", "schedule.label_flip_prob=0.4"))["model"]
    torch.manual_seed(0)
    n = 2000
    real = (torch.zeros(n, 1), torch.zeros(n, dtype=torch.long))
    fake = (torch.ones(n, 1), torch.ones(n, dtype=torch.long))
    (x_r, y_r), (_, y_f) = module.flip_pairs(real, fake)
    flipped = x_r[:, 0] == 1
    assert 0.35 < flipped.float().mean() < 0.45
    # Each image travels with its label: a flipped "real" slot holds the fake image and the fake label.
    assert torch.equal(y_r == 1, flipped) and torch.equal(y_f == 0, flipped)


def test_acgan_class_losses_are_the_papers(make_cfg):
    module = build(make_cfg("model=acgan", "model.class_weight=0.5"))["model"]
    assert isinstance(module, ACGAN)
    torch.manual_seed(0)
    logits_r, logits_f = torch.randn(6, 10), torch.randn(6, 10)
    y_r, y_f = torch.randint(10, (6,)), torch.randint(10, (6,))
    d = module.discriminator_extra_losses(logits_r, logits_f, y_r, y_f)
    g = module.generator_extra_losses(torch.zeros(6, 1, 32, 32), logits_f, y_f)
    expected_d = 0.5 * (F.cross_entropy(logits_r, y_r) + F.cross_entropy(logits_f, y_f))
    assert d.losses.keys() == g.losses.keys() == {"class"}
    torch.testing.assert_close(d.losses["class"], expected_d)
    torch.testing.assert_close(g.losses["class"], 0.5 * F.cross_entropy(logits_f, y_f))


def test_acgan_trains_its_class_head_and_logs_the_class_loss(make_cfg):
    cfg = make_cfg("model=acgan", "schedule.max_steps=2")
    objs = build(cfg)
    module = objs["model"]
    head0 = module.discriminator.head.weight.detach().clone()
    trainer = fit(cfg, module, objs["datamodule"])
    assert not torch.equal(head0, module.discriminator.head.weight)
    metrics = trainer.callback_metrics
    assert "train/d_class" in metrics and "train/g_class" in metrics
    assert torch.isfinite(metrics["train/d_class"])


def test_class_grid_is_a_row_per_class_with_shared_latents(make_cfg):
    module = build(make_cfg("model=cgan"))["model"]
    images, nrow = module.grid_samples()
    assert nrow == 8 and images.shape == (10 * 8, 1, 32, 32)
    rows = images.view(10, 8, -1)
    # Same latent, different class: columns differ between rows; the networks are untrained but
    # the label is an input, so the outputs already depend on it.
    assert not torch.allclose(rows[0], rows[1])


def test_samples_for_evaluation_are_labelled_and_balanced(make_cfg):
    module = build(make_cfg("model=cgan"))["model"]
    images, labels = module.sample_for_evaluation(25)
    assert images.shape[0] == 25 and labels.shape == (25,)
    assert torch.bincount(labels, minlength=10).tolist() == [3] * 5 + [2] * 5


def test_sample_grid_png_has_a_row_per_class(make_cfg):
    cfg = make_cfg("model=cgan", "schedule.max_steps=2", "callbacks.samples.every_n_steps=2")
    train(cfg)
    png = Path(cfg.paths.output_dir) / "samples" / "step_0000002.png"
    width, height = Image.open(png).size
    # save_image: padding 2 around each 32 px tile.
    assert (width, height) == (8 * 34 + 2, 10 * 34 + 2)


def test_conditional_family_on_unlabelled_data_is_one_clear_error(make_cfg, tmp_path):
    folder = tmp_path / "flat"
    folder.mkdir()
    for i in range(10):
        Image.new("L", (32, 32), color=i * 20).save(folder / f"{i}.png")
    cfg = make_cfg("model=cgan", "dataset=image_folder", f"dataset.root={folder}", "dataset.channels=1")
    # The valid choices come from the declarations: datasets of the family's kinds, models for this data.
    with pytest.raises(
        ConfigError,
        match=r"model=cgan needs labelled images.*'image_folder' has no labels.*digits.*models for",
    ):
        build(cfg)
    assert not (Path(cfg.paths.output_dir) / "metrics.jsonl").exists()


def test_class_count_mismatches_name_the_fix(make_cfg):
    with pytest.raises(ConfigError, match=r"model.num_classes=5 but dataset 'digits' has 10 classes"):
        build(make_cfg("model=cgan", "model.num_classes=5"))
    with pytest.raises(ConfigError, match=r"model.discriminator .* num_classes=7"):
        build(make_cfg("model=cgan", "model.discriminator.num_classes=7"))
    with pytest.raises(ConfigError, match=r"model.discriminator .* num_outputs=3"):
        build(make_cfg("model=acgan", "model.discriminator.num_outputs=3"))


def test_conditional_networks_refuse_missing_labels(make_cfg):
    module = build(make_cfg("model=cgan"))["model"]
    with pytest.raises(ValueError, match="class-conditional"):
        module.generator(torch.randn(2, module.generator.latent_dim))


@pytest.mark.parametrize(
    "experiment", ["cgan_digits", "cgan_projection_digits", "acgan_digits", "sagan_digits"]
)
def test_experiment_runs_a_few_steps(make_cfg, experiment):
    cfg = make_cfg(
        f"experiment={experiment}",
        "schedule.max_steps=2",
        "model.generator.ngf=8",
        "model.discriminator.ndf=8",
        "dataset.batch_size=8",
        "callbacks.samples.every_n_steps=2",
        "callbacks.model_checkpoint.every_n_train_steps=2",
    )
    train(cfg)
    records = read_records(Path(cfg.paths.output_dir) / "metrics.jsonl")
    assert records[-1]["status"] == "finished"
    assert (Path(cfg.paths.output_dir) / "samples" / "step_0000002.png").is_file()


@pytest.fixture(scope="module")
def digits_classifier(digits_classifier_file):
    from gan_research.metrics.classifier import load_classifier

    model = load_classifier(digits_classifier_file, dataset="digits")
    assert model.test_accuracy > 0.95
    return model


# A training run that must learn (hundreds of steps): `make test-all`, not `make test` (its
# mechanics, a step, resume, grids, gan-eval, are the contract test's).
@pytest.mark.slow
@pytest.mark.heavy
def test_trained_cgan_draws_the_requested_class(make_cfg, digits_classifier):
    """A few hundred steps on digits: the domain classifier finds the requested digit far above
    chance (10%)."""
    cfg = make_cfg(
        "model=cgan",
        "model.generator.ngf=16",
        "model.discriminator.ndf=16",
        "dataset.batch_size=32",
        "schedule.max_steps=300",
        "trainer.log_every_n_steps=50",
    )
    objs = build(cfg)
    torch.manual_seed(0)
    fit(cfg, objs["model"], objs["datamodule"])
    images, labels = objs["model"].sample_for_evaluation(1000)
    accuracy = (digits_classifier.logits(images).argmax(1) == labels).float().mean().item()
    assert accuracy > 0.3, accuracy
