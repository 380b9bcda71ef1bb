"""Published network weights (ImageNet backbones, InceptionV3) from a local file only.

Our machines have no internet, so a pretrained network's weights are never downloaded: a
:class:`WeightsFile` names where one file is published and looks for it, in order, in

1. the config key (an explicit path: a missing file there is an error, never a fallback,
   since silently using another file would hide a typo),
2. an environment variable (likewise explicit),
3. the torch hub cache, ``Path(torch.hub.get_dir()) / "checkpoints" / <filename>``: where
   torchvision and torch-fidelity keep the files they download, so a machine that ever ran
   them, or a copy of that folder, is enough.

A file found nowhere is one :class:`WeightsFileMissing` (a ``ConfigError``) whose single line
names the three places and the URL to fetch the file from on a machine with internet.

Files are read with ``torch.load(weights_only=True)`` (issue 13, item 4: nothing that loads a
file may run code): each of the three places may hold a file anyone wrote, and a pickle that
names a function would run it. A file that is not a mapping of named tensors is one
``CheckpointError``. This generalises what ``metrics/inception.py`` first did for the
InceptionV3 file, so every backbone (VGG19, AlexNet, VGG16, InceptionV3) is found and refused
the same way.

:func:`keep_out_of_checkpoints` keeps such frozen, file-sourced weights out of the state dict
of the model that holds them (a VGG19 up to ``relu5_4`` is 80 MB), as ``FeatureFID`` does for
Inception: they come from their file, not from a training checkpoint.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gan_research.errors import CheckpointError, ConfigError, one_line
from gan_research.utils.safe_config import describe_load_error

__all__ = ["WeightsFile", "WeightsFileMissing", "keep_out_of_checkpoints"]


class WeightsFileMissing(ConfigError):
    """A published weights file is not on this machine, or not where the config or variable says."""


@dataclass(frozen=True)
class WeightsFile:
    """One published weights file and where this machine may hold it.

    Args:
        filename: the file's published name (also its name in the torch hub cache).
        url: where it is published (what torchvision's or torch-fidelity's download fetches).
        env: the environment variable that may name it.
        key: the config key that may name it (only for messages, e.g. ``perceptual.weights``).
        description: what it is, e.g. ``VGG19 ImageNet weights file``.
        publisher: whose file it is, e.g. ``torchvision's``.
        error: the missing-file error class (a :class:`WeightsFileMissing`), so a caller keeps
            its own error type (``InceptionWeightsError``).
    """

    filename: str
    url: str
    env: str
    key: str
    description: str
    publisher: str
    error: type[WeightsFileMissing] = WeightsFileMissing

    def hub_path(self) -> Path:
        """Where the torch hub cache keeps the file."""
        # Looked up at call time so $TORCH_HOME and torch.hub.set_dir() are honoured.
        return Path(torch.hub.get_dir()) / "checkpoints" / self.filename

    def how_to_get_it(self) -> str:
        """Where to download the file and where to put it (one line: CLIs print one ``error:`` line)."""
        return (
            f"This machine cannot download it: on a machine with internet, download {self.url} and copy it "
            f"to {self.hub_path()} (the torch hub cache; $TORCH_HOME moves it), or anywhere and set "
            f"{self.env}=/path/to/{self.filename} or {self.key}=/path/to/{self.filename}."
        )

    def _named_file(self, raw: str, source: str) -> Path:
        """The file a user named explicitly; a wrong name is an error, never a fallback."""
        path = Path(os.path.expandvars(raw)).expanduser()
        if path.is_file():
            return path
        problem = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise self.error(
            f"{source}={raw}: the {self.description} {path} {problem}. "
            f"Expected {self.publisher} {self.filename}. {self.how_to_get_it()}"
        )

    def resolve(self, value: str | os.PathLike[str] | None = None) -> Path:
        """The file: ``value`` (the config key), else ``$env``, else the torch hub cache; never downloads.

        Raises:
            WeightsFileMissing (``self.error``): naming every place looked at and the URL.
        """
        if value is not None and str(value) != "":
            return self._named_file(str(value), self.key)
        from_env = os.environ.get(self.env, "")
        if from_env:
            return self._named_file(from_env, self.env)
        cached = self.hub_path()
        if cached.is_file():
            return cached
        raise self.error(
            f"{self.description} {self.filename} not found. Looked at: {self.key} (not set), "
            f"${self.env} (not set), the torch hub cache {cached} (missing). {self.how_to_get_it()}"
        )

    def bad_file(self, path: str | os.PathLike[str], problem: str) -> CheckpointError:
        """The error for a file that was found but is not this one (damaged, foreign, malicious)."""
        return CheckpointError(
            f"{path} is not {self.publisher} {self.description} {self.filename}: {problem}. "
            f"Replace it with a fresh copy of {self.url}."
        )

    def load(self, path: str | os.PathLike[str]) -> dict[str, Tensor]:
        """The file's state dict, read with ``torch.load(weights_only=True)`` on the CPU.

        Raises:
            CheckpointError: the file is unreadable, holds objects other than tensors and plain
                containers (refused, never run), or is not a mapping of named tensors.
        """
        path = Path(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # a damaged, foreign or malicious file fails in many ways
            raise self.bad_file(path, describe_load_error(err)) from err
        if not isinstance(state, Mapping):
            raise self.bad_file(path, f"it holds a {type(state).__name__}, not a state dict")
        bad = [k for k, v in state.items() if not (isinstance(k, str) and isinstance(v, Tensor))]
        if bad:
            raise self.bad_file(path, f"entries {bad[:3]!r} are not named tensors")
        return dict(state)

    def load_into(self, module: nn.Module, state: Mapping[str, Tensor], path: str | os.PathLike[str]) -> None:
        """``module.load_state_dict(state)`` (strict), a mismatch being :meth:`bad_file`'s error."""
        try:
            module.load_state_dict(state)
        except RuntimeError as err:  # missing, unexpected or mis-shaped tensors
            problem = f"its tensors do not fit the network ({one_line(str(err), 200)})"
            raise self.bad_file(path, problem) from err


