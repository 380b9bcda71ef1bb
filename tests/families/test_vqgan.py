"""VQGAN's two stages as families: stage 1's loss before and after disc_start (the adaptive weight
of eq. 7 against a hand computation), its codebook usage; stage 2's reading of a stage-1 run (and
the one-line errors for a missing or mismatched one), its likelihood loss and its samples."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from gan_research.errors import CheckpointError, ConfigError
from gan_research.families.vqgan import VQGAN
from gan_research.families.vqgan_transformer import VQGANTransformer
from gan_research.losses.vqgan import adaptive_weight
from gan_research.networks.vqgan import VQGANAutoencoder
from gan_research.train import build
from gan_research.utils.weights import WeightsFileMissing

STAGE1 = (
    "experiment=vqgan_digits",
    "model.width=8",
    "dataset.batch_size=4",
    "perceptual=none",
    "metrics=none",
    "threads=1",
)
# The stage-1 autoencoder of experiment=vqgan_digits at width 8, as a stage-1 run records it.
AUTOENCODER = {
    "_target_": "gan_research.networks.vqgan.VQGANAutoencoder",
    "channels": "${dataset.channels}",
    "image_size": "${dataset.image_size}",
    "ch": 8,
    "ch_mult": [1, 2, 2],
    "num_res_blocks": 1,
    "attn_resolutions": [8],
    "z_channels": 16,
    "embed_dim": 8,
    "n_embed": 128,
}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def at_step(model: VQGAN, step: int, monkeypatch) -> None:
    """Outside a Trainer, the step ``pretraining`` reads (disc_start)."""
    monkeypatch.setattr(type(model), "global_step", property(lambda self: step))


def test_stage1_loss_has_no_adversarial_term_before_disc_start(make_cfg, monkeypatch):
    model = build(make_cfg(*STAGE1), prepare_evaluation=False)["model"]
    at_step(model, 0, monkeypatch)
    assert model.pretraining
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    x_hat, g = model.autoencoder_loss(x)
    assert set(g.terms) == {"l1", "codebook", "commitment"}
    expected = F.l1_loss(x_hat, x) + g.terms["codebook"] + g.terms["commitment"]
    torch.testing.assert_close(g.loss, expected)
    assert 0 < float(g.logs["train/codes_used"]) <= 128


def test_stage1_adversarial_term_is_weighted_by_eq7_after_disc_start(make_cfg, monkeypatch):
    # The learned codebook: an EMA one moves at every training forward, so the recomputation
    # below would quantise with other codes.
    model = build(make_cfg(*STAGE1, "model.generator.ema=false"), prepare_evaluation=False)["model"]
    at_step(model, model.schedule.pretrain_steps, monkeypatch)
    assert not model.pretraining
    torch.manual_seed(0)
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    _, g = model.autoencoder_loss(x)
    # Recompute eq. 7 on the same forward's terms: the decoder's last layer sees both losses.
    torch.manual_seed(0)
    quantized = model.generator.encode(x)
    x_hat = model.generator.decode(quantized.z_q)
    rec = F.l1_loss(x_hat, x)
    g_adv = model.objective.adversarial.generator_loss(model.discriminator(x_hat))
    lam = 0.8 * adaptive_weight(rec, g_adv, model.generator.last_layer)
    torch.testing.assert_close(g.logs["train/adaptive_weight"], lam)
    torch.testing.assert_close(
        g.loss, rec + quantized.codebook_loss + quantized.commitment_loss + lam * g_adv
    )


def test_stage1_code_usage_counts_codes_of_the_images(make_cfg):
    model = build(make_cfg(*STAGE1), prepare_evaluation=False)["model"]
    images = torch.rand(6, 1, 32, 32) * 2 - 1
    usage = model.code_usage(images)
    indices = model.encode_indices(images)
    assert indices.shape == (6, 8, 8)
    assert usage["codes_used"] == float(indices.unique().numel())
    assert 1.0 <= usage["code_perplexity"] <= usage["codes_used"] + 1e-4


def test_stage1_refuses_point_data(make_cfg):
    with pytest.raises(ConfigError):
        build(make_cfg(*STAGE1, "dataset=ring8"), prepare_evaluation=False)


# ------------------------------------------------------------------- stage 2
def stage1_run(root: Path, autoencoder: dict, checkpoint_of: torch.nn.Module | None = None) -> Path:
    """A stage-1 run directory as gan-train leaves it: the recorded config and last.ckpt."""
    run = root / "stage1"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    cfg = {"dataset": {"channels": 1, "image_size": 32}, "model": {"generator": autoencoder}}
    OmegaConf.save(OmegaConf.create(cfg), run / ".hydra" / "config.yaml")
    if checkpoint_of is not None:
        state = {f"generator.{k}": v for k, v in checkpoint_of.state_dict().items()}
        torch.save({"state_dict": state, "global_step": 5}, run / "checkpoints" / "last.ckpt")
    return run


def stage2_cfg(make_cfg, run: Path, *extra: str):
    return make_cfg(
        "experiment=vqgan_transformer_digits",
        "model.width=8",
        "dataset.batch_size=4",
        f"needs.vqgan_digits={run}",
        "metrics=none",
        "threads=1",
        *extra,
    )


def tiny_autoencoder(**changes) -> VQGANAutoencoder:
    kwargs = {k: v for k, v in AUTOENCODER.items() if k != "_target_"}
    kwargs.update(channels=1, image_size=32, **changes)
    return VQGANAutoencoder(**kwargs)


def test_stage2_loads_the_stage1_runs_autoencoder_frozen(make_cfg, tmp_path):
    torch.manual_seed(0)
    trained = tiny_autoencoder()
    run = stage1_run(tmp_path, AUTOENCODER, trained)
    model = build(stage2_cfg(make_cfg, run), prepare_evaluation=False)["model"]
    assert isinstance(model, VQGANTransformer)
    for key, value in trained.state_dict().items():
        torch.testing.assert_close(model.first_stage.state_dict()[key], value)
    assert not any(p.requires_grad for p in model.first_stage.parameters())
    model.train()
    assert not model.first_stage.training


def test_stage2_mismatched_checkpoint_is_one_line_naming_the_tensor(make_cfg, tmp_path):
    # The recorded architecture says 128 codes; the checkpoint holds a 64-code codebook.
    run = stage1_run(tmp_path, AUTOENCODER, tiny_autoencoder(n_embed=64))
    with pytest.raises(CheckpointError) as err:
        build(stage2_cfg(make_cfg, run), prepare_evaluation=False)
    message = str(err.value)
    assert "\n" not in message
    assert "model.first_stage_run" in message and "generator.quantizer.codebook" in message
    assert "(64, 8)" in message and "(128, 8)" in message


def test_stage2_missing_run_names_the_command_that_makes_it(make_cfg, tmp_path):
    with pytest.raises(WeightsFileMissing, match="gan-train experiment=vqgan_digits"):
        build(stage2_cfg(make_cfg, tmp_path / "nowhere"), prepare_evaluation=False)


def test_stage2_refuses_a_transformer_of_another_vocabulary(make_cfg, tmp_path):
    run = stage1_run(tmp_path, AUTOENCODER, tiny_autoencoder())
    with pytest.raises(ConfigError, match="vocab_size=128"):
        build(stage2_cfg(make_cfg, run, "model.generator.vocab_size=64"), prepare_evaluation=False)


def test_stage2_loss_is_the_codes_cross_entropy_and_samples_decode(make_cfg, tmp_path):
    run = stage1_run(tmp_path, AUTOENCODER, tiny_autoencoder())
    model = build(stage2_cfg(make_cfg, run), prepare_evaluation=False)["model"]
    images = torch.rand(3, 1, 32, 32) * 2 - 1
    labels = torch.tensor([0, 3, 9])
    codes = model.encode_codes(images)
    assert codes.shape == (3, 64) and int(codes.max()) < 128
    logits = model(codes, labels)
    # What training_step minimises: the negative log-likelihood of each code given the ones before.
    log_p = torch.log_softmax(logits, dim=-1).gather(-1, codes[..., None]).squeeze(-1)
    torch.testing.assert_close(F.cross_entropy(logits.flatten(0, 1), codes.flatten()), -log_p.mean())
    samples, sample_labels = model.sample_for_evaluation(12)
    assert samples.shape == (12, 1, 32, 32) and samples.abs().max() <= 1
    assert sample_labels.tolist() == [i % 10 for i in range(12)]
    grid, per_row = model.grid_samples()
    assert per_row == 6 and grid.shape == (60, 1, 32, 32)
