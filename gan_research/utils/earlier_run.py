"""A network of an earlier run: what a family that builds on another run reads from it (VQGAN's
transformer its stage-1 autoencoder, StackGAN's stage II its stage-I generator).

The earlier run is named in the experiment's ``needs`` (see ARCHITECTURE.md, "How to add a
family") and passed to the family as a run directory. :func:`network_from_run` rebuilds the network
from the run's recorded config (``.hydra/config.yaml``, the node at ``node``, its ``_target_``
checked against the allow-list and resolved before it is instantiated), so the two runs cannot
disagree on sizes; :func:`load_run_weights` loads its tensors from the run's
``checkpoints/last.ckpt`` with ``torch.load(weights_only=True)``. Every problem is one line
naming the config key, the file and, for tensors that do not fit, the first one with both shapes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import Tensor, nn

from gan_research.errors import CheckpointError, ConfigError
from gan_research.utils.run_dir import read_recorded_config
from gan_research.utils.safe_config import checked_node, load_weights_only
from gan_research.utils.weights import WeightsFileMissing

__all__ = ["load_run_weights", "network_from_run"]


def network_from_run(
    run: str | os.PathLike[str],
    *,
    key: str,
    how_to_make: str,
    node: str = "model.generator",
    requires: Sequence[str] = (),
    kind: str = "",
) -> tuple[nn.Module, Path]:
    """The network recorded at ``node`` in the run directory ``run``, and the run's last checkpoint.

    Args:
        run: the earlier run's directory (``key``'s value).
        key: the config key that names it, for messages (``model.first_stage_run``).
        how_to_make: the sentence saying how to make such a run.
        node: the recorded config's node to instantiate.
        requires: attributes the network must have (what the family calls on it).
        kind: what the network must be, for the message when it lacks one (``a model=vqgan run``).

    Raises:
        WeightsFileMissing: no recorded config in ``run`` (not a gan-train run directory).
        ConfigError: the recorded config has no ``node`` or its network lacks a required attribute.
        DisallowedTargetError: its ``_target_`` is outside the allow-list.
    """
    raw = str(run)
    run_dir = Path(os.path.expandvars(raw)).expanduser()
    cfg = read_recorded_config(run_dir)
    if cfg is None:
        raise WeightsFileMissing(
            f"{key}={raw}: {run_dir / '.hydra' / 'config.yaml'} does not exist, so {run_dir} is not a "
            f"gan-train run directory. {how_to_make}."
        )
    recorded = OmegaConf.select(cfg, node)
    if recorded is None:
        raise ConfigError(f"{key}={raw}: its recorded config has no {node}. {how_to_make}.")
    network = instantiate(checked_node(recorded, str(run_dir / ".hydra" / "config.yaml"), node))
    missing = [a for a in requires if not hasattr(network, a)]
    if missing:
        raise ConfigError(
            f"{key}={raw}: its {node} ({type(network).__name__}) lacks {missing}; it must be "
            f"{kind or 'another network'}. {how_to_make}."
        )
    return network, run_dir / "checkpoints" / "last.ckpt"


def _owned_state(
    checkpoint: Any, raw: str, key: str, prefixes: Sequence[str], how_to_make: str
) -> tuple[dict[str, Tensor], str]:
    """The tensors under the first of ``prefixes`` the checkpoint holds (keys relative to it)."""
    state_dict = checkpoint.get("state_dict") if isinstance(checkpoint, Mapping) else None
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"{key}: {raw} is not a training checkpoint (no 'state_dict'). {how_to_make}.")
    for prefix in prefixes:
        state = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if state:
            return state, prefix
    raise CheckpointError(
        f"{key}: {raw} holds no {' or '.join(p + '*' for p in prefixes)} tensors. {how_to_make}."
    )


def load_run_weights(
    network: nn.Module,
    checkpoint: str | os.PathLike[str],
    *,
    key: str,
    how_to_make: str,
    prefixes: Sequence[str] = ("generator_ema.", "generator."),
) -> str:
    """Load ``network``'s tensors from an earlier run's Lightning checkpoint: those under the first
    of ``prefixes`` it holds (the EMA generator when the run kept one). Returns that prefix.

    Raises:
        WeightsFileMissing: no file at ``checkpoint``.
        CheckpointError: unreadable or refused file (objects other than tensors are never
            unpickled), not a training checkpoint, or tensors that do not fit the network (the
            first missing, mismatching or unexpected one).
    """
    raw = str(checkpoint)
    file = Path(os.path.expandvars(raw)).expanduser()
    if not file.is_file():
        problem = "is a directory, not a file" if file.is_dir() else "does not exist"
        raise WeightsFileMissing(f"{key}: {file} {problem}. {how_to_make}.")
    loaded = load_weights_only(file, what=f"{key}: the checkpoint", fix=f"{how_to_make}.")
    state, prefix = _owned_state(loaded, raw, key, prefixes, how_to_make)
    expected = network.state_dict()
    fit = f"{key}: {raw} does not fit the run's recorded network"
    for name, tensor in expected.items():
        if name not in state:
            raise CheckpointError(
                f"{fit}: {prefix}{name} is missing (expected shape {tuple(tensor.shape)}); the "
                "checkpoint is not that run's."
            )
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{fit}: {prefix}{name} has shape {tuple(state[name].shape)} in the file, expected "
                f"{tuple(tensor.shape)}; the checkpoint is not that run's."
            )
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise CheckpointError(
            f"{fit}: {len(unexpected)} unexpected tensors, the first {prefix}{unexpected[0]}."
        )
    network.load_state_dict(state)
    return prefix
