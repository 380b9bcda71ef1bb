"""Feed-forward style transfer (Johnson et al. 2016): a tiny run of the digits experiment (G and D
learn, the logged G loss is the weighted sum of its terms), the checkpoint without the frozen
feature network, the style | content | stylised grid, D's real views of the style image, the
style loss falling, and the bad inputs (config and data errors naming the key)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.utils import make_grid

from gan_research.errors import ConfigError, DataError
from gan_research.families.style_transfer import FeedForwardStyleTransfer
from gan_research.train import build, train
from gan_research.utils.images import convert_channels, grid_rows
from gan_research.utils.jsonl_logger import read_records
from tests.conftest import compose_config
from tests.test_bad_inputs import QUIET, _run_cli, _snapshot

# The digits experiment with a tiny transformation network (compose_config adds TINY).
ST = (
    "experiment=style_transfer_digits",
    "model.width=8",
    "dataset.batch_size=4",
    "schedule.max_steps=3",
    "threads=1",
)
# Smaller still, for the runs of a few dozen steps: 16 px digits, one residual block, a narrow
# feature network, no grids or checkpoints.
SIZES = (
    "model.width=4",
    "model.generator.n_blocks=1",
    "dataset.image_size=16",
    "dataset.batch_size=2",
    "perceptual.channels=[8,8,8,8]",
    "callbacks.samples.every_n_steps=0",
    "callbacks.model_checkpoint.every_n_train_steps=0",
)
SMALL = (*ST, *SIZES)
NO_FILES = ("callbacks.samples.every_n_steps=0", "callbacks.model_checkpoint.every_n_train_steps=0")


@pytest.fixture(autouse=True)
def _one_thread():
    # build() sets torch's threads from the config (threads=1); restore them afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> bool:
    assert before.keys() == after.keys()
    return any(not torch.equal(before[k], after[k]) for k in before)


def train_records(run_dir) -> list[dict]:
    return [r for r in read_records(run_dir / "metrics.jsonl") if "status" not in r]


def run_spied(cfg) -> tuple[dict, dict[str, dict[str, torch.Tensor]]]:
    """train(cfg), with G's and D's weights as they were before the first step."""
    initial: dict[str, dict[str, torch.Tensor]] = {}
    original = FeedForwardStyleTransfer.training_step

    def spy(self, batch, batch_idx):
        if not initial:
            initial.update(g=state(self.generator), d=state(self.discriminator))
        return original(self, batch, batch_idx)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(FeedForwardStyleTransfer, "training_step", spy)
        result = train(cfg)
    return result, initial


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 3-step run of the experiment (adversarial_weight 0), shared by the tests that read it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_dir = tmp_path_factory.mktemp("style") / "run"
        cfg = compose_config(list(ST), run_dir)
        result, initial = run_spied(cfg)
    finally:
        torch.set_num_threads(threads)
    assert result["status"] == "finished"
    return {"cfg": cfg, "result": result, "initial": initial, "run_dir": run_dir}


# ----------------------------------------------------------------------------- training
def test_the_experiment_trains_g_and_d_and_g_loss_is_the_weighted_sum(trained):
    model = trained["result"]["model"]
    assert isinstance(model, FeedForwardStyleTransfer) and model.global_step == 3
    assert model.adversarial_weight == 0.0
    assert changed(trained["initial"]["g"], state(model.generator))
    # D trains as a critic even though G ignores it.
    assert changed(trained["initial"]["d"], state(model.discriminator))
    records = train_records(trained["run_dir"])
    assert [r["step"] for r in records] == [0, 1, 2]
    for r in records:
        expected = 1.0 * r["train/g_content"] + 1.0e4 * r["train/g_style"] + 1.0e-4 * r["train/g_tv"]
        assert r["train/g_loss"] == pytest.approx(expected, rel=1e-5), r
        assert "train/d_loss" in r and "train/g_adv" in r


def test_an_adversarial_weight_adds_the_weighted_adversarial_term(tmp_path):
    cfg = compose_config([*ST, "model.adversarial_weight=0.5", *NO_FILES], tmp_path / "run")
    result, initial = run_spied(cfg)
    assert result["status"] == "finished" and result["model"].adversarial_weight == 0.5
    assert changed(initial["g"], state(result["model"].generator))
    records = train_records(tmp_path / "run")
    assert len(records) == 3
    for r in records:
        terms = 1.0 * r["train/g_content"] + 1.0e4 * r["train/g_style"] + 1.0e-4 * r["train/g_tv"]
        assert r["train/g_adv"] > 0.01  # the term is there to be weighed
        assert r["train/g_loss"] == pytest.approx(terms + 0.5 * r["train/g_adv"], rel=1e-5), r
        assert r["train/g_loss"] != pytest.approx(terms, rel=1e-3)


def test_the_style_loss_falls_over_a_few_dozen_steps(tmp_path):
    cfg = compose_config([*SMALL, "schedule.max_steps=20"], tmp_path / "run")
    assert train(cfg)["status"] == "finished"
    style = [r["train/g_style"] for r in train_records(tmp_path / "run")]
    assert len(style) == 20
    assert style[-1] < 0.7 * style[0], style
    # A trend, not one lucky step: the last few are all below the first few.
    assert max(style[-5:]) < min(style[:5]), style


# --------------------------------------------------------------------------- checkpoint
def test_the_checkpoint_leaves_out_the_feature_network_and_loads_strictly(trained):
    ckpt = torch.load(trained["run_dir"] / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    saved = ckpt["state_dict"]
    model = trained["result"]["model"]
    assert sum(p.numel() for p in model.perceptual.parameters()) > 0  # there is something to leave out
    for prefix in ("perceptual.", "content_loss.extractor.", "style_loss.extractor."):
        assert not [k for k in saved if k.startswith(prefix)], prefix
    assert "style_image" not in saved  # an input of the run, made from the config
    assert {k.split(".")[0] for k in saved} >= {"generator", "discriminator"}

    fresh = build(trained["cfg"], prepare_evaluation=False)["model"]
    perceptual = {k: v.clone() for k, v in fresh.perceptual.named_parameters()}
    result = fresh.load_state_dict(saved)  # strict
    assert not result.missing_keys and not result.unexpected_keys
    for key, value in fresh.generator.state_dict().items():
        torch.testing.assert_close(value, saved[f"generator.{key}"], rtol=0, atol=0)
    # The frozen network keeps the weights it was built with.
    for key, value in fresh.perceptual.named_parameters():
        assert torch.equal(value, perceptual[key]), key


# ----------------------------------------------------------------------------- the grid
def test_the_sample_grid_is_style_content_stylised_in_rgb(trained):
    model = trained["result"]["model"]
    grid, nrow = model.grid_samples()
    content, _ = model.fixed_pairs()
    assert nrow == 3 and content.shape == (8, 1, 32, 32)
    assert grid.shape == (3 * 8, 3, 32, 32)
    torch.testing.assert_close(grid[0::3], model.style_image.expand(8, -1, -1, -1), rtol=0, atol=0)
    torch.testing.assert_close(grid[1::3], convert_channels(content, 3), rtol=0, atol=0)
    torch.testing.assert_close(grid[2::3], model.translate(content).cpu())
    torch.testing.assert_close(grid, grid_rows(*model.grid_columns(content, _)))

    png = trained["run_dir"] / "samples" / "step_0000003.png"
    expected = make_grid(grid, nrow=3, padding=2).shape  # the callback's layout
    with Image.open(png) as image:
        assert image.mode == "RGB"
        assert image.size == (expected[2], expected[1]) == (3 * (32 + 2) + 2, 8 * (32 + 2) + 2)
        pixels = np.asarray(image).astype(np.int16)
    # The first row's tiles (2 px padding before each): the style in colour, the grey digit grey.
    style_tile, content_tile = pixels[2:34, 2:34], pixels[2:34, 36:68]
    assert np.abs(style_tile[..., 0] - style_tile[..., 1]).max() > 50
    assert (content_tile == content_tile[..., :1]).all() and content_tile.std() > 10


# ------------------------------------------------------------------------ D's real views
def test_style_batch_views_are_circular_shifts_of_the_style_image(tmp_path):
    cfg = compose_config([*ST, "model.style_image.name=noise", "dataset.image_size=16"], tmp_path / "run")
    model = build(cfg, prepare_evaluation=False)["model"]
    style = model.style_image
    c, h, w = style.shape
    # Every shift of the style image, then every shift of its mirror image.
    candidates = torch.stack(
        [
            (view.flip(-1) if flip else view)
            for flip in (False, True)
            for view in (torch.roll(style, (dy, dx), dims=(-2, -1)) for dy in range(h) for dx in range(w))
        ]
    )
    torch.manual_seed(0)
    views = model.style_batch(12)
    assert views.shape == (12, c, h, w) and views.dtype == style.dtype
    found = []
    for view in views:
        matches = (candidates == view).flatten(1).all(1).nonzero().view(-1).tolist()
        assert matches, "a view that is no shift (or mirrored shift) of the style image"
        found.append(matches[0])
    # Random views: not all one shift, and both mirrored and plain ones.
    assert len(set(found)) > 1
    assert any(i < h * w for i in found) and any(i >= h * w for i in found)


# ------------------------------------------------------------------------- bad inputs
def build_error(tmp_path, *overrides: str) -> Exception:
    cfg = compose_config([*ST, *overrides], tmp_path / "run")
    with pytest.raises((ConfigError, DataError)) as info:
        build(cfg, prepare_evaluation=False)
    return info.value


def test_no_feature_network_is_refused(tmp_path):
    message = str(build_error(tmp_path, "perceptual=none"))
    assert "model=style_transfer" in message and "perceptual=random" in message


def test_a_content_layer_the_network_does_not_return_is_refused(tmp_path):
    message = str(build_error(tmp_path, "model.content_layer=relu2_2"))
    assert "model.content_layer" in message and "['relu2_2']" in message
    assert "['scale1', 'scale2', 'scale3', 'scale4']" in message


def test_a_style_layer_the_network_does_not_return_is_refused(tmp_path):
    message = str(build_error(tmp_path, "model.style_layers=[scale1,relu4_4]"))
    assert "model.style_layers" in message and "['relu4_4']" in message and "scale4" in message


def test_empty_style_layers_are_refused(tmp_path):
    message = str(build_error(tmp_path, "model.style_layers=[]"))
    assert "model.style_layers is empty" in message and "scale1" in message


def test_a_style_image_with_other_channels_than_the_output_is_refused(tmp_path):
    # output_channels (and D's input channels) interpolate the style image's channels: only
    # explicit overrides make them disagree.
    error = build_error(
        tmp_path,
        "model.generator.output_channels=3",
        "model.discriminator.input_channels=3",
        "model.style_image.channels=1",
    )
    assert isinstance(error, ConfigError)
    message = str(error)
    assert "1 channel(s)" in message and "model.generator makes 3" in message
    assert "model.style_image.channels=3" in message


@pytest.mark.parametrize("key", ["style_weight", "content_weight", "tv_weight", "adversarial_weight"])
def test_a_negative_weight_is_refused(tmp_path, key):
    message = str(build_error(tmp_path, f"model.{key}=-1"))
    assert f"model.{key}=-1" in message and ">= 0" in message


def test_a_weight_that_is_not_a_number_is_refused(tmp_path):
    message = str(build_error(tmp_path, "model.style_weight=abc"))
    assert "model.style_weight='abc'" in message


def test_paired_data_is_refused_as_a_data_kind_error(tmp_path):
    error = build_error(tmp_path, "dataset=digits_edges")
    assert isinstance(error, ConfigError)
    message = str(error)
    assert "model=style_transfer learns from images" in message
    assert "'digits_edges' is paired" in message and "digits" in message.split("Valid:")[-1]


def test_a_missing_style_image_file_is_one_error_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("GAN_LOG_DIR", raising=False)
    monkeypatch.setenv("GAN_DATA_DIR", str(tmp_path / "data"))
    missing = tmp_path / "styles" / "nonexistent.png"
    run_dir = tmp_path / "run"
    argv = [
        "experiment=style_transfer_digits",
        "model.style_image._target_=gan_research.data.styles.load_image",
        f"+model.style_image.path={missing}",
        "~model.style_image.name",
        "~model.style_image.seed",
        f"hydra.run.dir={run_dir}",
        *QUIET,
    ]
    before = _snapshot(tmp_path)
    capsys.readouterr()
    code = _run_cli(argv, tmp_path)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert str(missing) in lines[0] and "does not exist" in lines[0], lines[0]
    assert "Traceback" not in err
    assert not run_dir.exists()
    assert _snapshot(tmp_path) == before


def test_model_style_transfer_under_the_default_metrics_is_refused(tmp_path):
    # model=style_transfer without the experiment keeps the default metrics group.
    cfg = compose_config(
        [
            "model=style_transfer",
            "dataset=digits",
            "perceptual=random",
            "model.content_layer=scale2",
            "model.style_layers=[scale1,scale2]",
            *SIZES,
            "schedule.max_steps=1",
            "threads=1",
            "metrics=default",
            "metrics.feature_network=none",
            "metrics.num_samples=4",
        ],
        tmp_path / "run",
    )
    # Refused before training (MetricSuite reads a generator's samples, the family makes
    # translations), naming the metrics option that fits; nothing written.
    with pytest.raises(ConfigError, match="metrics=style_transfer"):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_gan_eval_binds_the_model_to_its_data_before_scoring(trained, monkeypatch):
    # A perceptual network that reads the data (perceptual=classifier) is bound in check_data;
    # gan-eval must call it as training does, or style_terms would find it unbound.
    from gan_research.evaluate import evaluate_run

    seen = []
    original = FeedForwardStyleTransfer.check_data

    def spy(self, datamodule):
        seen.append(datamodule.spec.name)
        return original(self, datamodule)

    monkeypatch.setattr(FeedForwardStyleTransfer, "check_data", spy)
    scores = evaluate_run(
        trained["run_dir"] / "checkpoints" / "last.ckpt",
        ["device=cpu", "metrics=style_transfer", "metrics.num_samples=8"],
    )
    assert seen == ["digits"]
    assert set(scores) == {"val/content_loss", "val/style_loss", "val/tv"}
