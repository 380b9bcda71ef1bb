"""GFP-GAN (the family, gan_research/families/gfpgan.py): short runs of experiment=gfpgan_digits on a
tiny StyleGAN2 prior trained once for the module (the frozen prior stays the prior run's EMA
synthesis network while the U-Net and CS-SFT learn; every loss term and the restoration metrics are
logged), the prior-free ablation and the fine-tuned prior, the pyramid loss switched off after
``pyramid_steps``, restorations with the prior's noise fixed, ``gan-eval`` on a GFP-GAN
checkpoint, ``image_pyramid``, and bad ``needs`` / prior checkpoints refused by ``gan-train`` with
one error line before anything is written. The facial-component losses: a run with
``dataset.regions`` trains a component discriminator per region (in D's optimiser, frozen in G's
step), logs its terms and adds them to L_G, resumes exactly and is scored by ``gan-eval``; a run
without regions has no component module, term or optimiser group."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
import torch.nn.functional as F
from omegaconf import open_dict
from pytorch_lightning import Callback

from gan_research.data.restoration import DegradedDigitsDataModule
from gan_research.errors import ConfigError
from gan_research.evaluate import ALLOWED_TARGET_PREFIXES, evaluate_run
from gan_research.families.gfpgan import COMPONENT_BETAS, GFPGAN, image_pyramid
from gan_research.train import prepare, train
from gan_research.utils.jsonl_logger import read_records
from tests.conftest import compose_config
from tests.test_train import run_gan_train

pytestmark = pytest.mark.slow

# The model-agnostic size knob and a small batch; no periodic grids or checkpoints (last.ckpt
# is still written at the end).
TINY_SIZE = ("model.width=8", "dataset.batch_size=4", "threads=1")
QUIET = ("callbacks.samples.every_n_steps=0", "callbacks.model_checkpoint.every_n_train_steps=0")
PRIOR = ("experiment=stylegan2_digits", *TINY_SIZE, *QUIET, "schedule.max_steps=1")
# The U-Net as narrow as the tiny prior (the experiment's unet_fmap_max=32 is wider).
GFP = (
    "experiment=gfpgan_digits",
    *TINY_SIZE,
    *QUIET,
    "schedule.max_steps=2",
    "model.generator.unet_fmap_max=8",
)
NO_PRIOR = ("experiment=gfpgan_digits_no_prior", *GFP[1:])
# The restoration metrics at the end of the run only, on few pairs, without FID.
RESTORATION = (
    "metrics=restoration",
    "metrics.eval_at_start=false",
    "metrics.num_samples=16",
    "metrics.feature_network=none",
)
# The prior's synthesis weights in a StyleGAN2 checkpoint (its EMA generator) and in GFP-GAN's.
PRIOR_EMA = "generator_ema.synthesis_network."
PRIOR_RAW = "generator.synthesis_network."
GFP_SYNTHESIS = "generator.synthesis."
UNET_AND_SFT = ("conv_body_first", "conv_body_down", "final_conv", "final_linear", "conv_body_up", "sft")
LOSSES = ("g_l1", "g_pyramid", "g_perceptual", "g_style", "g_adv", "g_identity")
# The facial-component losses on one region, the top half of the 32 px digits (Hydra's dict
# override), with tiny component discriminators.
REGIONS = ("dataset.regions={top:[0,0,16,32]}", "model.component_width=4")
COMPONENT_TERMS = ("g_component_gan", "g_component_style", "d_component")
COMPONENT_PROBE = "+callbacks.component_probe._target_=tests.families.test_gfpgan.ComponentProbe"


@pytest.fixture(autouse=True)
def _one_thread():
    # build() sets torch's threads from the config (threads=1); restore them afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, seed_digits_classifier) -> Path:
    """The module's data directory, holding the test session's digits classifier (the identity and
    perceptual networks of gfpgan_digits, and the restoration metrics' classifier)."""
    path = tmp_path_factory.mktemp("gfpgan-data")
    seed_digits_classifier(path)
    return path


def compose(overrides: tuple[str, ...] | list[str], run_dir: Path, data_dir: Path):
    cfg = compose_config(list(overrides), run_dir)
    with open_dict(cfg):
        cfg.paths.data_dir = str(data_dir)
    return cfg


@pytest.fixture(scope="module")
def prior_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """A finished tiny stylegan2_digits run (one step): what gfpgan_digits' ``needs`` names."""
    run = tmp_path_factory.mktemp("needs") / "stylegan2_digits"
    torch.set_num_threads(1)
    assert train(compose(PRIOR, run, data_dir))["status"] == "finished"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    return run


@pytest.fixture(scope="module")
def prior_state(prior_run: Path) -> dict[str, torch.Tensor]:
    return torch.load(prior_run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")[
        "state_dict"
    ]


def section(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors of ``state`` under ``prefix``, keys relative to it."""
    return {k[len(prefix) :]: v.detach().clone() for k, v in state.items() if k.startswith(prefix)}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a and a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def changed_parts(before: dict[str, torch.Tensor], module: torch.nn.Module) -> set[str]:
    """The top-level submodules of ``module`` with a parameter that differs from ``before``."""
    return {k.split(".")[0] for k, v in module.named_parameters() if not torch.equal(before[k], v)}


def train_records(run_dir: Path) -> list[dict]:
    return [r for r in read_records(run_dir / "metrics.jsonl") if "train/g_loss" in r and "status" not in r]


def weighted_sum(record: dict) -> float:
    """L_G of the module docstring from a step's logged (unweighted) terms, with the experiment's
    weights and the reference's component weights (1 and 200) when the terms are there."""
    return (
        0.1 * record["train/g_l1"]
        + record.get("train/g_pyramid", 0.0)
        + record["train/g_perceptual"]
        + 50 * record["train/g_style"]
        + 0.1 * record["train/g_adv"]
        + 10 * record["train/g_identity"]
        + record.get("train/g_component_gan", 0.0)
        + 200 * record.get("train/g_component_style", 0.0)
    )


def replacing(overrides: tuple[str, ...] | list[str], *extra: str) -> list[str]:
    """``overrides`` with the keys of ``extra`` set to ``extra``'s values (Hydra refuses a key twice)."""
    keys = {e.split("=", 1)[0] for e in extra}
    return [o for o in overrides if o.split("=", 1)[0] not in keys] + list(extra)


@pytest.fixture(scope="module")
def gfpgan_run(tmp_path_factory: pytest.TempPathFactory, prior_run: Path, data_dir: Path) -> dict:
    """Two steps of gfpgan_digits on the module's prior, scored with metrics=restoration at the end;
    with the generator's and D's parameters before training."""
    run = tmp_path_factory.mktemp("gfpgan") / "run"
    cfg = compose([*GFP, *RESTORATION, f"needs.stylegan2_digits={prior_run}"], run, data_dir)
    torch.set_num_threads(1)
    prepared = prepare(cfg)
    model = prepared["model"]
    before = {"generator": params(model.generator), "discriminator": params(model.discriminator)}
    result = train(cfg, prepared)
    return {**result, "before": before, "cfg": cfg}


# -- runs -----------------------------------------------------------------------------------------
def test_a_short_run_keeps_the_frozen_prior_and_trains_the_unet_and_cs_sft(
    gfpgan_run, prior_run, prior_state
):
    assert gfpgan_run["status"] == "finished"
    model, run = gfpgan_run["model"], gfpgan_run["run_dir"]
    assert isinstance(model, GFPGAN)
    generator = model.generator
    assert generator.prior_source == str(prior_run / "checkpoints" / "last.ckpt")
    assert generator.prior_weights == "generator_ema"
    assert not any(p.requires_grad for p in generator.synthesis.parameters())

    # The prior is the StyleGAN2 run's EMA synthesis network (not its raw generator's), before
    # and after training, in the training and the EMA generator and in the final checkpoint.
    ema_prior = section(prior_state, PRIOR_EMA)
    raw_prior = section(prior_state, PRIOR_RAW)
    assert any(not torch.equal(ema_prior[k], raw_prior[k]) for k in ema_prior)  # the choice matters
    assert_same(section(generator.synthesis.state_dict(), ""), ema_prior)
    assert_same(section(model.generator_ema.synthesis.state_dict(), ""), ema_prior)
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert last["global_step"] == 2
    assert_same(section(last["state_dict"], GFP_SYNTHESIS), ema_prior)
    assert_same(section(last["state_dict"], "generator_ema.synthesis."), ema_prior)

    # The U-Net (encoder, latent code, decoder) and every CS-SFT level learned; so did D.
    before = gfpgan_run["before"]
    assert "synthesis" not in changed_parts(before["generator"], generator)
    assert set(UNET_AND_SFT) <= changed_parts(before["generator"], generator)
    assert any(
        not torch.equal(before["generator"][k], v)
        for k, v in generator.named_parameters()
        if k.startswith("sft.b32.")
    )
    assert changed_parts(before["discriminator"], model.discriminator)

    # Every loss term of the objective at every step, and L_G their weighted sum.
    records = train_records(run)
    assert [r["step"] for r in records] == [0, 1]
    for record in records:
        for term in LOSSES:
            assert f"train/{term}" in record, sorted(record)
        assert not any("component" in key for key in record), sorted(record)
        expected = (
            0.1 * record["train/g_l1"]
            + record["train/g_pyramid"]
            + record["train/g_perceptual"]
            + 50 * record["train/g_style"]
            + 0.1 * record["train/g_adv"]
            + 10 * record["train/g_identity"]
        )
        assert record["train/g_loss"] == pytest.approx(expected, rel=1e-5)

    # The restoration metrics at the end, each beside its degraded-input baseline.
    scores = [r for r in read_records(run / "metrics.jsonl") if "val/psnr" in r and "status" not in r]
    assert [r["step"] for r in scores] == [2]
    for key in ("val/psnr", "val/class_agreement", "val/l1", "val/identity_distance"):
        assert key in scores[0] and f"{key}_degraded" in scores[0], sorted(scores[0])
    assert 0 <= scores[0]["val/class_agreement"] <= 1
    assert gfpgan_run["metrics"]["val/class_agreement"] == pytest.approx(scores[0]["val/class_agreement"])


def test_the_prior_free_ablation_runs_without_a_prior_run_and_trains_the_synthesis_network(
    tmp_path, data_dir
):
    cfg = compose(NO_PRIOR, tmp_path / "run", data_dir)
    assert cfg.needs.stylegan2_digits is None and cfg.model.generator.prior_checkpoint is None
    prepared = prepare(cfg)
    generator = prepared["model"].generator
    assert generator.prior_source is None
    assert all(p.requires_grad for p in generator.synthesis.parameters())
    before = params(generator)
    result = train(cfg, prepared)
    assert result["status"] == "finished"
    assert {"synthesis", *UNET_AND_SFT} <= changed_parts(before, generator)

    # Without regions the facial-component losses are off and leave no trace: no module, no
    # weights or optimiser group in the checkpoint (those of runs before them still load), no logs.
    model = prepared["model"]
    assert model.component_discriminators is None and model.component_regions == {}
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert not any("component" in key for key in last["state_dict"])
    assert [len(state["param_groups"]) for state in last["optimizer_states"]] == [1, 1]
    for record in train_records(tmp_path / "run"):
        assert not any("component" in key for key in record), sorted(record)
        assert record["train/g_loss"] == pytest.approx(weighted_sum(record), rel=1e-5)


def test_a_trainable_prior_starts_from_the_prior_and_is_fine_tuned(
    tmp_path, prior_run, prior_state, data_dir
):
    cfg = compose(
        [*GFP, f"needs.stylegan2_digits={prior_run}", "model.generator.prior_trainable=true"],
        tmp_path / "run",
        data_dir,
    )
    prepared = prepare(cfg)
    generator = prepared["model"].generator
    assert generator.prior_weights == "generator_ema"
    assert_same(section(generator.synthesis.state_dict(), ""), section(prior_state, PRIOR_EMA))
    assert all(p.requires_grad for p in generator.synthesis.parameters())
    before = params(generator)
    assert train(cfg, prepared)["status"] == "finished"
    assert "synthesis" in changed_parts(before, generator)
    moved = [
        k for k, v in generator.synthesis.named_parameters() if not torch.equal(before[f"synthesis.{k}"], v)
    ]
    assert any(k.startswith("layers.") for k in moved) and any(k.startswith("to_rgb.") for k in moved), moved


@pytest.fixture(scope="module")
def pyramid_run(tmp_path_factory: pytest.TempPathFactory, prior_run: Path, data_dir: Path) -> dict:
    """Four steps with the pyramid loss for the first two, every step logged."""
    run = tmp_path_factory.mktemp("pyramid") / "run"
    cfg = compose(
        [
            *GFP,
            f"needs.stylegan2_digits={prior_run}",
            "schedule.max_steps=4",
            "model.pyramid_steps=2",
            "trainer.log_every_n_steps=1",
        ],
        run,
        data_dir,
    )
    torch.set_num_threads(1)
    result = train(cfg)
    assert result["status"] == "finished"
    return result


def test_the_pyramid_loss_stops_after_pyramid_steps(pyramid_run):
    records = train_records(pyramid_run["run_dir"])
    assert [r["step"] for r in records] == [0, 1, 2, 3]
    for r in records:
        # L_G with the pyramid term while global_step < pyramid_steps, without it afterwards.
        pyramid = r["train/g_pyramid"] if r["step"] < 2 else 0.0
        assert r["train/g_loss"] == pytest.approx(
            0.1 * r["train/g_l1"]
            + pyramid
            + r["train/g_perceptual"]
            + 50 * r["train/g_style"]
            + 0.1 * r["train/g_adv"]
            + 10 * r["train/g_identity"],
            rel=1e-5,
        ), r["step"]
    assert all(r["train/g_pyramid"] > 0 for r in records[:2])
    # The last step's own terms (what the family computed, before Lightning's logging).
    logs = pyramid_run["model"].last_step_logs
    assert "train/g_l1" in logs and "train/g_pyramid" not in logs


def test_the_pyramid_loss_is_not_logged_after_pyramid_steps(pyramid_run):
    """A term the family stops computing is not recorded with its last value (families/base.py
    _forget_unlogged; Lightning alone would repeat it at every later step and in the results)."""
    records = train_records(pyramid_run["run_dir"])
    assert [("train/g_pyramid" in r) for r in records] == [True, True, False, False]
    assert "train/g_pyramid" not in pyramid_run["metrics"]


# -- facial-component losses ----------------------------------------------------------------------
class ComponentProbe(Callback):
    """Watches a run's optimisers: whether a G step changed a component discriminator, and what
    D's optimiser holds. Results per run directory."""

    results: ClassVar[dict[str, dict[str, Any]]] = {}

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        opt_g, opt_d = (o.optimizer if hasattr(o, "optimizer") else o for o in trainer.optimizers)
        components = list(pl_module.component_discriminators.parameters())
        record: dict[str, Any] = {"changed_in_g_step": 0, "g_steps": 0}
        record["g_holds_components"] = any(
            p is c for group in opt_g.param_groups for p in group["params"] for c in components
        )
        record["d_groups"] = [
            {"n": len(g["params"]), "lr": g["lr"], "betas": tuple(g["betas"])} for g in opt_d.param_groups
        ]
        record["component_group_is_theirs"] = [id(p) for p in opt_d.param_groups[1]["params"]] == [
            id(p) for p in components
        ]
        self.results[str(trainer.default_root_dir)] = record
        snapshot: list[torch.Tensor] = []

        def before_g(*_: Any) -> None:
            snapshot[:] = [p.detach().clone() for p in components]

        def after_g(*_: Any) -> None:
            record["g_steps"] += 1
            if any(not torch.equal(a, p) for a, p in zip(snapshot, components, strict=True)):
                record["changed_in_g_step"] += 1

        opt_g.register_step_pre_hook(before_g)
        opt_g.register_step_post_hook(after_g)


@pytest.fixture(scope="module")
def regions_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict:
    """Three steps of gfpgan_digits_no_prior with one region (checkpoints at step 2 and the end),
    with the component discriminator's and D's parameters before training."""
    run = tmp_path_factory.mktemp("regions") / "run"
    overrides = replacing(
        [*NO_PRIOR, *REGIONS, COMPONENT_PROBE],
        "schedule.max_steps=3",
        "callbacks.model_checkpoint.every_n_train_steps=2",
    )
    cfg = compose(overrides, run, data_dir)
    torch.set_num_threads(1)
    prepared = prepare(cfg)
    model = prepared["model"]
    before = {
        "components": params(model.component_discriminators),
        "discriminator": params(model.discriminator),
    }
    result = train(cfg, prepared)
    assert result["status"] == "finished"
    return {**result, "before": before, "overrides": overrides}


def test_regions_train_a_component_discriminator_and_add_its_losses_to_l_g(regions_run):
    model, run = regions_run["model"], regions_run["run_dir"]
    # One discriminator per region of the data, made at build time from datamodule.regions.
    assert model.component_regions == {"top": (0, 0, 16, 32)}
    assert list(model.component_discriminators) == ["top"]
    net = model.component_discriminators["top"]
    assert (net.channels, net.width) == (1, 4)

    # It trained (every layer moved), in D's optimiser as a group of its own at the reference's
    # rate and betas, and a G step never changed it (the optimiser toggle freezes it).
    before = regions_run["before"]
    assert changed_parts(before["components"], model.component_discriminators) == {"top"}
    assert all(
        not torch.equal(before["components"][k], v)
        for k, v in model.component_discriminators.named_parameters()
        if k.endswith(".weight")
    )
    assert changed_parts(before["discriminator"], model.discriminator)
    probe = ComponentProbe.results[str(run)]
    assert probe["g_steps"] == 3 and probe["changed_in_g_step"] == 0, probe
    assert not probe["g_holds_components"] and probe["component_group_is_theirs"], probe
    (d_group, component_group) = probe["d_groups"]
    assert d_group["n"] == len(list(model.discriminator.parameters()))
    assert component_group["lr"] == pytest.approx(2e-3) and component_group["betas"] == COMPONENT_BETAS

    # The three terms logged at every step, and L_G the weighted sum with them (1 and 200).
    records = train_records(run)
    assert [r["step"] for r in records] == [0, 1, 2]
    for record in records:
        for term in (*LOSSES, *COMPONENT_TERMS):
            assert f"train/{term}" in record, sorted(record)
        assert record["train/g_component_gan"] > 0 and record["train/g_component_style"] > 0
        # Each D_r loss is two BCEs: about 2 ln 2 for a discriminator that has barely learned.
        assert 0 < record["train/d_component"] < 10
        assert record["train/g_loss"] == pytest.approx(weighted_sum(record), rel=1e-5)
        assert record["train/g_loss"] != pytest.approx(
            weighted_sum({**record, "train/g_component_gan": 0, "train/g_component_style": 0}), rel=1e-5
        )

    # The checkpoint holds the component discriminator and D's optimiser its group.
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert {k for k in last["state_dict"] if k.startswith("component_discriminators.top.")}
    assert [len(state["param_groups"]) for state in last["optimizer_states"]] == [1, 2]


def test_a_run_with_regions_resumes_exactly(regions_run, tmp_path, data_dir):
    """As the contract test's resume check: from the step-2 checkpoint in another directory, the
    next step logs what the uninterrupted run logged, component terms included."""
    run = regions_run["run_dir"]
    resumed_dir = tmp_path / "resumed"
    overrides = [*regions_run["overrides"], f"ckpt_path={run / 'checkpoints' / 'step_0000002.ckpt'}"]
    result = train(compose(overrides, resumed_dir, data_dir))
    assert result["status"] == "finished"

    def step_2(directory: Path) -> dict[str, float]:
        (record,) = [r for r in train_records(directory) if r["step"] == 2]
        return {k: v for k, v in record.items() if k.startswith("train/")}

    resumed, uninterrupted = step_2(resumed_dir), step_2(run)
    assert {f"train/{t}" for t in COMPONENT_TERMS} <= set(resumed)
    assert resumed == uninterrupted
    ours = result["model"].component_discriminators.state_dict()
    theirs = regions_run["model"].component_discriminators.state_dict()
    assert_same({k: v.cpu() for k, v in ours.items()}, {k: v.cpu() for k, v in theirs.items()})


def test_gan_eval_scores_a_checkpoint_with_component_discriminators(regions_run, data_dir):
    """gan-eval restores the weights before it reads the data: the checkpoint's component
    discriminators are made from its keys, and the data's regions then checked against them."""
    scores = evaluate_run(
        regions_run["run_dir"] / "checkpoints" / "last.ckpt",
        [
            "device=cpu",
            "metrics=restoration",
            "metrics.num_samples=16",
            "metrics.feature_network=none",
            f"paths.data_dir={data_dir}",
        ],
        # The recorded config names this module's probe callback.
        allowed_targets=(*ALLOWED_TARGET_PREFIXES, "tests.families.test_gfpgan"),
    )
    assert "val/psnr" in scores and 0 <= scores["val/class_agreement"] <= 1


def test_loaded_component_discriminators_require_the_datas_regions(regions_run):
    model = copy.deepcopy(regions_run["model"]).cpu()
    state = model.state_dict()
    model.component_discriminators = None
    model.component_regions = {}
    # Made from the checkpoint's keys, then loaded strictly.
    model.load_state_dict(state)
    assert list(model.component_discriminators) == ["top"]
    with pytest.raises(
        ConfigError, match=r"component discriminators of regions \['top'\].*declares \['bottom'\]"
    ):
        model.attach_components({"bottom": (16, 0, 32, 32)})
    with pytest.raises(ConfigError, match=r"declares \[\]"):
        model.attach_components(DegradedDigitsDataModule().regions)
    model.attach_components(DegradedDigitsDataModule(regions={"top": [0, 0, 16, 32]}).regions)
    assert model.component_regions == {"top": (0, 0, 16, 32)}


@pytest.mark.parametrize(
    ("regions", "match"),
    [
        ({"thin": (0, 0, 2, 32)}, r"^dataset\.regions\.thin=\[0, 0, 2, 32\] is 2x32 px: .* >= 4 px$"),
        ({"training": (0, 0, 8, 8)}, r"^dataset\.regions\.training: the name 'training' is reserved"),
        ({"far": (0, 0, 8, 64)}, r"^dataset\.regions\.far=\[0, 0, 8, 64\] is not a box inside .* 32 px"),
    ],
)
def test_regions_the_component_discriminator_cannot_judge_are_refused(regions_run, regions, match):
    model = copy.deepcopy(regions_run["model"]).cpu()
    model.component_discriminators = None
    with pytest.raises(ConfigError, match=match):
        model.attach_components(regions)
    assert model.component_discriminators is None


# -- inference ------------------------------------------------------------------------------------
def test_translate_fixes_the_priors_noise_and_restores_the_noise_mode(gfpgan_run):
    model = copy.deepcopy(gfpgan_run["model"]).cpu()
    net = model.sampling_generator
    assert net is model.generator_ema and net.noise_mode == model.generator.noise_mode == "random"
    # Noise strengths start at 0 (and barely moved in the prior's one step): make the noise count.
    with torch.no_grad():
        for name, p in net.synthesis.named_parameters():
            if name.endswith("noise.strength"):
                p.fill_(1.0)
    degraded, _clean = model.fixed_pairs()
    degraded = degraded[:4]
    torch.manual_seed(0)
    first = model.translate(degraded)
    torch.manual_seed(1)
    second = model.translate(degraded)
    assert first.shape == degraded.shape
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert net.noise_mode == "random"
    # With random noise (training's mode) the same inputs give other restorations: the fixed
    # noise is what makes translate reproducible.
    net.eval()
    with torch.no_grad():
        drawn = net(degraded)
    assert not torch.allclose(drawn, first)
    # The noise mode is restored when the restoration fails too.
    with pytest.raises(ValueError, match="GFPGANGenerator: expected images"):
        model.translate(torch.zeros(2, 1, 16, 16))
    assert net.noise_mode == "random"


def test_gan_eval_scores_a_gfpgan_checkpoint_with_the_restoration_metrics(gfpgan_run, prior_run, data_dir):
    run = gfpgan_run["run_dir"]
    # The checkpoint holds the prior's weights: gan-eval does not need the prior run any more.
    away = prior_run.with_name(prior_run.name + "_moved_away")
    prior_run.rename(away)
    try:
        scores = evaluate_run(
            run / "checkpoints" / "last.ckpt",
            [
                "device=cpu",
                "metrics=restoration",
                "metrics.num_samples=16",
                "metrics.feature_network=none",
                f"paths.data_dir={data_dir}",
            ],
        )
    finally:
        away.rename(prior_run)
    for key in ("val/class_agreement", "val/class_agreement_degraded", "val/psnr", "val/psnr_degraded"):
        assert key in scores, sorted(scores)
    assert 0 <= scores["val/class_agreement"] <= 1
    # The noise is fixed: the checkpoint scores as the run's own end-of-training evaluation did.
    assert scores["val/psnr"] == pytest.approx(gfpgan_run["metrics"]["val/psnr"], rel=1e-5)
    assert scores["val/class_agreement"] == pytest.approx(gfpgan_run["metrics"]["val/class_agreement"])
    assert not (run / "eval").exists()


# -- image_pyramid --------------------------------------------------------------------------------
def test_image_pyramid_halves_bilinearly_and_ends_with_the_input():
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    levels = image_pyramid(images, [8, 16, 32])
    assert [tuple(t.shape) for t in levels] == [(2, 3, 8, 8), (2, 3, 16, 16), (2, 3, 32, 32)]
    assert levels[-1] is images
    half = F.interpolate(images, scale_factor=0.5, mode="bilinear", align_corners=False)
    quarter = F.interpolate(half, scale_factor=0.5, mode="bilinear", align_corners=False)
    torch.testing.assert_close(levels[1], half, rtol=0, atol=0)
    torch.testing.assert_close(levels[0], quarter, rtol=0, atol=0)
    # Successive halvings, not one ×¼ resize (bilinear ×¼ without antialiasing reads other pixels).
    direct = F.interpolate(images, size=(8, 8), mode="bilinear", align_corners=False)
    assert not torch.allclose(levels[0], direct)
    assert image_pyramid(images, [32]) == [images]
    with pytest.raises(ValueError, match="sizes must halve"):
        image_pyramid(images, [4, 32])
    with pytest.raises(ValueError, match="last size"):
        image_pyramid(images, [8, 16, 64])


# -- bad input through gan-train --------------------------------------------------------------------
@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture, data_dir: Path):
    """``cli(*args, cwd=...)`` -> (exit code, stderr) of ``gan-train`` run in process, quiet."""

    def run(*args: str, cwd: Path) -> tuple[int, str]:
        monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
        capfd.readouterr()
        quiet = (
            "logger=none",
            "metrics=none",
            "trainer.enable_progress_bar=false",
            f"paths.data_dir={data_dir}",
        )
        code = run_gan_train(monkeypatch, *args, *quiet, cwd=cwd)
        _out, err = capfd.readouterr()
        return code, err

    return run


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_gan_train_refuses_a_needed_run_without_its_checkpoint(cli, tmp_path):
    empty = tmp_path / "empty_prior"
    empty.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    run = cwd / "run"
    code, err = cli(*GFP, f"needs.stylegan2_digits={empty}", f"hydra.run.dir={run}", cwd=cwd)
    assert code == 2
    line = one_error_line(err)
    assert "needs.stylegan2_digits" in line
    assert f"gan-train experiment=stylegan2_digits hydra.run.dir={empty}" in line
    assert str(empty / "checkpoints" / "last.ckpt") in line
    assert not run.exists() and list(cwd.iterdir()) == [] and list(empty.iterdir()) == []


@pytest.mark.parametrize(
    ("override", "wrong"),
    [
        # The prior's w is 128 wide: its affine layers map 128 -> channels.
        ("model.generator.w_dim=32", r"has shape \(\d+, 128\) in the file, expected \(\d+, 32\)"),
        # A GFP-GAN twice as wide as the prior (fmap_max 16 instead of 8): its 4x4 constant.
        ("model.width=16", r"const has shape \(1, 8, 4, 4\) in the file, expected \(1, 16, 4, 4\)"),
    ],
    ids=["w_dim", "width"],
)
def test_gan_train_refuses_a_prior_of_another_size(cli, tmp_path, prior_run, override, wrong):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    run = cwd / "run"
    prior_files = sorted(p.relative_to(prior_run) for p in prior_run.rglob("*"))
    code, err = cli(*GFP, f"needs.stylegan2_digits={prior_run}", override, f"hydra.run.dir={run}", cwd=cwd)
    assert code == 2
    line = one_error_line(err)
    assert "model.generator.prior_checkpoint=" in line and "does not fit" in line
    assert "generator_ema.synthesis_network." in line  # the mismatching key, as stored
    assert re.search(wrong, line), line
    assert not run.exists() and list(cwd.iterdir()) == []
    assert sorted(p.relative_to(prior_run) for p in prior_run.rglob("*")) == prior_files


def test_gan_train_refuses_a_missing_prior_checkpoint(cli, tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    run = cwd / "run"
    missing = tmp_path / "no_such_prior.ckpt"
    code, err = cli(
        *GFP,
        "needs.stylegan2_digits=null",
        f"model.generator.prior_checkpoint={missing}",
        f"hydra.run.dir={run}",
        cwd=cwd,
    )
    assert code == 2
    line = one_error_line(err)
    assert f"model.generator.prior_checkpoint={missing}" in line and "does not exist" in line
    assert "gan-train experiment=stylegan2_digits" in line
    assert not run.exists() and list(cwd.iterdir()) == []


def test_gan_train_refuses_a_random_frozen_prior(cli, tmp_path):
    """No prior checkpoint and a frozen decoder would train the U-Net against a random StyleGAN2:
    one error naming both keys and the two ways out, nothing written."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    run = cwd / "run"
    code, err = cli(
        *GFP,
        "needs.stylegan2_digits=null",
        "model.generator.prior_checkpoint=null",
        f"hydra.run.dir={run}",
        cwd=cwd,
    )
    assert code == 2
    line = one_error_line(err)
    assert "model.generator.prior_checkpoint=null" in line and "model.generator.prior_trainable=true" in line
    assert not run.exists() and list(cwd.iterdir()) == []