# --------------------------------------------------------------------------- checkpoints
_HIDDEN = "_weights_kept_out_of_checkpoints"


def _drop_from_state_dict(module: nn.Module, state_dict: dict[str, Any], prefix: str, _meta: Any) -> None:
    if getattr(module, _HIDDEN, False):
        for key in [k for k in state_dict if k.startswith(prefix)]:
            del state_dict[key]


def _fill_from_module(module: nn.Module, state_dict: dict[str, Any], prefix: str, *_args: Any) -> None:
    # A checkpoint holds none of these weights (or, if written before, stale copies): whatever it
    # holds under this prefix is replaced by the module's own tensors, so a strict load neither
    # misses keys nor overwrites weights that come from their published file.
    for key in [k for k in state_dict if k.startswith(prefix)]:
        del state_dict[key]
    setattr(module, _HIDDEN, False)
    try:
        own = module.state_dict(keep_vars=True)
    finally:
        setattr(module, _HIDDEN, True)
    state_dict.update({prefix + key: value for key, value in own.items()})


def keep_out_of_checkpoints(module: nn.Module) -> nn.Module:
    """Leave ``module``'s parameters and buffers (its children's too) out of every state dict that
    contains it, and let a strict ``load_state_dict`` of the parent succeed without them.

    For frozen networks whose weights come from a published file or a cache (feature networks of
    perceptual losses): a training checkpoint need not carry them, and a checkpoint written before
    the module gained them (e.g. a classifier bound later by ``prepare``) still loads.
    ``module.state_dict()`` itself is empty too; read its tensors through ``named_parameters``.
    """
    if getattr(module, _HIDDEN, False):
        return module  # hooks already registered
    setattr(module, _HIDDEN, True)
    module.register_state_dict_post_hook(_drop_from_state_dict)
    module.register_load_state_dict_pre_hook(_fill_from_module)
    return module


# Set while a model is built only to receive every weight from a checkpoint (gan-eval): weights
# a network loads merely to initialise itself (a pretrained prior) would be overwritten at once.
_RESTORING: ContextVar[bool] = ContextVar("gan_research_restoring_a_checkpoint", default=False)


@contextlib.contextmanager
def restoring_a_checkpoint() -> Iterator[None]:
    """Networks built inside this block get all their weights from a checkpoint next: the files
    they would read only to initialise themselves (GFP-GAN's StyleGAN2 prior) are neither needed
    nor read (:func:`initial_weights_needed`), so evaluating a run does not need the runs it
    was initialised from."""
    token = _RESTORING.set(True)
    try:
        yield
    finally:
        _RESTORING.reset(token)


def initial_weights_needed() -> bool:
    """False inside :func:`restoring_a_checkpoint`: skip loading initialisation-only weights."""
    return not _RESTORING.get()
