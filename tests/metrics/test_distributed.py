"""Metric states merge exactly across 2 DDP processes (gloo on CPU).

Each rank feeds its share of one dataset (uneven shares, several batches) to every metric and
calls compute(); torchmetrics syncs the states. Both ranks must return exactly what one
process fed all the data returns.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from gan_research.data.mixtures import RingMixture
from gan_research.metrics.mixture_modes import ClassHistogram, MixtureModes
from gan_research.metrics.prdc import DensityCoverage, PrecisionRecall

WORLD_SIZE = 2
# Rank 0 gets the first SPLIT samples of each set, rank 1 the rest (uneven on purpose: the
# gather of ``cat`` states must handle ranks with different sample counts).
SPLIT = 0.6


def _data() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    ring = RingMixture()
    labels = torch.randint(8, (400,), generator=generator)
    return {
        "modes": ring.modes,
        "samples": ring.modes[labels] + 2 * ring.std * torch.randn(400, 2, generator=generator),
        "classes": torch.randint(10, (300,), generator=generator),
        "real": torch.randn(90, 5, generator=generator, dtype=torch.float64),
        "fake": 1.2 * torch.randn(70, 5, generator=generator, dtype=torch.float64) + 0.3,
    }


def _metrics(modes: torch.Tensor) -> dict[str, torch.nn.Module]:
    return {
        "modes": MixtureModes(modes, std=0.01),
        "classes": ClassHistogram(num_classes=10),
        "pr": PrecisionRecall(),
        "dc": DensityCoverage(),
        # Real features fed on rank 0 only: rank 1 has an empty real list at sync time.
        "pr_rank0_real": PrecisionRecall(),
        "dc_rank0_real": DensityCoverage(),
    }


def _feed(metrics: dict, data: dict[str, torch.Tensor], share: slice | None) -> dict[str, torch.Tensor]:
    """Update every metric with ``share`` of each set (None: all of it), in batches; compute."""

    def part(x: torch.Tensor) -> torch.Tensor:
        if share is None:
            return x
        cut = int(SPLIT * len(x))
        return x[:cut] if share.start == 0 else x[cut:]

    for batch in part(data["samples"]).split(50):
        metrics["modes"].update(batch)
    for batch in part(data["classes"]).split(37):
        metrics["classes"].update(batch)
    for name in ("pr", "dc", "pr_rank0_real", "dc_rank0_real"):
        if not name.endswith("rank0_real"):
            real = part(data["real"])
        else:
            real = data["real"] if share is None or share.start == 0 else data["real"][:0]
        for batch in real.split(20):
            metrics[name].update(batch, real=True)
        for batch in part(data["fake"]).split(25):
            metrics[name].update(batch, real=False)
    results: dict[str, torch.Tensor] = {}
    for name, metric in metrics.items():
        results.update({f"{name}/{key}": value for key, value in metric.compute().items()})
    return results


def _worker(rank: int, store: str, out_dir: str, data: dict[str, torch.Tensor]) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD_SIZE)
    try:
        share = slice(0, None) if rank == 0 else slice(1, None)
        results = _feed(_metrics(data["modes"]), data, share)
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _sequential_halves(data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One process fed rank 0's share and then rank 1's: the order the gathered lists have."""
    return _feed(_metrics(data["modes"]), data, None)


def test_states_merge_across_two_processes(tmp_path: Path) -> None:
    data = _data()
    # Fork where the platform's default is fork (as DataLoader workers do): the children inherit
    # the imported modules instead of re-importing torch and torchmetrics (~7 s each on 2 cores).
    start_method = "fork" if sys.platform == "linux" else "spawn"
    args = (str(tmp_path / "store"), str(tmp_path), data)
    mp.start_processes(_worker, args=args, nprocs=WORLD_SIZE, join=True, start_method=start_method)
    expected = _sequential_halves(data)

    # The data exercise every metric non-trivially.
    assert 0 < float(expected["modes/high_quality"]) < 100
    assert 0 < float(expected["pr/precision"]) < 1 and 0 < float(expected["dc/coverage"]) < 1
    for rank in range(WORLD_SIZE):
        results = torch.load(tmp_path / f"rank{rank}.pt")
        assert results.keys() == expected.keys()
        for key, value in expected.items():
            assert torch.equal(results[key], value), (rank, key, results[key], value)
