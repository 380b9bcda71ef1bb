"""The ``device=`` option of the command-line tools that run a model outside a Trainer
(``gan-eval``, ``gan-stylize``): one rule, in the lowest layer both entry points may import."""

from __future__ import annotations

from typing import Any

import torch

from gan_research.errors import ConfigError

DEVICE_CHOICES = "auto, cpu, cuda, cuda:<index>, mps"


def resolve_device(device: Any) -> torch.device:
    """``device`` (auto, cpu, cuda, cuda:N, mps) as a torch device that exists on this machine."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(str(device))
    except (RuntimeError, TypeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device={device!r} is invalid; valid: {DEVICE_CHOICES}")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise ConfigError(
            f"device={device} is not available here ({torch.cuda.device_count()} CUDA devices); "
            "use device=cpu or device=auto"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device=mps is not available here; use device=cpu or device=auto")
    return dev
