"""The W&B logger factory: offline without a key, one W&B run per run directory."""

from __future__ import annotations

import pytest

from gan_research.errors import ConfigError
from gan_research.utils.wandb_logger import RUN_ID_FILE, make_wandb_logger, resolve_mode


def test_run_id_is_kept_for_a_resumed_run(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    first = make_wandb_logger(project="p", save_dir=str(tmp_path), mode="disabled")
    run_id = (tmp_path / RUN_ID_FILE).read_text().strip()
    assert len(run_id) == 8 and first._wandb_init["id"] == run_id
    again = make_wandb_logger(project="p", save_dir=str(tmp_path), mode="disabled")
    assert again._wandb_init["id"] == run_id
    assert again._wandb_init["resume"] == "allow"
    other = make_wandb_logger(project="p", save_dir=str(tmp_path / "other"), mode="disabled")
    assert other._wandb_init["id"] != run_id


def test_sweep_agent_run_id_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_RUN_ID", "agent123")
    logger = make_wandb_logger(project="p", save_dir=str(tmp_path), mode="disabled")
    assert logger._wandb_init["id"] == "agent123"
    assert (tmp_path / RUN_ID_FILE).read_text().strip() == "agent123"


def test_mode_auto_is_offline_without_a_key(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    assert resolve_mode("auto") == "offline"
    with pytest.raises(ConfigError, match=r"logger.wandb.mode='sometimes'.*'offline'"):
        resolve_mode("sometimes")
