"""Issue 13, item 4 and 6: nothing that loads a file runs code.

Every file the evaluation path reads (Inception weights from the config key, the variable and
the hub cache; the domain-classifier cache; FID's statistics cache; a run's checkpoint and its
``.hydra/config.yaml``) is given a pickle whose ``__reduce__`` creates a marker file: the load
must fail with one clean line and the marker must never appear. The run config's ``_target_``
allow-list is tested on every target of ``conf/`` and on the ways around a name check.
"""

from __future__ import annotations

import contextlib
import pathlib
import pickle
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

from gan_research.config import CONFIG_DIR
from gan_research.errors import CheckpointError, ConfigError
from gan_research.evaluate import evaluate_checkpoint
from gan_research.metrics.classifier import load_classifier
from gan_research.metrics.fid import FeatureFID, load_or_compute_real_stats
from gan_research.metrics.inception import (
    INCEPTION_WEIGHTS_ENV,
    INCEPTION_WEIGHTS_FILENAME,
    InceptionFeatures,
    load_inception_state_dict,
)
from gan_research.utils.safe_config import (
    ALLOWED_TARGET_PREFIXES,
    DisallowedTargetError,
    check_targets,
    checked_node,
    iter_targets,
    target_problem,
)
from tests.metrics.test_fid import ToyFeatures


class Payload:
    """Unpickling this creates ``marker``: the stand-in for any code a planted file would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Path]]:
        return (pathlib.Path.touch, (self.marker,))


def plant(path: Path, marker: Path, *, legacy: bool = False, wrap: str | None = None) -> Path:
    """Write a malicious pickle at ``path``: torch's zip format, or a bare (legacy) pickle.

    ``wrap`` nests the payload under that key, as in a checkpoint's ``state_dict``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    obj: Any = Payload(marker) if wrap is None else {wrap: Payload(marker), "global_step": 1}
    if legacy:
        path.write_bytes(pickle.dumps(obj, protocol=2))  # what torch.load expects of a bare pickle
    else:
        torch.save(obj, path)
    return path


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "PWNED"


def assert_one_clean_line(err: BaseException, path: Path, marker: Path) -> None:
    message = str(err)
    assert not marker.exists(), "a planted pickle ran code"
    assert "\n" not in message
    assert str(path) in message
    assert "weights_only=False" not in message  # never advise the unsafe load


def test_the_payload_is_live(tmp_path: Path, marker: Path) -> None:
    # Without this, every "marker never appears" below could pass for a dud payload.
    for legacy in (False, True):
        path = plant(tmp_path / f"live{legacy}.pt", marker, legacy=legacy)
        # A bare pickle runs while torch reads it as the legacy format's magic number, then fails.
        with contextlib.suppress(RuntimeError):
            torch.load(path, weights_only=False)
        assert marker.exists()
        marker.unlink()


# --------------------------------------------------------------------------- Inception weights


@pytest.mark.parametrize("legacy", [False, True])
def test_planted_inception_weights_named_by_the_config_key_do_not_run(
    tmp_path: Path, marker: Path, legacy: bool
) -> None:
    evil = plant(tmp_path / INCEPTION_WEIGHTS_FILENAME, marker, legacy=legacy)
    with pytest.raises(CheckpointError, match="other than tensors") as info:
        InceptionFeatures(weights_path=evil)
    assert_one_clean_line(info.value, evil, marker)


