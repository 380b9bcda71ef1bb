"""End to end: the run directory layout of the README, and bad input failing before any work."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from gan_research.errors import CheckpointError, ConfigError, DataError
from gan_research.train import main as train_main
from gan_research.train import train
from gan_research.utils.jsonl_logger import final_status, read_records

LOGGED = [
    "train/d_loss",
    "train/g_loss",
    "train/d_real",
    "train/d_fake",
    "train/d_acc_real",
    "train/g_grad_norm",
    "train/p_real",
    "train/p_fake",
    "train/lr_g",
    "train/lr_d",
]


@pytest.mark.slow
def test_default_job_writes_the_run_directory(make_cfg):
    cfg = make_cfg("logger=wandb", "schedule.max_steps=4")
    result = train(cfg)
    run = result["run_dir"]
    assert result["status"] == "finished"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "checkpoints" / "step_0000002.ckpt").is_file()
    pngs = sorted(p.name for p in (run / "samples").glob("*.png"))
    assert pngs == ["step_0000002.png", "step_0000004.png"]
    grid = Image.open(run / "samples" / "step_0000004.png")
    assert grid.size[0] > 8 * 32  # 8 images of 32 px per row, with padding

    records = read_records(run / "metrics.jsonl")
    for key in LOGGED:
        assert any(key in r for r in records), key
    assert records[-1]["status"] == "finished" and records[-1]["step"] == 4
    assert final_status(run / "metrics.jsonl") == "finished"

    # The offline W&B run holds the logged keys, the sample images and the resolved config.
    runs = list((run / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    wanted = [k.encode() for k in [*LOGGED, "samples", "n_critic", "lr_g"]]
    data = _wait_for_wandb_records(runs[0], wanted)
    for key in wanted:
        assert key in data, key
    assert list((runs[0] / "files" / "media" / "images").glob("samples_*.png"))


def test_checkpoint_loads_with_weights_only(make_cfg):
    result = train(make_cfg("model=mlp", "dataset=ring8", "schedule.ema_decay=0.9", "schedule.max_steps=2"))
    ckpt = torch.load(result["run_dir"] / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    keys = ckpt["state_dict"].keys()
    assert any(k.startswith("generator_ema.") for k in keys)
    assert "fixed_noise" in keys


def test_ring8_scatter_samples(make_cfg):
    result = train(make_cfg("experiment=ring8_wgan_gp", "schedule.max_steps=2", "dataset.num_samples=2000"))
    assert (result["run_dir"] / "samples" / "step_0000002.png").is_file()


def _wait_for_wandb_records(run: Path, wanted: list[bytes], timeout: float = 60.0) -> bytes:
    """The .wandb transaction log is written by W&B's service process, asynchronously
    to the training process; on a loaded machine it can lag wandb.finish() by seconds."""
    deadline = time.monotonic() + timeout
    while True:
        data = b"".join(p.read_bytes() for p in run.glob("run-*.wandb"))
        if all(k in data for k in wanted) or time.monotonic() > deadline:
            return data
        time.sleep(0.5)


# ---------------------------------------------------------------- bad input
def assert_nothing_trained(run_dir: Path) -> None:
    assert not (run_dir / "checkpoints").exists()
    assert final_status(run_dir / "metrics.jsonl") is None


def test_image_network_on_2d_data(make_cfg):
    cfg = make_cfg("model=dcgan", "dataset=ring8")
    with pytest.raises(ConfigError, match=r"model=dcgan reads dataset.channels.*dataset=ring8.*ring8: mlp"):
        train(cfg)
    assert_nothing_trained(Path(cfg.paths.output_dir))


def test_2d_network_on_images(make_cfg):
    cfg = make_cfg("model=mlp", "dataset=digits")
    # The MLP's sizes read dataset.dim, which only the 2-D mixtures declare.
    with pytest.raises(
        ConfigError, match=r"model=mlp reads dataset.dim.*dataset=digits.*datasets with dim: grid25, ring8"
    ):
        train(cfg)
    assert_nothing_trained(Path(cfg.paths.output_dir))


def test_image_size_a_network_cannot_produce(make_cfg):
    cfg = make_cfg("dataset.image_size=48")
    with pytest.raises(ConfigError, match=r"48.*32.*64"):
        train(cfg)
    assert_nothing_trained(Path(cfg.paths.output_dir))


def test_seed_architecture_on_wrong_size(make_cfg):
    with pytest.raises(ConfigError, match="28"):
        train(make_cfg("model=seed_fashion", "dataset=digits"))


def test_missing_dataset_folder(make_cfg, tmp_path):
    missing = tmp_path / "no_such_folder"
    cfg = make_cfg("dataset=image_folder", f"dataset.root={missing}", "dataset.image_size=32")
    with pytest.raises(DataError, match="no_such_folder"):
        train(cfg)
    assert_nothing_trained(Path(cfg.paths.output_dir))


def test_empty_dataset_folder(make_cfg, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    cfg = make_cfg("dataset=image_folder", f"dataset.root={empty}", "dataset.image_size=32")
    with pytest.raises(DataError, match="empty"):
        train(cfg)
    assert_nothing_trained(Path(cfg.paths.output_dir))


def test_unreadable_image_file(make_cfg, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(10):
        Image.new("RGB", (40, 40), (i * 20, 0, 0)).save(folder / f"{i}.png")
    (folder / "broken.png").write_bytes(b"not a png at all")
    cfg = make_cfg("dataset=image_folder", f"dataset.root={folder}", "dataset.image_size=32")
    with pytest.raises(DataError, match=r"broken\.png"):
        train(cfg)
    assert_nothing_trained(Path(cfg.paths.output_dir))


def test_missing_torchvision_files_name_the_path(make_cfg):
    cfg = make_cfg("dataset=mnist", "model.generator.ngf=8")
    with pytest.raises(DataError, match="MNIST"):
        train(cfg)
    assert_nothing_trained(Path(cfg.paths.output_dir))


def test_existing_checkpoints_are_not_overwritten(make_cfg):
    cfg = make_cfg("model=mlp", "dataset=ring8", "schedule.max_steps=2")
    run = train(cfg)["run_dir"]
    last = run / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        train(make_cfg("model=mlp", "dataset=ring8", "schedule.max_steps=2", "resume=never"))
    assert last.read_bytes() == before
    # resume=auto (the default): a finished run is skipped, not trained again.
    again = train(make_cfg("model=mlp", "dataset=ring8", "schedule.max_steps=2"))
    assert again["status"] == "skipped" and again["previous_status"] == "finished"
    assert "train/g_loss" in again["metrics"]
    assert last.read_bytes() == before


def test_unfinished_run_resumes_from_its_last_checkpoint(make_cfg):
    """A killed run (no final status line) started again continues at its last checkpoint's step."""
    cfg = make_cfg("model=mlp", "dataset=ring8", "schedule.max_steps=4")
    run = train(cfg)["run_dir"]
    records = (run / "metrics.jsonl").read_text().splitlines()
    # Pretend the process was killed at step 2: drop the final status line and later checkpoints.
    (run / "metrics.jsonl").write_text("\n".join(r for r in records if '"status"' not in r) + "\n")
    torch.save(
        torch.load(run / "checkpoints" / "step_0000002.ckpt", weights_only=False),
        run / "checkpoints" / "last.ckpt",
    )
    result = train(make_cfg("model=mlp", "dataset=ring8", "schedule.max_steps=4"))
    assert result["status"] == "finished"
    assert result["ckpt_path"] == str(run / "checkpoints" / "last.ckpt")
    steps = [json.loads(r)["step"] for r in (run / "metrics.jsonl").read_text().splitlines()]
    # The resumed run logs steps 3 and 4 only (0-based indices 2, 3), after the earlier ones.
    assert steps[-1] == 4 and steps.count(3) == 2


