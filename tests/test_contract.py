"""The family contract, checked on every experiment in conf/experiment/ (found by globbing, so a
new experiment is covered without editing any table).

Each experiment is composed as `gan-train experiment=<name>` would, made tiny through keys every
config has (``model.width``, the model's size knob, and ``dataset.batch_size``), and trained for a
few steps in-process. What every family promises:

- one step changes G and D (after ``schedule.pretrain_steps`` generator-only steps, kept to one);
  D's weights do not change during a G update (a family without a discriminator,
  ``adversarial = False``, has G's optimiser only and must change G);
- ``global_step`` counts generator updates (one G optimiser step per step);
- ``last.ckpt`` holds the final step and loads with ``weights_only=True``;
- a run resumed from a mid-run checkpoint logs the same next losses as the uninterrupted run;
- the sample grid is written, one image per sampling step;
- ``gan-eval`` scores the checkpoint with the experiment's own metrics.

Experiments whose data or published weights are not on this machine (downloads, folders, VGG19)
are composed and built up to them, and must stop with the clear missing-file error (``DataError``
or ``WeightsFileMissing`` naming the path).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from filelock import FileLock
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict
from PIL import Image
from pytorch_lightning import Callback

from gan_research.config import CONFIG_DIR
from gan_research.errors import DataError
from gan_research.evaluate import ALLOWED_TARGET_PREFIXES, evaluate_run
from gan_research.train import build, train
from gan_research.utils.weights import WeightsFileMissing
from tests.conftest import compose_config, session_shared_dir

pytestmark = pytest.mark.slow
EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))

# The model-agnostic size knob and the dataset's batch: every experiment becomes a seconds-long run.
TINY_SIZE = ["model.width=8", "dataset.batch_size=4"]
PRETRAIN_STEPS = 1
PROBE = "+callbacks.contract_probe._target_=tests.test_contract.ContractProbe"


class ContractProbe(Callback):
    """Watches the optimisers of a run: counts G and D steps and checks that a G step leaves
    D's weights untouched. Results are kept per run directory for the test to read."""

    results: ClassVar[dict[str, dict[str, Any]]] = {}

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        optimizers = [o.optimizer if hasattr(o, "optimizer") else o for o in trainer.optimizers[:2]]
        adversarial = pl_module.discriminator is not None
        record: dict[str, Any] = {
            "g_steps": 0,
            "d_steps": 0,
            "d_changed_in_g_step": 0,
            "adversarial": adversarial,
        }
        self.results[str(trainer.default_root_dir)] = record
        assert len(optimizers) == (2 if adversarial else 1), optimizers
        opt_g = optimizers[0]
        d_params = list(pl_module.discriminator.parameters()) if adversarial else []
        snapshot: list[torch.Tensor] = []
        record["start"] = {
            "generator": [p.detach().clone() for p in pl_module.generator.parameters()],
            "discriminator": [p.detach().clone() for p in d_params],
        }

        def before_g(*_: Any) -> None:
            snapshot[:] = [p.detach().clone() for p in d_params]

        def after_g(*_: Any) -> None:
            record["g_steps"] += 1
            if any(not torch.equal(a, p) for a, p in zip(snapshot, d_params, strict=True)):
                record["d_changed_in_g_step"] += 1

        def after_d(*_: Any) -> None:
            record["d_steps"] += 1

        opt_g.register_step_pre_hook(before_g)
        opt_g.register_step_post_hook(after_g)
        if adversarial:
            optimizers[1].register_step_post_hook(after_d)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        record = self.results[str(trainer.default_root_dir)]
        start = record.pop("start")
        for name in ("generator", "discriminator"):
            now = list(getattr(pl_module, name).parameters()) if getattr(pl_module, name) is not None else []
            record[f"{name}_changed"] = any(
                not torch.equal(a, p.detach()) for a, p in zip(start[name], now, strict=True)
            )


@pytest.fixture(scope="module")
def shared_data(tmp_path_factory: pytest.TempPathFactory, seed_digits_classifier) -> Path:
    """One data directory for the test session, both workers: what the evaluators cache there
    (domain classifiers, segmenters, FID statistics) is built once and shared by every
    experiment's gan-eval, as across a user's runs (the digits classifier comes from the test
    session's, trained once). gan-eval takes a lock per dataset (:func:`_dataset_lock`), so two
    workers never build the same cache at once."""
    data_dir = session_shared_dir(tmp_path_factory) / "contract-data"
    with FileLock(f"{data_dir}.lock"):
        if not data_dir.exists():
            data_dir.mkdir()
            seed_digits_classifier(data_dir)
    return data_dir


def _dataset_lock(data_dir: Path, cfg: Any) -> FileLock:
    """The lock of one dataset's caches in ``data_dir`` (keyed by the datamodule class)."""
    return FileLock(str(data_dir / f".{cfg.dataset._target_}.lock"))