def test_planted_inception_weights_named_by_the_variable_do_not_run(
    tmp_path: Path, marker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    evil = plant(tmp_path / "elsewhere.pth", marker)
    monkeypatch.setenv(INCEPTION_WEIGHTS_ENV, str(evil))
    with pytest.raises(CheckpointError) as info:
        InceptionFeatures()
    assert_one_clean_line(info.value, evil, marker)


def test_planted_inception_weights_in_the_hub_cache_do_not_run(
    tmp_path: Path, marker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Where the README tells users to put the file; $TORCH_HOME moves torch's hub directory.
    monkeypatch.delenv(INCEPTION_WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # in case anything called torch.hub.set_dir
    evil = plant(tmp_path / "torch" / "hub" / "checkpoints" / INCEPTION_WEIGHTS_FILENAME, marker)
    with pytest.raises(CheckpointError) as info:
        InceptionFeatures()
    assert_one_clean_line(info.value, evil, marker)


def test_inception_weights_must_be_a_state_dict_of_tensors(tmp_path: Path) -> None:
    path = tmp_path / INCEPTION_WEIGHTS_FILENAME
    torch.save([torch.zeros(1)], path)
    with pytest.raises(CheckpointError, match="holds a list, not a state dict"):
        load_inception_state_dict(path)
    torch.save({"fc.weight": [1, 2]}, path)
    with pytest.raises(CheckpointError, match="not named tensors"):
        load_inception_state_dict(path)


# --------------------------------------------------------------------------- caches


def test_a_planted_classifier_cache_does_not_run(tmp_path: Path, marker: Path) -> None:
    evil = plant(tmp_path / "classifiers" / "digits_32.pt", marker, wrap="state_dict")
    with pytest.raises(CheckpointError, match="other than tensors") as info:
        load_classifier(evil)
    assert_one_clean_line(info.value, evil, marker)


def test_a_planted_statistics_cache_does_not_run(tmp_path: Path, marker: Path) -> None:
    evil = plant(tmp_path / "fid-real_digits_train_toy_8px_n100.pt", marker, wrap="real_features_sum")
    with pytest.raises(CheckpointError, match="delete it to recompute") as info:
        load_or_compute_real_stats(FeatureFID(ToyFeatures()), [], evil)
    assert_one_clean_line(info.value, evil, marker)


# --------------------------------------------------------------------------- gan-eval's run directory


def _run_dir(tmp_path: Path, model: dict[str, Any]) -> Path:
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    cfg = {"model": model, "dataset": {"_target_": "gan_research.data.mixtures.RingMixture"}, "paths": {}}
    OmegaConf.save(OmegaConf.create(cfg), run / ".hydra" / "config.yaml")
    return run


METRICS = OmegaConf.create({"_target_": "gan_research.callbacks.evaluation.Evaluation", "num_samples": 10})


def test_a_planted_checkpoint_does_not_run(tmp_path: Path, marker: Path) -> None:
    run = _run_dir(tmp_path, {"_target_": "gan_research.networks.mlp.MLPGenerator"})
    evil = plant(run / "checkpoints" / "last.ckpt", marker, wrap="state_dict")
    with pytest.raises(CheckpointError, match="other than tensors") as info:
        evaluate_checkpoint(run, "last.ckpt", METRICS, device="cpu")
    assert_one_clean_line(info.value, evil, marker)


@pytest.mark.parametrize(
    "model",
    [
        # The reproduction, verbatim.
        {"_target_": "torch.load", "f": "EVIL", "weights_only": False},
        # The same function reached through a module of ours that imports torch.
        {"_target_": "gan_research.train.torch.load", "f": "EVIL", "weights_only": False},
        # A target built from a string at resolution time, after a check of the raw file.
        {"_target_": "gan_research.networks.mlp.MLPGenerator", "x": "${oc.create:'{_target_: torch.load}'}"},
    ],
    ids=["torch.load", "re-export", "oc.create"],
)
def test_a_run_config_cannot_instantiate_code_outside_the_allow_list(
    tmp_path: Path, marker: Path, model: dict[str, Any]
) -> None:
    run = _run_dir(tmp_path, model)
    evil = plant(tmp_path / "evil.ckpt", marker)
    if "f" in model:
        model["f"] = str(evil)
        OmegaConf.save(OmegaConf.create({"model": model, "paths": {}}), run / ".hydra" / "config.yaml")
    else:  # the smuggled torch.load gets its file too
        text = (run / ".hydra" / "config.yaml").read_text().replace("torch.load}", f"torch.load, f: {evil}}}")
        (run / ".hydra" / "config.yaml").write_text(text)
    torch.save({"state_dict": {}, "global_step": 0}, run / "checkpoints" / "last.ckpt")
    with pytest.raises(
        DisallowedTargetError, match=r"model(\.x)?\._target_='(gan_research\.train\.)?torch\.load'"
    ):
        evaluate_checkpoint(run, "last.ckpt", METRICS, device="cpu")
    assert not marker.exists()


# --------------------------------------------------------------------------- the allow-list


def _conf_targets() -> list[tuple[str, str]]:
    """Every ``_target_`` of conf/ outside ``hydra:`` (Hydra's own, never saved in config.yaml)."""
    found = []
    for path in sorted(Path(CONFIG_DIR).rglob("*.yaml")):
        cfg = OmegaConf.load(path)
        if "hydra" in cfg:
            cfg.pop("hydra")
        for key, target in iter_targets(cfg):
            found.append((f"{path.relative_to(CONFIG_DIR)}:{key}", target))
    return found


def test_every_target_in_conf_is_allowed() -> None:
    targets = _conf_targets()
    assert len(targets) > 80
    refused = {where: target_problem(t) for where, t in targets if target_problem(t) is not None}
    assert refused == {}


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("os.system", "outside the allow-list"),
        ("builtins.eval", "outside the allow-list"),
        ("torch.load", "outside the allow-list"),
        ("torch.optimize.x", "outside the allow-list"),  # a prefix, not a whole component
        ("gan_research.train.Path", "defined in pathlib"),
        ("gan_research.evaluate.hydra.utils.instantiate", "outside the allow-list"),
        ("pytorch_lightning.trainer.trainer.os.system", "outside the allow-list"),
        ("pytorch_lightning.seed_everything", "only classes"),
        ("lightning_fabric.utilities.cloud_io._load", "only classes"),
        ("gan_research.evaluate.main.__globals__", "plain dotted path"),
        ("${oc.env:TARGET}", "interpolation"),
        (3, "not a dotted path string"),
        (["gan_research.losses.HingeLoss"], "not a dotted path string"),
        (None, "not a dotted path string"),
    ],
)
def test_targets_outside_the_allow_list_are_refused(target: Any, problem: str) -> None:
    assert problem in (target_problem(target) or "")


def test_the_error_names_file_key_target_and_allow_list() -> None:
    cfg = OmegaConf.create(
        {
            "trainer": {
                "_target_": "pytorch_lightning.Trainer",
                "plugins": [{"_target_": "lightning_fabric.plugins.environments.SLURMEnvironment"}],
                "callbacks": [{"nested": {"_target_": "subprocess.Popen", "args": ["touch", "x"]}}],
            }
        }
    )
    with pytest.raises(DisallowedTargetError) as info:
        check_targets(cfg, "run/.hydra/config.yaml")
    message = str(info.value)
    assert isinstance(info.value, ConfigError)
    assert message.startswith(
        "run/.hydra/config.yaml: trainer.callbacks[0].nested._target_='subprocess.Popen'"
    )
    for prefix in ALLOWED_TARGET_PREFIXES:
        assert prefix in message
    assert "\n" not in message


def test_checked_node_resolves_before_checking(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = OmegaConf.create(
        {
            "lr": 0.1,
            "opt": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": "${lr}"},
            "decoded": "${oc.decode:'{_target_: os.system, command: ls}'}",
        }
    )
    assert OmegaConf.to_container(checked_node(cfg.opt, "f", "opt")) == {
        "_target_": "torch.optim.Adam",
        "_partial_": True,
        "lr": 0.1,
    }
    with pytest.raises(DisallowedTargetError, match=re.escape("f: decoded._target_='os.system'")):
        checked_node(cfg, "f", "")
    # A value that resolves to an interpolation would be resolved again by instantiate, unchecked.
    monkeypatch.setenv("GAN_TEST_TWICE", "${oc.create:'{_target_: os.system}'}")
    twice = OmegaConf.create({"node": {"value": "${oc.env:GAN_TEST_TWICE}"}})
    with pytest.raises(ConfigError, match=r"f: node\.value resolves to another interpolation"):
        checked_node(twice.node, "f", "node")


def test_planted_cifar10_batches_do_not_run(tmp_path: Path, marker: Path) -> None:
    """CIFAR-10's native files are pickles: torchvision checks each file's published MD5 before it
    unpickles any of them, so files that are not the published ones are refused unread."""
    from gan_research.data.torchvision_datasets import CIFAR10DataModule
    from gan_research.errors import DataError

    for name in CIFAR10DataModule.expected_files:
        plant(tmp_path / name, marker, legacy=True)
    datamodule = CIFAR10DataModule(root=str(tmp_path), batch_size=4, image_size=32)
    with pytest.raises(DataError, match="cifar10"):
        datamodule.prepare_data()
        datamodule.setup("fit")
    assert not marker.exists()