def test_invalid_resume_mode(make_cfg):
    with pytest.raises(ConfigError, match=r"resume='sometimes'.*\['auto', 'never'\]"):
        train(make_cfg("resume=sometimes"))


def test_missing_resume_checkpoint(make_cfg, tmp_path):
    with pytest.raises(CheckpointError, match=r"ckpt_path=.*does not exist"):
        train(make_cfg(f"ckpt_path={tmp_path / 'nope.ckpt'}"))


def run_gan_train(monkeypatch: pytest.MonkeyPatch, *args: str, cwd: Path | None = None) -> int:
    """``gan-train *args`` in this process: the console script's entry point with ``sys.argv`` (and
    the working directory, when given) as the script has them; returns the exit code the script
    would have. Costs no interpreter start (seconds of importing torch and Lightning); the state a
    run leaves behind (sys.argv, the working directory, Hydra's global state, torch's thread count
    that ``threads=`` sets; logging handlers: conftest) is restored. The installed script itself
    runs in test_resume, test_ddp and test_sweeps, where a separate process is what they test."""
    if cwd is not None:
        monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["gan-train", *args])
    threads = torch.get_num_threads()
    GlobalHydra.instance().clear()
    try:
        train_main()
    except SystemExit as exited:
        # As `sys.exit(main())` in the script, and the interpreter, turn the code into a status.
        return 0 if exited.code is None else exited.code if isinstance(exited.code, int) else 1
    finally:
        GlobalHydra.instance().clear()
        torch.set_num_threads(threads)
    return 0


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture):
    """``cli(*args, cwd=...)`` -> (exit code, stdout, stderr) of ``gan-train`` run in process;
    capfd sees what the process would print."""

    def run(*args: str, cwd: Path) -> tuple[int, str, str]:
        monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
        capfd.readouterr()
        code = run_gan_train(monkeypatch, *args, cwd=cwd)
        out, err = capfd.readouterr()
        return code, out, err

    return run


