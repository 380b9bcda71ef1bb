"""metrics.jsonl survives damage: a cut-off last line neither breaks the readers nor eats the next record."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

from gan_research.utils.jsonl_logger import (
    append_record,
    final_status,
    last_status_record,
    read_records,
    read_records_checked,
)


def _killed_mid_write(path: Path) -> None:
    """Two records and the first bytes of a third, as a run killed inside ``f.write`` leaves them."""
    append_record(path, {"step": 1, "train/d_loss": 0.5})
    append_record(path, {"status": "interrupted", "step": 1})
    with path.open("a") as f:
        f.write('{"step": 2, "train/d_lo')


def test_a_cut_off_last_line_is_skipped_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    _killed_mid_write(path)
    records, skipped = read_records_checked(path)
    assert records == [{"step": 1, "train/d_loss": 0.5}, {"status": "interrupted", "step": 1}]
    assert skipped == [3]
    assert read_records(path) == records
    # train() reads the last status at every start: a restart of the killed run must work.
    assert last_status_record(path) == {"status": "interrupted", "step": 1}
    assert final_status(path) == "interrupted"


def test_the_next_record_after_a_cut_off_line_starts_on_a_new_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    _killed_mid_write(path)
    append_record(path, {"step": 2, "train/d_loss": 0.4})
    append_record(path, {"status": "finished", "step": 2})
    lines = path.read_text().splitlines()
    assert lines[2] == '{"step": 2, "train/d_lo'  # the fragment stays, on its own line
    checked = read_records_checked(path)
    assert checked.skipped == [3]
    assert checked.records[-2:] == [{"step": 2, "train/d_loss": 0.4}, {"status": "finished", "step": 2}]
    assert final_status(path) == "finished"


def test_lines_that_are_not_json_objects_are_skipped_blank_lines_ignored(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    good = json.dumps({"step": 1})
    # Garbage bytes (a cut inside a multi-byte character), a JSON list, a bare number, NaN.
    path.write_bytes(b"\n".join([good.encode(), b"\xff\xfe{", b"[1, 2]", b"", b"3", b"NaN", good.encode()]))
    records, skipped = read_records_checked(path)
    assert records == [{"step": 1}, {"step": 1}]
    assert skipped == [2, 3, 5, 6]


def test_append_to_new_empty_and_intact_files_adds_no_blank_line(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "metrics.jsonl"
    append_record(path, {"step": 1, "loss": float("nan")})
    append_record(path, {"step": 2})
    empty = tmp_path / "empty.jsonl"
    empty.touch()
    append_record(empty, {"step": 1})
    assert path.read_text() == '{"step": 1, "loss": "nan"}\n{"step": 2}\n'
    assert empty.read_text() == '{"step": 1}\n'
    assert read_records_checked(tmp_path / "absent.jsonl") == ([], [])


def test_readers_import_without_lightning_and_the_logger_pickles(tmp_path: Path) -> None:
    # gan-compare reads records without importing Lightning (seconds of start-up).
    code = "import sys, gan_research.utils.jsonl_logger; print('pytorch_lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    from gan_research.utils.jsonl_logger import JsonlLogger  # defined on first use

    logger = pickle.loads(pickle.dumps(JsonlLogger(tmp_path)))  # DDP spawn pickles loggers
    assert isinstance(logger, JsonlLogger)
    logger.log_metrics({"train/d_loss": 1.0}, step=3)
    assert read_records(tmp_path / "metrics.jsonl")[0]["step"] == 3
