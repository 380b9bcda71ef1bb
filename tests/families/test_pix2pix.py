"""pix2pix: eq. 4's L1 term, D on concatenated pairs, the step's updates, grids, config errors,
and short runs of the embedded experiment."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from PIL import Image
from torch import nn

from gan_research.config import dataset_keys_read, dataset_options_of
from gan_research.errors import ConfigError
from gan_research.families.pix2pix import Pix2Pix
from gan_research.train import build, train
from gan_research.utils.data_spec import DataKind
from gan_research.utils.jsonl_logger import read_records

# model=pix2pix on the embedded edges -> digits pairs with tiny networks.
P2P = (
    "model=pix2pix",
    "dataset=digits_edges",
    "model.generator.num_downs=5",
    "model.generator.ngf=8",
    "model.discriminator.input_channels=2",
    "model.discriminator.ndf=8",
    "model.discriminator.n_layers=2",
    "dataset.batch_size=4",
)


def params(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def changed(before: dict[str, torch.Tensor], module: nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.named_parameters())


def fit(cfg, model, datamodule, callbacks=()):
    trainer = instantiate(cfg.trainer, callbacks=list(callbacks), logger=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=datamodule)
    return trainer


class ConstantLogits(nn.Module):
    """A stand-in D: logit 0 (D = 1/2) on every patch, recording what it is shown."""

    def __init__(self, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.input_shape = input_shape
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return x.new_zeros(x.shape[0], 1, 2, 2)


def test_generator_loss_is_adversarial_plus_100_times_l1(make_cfg):
    model = build(make_cfg(*P2P))["model"]
    assert model.l1_weight == 100.0
    model.discriminator = ConstantLogits(model.discriminator.input_shape)
    b = torch.rand(2, 1, 32, 32) * 2 - 1
    a = torch.rand(2, 1, 32, 32) * 2 - 1
    fake = b + 0.5  # |G(a) - b| = 0.5 on every pixel
    terms = model.generator_loss(a, b, fake)
    # Non-saturating (the reference's vanilla): -log D = log 2 at logit 0.
    assert float(terms["g_adv"]) == pytest.approx(math.log(2), rel=1e-6)
    assert float(terms["g_l1"]) == pytest.approx(0.5, rel=1e-6)
    assert float(terms["g_loss"]) == pytest.approx(math.log(2) + 100 * 0.5, rel=1e-6)
    # D was shown the pair (a, G(a)).
    assert torch.equal(model.discriminator.seen[0], torch.cat([a, fake], 1))


def test_l1_weight_is_configurable(make_cfg):
    model = build(make_cfg(*P2P, "model.l1_weight=10"))["model"]
    model.discriminator = ConstantLogits(model.discriminator.input_shape)
    b = torch.zeros(1, 1, 32, 32)
    terms = model.generator_loss(b, b, b + 0.25)
    assert float(terms["g_loss"]) == pytest.approx(math.log(2) + 10 * 0.25, rel=1e-6)


def test_d_sees_concatenated_pairs_and_its_loss_is_halved(make_cfg, monkeypatch):
    cfg = make_cfg(*P2P, "schedule.max_steps=1")
    objs = build(cfg)
    model = objs["model"]
    batches, shown, scores = [], [], []
    original = Pix2Pix.training_step

    def record_batch(self, batch, batch_idx):
        batches.append([t.clone() for t in batch])
        return original(self, batch, batch_idx)

    monkeypatch.setattr(Pix2Pix, "training_step", record_batch)

    def record_pair(module, inputs, output):
        shown.append(inputs[0].detach().clone())
        scores.append(output.detach().clone())

    model.discriminator.register_forward_hook(record_pair)
    fit(cfg, model, objs["datamodule"])
    (a, b) = batches[0]
    # D phase: real pair, fake pair; G phase: the fake pair again (same forward of G).
    assert len(shown) == 3
    assert all(x.shape == (4, 2, 32, 32) for x in shown)
    real_in, fake_in, g_in = shown
    assert torch.equal(real_in, torch.cat([a, b], 1))
    assert torch.equal(fake_in[:, :1], a) and torch.equal(g_in[:, :1], a)
    assert torch.equal(fake_in[:, 1:], g_in[:, 1:])  # the reference's one forward of G
    assert not torch.equal(fake_in[:, 1:], b)
    d_loss = 0.5 * (F.softplus(-scores[0]).mean() + F.softplus(scores[1]).mean())
    assert float(model.last_step_logs["train/d_loss"]) == pytest.approx(float(d_loss), rel=1e-5)
    logs = model.last_step_logs
    for key in ("train/d_loss", "train/g_loss", "train/g_l1", "train/g_adv", "train/d_real", "train/d_fake"):
        assert key in logs and torch.isfinite(logs[key])
    assert float(logs["train/g_loss"]) == pytest.approx(
        float(logs["train/g_adv"] + 100 * logs["train/g_l1"]), rel=1e-5
    )


def test_one_step_updates_g_and_d_and_d_is_frozen_during_g_update(make_cfg, monkeypatch):
    cfg = make_cfg(*P2P, "schedule.max_steps=1")
    objs = build(cfg)
    model = objs["model"]
    g0, d0 = params(model.generator), params(model.discriminator)
    seen = {}
    original_step, original_backward = Pix2Pix.generator_step, Pix2Pix.backward_and_step

    def spy_step(self, a, b, fake, opt_g):
        d_before, g_before = params(self.discriminator), params(self.generator)
        out = original_step(self, a, b, fake, opt_g)
        seen["d_changed_in_g_step"] = changed(d_before, self.discriminator)
        seen["g_changed_in_g_step"] = changed(g_before, self.generator)
        seen["d_requires_grad_after"] = all(p.requires_grad for p in self.discriminator.parameters())
        return out

    def spy_backward(self, optimizer, loss, *, counts_as_step):
        if counts_as_step:  # the G update: D's weights must be out of the graph
            seen["d_requires_grad_in_g_update"] = any(
                p.requires_grad for p in self.discriminator.parameters()
            )
        return original_backward(self, optimizer, loss, counts_as_step=counts_as_step)

    monkeypatch.setattr(Pix2Pix, "generator_step", spy_step)
    monkeypatch.setattr(Pix2Pix, "backward_and_step", spy_backward)
    fit(cfg, model, objs["datamodule"])
    assert changed(g0, model.generator) and changed(d0, model.discriminator)
    assert seen == {
        "d_requires_grad_in_g_update": False,
        "d_changed_in_g_step": False,
        "g_changed_in_g_step": True,
        "d_requires_grad_after": True,
    }


def test_n_critic_splits_the_batch_into_d_updates(make_cfg, monkeypatch):
    cfg = make_cfg(*P2P, "schedule.n_critic=2", "schedule.max_steps=2")
    objs = build(cfg)
    calls: list[str] = []
    original = Pix2Pix.backward_and_step

    def count(self, optimizer, loss, *, counts_as_step):
        calls.append("g" if counts_as_step else "d")
        return original(self, optimizer, loss, counts_as_step=counts_as_step)

    monkeypatch.setattr(Pix2Pix, "backward_and_step", count)
    trainer = fit(cfg, objs["model"], objs["datamodule"])
    assert calls == ["d", "d", "g"] * 2
    assert trainer.global_step == 2 and int(objs["model"].d_updates) == 4


def test_grid_rows_are_input_output_target(make_cfg):
    cfg = make_cfg(*P2P, "schedule.max_steps=1", "model.num_fixed_samples=5")
    objs = build(cfg)
    model = objs["model"]
    fit(cfg, model, objs["datamodule"])
    a, b = model.fixed_a, model.fixed_b
    # The first validation pairs, in the datamodule's fixed order (batches of 4).
    batches = list(objs["datamodule"].val_dataloader())[:2]
    val_a, val_b = (torch.cat([batch[i] for batch in batches]) for i in (0, 1))
    assert torch.equal(a, val_a[:5]) and torch.equal(b, val_b[:5])
    grid, nrow = model.grid_samples()
    assert nrow == 3 and grid.shape == (15, 1, 32, 32)
    out = model.translate(a)
    for i in range(5):
        assert torch.equal(grid[3 * i], a[i])
        assert torch.allclose(grid[3 * i + 1], out[i])
        assert torch.equal(grid[3 * i + 2], b[i])
    # Evaluation samples are (input, output, target) of the first validation pairs.
    inputs, outputs, targets = model.sample_for_evaluation(3)
    assert torch.equal(inputs, a[:3]) and torch.equal(targets, b[:3])
    assert torch.allclose(outputs, out[:3])


def test_grid_repeats_grey_images_to_rgb_when_the_domains_differ(make_cfg):
    cfg = make_cfg(*P2P, "model.generator.output_channels=3", "model.discriminator.input_channels=4")
    model = instantiate(cfg.model)
    a, b = torch.rand(2, 1, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    model.set_fixed_batch(a, b)
    grid, nrow = model.grid_samples()
    assert nrow == 3 and grid.shape == (6, 3, 32, 32)
    assert torch.equal(grid[0], a[0].expand(3, -1, -1)) and torch.equal(grid[2], b[0])


def test_unpaired_dataset_is_refused(make_cfg):
    # The valid datasets come from the datamodules' declarations (every paired dataset whose config
    # has the keys pix2pix reads), so a dataset added later is listed without editing this test.
    cfg = make_cfg(*P2P, "dataset=digits_inverted")
    fitting = dataset_options_of([DataKind.PAIRED], reading=dataset_keys_read(cfg.model))
    assert {"digits_edges", "paired_folder"} <= set(fitting) and "digits_inverted" not in fitting
    listed = re.escape(", ".join(fitting))
    with pytest.raises(ConfigError, match=rf"'digits_inverted' is unpaired.*paired .*: {listed}"):
        build(cfg)


def test_discriminator_channels_must_be_the_pairs(make_cfg):
    # The model config's literal 6 (RGB pairs) does not fit grey -> grey digits.
    with pytest.raises(ConfigError, match=r"model.discriminator.input_channels=2"):
        build(make_cfg(*P2P, "model.discriminator.input_channels=6"))


def test_data_channels_and_size_must_match_the_networks(make_cfg):
    cfg = make_cfg(*P2P, "model.generator.input_channels=3", "model.discriminator.input_channels=4")
    with pytest.raises(ConfigError, match=r"model.generator.input_channels=1"):
        build(cfg)
    cfg = make_cfg(*P2P, "model.generator.image_size=64", "model.discriminator.image_size=64")
    with pytest.raises(ConfigError, match=r"model.generator.image_size=32"):
        build(cfg)
    cfg = make_cfg(*P2P, "model.discriminator.image_size=64")
    with pytest.raises(ConfigError, match=r"model.discriminator.image_size=32"):
        build(cfg)


# A training run that must learn (hundreds of steps): `make test-all`, not `make test` (its
# mechanics, a step, resume, grids, gan-eval, are the contract test's).
@pytest.mark.slow
@pytest.mark.heavy
def test_short_run_of_the_embedded_experiment_lowers_val_l1(make_cfg):
    cfg = make_cfg(
        "experiment=pix2pix_digits_edges",
        "metrics=translation",
        "metrics.feature_network=none",
        "metrics.every_n_steps=40",
        "model.generator.ngf=8",
        "model.discriminator.ndf=8",
        "dataset.batch_size=8",
        "schedule.max_steps=80",
        "callbacks.samples.every_n_steps=0",
        "callbacks.model_checkpoint.every_n_train_steps=0",
        "threads=1",
    )
    result = train(cfg)
    assert result["status"] == "finished"
    evals = [
        r for r in read_records(result["run_dir"] / "metrics.jsonl") if "val/l1" in r and "status" not in r
    ]
    assert [r["step"] for r in evals] == [0, 40, 80]
    first, last = evals[0], evals[-1]
    assert last["val/l1"] < 0.7 * first["val/l1"]
    assert last["val/psnr"] > first["val/psnr"] and last["val/ssim"] > first["val/ssim"]
    assert result["metrics"]["val/l1"] == pytest.approx(last["val/l1"])
    assert (result["run_dir"] / "samples" / "step_0000080.png").is_file()


def test_the_experiment_composes_and_runs_a_few_steps(make_cfg):
    cfg = make_cfg("experiment=pix2pix_digits_edges", "metrics=none", "schedule.max_steps=2")
    assert cfg.model.generator.num_downs == 5 and cfg.model.discriminator.input_channels == 2
    assert cfg.model.l1_weight == 100.0 and cfg.loss.adversarial._target_.endswith("NonSaturatingLoss")
    result = train(cfg)
    assert result["status"] == "finished" and result["trainer"].global_step == 2


def write_side_by_side(folder: Path, count: int, size: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = rng.integers(0, 256, size=(size, 2 * size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.jpg")


def test_facades_experiment_has_the_papers_settings(make_cfg, tmp_path):
    root = tmp_path / "facades"
    write_side_by_side(root / "train", 2, 64)
    write_side_by_side(root / "val", 2, 64)
    # Not tiny: the tiny overrides would replace the experiment's schedule.
    cfg = make_cfg("experiment=pix2pix_facades", "metrics=none", f"dataset.root={root}", tiny=False)
    assert cfg.dataset.batch_size == 1 and cfg.dataset.direction == "BtoA"
    assert (cfg.dataset.load_size, cfg.dataset.crop_size) == (286, 256)
    assert cfg.model.generator.num_downs == 8 and cfg.model.generator.ngf == 64
    assert cfg.model.discriminator.n_layers == 3 and cfg.model.discriminator.input_channels == 6
    assert cfg.schedule.max_steps == 80_000 and cfg.schedule.lr_decay == "linear"
    objs = build(cfg)  # networks, data and the pair/shape checks agree
    assert objs["datamodule"].a_shape == (3, 256, 256)
