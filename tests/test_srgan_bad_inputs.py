"""SRGAN's bad inputs, as tests/test_bad_inputs.py's battery: each is one ``error:`` line naming
the bad value, exit code 2, and no run directory (``gan-train``'s entry point run in-process)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.test_bad_inputs import QUIET, _run_cli, _snapshot


@pytest.fixture(scope="module")
def small_images(tmp_path_factory) -> Path:
    """An sr_folder root whose only HR images are 20x20 px."""
    root = tmp_path_factory.mktemp("sr_inputs")
    for split in ("train", "val"):
        (root / split).mkdir()
        Image.new("RGB", (20, 20), (90, 30, 200)).save(root / split / "tiny.png")
    return root


# (id, argv ({root}: the folder of 20x20 images), substrings the one error line must contain)
CASES: list[tuple[str, list[str], list[str]]] = [
    (
        "scale_the_generator_cannot_make",
        ["experiment=srgan_digits", "dataset.scale=3"],
        ["dataset.scale=3", "2, 4, 8"],
    ),
    (
        "hr_image_smaller_than_the_crop",
        [
            "experiment=srgan_digits",
            "model=srgan",
            "dataset=sr_folder",
            "dataset.root={root}",
            "dataset.crop_size=96",
        ],
        ["tiny.png", "20x20", "dataset.crop_size=96"],
    ),
    (
        "perceptual_loss_without_a_network",
        ["experiment=srgan_digits", "model.content_loss=perceptual"],
        ["model.content_loss=perceptual", "perceptual=random"],
    ),
    (
        "pretraining_a_family_without_a_content_loss",
        ["model=dcgan", "dataset=digits", "schedule.pretrain_steps=10"],
        ["schedule.pretrain_steps=10"],
    ),
    (
        "sr_folder_crop_not_a_multiple_of_scale",
        ["experiment=srgan_digits", "dataset=sr_folder", "dataset.root={root}", "dataset.crop_size=18"],
        ["dataset.crop_size=18", "dataset.scale=4"],
    ),
]


@pytest.mark.parametrize(("argv", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_srgan_bad_input_is_one_error_and_writes_nothing(
    argv, expected, small_images, tmp_path, monkeypatch, capsys
):
    monkeypatch.delenv("GAN_LOG_DIR", raising=False)
    monkeypatch.setenv("GAN_DATA_DIR", str(tmp_path / "data"))
    run_dir = tmp_path / "run"
    argv = [a.format(root=small_images) for a in argv]
    argv = [
        *argv,
        f"hydra.run.dir={run_dir}",
        *(q for q in QUIET if q.split("=")[0] + "=" not in " ".join(argv)),
    ]
    watched = [tmp_path, small_images]
    before = [_snapshot(d) for d in watched]
    capsys.readouterr()
    code = _run_cli(argv, tmp_path)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in expected:
        assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in err
    assert not run_dir.exists()
    assert [_snapshot(d) for d in watched] == before
