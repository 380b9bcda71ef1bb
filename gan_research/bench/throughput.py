"""Training throughput of the framework against a plain PyTorch loop (`make bench`).

For each case both sides train the same DCGAN networks (same init seed), with the
same batch size, optimisers, loss objects and in-memory data, in one process:

* framework: the composed config (:func:`~gan_research.bench.eval_cost.compose_run`),
  :func:`gan_research.train.build` and a ``pl.Trainer`` from ``cfg.trainer``, with the
  callbacks and the ``metrics.jsonl`` logger ``gan-train`` runs (divergence guard and
  ``trainer.log_every_n_steps`` included; samples, checkpoints, progress bar and
  evaluation off);
* plain: ``n_critic`` D updates (fake batch under ``no_grad``) then one G update, each
  ``zero_grad(set_to_none=True)`` → backward → step, with the other network frozen as
  Lightning's ``toggle_optimizer`` does, and batches indexed from a tensor already on
  the device.

Only steady-state steps are timed: from the start of step ``warmup + 1`` to the end of
step ``warmup + steps`` (with a CUDA synchronise at both ends). Images/s counts *real
images consumed*: one generator step consumes ``batch_size * n_critic`` of them. The two
sides run in alternation ``--repeats`` times; the table shows medians,
ratio = framework / plain of the medians, and the median of each back-to-back pair's ratio.

On CUDA, ``--fast`` adds fast-path rows (cuDNN benchmark, fused Adam, bf16 autocast, the
training set on the GPU; then channels_last, and ``--compile`` for torch.compile of G and
D), set on the framework side through its config (``callbacks.fast_path``, what
``perf=gpu`` turns on), and every row gets the fraction of the GPU's peak FLOP/s, from the FLOPs of
one plain step counted with ``torch.utils.flop_counter.FlopCounterMode``.

    python -m gan_research.bench.throughput [--cases dcgan32_ns dcgan32_wgan_gp] [--steps 50]
        [--warmup 5] [--repeats 3] [--device auto|cpu|cuda] [--fast [--compile]] [--json PATH]
        [--ngf 64 --ndf 64 --batch-size 64 --threads N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict
from pytorch_lightning.callbacks import ProgressBar
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from gan_research.config import compose_run
from gan_research.data.base import InMemoryDataset, uint8_to_signed_unit
from gan_research.errors import ConfigError
from gan_research.families.schedule import Schedule
from gan_research.losses import GANObjective
from gan_research.train import build
from gan_research.utils.jsonl_logger import JsonlLogger

# Case name -> the recipe that makes it; both are DCGAN at 32 px on the digits (1 channel).
# WGAN-GP's critic is layer-normalised, as the gradient penalty needs (Gulrajani et al. 2017,
# sec. 4; a batch-norm critic with a penalty is refused).
CASES: dict[str, list[str]] = {
    "dcgan32_ns": ["recipe=non_saturating"],
    "dcgan32_wgan_gp": ["recipe=wgan_gp", "model.discriminator.norm=layer"],
}
BASE = ["model=dcgan", "dataset=digits", "dataset.image_size=32", "dataset.channels=1"]
# No files, bars or evaluation. The other callbacks (divergence guard, preemption handler)
# stay on and trainer.log_every_n_steps keeps its default: they are part of what a run costs.
QUIET = [
    "logger=none",
    "metrics=none",
    "callbacks.samples=null",
    "callbacks.model_checkpoint=null",
    "callbacks.progress_bar=null",
    "trainer.enable_checkpointing=false",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]

# Peak dense FLOP/s (TFLOP/s) from NVIDIA's datasheets, by the substrings of
# torch.cuda.get_device_name() that identify the part; checked in order.
PEAK_TFLOPS: tuple[tuple[tuple[str, ...], str, dict[str, float]], ...] = (
    (("h200",), "H200", {"bf16": 989.4, "fp32": 67.0}),
    (("h100", "pcie"), "H100 PCIe", {"bf16": 756.0, "fp32": 51.0}),
    (("h100", "hbm3"), "H100 SXM", {"bf16": 989.4, "fp32": 67.0}),
    (("h100", "sxm"), "H100 SXM", {"bf16": 989.4, "fp32": 67.0}),
    (("a100",), "A100", {"bf16": 312.0, "fp32": 19.5}),
)


@dataclass(frozen=True)
class Variant:
    """How both sides run: the default fp32 path or a GPU fast path."""

    name: str
    cudnn_benchmark: bool = False
    fused_adam: bool = False
    bf16: bool = False
    channels_last: bool = False
    compile: bool = False
    data_on_device: bool = False

    @property
    def dtype(self) -> str:
        return "bf16" if self.bf16 else "fp32"

    def framework_overrides(self, device: str) -> list[str]:
        """Config overrides that give the framework this variant (``callbacks.fast_path`` and
        the trainer/optimiser settings ``perf=gpu`` also sets); ``torch.compile`` is set in
        :func:`case_config`, which knows whether the loss allows compiling D."""
        overrides = [f"trainer.benchmark={str(self.cudnn_benchmark).lower()}"] if device == "cuda" else []
        if self.bf16:
            overrides.append("trainer.precision=bf16-mixed")
        if self.fused_adam:
            overrides += ["+model.optimizer_g.fused=true", "+model.optimizer_d.fused=true"]
        if self.channels_last:
            overrides.append("callbacks.fast_path.channels_last=true")
        if self.data_on_device and device == "cuda":
            overrides.append("callbacks.fast_path.data_on_device=true")
        return overrides


DEFAULT = Variant("default")
# cuDNN autotuning, fused Adam, bf16 autocast and the training set on the GPU (as the plain loop).
FAST = Variant("fast", cudnn_benchmark=True, fused_adam=True, bf16=True, data_on_device=True)


def fast_full(compile_networks: bool) -> Variant:
    name = "fast+channels_last" + ("+compile" if compile_networks else "")
    return Variant(
        name,
        cudnn_benchmark=True,
        fused_adam=True,
        bf16=True,
        channels_last=True,
        compile=compile_networks,
        data_on_device=True,
    )


# ------------------------------------------------------------------- config
def case_config(
    case: str,
    output_dir: Path,
    *,
    total_steps: int,
    device: str,
    variant: Variant = DEFAULT,
    ngf: int = 64,
    ndf: int = 64,
    batch_size: int | None = None,
    threads: int | None = None,
) -> DictConfig:
    """The composed `gan-train` config of ``case`` (framework side; the plain loop reads it too)."""
    overrides = [
        *BASE,
        *CASES[case],
        *QUIET,
        f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}",
        f"schedule.max_steps={total_steps}",
        f"model.generator.ngf={ngf}",
        f"model.discriminator.ndf={ndf}",
        *([f"dataset.batch_size={batch_size}"] if batch_size is not None else []),
        *([f"threads={threads}"] if threads is not None else []),
        *variant.framework_overrides(device),
    ]
    cfg = compose_run(overrides, output_dir)
    if variant.compile:
        # As the plain loop: D stays eager under a gradient penalty (double backward).
        networks = ["generator"] if instantiate(cfg.loss).regularizers else ["generator", "discriminator"]
        with open_dict(cfg):
            cfg.callbacks.fast_path.compile = networks
    return cfg


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


# --------------------------------------------------------------- framework
class StepTimer(pl.Callback):
    """Times training steps ``warmup + 1`` .. ``warmup + steps`` (batch start to batch end).

    Added after the run's own callbacks, so the timed interval holds their per-step work.
    """

    def __init__(self, warmup: int, steps: int, device: str) -> None:
        self.warmup, self.steps, self.device = warmup, steps, device
        self.batches = 0
        self.started: float | None = None
        self.stopped: float | None = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self.batches == self.warmup:
            _sync(self.device)
            self.started = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        self.batches += 1
        if self.batches == self.warmup + self.steps:
            _sync(self.device)
            self.stopped = time.perf_counter()

    @property
    def seconds(self) -> float:
        if self.started is None or self.stopped is None:
            raise RuntimeError(
                f"the timer saw {self.batches} training steps, expected warmup + steps = "
                f"{self.warmup + self.steps}"
            )
        return self.stopped - self.started


def build_framework(cfg: DictConfig, timer: StepTimer | None = None) -> tuple[pl.Trainer, dict[str, Any]]:
    """The Trainer and objects `gan-train` would fit for ``cfg`` (``timer`` appended to its callbacks)."""
    objects = build(cfg)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    for callback in callbacks:
        check = getattr(callback, "check", None)
        if callable(check):
            check(objects["model"], objects["datamodule"])
    if timer is not None:
        callbacks.append(timer)
    # gan-train always writes metrics.jsonl, whatever the logger group says.
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=[JsonlLogger(objects["run_dir"])])
    return trainer, objects


def time_framework(cfg: DictConfig, warmup: int, steps: int, device: str) -> float:
    """Seconds the framework takes for ``steps`` steady-state training steps."""
    timer = StepTimer(warmup, steps, device)
    trainer, objects = build_framework(cfg, timer)
    if trainer.max_steps != warmup + steps:
        raise ConfigError(f"trainer.max_steps={trainer.max_steps}, not warmup + steps = {warmup + steps}")
    trainer.fit(objects["model"], datamodule=objects["datamodule"])
    return timer.seconds


# -------------------------------------------------------------- plain loop
class PlainLoop:
    """The framework's GAN step without the framework: same networks, optimisers, losses and data."""

    def __init__(self, cfg: DictConfig, device: str, variant: Variant = DEFAULT) -> None:
        self.device = device
        self.variant = variant
        if cfg.get("threads"):
            torch.set_num_threads(int(cfg.threads))  # as build() does for the framework
        self.schedule: Schedule = instantiate(cfg.schedule)
        _check_plain_supported(self.schedule)
        self.objective: GANObjective = instantiate(cfg.loss)
        # The framework seeds, then instantiates G and D in this order (build → model config).
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        self.generator: nn.Module = instantiate(cfg.model.generator)
        self.discriminator: nn.Module = instantiate(cfg.model.discriminator)
        memory_format = torch.channels_last if variant.channels_last else torch.preserve_format
        for net in (self.generator, self.discriminator):
            net.to(device=device, memory_format=memory_format).train()
        fused = {"fused": True} if variant.fused_adam else {}
        self.opt_g: torch.optim.Optimizer = instantiate(cfg.model.optimizer_g)(
            params=self.generator.parameters(), **fused
        )
        self.opt_d: torch.optim.Optimizer = instantiate(cfg.model.optimizer_d)(
            params=self.discriminator.parameters(), **fused
        )
        self.g_forward: nn.Module = self.generator
        self.d_forward: nn.Module = self.discriminator
        if variant.compile:
            self.g_forward = torch.compile(self.generator)
            # The gradient penalty differentiates D twice, which compiled modules do not support.
            if not self.objective.regularizers:
                self.d_forward = torch.compile(self.discriminator)

        datamodule = instantiate(cfg.dataset, batches_per_step=self.schedule.n_critic)
        dataset = datamodule.train_set
        if not isinstance(dataset, InMemoryDataset):
            raise ConfigError(f"the plain loop needs an in-memory dataset, got {type(dataset).__name__}")
        self.batch_size = datamodule.batch_size
        self.step_batch_size = datamodule.step_batch_size
        self.data = dataset.x.to(device=device, memory_format=memory_format)
        self.latent_dim = self.generator.latent_dim
        self.real_target = 1.0 - self.schedule.label_smoothing
        self._data_gen = torch.Generator(device=device).manual_seed(datamodule.seed)

    def batches(self) -> Iterator[Tensor]:
        """Shuffled step batches of ``batch_size * n_critic`` samples, last partial batch dropped."""
        n = self.data.shape[0]
        per_epoch = n // self.step_batch_size
        while True:
            perm = torch.randperm(n, device=self.device, generator=self._data_gen)
            for i in range(per_epoch):
                x = self.data[perm[i * self.step_batch_size : (i + 1) * self.step_batch_size]]
                yield uint8_to_signed_unit(x) if x.dtype == torch.uint8 else x

    def step(self, real_all: Tensor) -> None:
        """n_critic D updates, each on its own real batch, then one G update."""
        with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.variant.bf16):
            for real in real_all.chunk(self.schedule.n_critic):
                self._discriminator_step(real)
            self._generator_step(real_all.shape[0] // self.schedule.n_critic)

    def _discriminator_step(self, real: Tensor) -> None:
        with torch.no_grad():
            fake = self.g_forward(torch.randn(real.shape[0], self.latent_dim, device=self.device))
        self.generator.requires_grad_(False)
        real_scores = self.d_forward(real)
        fake_scores = self.d_forward(fake)
        d_loss = self.objective.adversarial.discriminator_loss(
            real_scores, fake_scores, real_target=self.real_target
        )
        for regularizer in self.objective.regularizers.values():
            d_loss = d_loss + regularizer(self.discriminator, real, fake)
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        if self.objective.weight_clip is not None:
            with torch.no_grad():
                for p in self.discriminator.parameters():
                    p.clamp_(-self.objective.weight_clip, self.objective.weight_clip)
        self.generator.requires_grad_(True)

    def _generator_step(self, batch_size: int) -> None:
        self.discriminator.requires_grad_(False)
        fake = self.g_forward(torch.randn(batch_size, self.latent_dim, device=self.device))
        g_loss = self.objective.adversarial.generator_loss(self.d_forward(fake))
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        self.discriminator.requires_grad_(True)

    def run(self, warmup: int, steps: int) -> float:
        """Seconds for ``steps`` steady-state steps after ``warmup`` (timed like :class:`StepTimer`)."""
        batches = self.batches()
        started = None
        for i in range(warmup + steps):
            real_all = next(batches)
            if i == warmup:
                _sync(self.device)
                started = time.perf_counter()
            self.step(real_all)
        _sync(self.device)
        assert started is not None
        return time.perf_counter() - started

    def count_step_flops(self) -> int:
        """FLOPs of one training step (matmuls and convolutions, forward and backward)."""
        real_all = next(self.batches())
        counter = FlopCounterMode(display=False)
        # Its per-module tracker hooks module inputs for backward, which autograd.grad on a leaf
        # (the gradient penalty's interpolates) refuses; the total needs no per-module split.
        counter.mod_tracker = _NoModuleTracking()
        compiled = self.g_forward, self.d_forward
        # Counted on the eager modules: the same arithmetic, and dispatch modes see every op.
        self.g_forward, self.d_forward = self.generator, self.discriminator
        try:
            with counter:
                self.step(real_all)
        finally:
            self.g_forward, self.d_forward = compiled
        return int(counter.get_total_flops())


class _NoModuleTracking:
    """Stands in for FlopCounterMode's ModuleTracker: every FLOP counts towards "Global" only."""

    parents = frozenset({"Global"})

    def __enter__(self) -> _NoModuleTracking:
        return self

    def __exit__(self, *args: object) -> None:
        return None


def _check_plain_supported(schedule: Schedule) -> None:
    """The plain loop has none of the schedule's tricks: refuse configs that turn one on."""
    defaults = Schedule()
    unsupported = [
        key
        for key in (
            "label_flip_prob",
            "instance_noise",
            "d_skip_threshold",
            "d_reg_every",
            "ema_decay",
            "lr_decay",
        )
        if getattr(schedule, key) != getattr(defaults, key)
    ]
    if unsupported:
        raise ConfigError(f"the plain loop does not implement schedule keys {unsupported}; keep defaults")


# ------------------------------------------------------------------ report
def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "lightning": pl.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def peak_tflops(gpu_name: str | None, dtype: str) -> tuple[str, float] | None:
    """(part, peak TFLOP/s) of ``gpu_name`` for ``dtype``; None for unknown GPUs (and CPUs)."""
    if not gpu_name:
        return None
    name = gpu_name.lower()
    for keys, part, peaks in PEAK_TFLOPS:
        if all(k in name for k in keys) and dtype in peaks:
            return part, peaks[dtype]
    return None


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    return device


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Keep Lightning's per-Trainer banners and warnings out of the report."""
    logger = logging.getLogger("pytorch_lightning")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for message in (
                ".*does not have many workers.*",
                ".*`val_dataloader` but have no `validation_step`.*",  # GAN datamodules have one
                ".*LeafSpec.*",  # Lightning's own use of a deprecated torch API
                # WGAN-GP at batch 64 eats 320 digits a step: 5-step epochs, which Lightning flags.
                ".*smaller than the logging interval.*",
            ):
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        logger.setLevel(level)


def measure(
    case: str,
    variant: Variant,
    *,
    device: str,
    steps: int,
    warmup: int,
    repeats: int,
    ngf: int,
    ndf: int,
    batch_size: int | None,
    threads: int | None,
    gpu: str | None,
) -> dict[str, Any]:
    """One table row: both sides ``repeats`` times in alternation, medians and ratio."""
    framework_runs: list[float] = []
    plain_runs: list[float] = []
    flops = None
    with tempfile.TemporaryDirectory() as tmp:

        def config(run: int) -> DictConfig:
            return case_config(
                case,
                Path(tmp) / f"run{run}",
                total_steps=warmup + steps,
                device=device,
                variant=variant,
                ngf=ngf,
                ndf=ndf,
                batch_size=batch_size,
                threads=threads,
            )

        cfg = config(0)
        n_critic = int(cfg.schedule.n_critic)
        images_per_step = int(cfg.dataset.batch_size) * n_critic
        for r in range(repeats):
            torch.backends.cudnn.benchmark = variant.cudnn_benchmark
            # Alternate which side goes first, so drifts of the machine hit both alike.
            order = ("framework", "plain") if r % 2 == 0 else ("plain", "framework")
            for side in order:
                if side == "framework":
                    seconds = time_framework(config(r), warmup, steps, device)
                    framework_runs.append(images_per_step * steps / seconds)
                elif side == "plain":
                    loop = PlainLoop(config(r), device, variant)
                    seconds = loop.run(warmup, steps)
                    plain_runs.append(images_per_step * steps / seconds)
                    if flops is None:
                        flops = loop.count_step_flops()
                    del loop
                else:
                    continue
                # Progress, and the raw figures should a later run fail.
                print(
                    f"{case} {variant.name} run {r + 1}/{repeats} {side}: "
                    f"{images_per_step * steps / seconds:.1f} img/s",
                    flush=True,
                )
    framework = statistics.median(framework_runs) if framework_runs else None
    plain = statistics.median(plain_runs)
    peak = peak_tflops(gpu, variant.dtype) if device == "cuda" else None

    def peak_fraction(images_per_s: float | None) -> float | None:
        if peak is None or flops is None or images_per_s is None:
            return None
        return flops * images_per_s / images_per_step / (peak[1] * 1e12)

    return {
        "case": case,
        "variant": variant.name,
        "options": asdict(variant),
        "device": device,
        "batch_size": int(cfg.dataset.batch_size),
        "n_critic": n_critic,
        "images_per_step": images_per_step,
        "steps": steps,
        "warmup": warmup,
        "repeats": repeats,
        "ngf": ngf,
        "ndf": ndf,
        "framework_images_per_s": framework,
        "plain_images_per_s": plain,
        "ratio": framework / plain if framework is not None else None,
        # Each run's framework/plain pair ran back to back: their ratio is immune to slow drifts
        # of the machine's speed, which the ratio of the medians is not.
        "paired_ratio": (
            statistics.median(f / p for f, p in zip(framework_runs, plain_runs, strict=True))
            if framework_runs
            else None
        ),
        "framework_runs": framework_runs,
        "plain_runs": plain_runs,
        "flops_per_step": flops,
        "peak_part": peak[0] if peak else None,
        "peak_tflops": peak[1] if peak else None,
        "peak_dtype": variant.dtype,
        "framework_peak_fraction": peak_fraction(framework),
        "plain_peak_fraction": peak_fraction(plain),
    }


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def print_report(rows: list[dict[str, Any]], machine: dict[str, Any]) -> None:
    gpu = f", GPU {machine['gpu']}" if machine["gpu"] else ", no GPU"
    print(
        f"\nmachine: {machine['cpu']}, {machine['torch_threads']} torch threads, torch {machine['torch']}, "
        f"lightning {machine['lightning']}{gpu}"
    )
    print(
        "img/s = real images consumed per second (batch_size x n_critic per generator step); "
        "medians of the runs; ratio = framework / plain; paired = median of each run's own ratio"
    )
    print("| case | variant | device | batch | n_critic | framework img/s | plain img/s | ratio | paired |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['case']} | {r['variant']} | {r['device']} | {r['batch_size']} | {r['n_critic']} | "
            f"{_fmt(r['framework_images_per_s'], '.1f')} | {r['plain_images_per_s']:.1f} | "
            f"{_fmt(r['ratio'], '.3f')} | {_fmt(r['paired_ratio'], '.3f')} |"
        )
    if any(r["device"] == "cuda" for r in rows):
        print("\nFLOPs of one plain step (FlopCounterMode) x steps/s, over the GPU's dense peak:")
        print("| case | variant | GFLOP/step | peak TFLOP/s | framework % of peak | plain % of peak |")
        print("| --- | --- | --- | --- | --- | --- |")
        for r in rows:
            gflop = None if r["flops_per_step"] is None else r["flops_per_step"] / 1e9
            peak = f"{r['peak_tflops']} ({r['peak_part']} {r['peak_dtype']})" if r["peak_tflops"] else "n/a"
            fw, pl_ = r["framework_peak_fraction"], r["plain_peak_fraction"]
            print(
                f"| {r['case']} | {r['variant']} | {_fmt(gflop, '.2f')} | {peak} | "
                f"{_fmt(None if fw is None else 100 * fw, '.2f')} | "
                f"{_fmt(None if pl_ is None else 100 * pl_, '.2f')} |"
            )
        print("fp32 rows: cuDNN may run fp32 convolutions as TF32, so they can exceed the fp32 peak.")


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--steps", type=int, default=50, help="timed generator steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed generator steps before them")
    parser.add_argument("--repeats", type=int, default=3, help="framework/plain pairs per row (medians)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--ngf", type=int, default=64, help="G width (64: the real DCGAN)")
    parser.add_argument("--ndf", type=int, default=64, help="D width (64: the real DCGAN)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the dataset config's (64)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (the `threads` key)")
    parser.add_argument("--fast", action="store_true", help="CUDA: add the fast-path rows")
    parser.add_argument("--compile", action="store_true", help="with --fast: torch.compile G and D")
    parser.add_argument("--json", type=Path, default=None, help="also write machine and rows here")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.repeats < 1:
        parser.error("--steps and --repeats must be >= 1, --warmup >= 0")
    device = resolve_device(args.device)
    variants = [DEFAULT]
    if args.fast:
        if device == "cuda":
            variants += [FAST, fast_full(args.compile)]
        else:
            print("--fast: the fast path is CUDA-only; running the default variant alone")
    threads_before = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    machine = machine_info()
    rows = []
    with _quiet_lightning():
        for case in args.cases:
            for variant in variants:
                rows.append(
                    measure(
                        case,
                        variant,
                        device=device,
                        steps=args.steps,
                        warmup=args.warmup,
                        repeats=args.repeats,
                        ngf=args.ngf,
                        ndf=args.ndf,
                        batch_size=args.batch_size,
                        threads=args.threads,
                        gpu=machine["gpu"],
                    )
                )
    torch.set_num_threads(threads_before)
    print_report(rows, machine)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
