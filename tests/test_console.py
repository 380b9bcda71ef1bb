"""What a researcher sees: progress in generator steps, evaluation as a visible state, a closing
block read back from the run's record, and no library warnings a user cannot act on."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from gan_research.utils.run_summary import closing_block

BIN = Path(sys.executable).parent


def test_a_run_in_a_log_file_shows_steps_evaluations_and_a_closing_block_without_noise(tmp_path):
    run_dir = tmp_path / "run"
    cmd = [
        str(BIN / "gan-train"),
        "model=mlp",
        "dataset=ring8",
        "model.width=16",
        "dataset.batch_size=32",
        "schedule.max_steps=20",
        "metrics.every_n_steps=10",
        "callbacks.progress_bar.every_n_steps=5",
        "callbacks.samples.every_n_steps=0",
        "logger=none",
        "threads=1",
        f"hydra.run.dir={run_dir}",
    ]
    # Output to pipes: what nohup or a SLURM log file gets.
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    lines = out.splitlines()
    assert any(
        re.fullmatch(
            r"training GAN for 20 steps: generator MLPGenerator [\d.]+ K? ?parameters, "
            r"discriminator MLPDiscriminator [\d.]+ K? ?parameters",
            line,
        )
        for line in lines
    ), out
    progress = [line for line in lines if line.startswith("step ") and "/20 " in line]
    assert [line.split()[1] for line in progress] == ["5/20", "10/20", "15/20", "20/20"], out
    for line in progress:
        assert re.search(r"\| \d+:\d\d elapsed, ETA \d+:\d\d \| d_loss [-\d.e]+ g_loss [-\d.e]+", line), line
    # The figure of the evaluation at step 10 is shown from then on.
    assert "modes_recovered" in progress[-1] and "modes_recovered" not in progress[0]
    assert "step 10: evaluating 2500 samples…" in lines
    assert any(line.startswith("step 20: evaluated in ") and "modes_recovered" in line for line in lines)
    # The closing block, from metrics.jsonl.
    block = out[out.index("run finished") :]
    assert re.search(r"status +finished at step 20 of 20, \d+:\d\d", block), block
    assert f"directory  {run_dir}" in block
    assert re.search(r"final +step 20: modes_recovered \d", block), block
    assert re.search(r"best +modes_recovered \d+ \(step (10|20)\)", block), block
    assert f"gan-eval run_dir={run_dir}" in block and f"gan-compare sweep_dir={run_dir}" in block
    # Nothing the user cannot act on: no warnings, no start-up adverts, no layer table.
    noise = [
        line
        for line in lines
        if re.search(r"warn|GPU available|TPU available|Tip:|FLOPs|Trainer.fit. stopped", line, re.I)
    ]
    assert noise == [], noise


def _record(path: Path, *rows: dict) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_closing_block_best_values_follow_each_metric_direction(tmp_path):
    _record(
        tmp_path / "metrics.jsonl",
        {"step": 10, "train/d_loss": 1.0},
        {"step": 100, "val/fid_digits": 50.0, "val/is_digits": 2.0, "val/eval_seconds": 3.0},
        {"step": 200, "val/fid_digits": 40.0, "val/is_digits": 1.5, "val/eval_seconds": 3.0},
        {"step": 300, "val/fid_digits": 45.0, "val/is_digits": 1.8, "val/is_digits_std": 0.1},
        {"status": "finished", "reason": None, "step": 300, "seconds": 60.0},
    )
    block = closing_block(tmp_path, 300)
    assert "status     finished at step 300 of 300, 1:00, evaluation 0:06 (10%)" in block
    assert "final      step 300: fid_digits 45 · is_digits 1.8" in block
    # FID: lower is better; the Inception Score (is_*): higher is better.
    assert "best       fid_digits 40 (step 200) · is_digits 2 (step 100)" in block
    assert "is_digits_std" not in block


def test_closing_block_of_a_run_without_evaluation_says_so(tmp_path):
    _record(
        tmp_path / "metrics.jsonl", {"status": "diverged", "reason": "g_loss is NaN", "step": 7, "seconds": 2}
    )
    block = closing_block(tmp_path, 100)
    assert "status     diverged: g_loss is NaN at step 7 of 100, 0:02" in block
    assert "no evaluation recorded" in block


def test_make_clean_leaves_runs_and_clean_runs_removes_them():
    root = Path(__file__).resolve().parents[1]

    def commands(target: str) -> str:
        return subprocess.run(
            ["make", "-n", target], cwd=root, capture_output=True, text=True, check=True
        ).stdout

    clean = commands("clean")
    assert ".venv" in clean and "outputs" not in clean and "multirun" not in clean
    assert "rm -rf outputs multirun" in commands("clean-runs")