def _compose(experiment: str, run_dir: Path, data_dir: Path, *extra: str) -> Any:
    overrides = [f"experiment={experiment}", *TINY_SIZE, *extra]
    cfg = compose_config(overrides, run_dir)
    # Runs the experiment builds on (a pretrained prior): made tiny, once per test session, then
    # the experiment composed again (Hydra's global state is the last composed config's).
    needs = {k: v for k, v in (cfg.get("needs") or {}).items() if v is not None}
    if needs:
        made = [f"needs.{name}={_needed_run(name, data_dir)}" for name in needs]
        cfg = compose_config([*overrides, *made], run_dir)
    with open_dict(cfg):
        cfg.paths.data_dir = str(data_dir)
        # A generator-only warm-up (schedule.pretrain_steps: SRResNet before SRGAN) is kept to one
        # step, so the tiny run has both phases.
        if cfg.schedule.get("pretrain_steps", 0) > 0:
            cfg.schedule.pretrain_steps = PRETRAIN_STEPS
    return cfg


def _needed_run(experiment: str, data_dir: Path) -> Path:
    """The directory of a tiny finished run of ``experiment`` (what another experiment's ``needs``
    names), trained once per test session and shared by the workers."""
    run = data_dir.parent / "contract-needs" / experiment
    with FileLock(f"{run}.lock"):
        if not (run / "checkpoints" / "last.ckpt").is_file():
            assert train(_compose(experiment, run, data_dir))["status"] == "finished"
    return run


def _metrics_option(experiment: str) -> str:
    """The metrics option the experiment chooses (the contract runs train with metrics=none)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    return str(cfg.hydra.runtime.choices.metrics)


def _losses(run_dir: Path, step: int) -> dict[str, float]:
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("step") == step and "train/g_loss" in record:
            return {k: v for k, v in record.items() if k.startswith("train/") and "loss" in k}
    raise AssertionError(f"no train losses logged at step {step} in {run_dir}")


def _has_data(cfg: Any) -> bool:
    """Whether the experiment's data (and published weights, such as VGG19's) are on this machine;
    if not, the error must be the clear one."""
    try:
        build(cfg, prepare_evaluation=False)
    except (DataError, WeightsFileMissing) as err:
        message = str(err)
        assert "\n" not in message.strip(), message
        assert any(word in message for word in ("not found", "missing", "no such", "does not exist")), message
        return False
    return True


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_keeps_the_family_contract(experiment, tmp_path, shared_data):
    run = tmp_path / "run"
    cfg = _compose(experiment, run, shared_data, PROBE)
    if not _has_data(cfg):
        assert not run.exists(), "a refused run must write nothing"
        pytest.skip(f"{experiment}: its data is not on this machine (the missing-data error was checked)")

    result = train(cfg)
    assert result["status"] == "finished"
    probe = ContractProbe.results[str(run)]
    steps = cfg.schedule.max_steps
    pretrain = cfg.schedule.pretrain_steps

    # One step changes G and D; a G update never changes D. A family without a discriminator
    # (adversarial = False) trains G alone.
    adversarial = probe["adversarial"]
    assert probe["generator_changed"] and (probe["discriminator_changed"] or not adversarial), probe
    assert probe["d_changed_in_g_step"] == 0, probe
    # global_step counts generator updates: one G optimiser step per training step.
    assert probe["g_steps"] == steps, probe
    assert probe["d_steps"] >= (steps - pretrain if adversarial else 0), probe

    # The final checkpoint holds the final step and loads without running code.
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert last["global_step"] == steps

    # A sample grid at every sampling step (2 with max_steps 3), a readable image.
    grids = sorted((run / "samples").rglob("*.png"))
    assert grids, "no sample grid written"
    with Image.open(grids[-1]) as image:
        assert image.width > 1 and image.height > 1

    # Resumed from the step-2 checkpoint in another directory, the next step logs the same losses.
    resumed_dir = tmp_path / "resumed"
    resumed = _compose(
        experiment, resumed_dir, shared_data, f"ckpt_path={run / 'checkpoints' / 'step_0000002.ckpt'}"
    )
    assert train(resumed)["status"] == "finished"
    assert _losses(resumed_dir, steps) == _losses(run, steps)

    # gan-eval scores the checkpoint with the experiment's own metrics (few samples: the numbers
    # are not the point, that every family's checkpoint goes through the evaluator is).
    # An experiment without periodic metrics (sgan_digits reports its own test accuracy) is scored
    # with the default suite, which picks what to measure from the data's declared kind.
    option = _metrics_option(experiment)
    overrides = [
        "device=cpu",
        f"metrics={'default' if option == 'none' else option}",
        "metrics.num_samples=32",
        f"paths.data_dir={shared_data}",
    ]
    if option == "segmentation":
        # The segmenter the evaluator trains once per dataset: 20 steps instead of 200 (the
        # scores' quality is not the point here; its training is tested in test_segmentation).
        overrides.append("metrics.segmenter_steps=20")
    with _dataset_lock(shared_data, cfg):
        scores = evaluate_run(
            run / "checkpoints" / "last.ckpt",
            overrides,
            # The recorded config names the probe callback of this module: allowed here, and only here.
            allowed_targets=(*ALLOWED_TARGET_PREFIXES, "tests.test_contract"),
        )
    assert scores and all(isinstance(v, float) for v in scores.values()), scores
