"""GauGAN / SPADE: short runs of the embedded experiments (single- and multimodal), the objective
(hinge over D's scales, feature matching on the (label map, image) pair, the perceptual and KL
terms), the step order (G then D), the multimodal variant's latents, the sample grids, the config
errors, the pix2pix baseline on the same data and the Cityscapes experiment without its data."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from PIL import Image
from torch import nn
from torchvision.utils import make_grid

from gan_research.errors import ConfigError, DataError
from gan_research.families.pix2pix import Pix2Pix
from gan_research.families.spade import SPADE
from gan_research.train import build, prepare, train
from gan_research.utils.images import colour_label_map, label_palette
from gan_research.utils.jsonl_logger import read_records
from gan_research.utils.weights import WeightsFileMissing

# spade_scenes with tiny networks and data: a few CPU-seconds per run.
SCENES = (
    "experiment=spade_scenes",
    "metrics=none",
    "model.width=8",
    "model.generator.spade_hidden=16",
    "dataset.num_train=64",
    "dataset.num_val=16",
    "dataset.batch_size=4",
    "schedule.max_steps=2",
    "model.num_fixed_samples=4",
    "callbacks.model_checkpoint.every_n_train_steps=0",
    "threads=1",
)
MULTIMODAL = ("experiment=spade_scenes_multimodal", *SCENES[1:], "model.generator.z_dim=8")
# A small fixed random feature network in place of VGG19 (no weights file).
RANDOM_PERCEPTUAL = ("perceptual=random", "perceptual.channels=[4,8]", "perceptual.layers=[scale1,scale2]")


@pytest.fixture(autouse=True)
def _one_thread():
    # build() sets torch's threads from the config (threads=1); restore them afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def changed(before: dict[str, torch.Tensor], module: nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.named_parameters())


def fit(cfg, model, datamodule):
    trainer = instantiate(cfg.trainer, callbacks=[], logger=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=datamodule)
    return trainer


def last_train_record(run_dir) -> dict:
    return [r for r in read_records(run_dir / "metrics.jsonl") if "train/g_loss" in r][-1]


class FeaturesAreTheInput(nn.Module):
    """A stand-in multi-scale D: at each of two scales, one "feature" (its input, the pair) and
    logits ``logit`` everywhere; records what it is shown."""

    def __init__(self, input_shape: tuple[int, ...], logit: float) -> None:
        super().__init__()
        self.input_shape = input_shape
        self.logit = logit
        self.weight = nn.Parameter(torch.zeros(()))  # an optimiser needs something to hold
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        self.seen.append(x.detach().clone())
        logits = x.new_full((x.shape[0], 1, 3, 3), self.logit) + 0 * self.weight
        return [[x, logits], [x, logits]]


# -- runs --------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "columns", "terms"),
    [
        (SCENES, 3, ("adv", "feature_matching")),
        (MULTIMODAL, 5, ("adv", "feature_matching", "kl")),
    ],
    ids=["spade_scenes", "spade_scenes_multimodal"],
)
def test_short_run_trains_and_writes_the_grid(make_cfg, overrides, columns, terms) -> None:
    cfg = make_cfg(*overrides)
    prepared = prepare(cfg)
    model = prepared["model"]
    assert isinstance(model, SPADE) and model.latent_input == (columns == 5)
    g0, d0 = state(model.generator), state(model.discriminator)
    result = train(cfg, prepared)
    assert result["status"] == "finished"
    assert changed(g0, model.generator) and changed(d0, model.discriminator)
    if model.latent_input:  # the encoder is G's own module, trained by G's optimiser
        encoder = {k: v for k, v in g0.items() if k.startswith("encoder.")}
        assert encoder and any(
            not torch.equal(encoder[k], v) for k, v in model.generator.named_parameters() if k in encoder
        )
    record = last_train_record(result["run_dir"])
    for term in terms:
        assert f"train/g_{term}" in record, sorted(record)
    assert ("train/g_kl" in record) == model.latent_input
    assert "train/g_perceptual" not in record  # spade_scenes has no perceptual network
    # L_G = hinge + 10 * feature matching (+ 0.05 * KL).
    expected = record["train/g_adv"] + 10 * record["train/g_feature_matching"]
    expected += 0.05 * record.get("train/g_kl", 0.0)
    assert record["train/g_loss"] == pytest.approx(expected, rel=1e-5)

    # The grid: label map | synthesis | real (multimodal: label map | 3 styles | real), a layout per row.
    grid, nrow = model.grid_samples()
    assert nrow == columns and grid.shape == (4 * columns, 3, 32, 32)
    a, b = model.fixed_pairs()
    assert a.shape == (4, 6, 32, 32) and b.shape == (4, 3, 32, 32)
    torch.testing.assert_close(grid[0::columns], colour_label_map(a), rtol=0, atol=0)
    torch.testing.assert_close(grid[columns - 1 :: columns], b, rtol=0, atol=0)
    syntheses = [grid[c::columns] for c in range(1, columns - 1)]
    if model.latent_input:
        # Each column one fixed latent: a style per column, the same on a rerun.
        assert not torch.allclose(syntheses[0], syntheses[1])
        again, _ = model.grid_samples()
        torch.testing.assert_close(again, grid)
    else:
        torch.testing.assert_close(syntheses[0], model.translate(a).cpu())
    png = result["run_dir"] / "samples" / "step_0000002.png"
    expected_size = make_grid(grid, nrow=nrow, padding=2).shape
    with Image.open(png) as image:
        assert image.size == (expected_size[2], expected_size[1]) == (columns * 34 + 2, 4 * 34 + 2)


@pytest.mark.slow
@pytest.mark.parametrize(("n_critic", "order"), [(1, ["g", "d"] * 2), (2, ["g", "d", "d"] * 2)])
def test_each_step_updates_g_before_d(make_cfg, monkeypatch, n_critic, order) -> None:
    cfg = make_cfg(*SCENES, f"schedule.n_critic={n_critic}")
    objs = build(cfg, prepare_evaluation=False)
    calls: list[str] = []
    original = SPADE.backward_and_step

    def spy(self, optimizer, loss, *, counts_as_step):
        calls.append("g" if counts_as_step else "d")
        return original(self, optimizer, loss, counts_as_step=counts_as_step)

    monkeypatch.setattr(SPADE, "backward_and_step", spy)
    trainer = fit(cfg, objs["model"], objs["datamodule"])
    assert calls == order
    assert trainer.global_step == 2 and int(objs["model"].d_updates) == 2 * n_critic


def test_objective_hinge_over_scales_and_feature_matching_on_the_pair(make_cfg) -> None:
    model = build(make_cfg(*SCENES), prepare_evaluation=False)["model"]
    model.discriminator = FeaturesAreTheInput(model.discriminator.input_shape, logit=0.25)
    fakes: list[torch.Tensor] = []
    model.generator.register_forward_hook(lambda _, __, out: fakes.append(out.detach()))
    torch.manual_seed(0)
    seg = F.one_hot(torch.randint(0, 6, (2, 32, 32)), 6).permute(0, 3, 1, 2).float()
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    g = model.generator_loss(seg, real)
    (fake,) = fakes
    # D judged (m, G(m)) and (m, x) in one batch.
    (shown,) = model.discriminator.seen
    torch.testing.assert_close(shown, torch.cat([torch.cat([seg, fake], 1), torch.cat([seg, real], 1)]))
    # Hinge G loss -D(m, G(m)), averaged over the scales; feature matching over the pair's features
    # (the label channels agree, so only the image's 3 of 9 channels differ).
    assert float(g.terms["adv"]) == pytest.approx(-0.25)
    fm = (fake - real).abs().mean() * 3 / 9
    assert float(g.terms["feature_matching"]) == pytest.approx(float(fm), rel=1e-5)
    assert float(g.loss) == pytest.approx(-0.25 + 10 * float(fm), rel=1e-5)
    assert set(g.terms) == {"adv", "feature_matching"}


@pytest.mark.slow
def test_d_loss_is_the_hinge_averaged_over_scales(make_cfg) -> None:
    cfg = make_cfg(*SCENES, "schedule.max_steps=1")
    objs = build(cfg, prepare_evaluation=False)
    model = objs["model"]
    outputs: list[list[list[torch.Tensor]]] = []
    model.discriminator.register_forward_hook(
        lambda _, __, out: outputs.append([[t.detach() for t in layers] for layers in out])
    )
    fit(cfg, model, objs["datamodule"])
    assert len(outputs) == 2  # the G update's scoring, then the D update's (fake and real in one batch)
    d_phase = outputs[1]
    n = d_phase[0][-1].shape[0] // 2
    expected = sum(F.relu(1 - out[-1][n:]).mean() + F.relu(1 + out[-1][:n]).mean() for out in d_phase) / 2
    assert float(model.last_step_logs["train/d_loss"]) == pytest.approx(float(expected), rel=1e-5)


def test_multimodal_translate_draws_a_new_latent_unless_given_one(make_cfg) -> None:
    model = build(make_cfg(*MULTIMODAL), prepare_evaluation=False)["model"]
    assert model.latent_input and model.generator.latent_dim == 8
    seg = F.one_hot(torch.randint(0, 6, (2, 32, 32)), 6).permute(0, 3, 1, 2).float()
    first, second = model.translate(seg), model.translate(seg)
    assert first.shape == (2, 3, 32, 32)
    assert not torch.allclose(first, second)  # z ~ N(0, I) per call: another style
    z = torch.randn(2, 8)
    torch.testing.assert_close(model.translate(seg, z), model.translate(seg, z), rtol=0, atol=0)
    # The latents are drawn per call, one per layout.
    drawn: list[torch.Tensor] = []
    model.generator.register_forward_pre_hook(lambda _, inputs: drawn.append(inputs[1]))
    model.translate(seg)
    model.translate(seg)
    assert [z.shape for z in drawn] == [(2, 8), (2, 8)] and not torch.equal(drawn[0], drawn[1])


def test_multimodal_grid_shows_num_styles_styles_with_few_layouts(make_cfg) -> None:
    model = build(make_cfg(*MULTIMODAL, "model.num_fixed_samples=2"), prepare_evaluation=False)["model"]
    assert model.num_styles == 3
    seg = F.one_hot(torch.randint(0, 6, (2, 32, 32)), 6).permute(0, 3, 1, 2).float()
    model.set_fixed_batch(seg, torch.zeros(2, 3, 32, 32))
    _, nrow = model.grid_samples()
    assert nrow == 1 + 3 + 1  # label map | 3 styles | real


# -- perceptual term ---------------------------------------------------------------------------
@pytest.mark.slow
def test_perceptual_term_with_a_random_feature_network(make_cfg) -> None:
    cfg = make_cfg(*SCENES, *RANDOM_PERCEPTUAL)
    objs = build(cfg, prepare_evaluation=False)
    model = objs["model"]
    assert model.perceptual is not None and model.feature_loss is not None
    # Frozen and out of the checkpoint.
    assert all(not p.requires_grad for p in model.perceptual.parameters())
    assert not any(k.startswith(("perceptual.", "feature_loss.")) for k in model.state_dict())
    fit(cfg, model, objs["datamodule"])
    logs = model.last_step_logs
    assert "train/g_perceptual" in logs and float(logs["train/g_perceptual"]) > 0
    expected = logs["train/g_adv"] + 10 * logs["train/g_feature_matching"] + 10 * logs["train/g_perceptual"]
    assert float(logs["train/g_loss"]) == pytest.approx(float(expected), rel=1e-5)


def test_perceptual_weight_zero_leaves_the_term_out(make_cfg) -> None:
    model = build(
        make_cfg(*SCENES, *RANDOM_PERCEPTUAL, "model.perceptual_weight=0"), prepare_evaluation=False
    )["model"]
    assert model.feature_loss is None
    seg = F.one_hot(torch.randint(0, 6, (2, 32, 32)), 6).permute(0, 3, 1, 2).float()
    terms = model.generator_loss(seg, torch.zeros(2, 3, 32, 32)).terms
    assert "perceptual" not in terms and set(terms) == {"adv", "feature_matching"}


# -- config errors -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "override",
    [
        "model.discriminator.label_channels=5",
        "model.discriminator.image_channels=1",
        "model.discriminator.image_size=16",
    ],
)
def test_a_discriminator_that_does_not_see_the_pair_is_refused(make_cfg, override: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(make_cfg(*SCENES, override), prepare_evaluation=False)
    message = str(info.value)
    assert "model.discriminator" in message and "(6 + 3, 32, 32)" in message


def test_the_discriminator_error_names_keys_the_discriminator_has(make_cfg) -> None:
    cfg = make_cfg(*SCENES, "model.discriminator.label_channels=5")
    with pytest.raises(ConfigError) as info:
        build(cfg, prepare_evaluation=False)
    message = str(info.value)
    assert "model.discriminator.label_channels" in message and "model.discriminator.image_channels" in message
    assert "input_channels" not in message  # a key it does not have: Hydra would refuse the override


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("model.feature_matching_weight=-1", r"model.feature_matching_weight=-1"),
        ("model.kl_weight=-0.5", r"model.kl_weight=-0.5"),
        ("model.num_styles=0", r"model.num_styles=0"),
    ],
)
def test_bad_weights_are_config_errors(make_cfg, override: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        build(make_cfg(*SCENES, override), prepare_evaluation=False)


def test_label_palette_gives_every_class_its_own_colour() -> None:
    palette = label_palette(35)
    assert palette.shape == (35, 3) and float(palette.abs().max()) <= 1
    assert torch.equal(palette[0], -torch.ones(3))  # class 0 black
    assert len({tuple(c.tolist()) for c in palette}) == 35
    onehot = torch.zeros(1, 35, 1, 2)
    onehot[0, 7, 0, 0] = 1  # pixel 1: class 7; pixel 2: ignored (all zero)
    rgb = colour_label_map(onehot)
    assert torch.equal(rgb[0, :, 0, 0], palette[7]) and torch.equal(rgb[0, :, 0, 1], torch.zeros(3))


# -- the other experiments ---------------------------------------------------------------------
@pytest.mark.slow
def test_pix2pix_baseline_trains_on_the_same_scenes(make_cfg) -> None:
    cfg = make_cfg(
        "experiment=pix2pix_scenes",
        "metrics=none",
        "model.width=8",
        "dataset.num_train=64",
        "dataset.num_val=16",
        "dataset.batch_size=4",
        "schedule.max_steps=2",
        "threads=1",
    )
    assert cfg.dataset._target_.endswith("ScenesDataModule")
    objs = build(cfg, prepare_evaluation=False)
    model = objs["model"]
    assert isinstance(model, Pix2Pix)
    assert model.generator.input_shape == (6, 32, 32) and model.discriminator.input_shape[0] == 6 + 3
    g0, d0 = state(model.generator), state(model.discriminator)
    trainer = fit(cfg, model, objs["datamodule"])
    assert trainer.global_step == 2
    assert changed(g0, model.generator) and changed(d0, model.discriminator)
    assert torch.isfinite(model.last_step_logs["train/g_l1"])


def test_cityscapes_experiment_composes_with_the_papers_settings(make_cfg) -> None:
    cfg = make_cfg("experiment=spade_cityscapes")
    assert cfg.model._target_ == "gan_research.families.spade.SPADE"
    assert cfg.dataset.num_classes == cfg.dataset.channels_a == cfg.model.generator.input_channels == 35
    assert cfg.model.discriminator.label_channels == 35 and cfg.model.discriminator.image_channels == 3
    assert cfg.dataset.crop_size == cfg.model.generator.image_size == 256
    assert cfg.model.width == 64 and cfg.dataset.batch_size == 16
    assert cfg.model.feature_matching_weight == 10 and cfg.model.perceptual_weight == 10
    assert list(cfg.perceptual.layers) == ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    assert cfg.schedule.lr_g == 1e-4 and cfg.schedule.lr_d == 4e-4
    assert list(cfg.schedule.betas_g) == list(cfg.schedule.betas_d) == [0.0, 0.999]
    assert cfg.loss.adversarial._target_ == "gan_research.losses.HingeLoss"
    assert cfg.schedule.lr_decay == "linear" and cfg.schedule.lr_decay_start == 0.5


def test_cityscapes_without_its_data_stops_with_the_missing_data_error(make_cfg, tmp_path) -> None:
    cfg = make_cfg("experiment=spade_cityscapes", "model.width=8", "dataset.batch_size=4")
    run_dir = tmp_path / "run"
    root = tmp_path / "run" / "data" / "cityscapes"  # ${paths.data_dir}/cityscapes
    # The whole build: the first missing file (VGG19's weights or the data) stops it, writing nothing.
    with pytest.raises((DataError, WeightsFileMissing)) as info:
        build(cfg, prepare_evaluation=False)
    assert "\n" not in str(info.value).strip()
    assert not run_dir.exists()
    # The data alone: a DataError naming the folder and the layout it should hold.
    with pytest.raises(DataError) as info:
        instantiate(cfg.dataset).setup("fit")
    message = str(info.value)
    assert str(root) in message and "does not exist" in message and "labels/train" in message


def test_cityscapes_without_the_perceptual_term_reaches_the_data(make_cfg, tmp_path) -> None:
    cfg = make_cfg("experiment=spade_cityscapes", "model.width=8", "dataset.batch_size=4", "perceptual=none")
    with pytest.raises(DataError, match=str(tmp_path / "run" / "data" / "cityscapes")):
        build(cfg, prepare_evaluation=False)
    assert not (tmp_path / "run").exists()
