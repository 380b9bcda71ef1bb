"""Neural style transfer (Gatys, Ecker & Bethge 2016): the procedural styles, the optimisation and
the ``gan-stylize`` command (called in-process: a subprocess would spend seconds importing)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from gan_research.data.styles import load_image, make_style, style_names
from gan_research.errors import ConfigError, DataError
from gan_research.losses.style_transfer import StyleTransferObjective, stylize
from gan_research.networks.perceptual import RandomFeatures
from gan_research.stylize import _snapshot_steps, main

SIZE = 32
SCALES = {"scale1": 0.25, "scale2": 0.25, "scale3": 0.25, "scale4": 0.25}


@pytest.fixture(scope="module")
def extractor() -> RandomFeatures:
    return RandomFeatures(seed=0)


# --------------------------------------------------------------------------- styles


def test_procedural_styles_are_deterministic_distinct_and_in_range():
    names = style_names()
    assert {"stripes", "checkerboard", "rings", "noise", "waves"} <= set(names)
    images = {name: make_style(name, SIZE, 3, seed=0) for name in names}
    for name, image in images.items():
        assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.float32
        assert image.min() >= -1 and image.max() <= 1
        assert image.std() > 0.2, f"{name} is nearly flat"
        assert torch.equal(image, make_style(name, SIZE, 3, seed=0)), f"{name} is not deterministic"
    for a in names:
        for b in names:
            if a < b:
                assert (images[a] - images[b]).abs().mean() > 0.1, f"{a} and {b} look alike"
    assert not torch.equal(make_style("noise", SIZE, seed=0), make_style("noise", SIZE, seed=1))
    assert make_style("rings", 20, channels=1).shape == (1, 20, 20)


def test_unknown_style_name_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="valid: stripes, checkerboard, rings, noise, waves"):
        make_style("starry_night", SIZE)


def test_load_image_reads_any_file_and_names_a_missing_or_corrupt_one(tmp_path: Path):
    path = tmp_path / "wide.png"
    Image.new("RGB", (40, 20), (255, 0, 0)).save(path)
    image = load_image(path, 16, 3)
    assert image.shape == (3, 16, 16)
    assert torch.allclose(image[:, 8, 8], torch.tensor([1.0, -1.0, -1.0]))
    assert load_image(path, 16, 1).shape == (1, 16, 16)
    with pytest.raises(DataError, match=r"missing\.png does not exist"):
        load_image(tmp_path / "missing.png", 16, 3)
    (tmp_path / "corrupt.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"cannot read image file .*corrupt\.png"):
        load_image(tmp_path / "corrupt.png", 16, 3)


# --------------------------------------------------------------------------- the optimisation


@pytest.mark.parametrize(("optimizer", "lr"), [("adam", 0.1), ("lbfgs", 1.0)])
def test_style_loss_falls_by_a_large_factor(extractor: RandomFeatures, optimizer: str, lr: float):
    # From the content image (its style loss is the content's Gram distance to the style's), with
    # the style weighted heavily: the style term must fall 20x in 40 steps (measured: about 30x
    # with Adam, 100x and more with L-BFGS).
    content, style = make_style("checkerboard", SIZE, seed=0), make_style("noise", SIZE, seed=0)
    calls = []
    result = stylize(
        content, style, extractor, "scale2", SCALES, alpha=1.0, beta=1e3, steps=40,
        optimizer=optimizer, lr=lr, init="content", seed=0,
        callback=lambda step, image, losses: calls.append(step),
    )  # fmt: skip
    history = result.history
    assert [h["step"] for h in history] == list(range(41)) and calls == list(range(41))
    assert history[-1]["style"] < history[0]["style"] / 20, (history[0], history[-1])
    assert history[-1]["total"] < history[0]["total"] / 5
    assert result.image.shape == (3, SIZE, SIZE)
    assert result.image.min() >= -1 and result.image.max() <= 1


def test_content_init_starts_at_zero_content_loss_and_noise_init_does_not(extractor: RandomFeatures):
    content, style = make_style("checkerboard", SIZE), make_style("waves", SIZE)
    first = stylize(content, style, extractor, "scale3", SCALES, steps=1, init="content").history[0]
    assert first["content"] == 0.0 and first["style"] > 0
    noisy = stylize(content, style, extractor, "scale3", SCALES, steps=1, init="noise", seed=3)
    again = stylize(content, style, extractor, "scale3", SCALES, steps=1, init="noise", seed=3)
    assert noisy.history[0]["content"] > 0
    assert torch.equal(noisy.image, again.image)


def test_objective_is_the_papers_style_loss(extractor: RandomFeatures):
    """Eq. (4) by hand: E_l = Σ (G - A)² / (4 N² M²) with G = F Fᵀ unnormalised."""
    content, style = make_style("rings", 16), make_style("stripes", 16)
    objective = StyleTransferObjective(extractor, content, style, "scale1", {"scale2": 1.0}, alpha=0, beta=1)
    x = make_style("noise", 16).unsqueeze(0)
    f, a = extractor(x)["scale2"][0], extractor(style.unsqueeze(0))["scale2"][0]
    n, m = f.shape[0], f.shape[1] * f.shape[2]
    g, t = f.reshape(n, m) @ f.reshape(n, m).T, a.reshape(n, m) @ a.reshape(n, m).T
    expected = ((g - t) ** 2).sum() / (4 * n**2 * m**2)
    assert torch.allclose(objective(x)["style"], expected, rtol=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"content_layer": "conv4_2"}, "content_layer='conv4_2' is not a layer RandomFeatures computes"),
        ({"style_layers_weights": {"scale9": 1}}, "'scale9' is not a layer"),
        ({"style_layers_weights": {"scale1": 0}}, "every weight is 0"),
        ({"steps": 0}, "steps=0 is invalid"),
        ({"optimizer": "sgd"}, "valid: adam, lbfgs"),
        ({"init": "zeros"}, "valid: noise, content"),
        ({"beta": -1}, "beta=-1 is invalid"),
    ],
)
def test_bad_arguments_raise_one_config_error(extractor: RandomFeatures, kwargs: dict, message: str):
    args = {"content_layer": "scale2", "style_layers_weights": SCALES, "steps": 1, **kwargs}
    with pytest.raises(ConfigError, match=message):
        stylize(make_style("rings", 16), make_style("stripes", 16), extractor, **args)


def test_snapshot_steps_start_at_the_initial_image():
    assert _snapshot_steps(200, 4) == [0, 50, 100, 150]
    assert _snapshot_steps(3, 4) == [0, 1, 2]
    assert _snapshot_steps(10, 0) == []


# --------------------------------------------------------------------------- the command

BASE = ["content=digit:3", "style=stripes", "out=result.png", f"size={SIZE}", "steps=3", "progress=false"]


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_command_writes_the_result_the_strip_and_the_history(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main([*BASE, "history=losses.json", "optimizer=adam"])
    out = capsys.readouterr().out
    assert "wrote result.png, result_strip.png, losses.json" in out and "3 steps" in out
    with Image.open(tmp_path / "result.png") as result:
        assert result.size == (SIZE, SIZE) and result.mode == "RGB"
        result.load()
    tiles = 2 + len(_snapshot_steps(3, 4)) + 1  # content, style, iterates 0 1 2, result
    with Image.open(tmp_path / "result_strip.png") as strip:
        # No caption band at 32 px: labels need 48.
        assert strip.size == (tiles * SIZE + (tiles - 1) * 2, SIZE) and strip.mode == "RGB"
        strip.load()
    record = json.loads((tmp_path / "losses.json").read_text())
    assert record["perceptual"] == "random" and record["content_layer"] == "scale2"
    assert [h["step"] for h in record["history"]] == [0, 1, 2, 3]
    assert sorted(_files(tmp_path)) == ["losses.json", "result.png", "result_strip.png"]


def test_command_reads_image_files_shows_progress_and_labels_a_wide_strip(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Image.new("L", (30, 30), 200).save(tmp_path / "content.png")
    Image.new("RGB", (50, 40), (0, 90, 200)).save(tmp_path / "style.jpg")
    (tmp_path / "outs").mkdir()
    main(
        ["content=content.png", "style=style.jpg", "out=outs/r.jpg", "strip=outs/s.png", "size=48",
         "steps=2", "strip_iterates=1", "init=content", "channels=1"]
    )  # fmt: skip
    # The progress bar (rich) goes to stderr, so stdout keeps only the result lines.
    captured = capsys.readouterr()
    assert "2/2" in captured.err and "wrote outs/r.jpg, outs/s.png" in captured.out
    with Image.open(tmp_path / "outs" / "r.jpg") as result:
        assert result.size == (48, 48) and result.mode == "L"
    with Image.open(tmp_path / "outs" / "s.png") as strip:
        assert strip.size == (4 * 48 + 3 * 2, 48 + 14)  # content, style, step 0, result + captions


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["content=missing.png"], "content=missing.png: image file missing.png does not exist"),
        (["content=digit:1797"], "index 0 ... 1796"),
        (["content=3"], "write content=digit:3"),
        (["style=starry_night"], "styles: stripes, checkerboard, rings, noise, waves"),
        (["style=missing.png"], "style=missing.png: image file missing.png does not exist"),
        (["content_layer=conv4_2"], "valid names: scale1, scale2, scale3, scale4"),
        (["style_layers={scale1:1,nope:1}"], "unknown layer(s) ['nope']"),
        (["steps=0"], "steps=0 is invalid"),
        (["steps=-5"], "steps=-5 is invalid"),
        (["out=nodir/result.png"], "its directory nodir does not exist"),
        (["out=result.txt"], ".txt is not an image format"),
        (["history=losses.csv"], "expected a .json file"),
        (["strip=result.png"], "each output must be a different file"),
        (["optimizer=sgd"], "valid: adam, lbfgs"),
        (["init=zeros"], "valid: noise, content"),
        (["lr=0"], "lr=0 is invalid"),
        (["alpha=0", "beta=0"], "nothing to optimise"),
        (["size=2"], "cannot compute its features of a 2x2 image"),
        (["device=tpu"], "valid: auto, cpu"),
        (["perceptual=none"], "has no feature network"),
        (["perceptual=nope"], "valid options: classifier, none, random, vgg19"),
        (["model=dcgan"], "gan-stylize has no option 'model'"),
        (["networks.random.foo=1"], "unknown key networks.random.foo"),
        (["perceptual=vgg19", "perceptual.weights=missing_vgg19.pth"], "missing_vgg19.pth"),
    ],
)
def test_bad_input_is_one_error_line_and_writes_nothing(tmp_path, monkeypatch, capsys, overrides, message):
    monkeypatch.chdir(tmp_path)
    before = _files(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main([*BASE, *overrides])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0]
    assert _files(tmp_path) == before


def test_missing_arguments_and_multirun_are_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for argv, message in (
        (["style=stripes", "out=r.png"], "content is required"),
        (["-m", *BASE], "without -m"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_help_lists_the_options(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "gan-stylize" in text and "content_layer" in text and "optimizer: lbfgs" in text
    assert list(tmp_path.iterdir()) == []
