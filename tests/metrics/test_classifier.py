"""The domain classifier: accuracy on digits, the feature-network interface, checkpoints, gan-classifier."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from gan_research.data import DigitsDataModule, RingMixture
from gan_research.data.stacked_digits import StackedDigitsDataModule
from gan_research.errors import CheckpointError, ConfigError
from gan_research.metrics.classifier import (
    CONFIG_DIR,
    DomainClassifier,
    count_stacked_modes,
    default_classifier_path,
    load_classifier,
    run,
    save_classifier,
    split_indices,
    state_dict_sha256,
    train_classifier,
)
from gan_research.metrics.classifier import main as classifier_main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(digits_classifier_file: Path) -> tuple[DomainClassifier, float]:
    """The digits classifier with the defaults of `gan-classifier dataset=digits`, trained once for
    the test session (conftest) and read back from its file: (model, test accuracy)."""
    model = load_classifier(digits_classifier_file, dataset="digits")
    return model, model.test_accuracy


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    dm = DigitsDataModule(image_size=32)
    dm.setup()
    return dm.train_set.x[:64]


def test_reaches_95_percent_on_held_out_digits(trained) -> None:
    _, accuracy = trained
    print(f"digits classifier: test accuracy {accuracy:.4f}")
    assert accuracy >= 0.95


def test_feature_network_interface(trained, digits) -> None:
    model, _ = trained
    assert (model.name, model.channels, model.image_size, model.num_classes) == ("digits", 1, 32, 10)
    features, logits = model(digits), model.logits(digits)
    assert features.shape == (64, model.num_features) and logits.shape == (64, 10)
    assert not any(p.requires_grad for p in model.parameters())


def test_stays_in_eval_mode_when_a_parent_trains(trained, digits) -> None:
    model, _ = trained
    parent = torch.nn.Sequential(model)
    parent.train()
    assert not model.training and not model.dropout.training
    assert torch.equal(model.logits(digits), model.logits(digits))


def test_other_sizes_and_channels_are_converted(trained, digits) -> None:
    model, _ = trained
    small = F.interpolate(digits, size=(16, 16), mode="bilinear", align_corners=False, antialias=True)
    upsized = F.interpolate(small, size=(32, 32), mode="bilinear", align_corners=False)
    assert model(small).shape == (64, model.num_features)
    assert torch.allclose(model(small), model(upsized), atol=1e-5)
    assert model(F.interpolate(digits, size=(64, 64), mode="bilinear")).shape == (64, model.num_features)
    # RGB copies of a grey image are the grey image again (luma weights sum to 1).
    assert torch.allclose(model(digits.expand(-1, 3, -1, -1)), model(digits), atol=1e-4)


def test_uint8_input_is_refused(trained) -> None:
    model, _ = trained
    with pytest.raises(ValueError, match=r"float images in \[-1, 1\]"):
        model(torch.zeros(2, 1, 32, 32, dtype=torch.uint8))


def test_save_load_roundtrip_gives_identical_logits(trained, digits, tmp_path: Path) -> None:
    model, accuracy = trained
    path = default_classifier_path(tmp_path, "digits", 32)
    checksum = save_classifier(model, path, accuracy, "digits", {"epochs": 8})
    assert path == tmp_path / "classifiers" / "digits_32.pt" and path.is_file()
    assert checksum == state_dict_sha256(model.state_dict())
    loaded = load_classifier(path)
    assert torch.equal(loaded.logits(digits), model.logits(digits))
    assert (loaded.name, loaded.image_size, loaded.num_features) == ("digits", 32, model.num_features)
    assert loaded.test_accuracy == pytest.approx(accuracy) and loaded.sha256 == checksum
    assert not loaded.training
    stored = torch.load(path, weights_only=True)
    assert stored["dataset"] == "digits" and stored["image_size"] == 32 and stored["meta"] == {"epochs": 8}
    assert stored["hparams"] == model.hparams and stored["sha256"] == checksum


def test_checksum_is_deterministic_and_sees_every_weight(trained) -> None:
    model, _ = trained
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert state_dict_sha256(state) == state_dict_sha256(dict(reversed(list(state.items()))))
    before = state_dict_sha256(state)
    state["head.bias"][3] += 1e-6
    assert state_dict_sha256(state) != before


def test_tampered_weights_fail_the_checksum(trained, tmp_path: Path) -> None:
    model, accuracy = trained
    path = tmp_path / "digits_32.pt"
    save_classifier(model, path, accuracy, "digits")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["state_dict"]["head.weight"][0, 0] += 0.01
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="checksum") as err:
        load_classifier(path)
    assert str(path) in str(err.value) and f"gan-classifier dataset=digits out={path}" in str(err.value)


def test_missing_file_names_the_command_that_creates_it(tmp_path: Path) -> None:
    path = tmp_path / "classifiers" / "mnist_28.pt"
    with pytest.raises(CheckpointError, match="does not exist") as err:
        load_classifier(path)
    assert f"gan-classifier dataset=mnist out={path}" in str(err.value)
    other = tmp_path / "mine.pt"
    with pytest.raises(CheckpointError, match=f"gan-classifier dataset=cifar10 out={other}"):
        load_classifier(other, dataset="cifar10")


def test_corrupt_or_foreign_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    garbage = tmp_path / "digits_32.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="could not be read"):
        load_classifier(garbage)
    torch.save({"weights": torch.zeros(2)}, garbage)
    with pytest.raises(CheckpointError, match="not a domain classifier checkpoint"):
        load_classifier(garbage)


def test_split_is_deterministic_and_disjoint() -> None:
    train, test = split_indices(1797, 0.2, seed=3)
    assert len(test) == 359 and len(train) == 1797 - 359
    assert torch.equal(torch.sort(torch.cat([train, test])).values, torch.arange(1797))
    assert torch.equal(split_indices(1797, 0.2, seed=3)[1], test)
    assert not torch.equal(split_indices(1797, 0.2, seed=4)[1], test)


def test_unlabelled_or_2d_data_and_bad_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="'ring8' is not an image dataset"):
        train_classifier(RingMixture())
    with pytest.raises(ConfigError, match=r"classifier.epochs must be a positive integer, got 0"):
        train_classifier(DigitsDataModule(), epochs=0)
    with pytest.raises(ConfigError, match=r"test_fraction must be in \(0, 1\), got 1.5"):
        train_classifier(DigitsDataModule(), test_fraction=1.5)


def test_count_stacked_modes_agrees_with_labels(trained) -> None:
    model, _ = trained
    dm = StackedDigitsDataModule(num_samples=200, seed=5)
    dm.setup()
    x, y = dm.train_set[list(range(200))]
    modes = count_stacked_modes(model, x)
    assert modes.shape == (200,) and modes.dtype == torch.int64
    assert int(modes.min()) >= 0 and int(modes.max()) <= 999
    assert (modes == y).float().mean().item() >= 0.9


def test_count_stacked_modes_needs_a_digits_classifier() -> None:
    with pytest.raises(ConfigError, match="1-channel, 10-class digits classifier"):
        count_stacked_modes(DomainClassifier(channels=3, num_classes=1000), torch.zeros(2, 3, 32, 32))


def _compose(*overrides: str) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="classifier", overrides=list(overrides))
    GlobalHydra.instance().clear()
    return cfg


def test_config_trains_and_saves_to_the_default_path(tmp_path: Path, capsys) -> None:
    cfg = _compose("dataset=digits", "epochs=1", "width=4", f"paths.data_dir={tmp_path}")
    assert cfg.out is None and cfg.dataset.image_size == 32
    result = run(cfg)
    path = tmp_path / "classifiers" / "digits_32.pt"
    assert result["path"] == path and path.is_file()
    assert f"sha256 {result['sha256']}" in capsys.readouterr().out
    loaded = load_classifier(path)
    assert loaded.width == 4 and loaded.sha256 == result["sha256"]
    meta = torch.load(path, weights_only=True)["meta"]
    assert meta["epochs"] == 1 and meta["dataset_config"]["image_size"] == 32


def test_config_errors_are_ours(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'ring8' is not an image dataset"):
        run(_compose("dataset=ring8", f"out={tmp_path / 'x.pt'}"))
    cfg = _compose("dataset=digits", "dataset.channels=2")
    with open_dict(cfg):
        cfg.paths.data_dir = str(tmp_path)
    with pytest.raises(ConfigError, match="channels must be 1"):
        run(cfg)
    assert not (tmp_path / "classifiers").exists()


def _console_script(name: str, module: str) -> list[str]:
    """The installed console script (what a user runs); ``python -m`` where it is not installed."""
    script = Path(sys.executable).with_name(name)
    return [str(script)] if script.is_file() else [sys.executable, "-m", module]


def test_gan_classifier_command_in_process_writes_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    """The console script's entry point with sys.argv as the script sets it (the script itself,
    a process of its own importing torch and Lightning, is make test-all's test below)."""
    script = Path(sys.executable).with_name("gan-classifier")
    if script.is_file():
        assert "from gan_research.metrics.classifier import main" in script.read_text()
    out = tmp_path / "sub" / "digits.pt"
    argv = ["dataset=digits", f"out={out}", "epochs=1", "width=4", f"hydra.run.dir={tmp_path / 'run'}"]
    monkeypatch.setattr(sys, "argv", ["gan-classifier", *argv])
    monkeypatch.chdir(tmp_path)
    GlobalHydra.instance().clear()
    try:
        classifier_main()
    except SystemExit as exited:
        assert exited.code in (None, 0)
    finally:
        GlobalHydra.instance().clear()
    printed = capfd.readouterr().out
    assert "test accuracy" in printed and "sha256 " in printed
    assert load_classifier(out).name == "digits"
    assert (tmp_path / "run" / ".hydra" / "config.yaml").is_file()


