"""``gan-eval`` on bad input: one ``error:`` line, exit code 2, nothing created.

The entry point runs in process (``sys.argv`` patched) for the battery; one subprocess proves
the console script itself, with Hydra's real logging configuration. Run directories are
fabricated as ``gan-train`` leaves them (its composed config with the ``${hydra:...}`` values
it saves, a checkpoint of the model's state dict) so no training is needed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from gan_research import evaluate
from gan_research.errors import ConfigError
from gan_research.train import train
from gan_research.utils.jsonl_logger import read_records
from tests.conftest import compose_config
from tests.test_safe_loading import plant

# Hydra's logging would bind handlers to the captured stdout of one test; the subprocess
# cases below run with the real logging configuration.
QUIET = ["hydra/job_logging=none", "hydra/hydra_logging=none"]
# The families' digit experiments, made tiny through the knobs every config has.
EXPERIMENT = {"pix2pix": "pix2pix_digits_edges", "cyclegan": "cyclegan_digits_inverted"}
TINY_SIZE = ["model.width=8", "dataset.batch_size=4"]


FAST = ["device=cpu", "metrics.num_samples=64", "metrics.batch_size=64"]


def _fabricate_run(run: Path, overrides: list[str]) -> Path:
    cfg = compose_config(overrides, run)
    model = instantiate(cfg.model)
    with open_dict(cfg):
        # What gan-train's Hydra app saves: values that only resolve inside that app.
        cfg.name = "${hydra:runtime.choices.model}_${hydra:runtime.choices.dataset}"
        cfg.paths.output_dir = "${hydra:runtime.output_dir}"
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")
    (run / "checkpoints").mkdir()
    torch.save({"state_dict": model.state_dict(), "global_step": 3}, run / "checkpoints" / "last.ckpt")
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    ring = _fabricate_run(
        root / "ring", ["model=mlp", "dataset=ring8", "model.width=16", "dataset.batch_size=32"]
    )
    _fabricate_run(root / "pix2pix", ["experiment=pix2pix_digits_edges", *TINY_SIZE])
    ckpts = ring / "checkpoints"
    good = (ckpts / "last.ckpt").read_bytes()
    (ckpts / "truncated.ckpt").write_bytes(good[: len(good) // 2])
    (ckpts / "text.ckpt").write_text("not a checkpoint\n")
    (ckpts / "empty.ckpt").write_bytes(b"")
    (ckpts / "a_dir.ckpt").mkdir()
    shutil.copy(root / "pix2pix" / "checkpoints" / "last.ckpt", ckpts / "pix2pix.ckpt")
    torch.save([1, 2, 3], ckpts / "no_state.ckpt")
    plant(ckpts / "evil.ckpt", root / "PWNED", wrap="state_dict")
    (root / "not_a_run").mkdir()
    (root / "a_file.txt").write_text("hello\n")
    for name, text in {
        "bad_yaml": "model: [unclosed\n",
        "no_model": "seed: 0\n",
        "evil_target": f"model:\n  _target_: torch.load\n  f: {ckpts / 'evil.ckpt'}\n  weights_only: false\n",
    }.items():
        (root / name / ".hydra").mkdir(parents=True)
        (root / name / ".hydra" / "config.yaml").write_text(text)
        shutil.copytree(ckpts, root / name / "checkpoints")
    return root


def snapshot(*roots: Path) -> dict[str, tuple[bool, int, int]]:
    """Every path under ``roots`` (and the roots) with kind, size and mtime: any change shows."""
    out = {}
    for root in roots:
        for path in [root, *root.rglob("*")]:
            st = path.lstat()
            out[str(path)] = (path.is_dir(), 0 if path.is_dir() else st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> Callable[..., tuple[int, str, str]]:
    """``cli(*args)`` -> (exit code, stdout, stderr) of ``gan-eval`` in process, from an empty cwd."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["gan-eval", *args, *QUIET])
        GlobalHydra.instance().clear()
        code = 0
        try:
            evaluate.main()
        except SystemExit as exited:
            code = exited.code if isinstance(exited.code, int) else 1
        finally:
            GlobalHydra.instance().clear()
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def _battery(r: Path) -> dict[str, tuple[list[str], list[str]]]:
    """id -> (arguments, what the one error line must say)."""
    ring, ck = f"run_dir={r / 'ring'}", r / "ring" / "checkpoints"
    return {
        "no_run_dir": ([], ["run_dir is required", "gan-eval run_dir="]),
        "run_dir_null": (["run_dir=null"], ["run_dir=None is invalid"]),
        "run_dir_missing": ([f"run_dir={r / 'nope'}"], [f"run_dir={r / 'nope'} does not exist"]),
        "run_dir_is_file": ([f"run_dir={r / 'a_file.txt'}"], ["is a file, not a run directory"]),
        "not_a_run": (
            [f"run_dir={r / 'not_a_run'}"],
            ["is not a run directory", ".hydra/config.yaml is missing"],
        ),
        "bad_yaml": ([f"run_dir={r / 'bad_yaml'}"], ["config.yaml is not a readable config"]),
        "no_model": ([f"run_dir={r / 'no_model'}"], ["is not a gan-train run config"]),
        "evil_target": ([f"run_dir={r / 'evil_target'}"], ["model._target_='torch.load'", "allow-list"]),
        "unknown_metrics": ([ring, "metrics=foo"], ["metrics=foo is not an option", "default, inception"]),
        "unknown_key": (
            [ring, "foo=1"],
            ["unknown key foo", "checkpoint, device, metrics, out, paths, run_dir"],
        ),
        "unknown_metrics_key": ([ring, "metrics.foo=1"], ["unknown key metrics.foo", "num_samples"]),
        "append_existing": ([ring, "+seed=1"], ["An item is already at 'seed'"]),
        "unparsable": ([ring, "seed=["], ["cannot parse the override 'seed=['"]),
        "seed_text": ([ring, "seed=abc"], ["seed='abc' is invalid", "integer"]),
        "device_bad": ([ring, "device=tpu"], ["device='tpu' is invalid", "auto, cpu, cuda"]),
        "device_absent": ([ring, "device=cuda:99"], ["device=cuda:99 is not available", "device=cpu"]),
        "metrics_none": ([ring, "metrics=none"], ["metrics=none evaluates nothing", "metrics=default"]),
        "ckpt_missing": ([ring, "checkpoint=nope.ckpt"], ["does not exist", "available", "last.ckpt"]),
        "ckpt_null": ([ring, "checkpoint=null"], ["checkpoint=None is invalid"]),
        "ckpt_dir": ([ring, "checkpoint=a_dir.ckpt"], ["is a directory, not a checkpoint file"]),
        "out_dir": ([ring, f"out={r}"], [f"out={r} is a directory"]),
        "ckpt_truncated": (
            [ring, "checkpoint=truncated.ckpt", *FAST],
            ["truncated, corrupt or not a torch file"],
        ),
        "ckpt_text": ([ring, "checkpoint=text.ckpt", *FAST], ["truncated, corrupt or not a torch file"]),
        "ckpt_empty": ([ring, "checkpoint=empty.ckpt", *FAST], ["truncated, corrupt or not a torch file"]),
        "ckpt_no_state": ([ring, "checkpoint=no_state.ckpt", *FAST], ["not a gan-train checkpoint"]),
        "ckpt_other_model": ([ring, "checkpoint=pix2pix.ckpt", *FAST], ["does not fit the run's model"]),
        "ckpt_absolute_evil": ([ring, f"checkpoint={ck / 'evil.ckpt'}", *FAST], ["other than tensors"]),
        "metrics_setting_type": ([ring, "metrics.num_samples=abc", *FAST[:1]], ["metrics.num_samples='abc'"]),
        "translation_on_gan": (
            [ring, "metrics=translation", *FAST[:1]],
            ["metrics=default, metrics=inception"],
        ),
        "default_on_pix2pix": (
            [f"run_dir={r / 'pix2pix'}", *FAST],
            ["image-translation run", "metrics=translation"],
        ),
    }