def test_cli_bad_combination_gives_one_clear_error(cli, tmp_path):
    run_dir = tmp_path / "run"
    code, _out, err = cli(
        "model=dcgan", "dataset=ring8", f"hydra.run.dir={run_dir}", "logger=none", cwd=tmp_path
    )
    assert code == 2
    assert "error: model=dcgan" in err
    assert "Traceback" not in err
    assert_nothing_trained(run_dir)


def test_cli_unknown_option_lists_valid_ones(cli, tmp_path):
    code, _out, err = cli("loss=wasserstein", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert code == 2
    assert err.startswith("error: loss=wasserstein is not an option of loss; valid options:")
    assert len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
    for valid in ("hinge", "lsgan", "minimax", "non_saturating", "wgan", "wgan_gp"):
        assert valid in err


@pytest.mark.parametrize("recipe", ["non_saturating", "wgan_gp"])
def test_bf16_mixed_precision_on_cpu(make_cfg, recipe):
    """bf16 autocast on CPU: both optimisers step, the gradient penalty works, losses stay finite."""
    # A gradient penalty needs a per-sample critic norm (Gulrajani et al. 2017, sec. 4).
    norm = ["model.discriminator.norm=layer"] if recipe == "wgan_gp" else []
    cfg = make_cfg(f"recipe={recipe}", *norm, "trainer.precision=bf16-mixed", "schedule.max_steps=3")
    result = train(cfg)
    assert result["status"] == "finished"
    assert result["trainer"].precision == "bf16-mixed"
    assert result["trainer"].global_step == 3
    assert all(math.isfinite(result["metrics"][k]) for k in ("train/d_loss", "train/g_loss"))
    if recipe == "wgan_gp":
        assert result["metrics"]["train/d_gp"] > 0
    # D took n_critic steps per G step, all of them through the precision plugin.
    assert int(result["model"].d_updates) == 3 * result["model"].schedule.n_critic
