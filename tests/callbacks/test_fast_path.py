"""The GPU fast path's config (``perf=gpu``, ``callbacks.fast_path``): what can be checked on a
CPU. Its CUDA behaviour (device-resident data, no per-step host sync) is in tests/test_gpu.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from gan_research.callbacks.fast_path import FastPath
from gan_research.data.base import InMemoryDataset
from gan_research.errors import ConfigError
from gan_research.train import build, train
from gan_research.utils.jsonl_logger import read_records

RING = ("model=mlp", "dataset=ring8")


def test_perf_gpu_turns_on_every_fast_path_setting(make_cfg):
    cfg = make_cfg("perf=gpu", tiny=False)
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.benchmark is True
    assert cfg.trainer.precision == "bf16-mixed"
    assert instantiate(cfg.model.optimizer_g).keywords["fused"] is True
    assert instantiate(cfg.model.optimizer_d).keywords["fused"] is True
    fast = instantiate(cfg.callbacks.fast_path)
    assert fast.data_on_device and fast.channels_last and fast.matmul_precision == "high"
    assert fast.compile == ()
    # The progress bar reads metrics (a device-to-host copy) on logging steps only.
    assert cfg.callbacks.progress_bar._target_.endswith("TQDMProgressBar")
    assert cfg.callbacks.progress_bar.refresh_rate == cfg.trainer.log_every_n_steps


def test_default_fast_path_changes_nothing(make_cfg):
    fast = instantiate(make_cfg().callbacks.fast_path)
    assert not fast.data_on_device and not fast.channels_last and fast.compile == ()


def test_perf_gpu_settings_train_on_cpu(make_cfg):
    """Everything of perf=gpu but the device: bf16 autocast, fused Adam, channels_last weights."""
    cfg = make_cfg("perf=gpu", "trainer.accelerator=cpu", "trainer.benchmark=null", "schedule.max_steps=2")
    result = train(cfg)
    assert result["status"] == "finished"
    generator = result["model"].generator
    conv = next(m for m in generator.modules() if isinstance(m, torch.nn.ConvTranspose2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()
    records = read_records(Path(cfg.paths.output_dir) / "metrics.jsonl")
    assert records[-1]["status"] == "finished" and all(
        torch.isfinite(torch.tensor(v)) for k, v in records[-1].items() if k.startswith("train/")
    )


def test_compiled_networks_train_and_keep_their_parameter_names(make_cfg):
    cfg = make_cfg(
        *RING,
        "schedule.max_steps=2",
        "callbacks.fast_path.compile=[generator,discriminator]",
        # Traces through AOTAutograd without generating C++ kernels: the wiring, in seconds.
        "callbacks.fast_path.compile_backend=aot_eager",
    )
    result = train(cfg)
    assert result["status"] == "finished"
    model = result["model"]
    assert model.generator._compiled_call_impl is not None
    assert model.discriminator._compiled_call_impl is not None
    checkpoint = torch.load(
        Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    # In-place compilation: the checkpoint's keys are those of an uncompiled model.
    assert set(checkpoint["state_dict"]) == set(build(make_cfg(*RING))["model"].state_dict())


def test_compiling_d_under_a_gradient_penalty_is_refused_before_the_run(make_cfg):
    cfg = make_cfg(*RING, "loss=wgan_gp", "callbacks.fast_path.compile=[discriminator]")
    with pytest.raises(ConfigError, match=r"differentiate D twice.*compile only \[generator\]"):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "metrics.jsonl").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "callbacks.fast_path.compile=[critic]",
            r"names \['critic'\]; valid entries: \['generator', 'discriminator'\]",
        ),
        ("callbacks.fast_path.matmul_precision=fastest", r"matmul_precision='fastest' is invalid"),
    ],
)
def test_bad_fast_path_values_name_the_valid_ones(make_cfg, override, message):
    with pytest.raises(ConfigError, match=message):
        train(make_cfg(*RING, override))


def test_device_data_needs_the_main_process(make_cfg):
    cfg = make_cfg(*RING, "callbacks.fast_path.data_on_device=true", "dataset.num_workers=1")
    with pytest.raises(ConfigError, match=r"data_on_device=true needs dataset.num_workers=0 \(got 1\)"):
        train(cfg)


def test_in_memory_dataset_moves_with_its_layout():
    x = torch.randint(0, 255, (6, 3, 4, 4), dtype=torch.uint8)
    dataset = InMemoryDataset(x.clone(), torch.arange(6))
    dataset.to("cpu", memory_format=torch.channels_last)
    assert dataset.x.is_contiguous(memory_format=torch.channels_last)
    images, labels = dataset.__getitems__([4, 1])
    torch.testing.assert_close(images, x[[4, 1]].float() / 127.5 - 1)
    assert labels.tolist() == [4, 1]


def test_data_on_device_is_a_no_op_on_cpu(make_cfg):
    cfg = make_cfg(*RING, "schedule.max_steps=1")
    objs = build(cfg)
    data_before = objs["datamodule"].train_set.x
    trainer = instantiate(cfg.trainer, callbacks=[FastPath(data_on_device=True)], logger=False)
    trainer.fit(objs["model"], datamodule=objs["datamodule"])
    assert objs["datamodule"].train_set.x is data_before


@pytest.mark.parametrize(
    ("experiment", "network"),
    [("stylegan2_digits", "generator"), ("progan_digits", "discriminator"), ("sgan_digits", "discriminator")],
)
def test_networks_a_family_calls_past_their_forward_are_not_compiled(make_cfg, experiment, network):
    """nn.Module.compile swaps the forward only: StyleGAN's mapping/synthesis, ProGAN's stage and
    alpha arguments and SGAN's feature matching would silently run uncompiled or recompile."""
    cfg = make_cfg(f"experiment={experiment}", "model.width=8", f"callbacks.fast_path.compile=[{network}]")
    with pytest.raises(ConfigError, match=rf"cannot compile \['{network}'\]"):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "metrics.jsonl").exists()