BATTERY_IDS = list(_battery(Path("/")))


@pytest.mark.parametrize("case", BATTERY_IDS)
def test_bad_input_is_one_error_line_exit_2_and_nothing_written(runs: Path, cli, tmp_path: Path, case: str):
    args, expected = _battery(runs)[case]
    before = snapshot(runs, tmp_path)
    code, _out, err = cli(*args)
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for text in expected:
        assert text in lines[0]
    assert snapshot(runs, tmp_path) == before
    assert not (runs / "PWNED").exists()


def test_a_run_is_evaluated_into_its_eval_folder_and_nothing_else(runs: Path, cli, tmp_path: Path) -> None:
    before = snapshot(runs, tmp_path)
    code, out, err = cli(f"run_dir={runs / 'ring'}", *FAST)
    assert (code, err) == (0, "")
    result_path = runs / "ring" / "eval" / "last.json"
    try:
        result = json.loads(result_path.read_text())
        assert result["step"] == 3 and result["checkpoint"] == str(
            runs / "ring" / "checkpoints" / "last.ckpt"
        )
        assert {"val/modes_recovered", "val/high_quality"} <= set(result["metrics"])
        assert json.loads(out) == result["metrics"]
        after = snapshot(runs, tmp_path)
        added = set(after) - set(before)
        assert added == {str(runs / "ring" / "eval"), str(result_path)}
        changed = {p for p in before if after[p] != before[p]}
        assert changed == {str(runs / "ring")}  # the folder's mtime: it gained eval/
    finally:
        shutil.rmtree(runs / "ring" / "eval")


