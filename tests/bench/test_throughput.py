"""The throughput benchmark: the plain loop trains what the framework trains; the report adds up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from gan_research.bench import throughput
from gan_research.bench.throughput import (
    DEFAULT,
    FAST,
    PlainLoop,
    StepTimer,
    build_framework,
    case_config,
    fast_full,
    main,
    peak_tflops,
)
from gan_research.errors import ConfigError

# One thread: tiny steps are all OpenMP barriers, which stall whenever the machine is shared.
TINY = ["--ngf", "8", "--ndf", "8", "--batch-size", "8", "--device", "cpu", "--threads", "1"]
# What the recipes promise (Radford et al. 2016; Gulrajani et al. 2017, Alg. 1).
RECIPES = {
    "dcgan32_ns": {"n_critic": 1, "lr": 2e-4, "betas": (0.5, 0.999)},
    "dcgan32_wgan_gp": {"n_critic": 5, "lr": 1e-4, "betas": (0.0, 0.9)},
}


def tiny_config(case: str, tmp_path: Path, **kwargs):
    return case_config(case, tmp_path / "run", total_steps=2, device="cpu", ngf=8, ndf=8, **kwargs)


def test_main_writes_positive_rates_and_their_ratio_for_both_cases(tmp_path, capsys):
    out = tmp_path / "bench.json"
    cases = ["dcgan32_ns", "dcgan32_wgan_gp"]
    argv = ["--cases", *cases, "--steps", "3", "--warmup", "1", "--repeats", "1", "--json", str(out)]
    returned = main([*argv, *TINY])
    written = json.loads(out.read_text())
    assert written["rows"] == json.loads(json.dumps(returned))
    assert written["machine"]["torch"] == torch.__version__
    assert written["machine"]["torch_threads"] == 1
    rows = {r["case"]: r for r in written["rows"]}
    assert list(rows) == cases
    for case, row in rows.items():
        assert row["device"] == "cpu" and row["variant"] == "default"
        assert row["n_critic"] == RECIPES[case]["n_critic"]
        assert row["images_per_step"] == 8 * row["n_critic"]
        assert len(row["framework_runs"]) == len(row["plain_runs"]) == 1
        assert row["framework_images_per_s"] > 0 and row["plain_images_per_s"] > 0
        assert row["ratio"] == pytest.approx(row["framework_images_per_s"] / row["plain_images_per_s"])
        assert row["paired_ratio"] == pytest.approx(row["ratio"])  # one run: one pair
        assert row["flops_per_step"] > 0
        assert row["peak_tflops"] is None and row["plain_peak_fraction"] is None  # no GPU peak on a CPU
    # Five D updates with a gradient penalty cost more than one D update without.
    assert rows["dcgan32_wgan_gp"]["flops_per_step"] > rows["dcgan32_ns"]["flops_per_step"]
    printed = capsys.readouterr().out
    assert "| framework img/s | plain img/s | ratio | paired |" in printed
    assert "real images consumed per second" in printed


def test_runs_alternate_and_rows_hold_medians_and_paired_ratios(monkeypatch):
    calls: list[str] = []
    framework_seconds, plain_seconds = iter([1.0, 2.0, 4.0]), iter([1.0, 2.0, 1.0])

    def fake_framework(cfg, warmup, steps, device):
        calls.append("framework")
        return next(framework_seconds)

    def fake_plain(self, warmup, steps):
        calls.append("plain")
        return next(plain_seconds)

    monkeypatch.setattr(throughput, "time_framework", fake_framework)
    monkeypatch.setattr(PlainLoop, "run", fake_plain)
    row = throughput.measure(
        "dcgan32_ns",
        DEFAULT,
        device="cpu",
        steps=10,
        warmup=0,
        repeats=3,
        ngf=8,
        ndf=8,
        batch_size=8,
        threads=None,
        gpu=None,
    )
    assert calls == ["framework", "plain", "plain", "framework", "framework", "plain"]
    # 8 images x 10 steps over each run's seconds.
    assert row["framework_runs"] == [80.0, 40.0, 20.0] and row["plain_runs"] == [80.0, 40.0, 80.0]
    assert row["framework_images_per_s"] == 40.0 and row["plain_images_per_s"] == 80.0
    assert row["ratio"] == 0.5
    assert row["paired_ratio"] == 1.0  # median of 80/80, 40/40, 20/80


@pytest.mark.parametrize("case", list(RECIPES))
def test_plain_loop_starts_from_the_frameworks_networks_optimisers_and_data(case, tmp_path):
    cfg = tiny_config(case, tmp_path)
    _, objects = build_framework(cfg)
    model, datamodule = objects["model"], objects["datamodule"]
    loop = PlainLoop(cfg, "cpu")

    for ours, theirs in ((loop.generator, model.generator), (loop.discriminator, model.discriminator)):
        assert type(ours) is type(theirs)
        assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
        ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
        assert ours_state.keys() == theirs_state.keys()
        assert all(torch.equal(ours_state[k], theirs_state[k]) for k in ours_state)

    opt_g, opt_d = model.configure_optimizers()
    expected = RECIPES[case]
    for ours, theirs in ((loop.opt_g, opt_g), (loop.opt_d, opt_d)):
        assert type(ours) is type(theirs) is torch.optim.Adam
        for key in ("lr", "betas", "eps", "weight_decay"):
            assert ours.param_groups[0][key] == theirs.param_groups[0][key]
        assert ours.param_groups[0]["lr"] == pytest.approx(expected["lr"])
        assert tuple(ours.param_groups[0]["betas"]) == pytest.approx(expected["betas"])

    assert loop.schedule.n_critic == model.schedule.n_critic == expected["n_critic"]
    assert loop.step_batch_size == datamodule.step_batch_size == 64 * expected["n_critic"]
    assert type(loop.objective.adversarial) is type(model.objective.adversarial)
    assert {k: repr(v) for k, v in loop.objective.regularizers.items()} == {
        k: repr(v) for k, v in model.objective.regularizers.items()
    }
    assert torch.equal(loop.data, datamodule.train_set.x)


def test_plain_batches_are_epochs_of_distinct_samples(tmp_path):
    loop = PlainLoop(tiny_config("dcgan32_wgan_gp", tmp_path, batch_size=100), "cpu")
    n = loop.data.shape[0]
    # Samples that carry their own index, so each batch shows which samples it drew.
    loop.data = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1)
    per_epoch = n // loop.step_batch_size  # 1797 // 500 = 3: the last partial batch is dropped
    batches = loop.batches()
    for _ in range(2):
        epoch = [next(batches) for _ in range(per_epoch)]
        assert all(b.shape == (500, 1, 1, 1) for b in epoch)
        drawn = torch.cat(epoch).flatten().long()
        assert drawn.unique().numel() == drawn.numel() and drawn.min() >= 0 and drawn.max() < n


def test_plain_phases_update_only_their_own_network(tmp_path):
    loop = PlainLoop(tiny_config("dcgan32_wgan_gp", tmp_path), "cpu")
    real = next(loop.batches())[:64]

    def snapshot(net):
        return [p.detach().clone() for p in net.parameters()]

    def changed(before, net):
        return any(not torch.equal(b, p) for b, p in zip(before, net.parameters(), strict=True))

    g, d = snapshot(loop.generator), snapshot(loop.discriminator)
    loop._discriminator_step(real)
    assert changed(d, loop.discriminator) and not changed(g, loop.generator)
    g, d = snapshot(loop.generator), snapshot(loop.discriminator)
    loop._generator_step(64)
    assert changed(g, loop.generator) and not changed(d, loop.discriminator)
    assert all(p.requires_grad for p in [*loop.generator.parameters(), *loop.discriminator.parameters()])


def test_plain_loop_refuses_schedule_tricks_it_does_not_implement(tmp_path):
    cfg = tiny_config("dcgan32_ns", tmp_path)
    cfg.schedule.ema_decay = 0.999
    with pytest.raises(ConfigError, match="ema_decay"):
        PlainLoop(cfg, "cpu")


def test_step_timer_spans_the_steady_state_steps_only(monkeypatch):
    clock = iter(range(100, 200))
    monkeypatch.setattr(throughput.time, "perf_counter", lambda: float(next(clock)))
    timer = StepTimer(warmup=2, steps=3, device="cpu")
    for i in range(5):
        timer.on_train_batch_start(None, None, None, i)
        timer.on_train_batch_end(None, None, None, None, i)
    # Read at the start of batch 3 (100) and the end of batch 5 (101).
    assert timer.seconds == 1.0
    short = StepTimer(warmup=2, steps=3, device="cpu")
    short.on_train_batch_start(None, None, None, 0)
    short.on_train_batch_end(None, None, None, None, 0)
    with pytest.raises(RuntimeError, match="saw 1 training steps"):
        _ = short.seconds


def test_fast_path_overrides_compose_into_the_frameworks_config(tmp_path):
    cfg = case_config("dcgan32_ns", tmp_path / "run", total_steps=7, device="cuda", variant=FAST)
    assert cfg.trainer.accelerator == "gpu"
    assert cfg.trainer.precision == "bf16-mixed"
    assert cfg.trainer.benchmark is True
    assert cfg.trainer.max_steps == 7
    assert instantiate(cfg.model.optimizer_g).keywords["fused"] is True
    assert instantiate(cfg.model.optimizer_d).keywords["fused"] is True
    assert cfg.callbacks.fast_path.data_on_device is True
    assert DEFAULT.framework_overrides("cpu") == []
    assert fast_full(compile_networks=False).name == "fast+channels_last"
    compiled = fast_full(compile_networks=True)
    full = case_config("dcgan32_ns", tmp_path / "full", total_steps=7, device="cuda", variant=compiled)
    assert full.callbacks.fast_path.channels_last is True
    assert list(full.callbacks.fast_path.compile) == ["generator", "discriminator"]
    gp = case_config("dcgan32_wgan_gp", tmp_path / "gp", total_steps=7, device="cuda", variant=compiled)
    # The gradient penalty differentiates D twice: D stays eager, as in the plain loop.
    assert list(gp.callbacks.fast_path.compile) == ["generator"]


@pytest.mark.parametrize(
    ("name", "dtype", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", "bf16", ("H100 SXM", 989.4)),
        ("NVIDIA H100 80GB HBM3", "fp32", ("H100 SXM", 67.0)),
        ("NVIDIA H100 PCIe", "bf16", ("H100 PCIe", 756.0)),
        ("NVIDIA H200", "bf16", ("H200", 989.4)),
        ("NVIDIA A100-SXM4-80GB", "bf16", ("A100", 312.0)),
        ("NVIDIA A100-SXM4-80GB", "fp32", ("A100", 19.5)),
        ("NVIDIA GeForce RTX 4090", "bf16", None),
        (None, "bf16", None),
    ],
)
def test_peak_table(name, dtype, expected):
    assert peak_tflops(name, dtype) == expected
