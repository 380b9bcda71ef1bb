"""A quiet console: what a run prints is what its user can act on.

Library messages that say nothing about this run, or nothing a user of this framework can change,
are silenced at their source, by their exact text, so any other warning still shows:

- Lightning's start-up notes (accelerators found, a logger advert, "`Trainer.fit` stopped: max_steps
  reached") are info-level messages of ``pytorch_lightning.utilities.rank_zero``: raised to warnings only;
- "You passed in a `val_dataloader` but have no `validation_step`": the datamodules hand out a
  validation loader that the image-to-image families read for their fixed pairs, never a loop;
- "Using ModelCheckpoint with manual optimization": every family optimises manually and saves after
  a whole step (``callbacks/checkpoint.py``), which is the state a resumed run continues from;
- the ``LeafSpec`` deprecation inside Lightning's own pytree helper (fixed upstream, not ours);
- "resuming from a checkpoint that ended before the epoch ended": the datamodules restore the data
  order themselves (``tests/test_resume.py``: a resumed run's losses equal an uninterrupted run's).

``verbose=true`` (the ``verbose`` key of ``conf/train.yaml``) leaves everything as the libraries
print it.
"""

from __future__ import annotations

import logging
import warnings

# (message regex, category) of the library warnings silenced; see the module docstring.
SILENCED_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    (r"You passed in a `val_dataloader` but have no `validation_step`", UserWarning),
    (r"Using ModelCheckpoint with manual optimization", UserWarning),
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", Warning),
    (r"You're resuming from a checkpoint that ended before the epoch ended", UserWarning),
)
# Loggers whose info-level messages are Lightning's start-up and stop notes.
QUIETED_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero")


def quiet_console(verbose: bool = False) -> None:
    """Silence the library messages listed above (process-wide); ``verbose`` leaves them."""
    if verbose:
        return
    for pattern, category in SILENCED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=category)
    for name in QUIETED_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