def test_a_translation_run_is_evaluated_with_metrics_translation(runs: Path, cli, tmp_path: Path) -> None:
    out_file = tmp_path / "results" / "pix2pix.json"
    args = [f"run_dir={runs / 'pix2pix'}", "metrics=translation", "metrics.feature_network=none"]
    code, _out, err = cli(*args, "metrics.num_samples=16", "device=cpu", f"out={out_file}")
    assert (code, err) == (0, "")
    result = json.loads(out_file.read_text())
    assert set(result["metrics"]) == {"val/l1", "val/psnr", "val/ssim"}
    assert result["num_samples"] == 16 and result["feature_network"] == "none"
    assert not (runs / "pix2pix" / "eval").exists()


def test_help_and_cfg_still_work(runs: Path, cli) -> None:
    code, out, err = cli("--cfg", "job")
    assert (code, err) == (0, "") and "run_dir: ???" in out
    code, out, _err = cli("--help")
    assert code == 0 and "run_dir" in out


def _gan_eval(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("gan-eval")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "gan_research.evaluate"]
    return subprocess.run([*command, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_console_script_refusal_is_one_line_and_creates_nothing(runs: Path, tmp_path: Path) -> None:
    # One subprocess (imports cost seconds): refused inside Hydra's app, with its real logging
    # configuration, so no log line, no .hydra/ and no log file may appear anywhere.
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    before = snapshot(runs, tmp_path)
    proc = _gan_eval(f"run_dir={runs / 'ring'}", "checkpoint=evil.ckpt", "device=cpu", cwd=cwd)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("error: checkpoint "), proc.stderr
    assert "other than tensors" in proc.stderr
    assert snapshot(runs, tmp_path) == before
    assert not (runs / "PWNED").exists()


# --------------------------------------------------------------------------- trained translation runs


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny pix2pix and CycleGAN runs trained 2 steps with metrics=translation (FID off: no
    classifier to train), so their recorded config holds the translation evaluator."""
    root = tmp_path_factory.mktemp("trained")
    runs = {}
    for model in ("pix2pix", "cyclegan"):
        run = root / model
        overrides = [
            f"experiment={EXPERIMENT[model]}",
            *TINY_SIZE,
            "metrics=translation",
            "metrics.feature_network=none",
            "metrics.eval_at_start=false",
            "metrics.every_n_steps=0",
            "metrics.num_samples=16",
            "schedule.max_steps=2",
            "callbacks.samples=null",
        ]
        cfg = compose_config(overrides, run)
        # What gan-train records, which gan-eval reads back.
        (run / ".hydra").mkdir(parents=True)
        OmegaConf.save(cfg, run / ".hydra" / "config.yaml")
        train(cfg)
        runs[model] = run
    return runs


def test_training_logs_the_translation_metrics_through_the_one_callback(trained: dict[str, Path]) -> None:
    # One Evaluation callback ran the translation evaluator at the end of training.
    for model, keys in (("pix2pix", {"val/l1", "val/psnr", "val/ssim"}), ("cyclegan", {"val/cycle_l1"})):
        records = read_records(trained[model] / "metrics.jsonl")
        assert any(keys <= set(r) for r in records), model


def test_gan_eval_scores_a_pix2pix_run_with_its_recorded_evaluator(trained, cli, tmp_path: Path) -> None:
    # No metrics=translation: the run's own evaluator, with the command's settings on top.
    out_file = tmp_path / "pix2pix.json"
    code, out, err = cli(
        f"run_dir={trained['pix2pix']}", "device=cpu", "metrics.num_samples=8", f"out={out_file}"
    )
    assert (code, err) == (0, "")
    result = json.loads(out_file.read_text())
    assert set(result["metrics"]) == {"val/l1", "val/psnr", "val/ssim"}
    assert json.loads(out) == result["metrics"]
    assert result["num_samples"] == 8 and result["feature_network"] == "none" and result["step"] == 2


def test_evaluate_run_scores_a_cyclegan_checkpoint(trained: dict[str, Path]) -> None:
    run = trained["cyclegan"]
    metrics = evaluate.evaluate_run(run / "checkpoints" / "last.ckpt", ["device=cpu"])
    assert set(metrics) == {"val/cycle_l1", "val/cycle_l1_b"}
    assert all(value >= 0 for value in metrics.values())
    assert not (run / "eval").exists()  # the function writes nothing
    # The same run directory, and the explicit option, agree.
    explicit = ["device=cpu", "metrics=translation", "metrics.feature_network=none", "metrics.num_samples=16"]
    again = evaluate.evaluate_run(run, explicit)
    assert again.keys() == metrics.keys()


def test_gan_eval_refusals_on_a_recorded_evaluator(trained: dict[str, Path]) -> None:
    run = trained["pix2pix"]
    # A setting of the generator suite is not one of the recorded translation metrics.
    with pytest.raises(ConfigError, match=r"metrics.kinds is not a setting .*valid: .*num_samples"):
        evaluate.evaluate_run(run, ["device=cpu", "metrics.kinds=[fid]"])
    # Choosing another option on purpose still says which fits, from the evaluators' declarations.
    with pytest.raises(
        ConfigError, match=r"image-translation run.*'digits_edges'.*use metrics=.*metrics=translation"
    ):
        evaluate.evaluate_run(run, ["device=cpu", "metrics=default"])
