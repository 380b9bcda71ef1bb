"""How much of a run evaluation costs at an experiment's default interval.

For each case the real training code runs ``--steps`` generator steps with one
evaluation at the end (the ``Evaluation`` callback's own timer), so

    fraction = t_eval / (interval * t_step + t_eval)

where ``t_step`` is the fit time without evaluation divided by the steps, and
``interval`` is the case's ``metrics.every_n_steps``. One-time work (training
or loading the domain classifier, caching real statistics) happens before
training and is reported on its own.

    python -m gan_research.bench.eval_cost [--cases default ring8_wgan_gp] [--steps 100]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from gan_research.config import compose_run
from gan_research.train import train

# Case name -> the overrides that make it (the experiment's own settings otherwise).
CASES: dict[str, list[str]] = {
    "default": [],
    "ring8_wgan_gp": ["experiment=ring8_wgan_gp"],
    "grid25_wgan_gp": ["experiment=grid25_wgan_gp"],
    "stacked_digits_dcgan": ["experiment=stacked_digits_dcgan"],
}
# Quiet, file-free runs: only the measured work happens.
QUIET = [
    "logger=none",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "callbacks.progress_bar=null",
    "callbacks.samples=null",
    "callbacks.model_checkpoint=null",
    "trainer.enable_checkpointing=false",
]


def measure(case: str, steps: int) -> dict[str, Any]:
    interval = int(compose_run(CASES[case], Path(".")).metrics.every_n_steps)
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [*CASES[case], *QUIET, f"schedule.max_steps={steps}", "metrics.every_n_steps=0"]
        cfg = compose_run(overrides, Path(tmp) / "run")
        started = time.perf_counter()
        result = train(cfg)
        wall = time.perf_counter() - started
        total_fit = float(_final_seconds(result))
    evaluation = result["evaluation"]
    eval_seconds = evaluation.seconds
    train_seconds = total_fit - eval_seconds
    step = train_seconds / steps
    return {
        "case": case,
        "steps": steps,
        "interval": interval,
        "num_samples": int(cfg.metrics.num_samples),
        "seconds_per_step": step,
        "eval_seconds": eval_seconds,
        "setup_seconds": wall - total_fit,
        "fraction": eval_seconds / (interval * step + eval_seconds),
    }


def _final_seconds(result: dict[str, Any]) -> float:
    from gan_research.utils.jsonl_logger import METRICS_FILE, read_records

    records = read_records(Path(result["run_dir"]) / METRICS_FILE)
    return next(r["seconds"] for r in reversed(records) if "status" in r)


def cpu_model() -> str:
    """The CPU's model name (Linux), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", nargs="+", default=["default", "ring8_wgan_gp"], choices=sorted(CASES))
    parser.add_argument("--steps", type=int, default=100, help="generator steps timed per case")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    rows = [measure(case, args.steps) for case in args.cases]
    print(f"\nmachine: {cpu_model()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print("| case | interval | samples | s/step | s/eval | one-time setup (s) | eval share of training |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['case']} | {r['interval']} | {r['num_samples']} | {r['seconds_per_step']:.4f} | "
            f"{r['eval_seconds']:.2f} | {r['setup_seconds']:.1f} | {100 * r['fraction']:.2f}% |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