@pytest.mark.slow
@pytest.mark.heavy
def test_gan_classifier_command_writes_the_file(tmp_path: Path) -> None:
    # The console script itself in a process of its own, with Hydra's app and logging.
    out = tmp_path / "sub" / "digits.pt"
    command = _console_script("gan-classifier", "gan_research.metrics.classifier")
    command += ["dataset=digits", f"out={out}", "epochs=1", "width=4", f"hydra.run.dir={tmp_path / 'run'}"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "test accuracy" in proc.stdout and "sha256 " in proc.stdout
    assert load_classifier(out).name == "digits"
    assert (tmp_path / "run" / ".hydra" / "config.yaml").is_file()


def test_gan_classifier_bad_dataset_exits_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    # In process: the entry point (Hydra's app) with sys.argv as the console script sets it; the
    # subprocess above already proves the script. capfd sees what the process would print.
    argv = ["dataset=ring8", f"hydra.run.dir={tmp_path / 'run'}", f"paths.data_dir={tmp_path}"]
    monkeypatch.setattr(sys, "argv", ["gan-classifier", *argv])
    monkeypatch.chdir(tmp_path)
    GlobalHydra.instance().clear()
    try:
        with pytest.raises(SystemExit) as exited:
            classifier_main()
    finally:
        GlobalHydra.instance().clear()
    assert exited.value.code == 2
    assert "error: dataset 'ring8' is not an image dataset" in capfd.readouterr().err
