"""Which way an evaluation metric is better, from its name: shared by the end-of-run summary (best
value of a run) and gan-compare (heatmaps, the trade-off plane, the comparison table)."""

from __future__ import annotations

# Metric names whose last component holds one of these are higher-is-better; every other metric
# (FID, KID, LPIPS, L1, KL, ...) is lower-is-better.
HIGHER_IS_BETTER = (
    "psnr",
    "ssim",
    "accuracy",
    "modes_recovered",
    "modes_covered",
    "classes_covered",
    "coverage",
    "high_quality",
    "precision",
    "recall",
    "inception_score",
    "diversity",
    "density",
)
# The Inception Score is logged as is_<network> (val/is_digits).
HIGHER_IS_BETTER_PREFIXES = ("is_",)


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is better, from its name (:data:`HIGHER_IS_BETTER`)."""
    name = metric.rsplit("/", 1)[-1].lower()
    if name.endswith("_std"):
        # A spread is better small whatever it is the spread of.
        return False
    return any(token in name for token in HIGHER_IS_BETTER) or name.startswith(HIGHER_IS_BETTER_PREFIXES)
