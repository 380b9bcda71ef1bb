"""``gan-compare``: read the runs of a sweep, label their stability, write a comparison report."""

from gan_research.compare.references import Reference, References, load_references
from gan_research.compare.report.page import write_report
from gan_research.compare.report.tables import heatmap_table, stability_table
from gan_research.compare.runs import RunRecord, load_runs, load_wandb_runs, param
from gan_research.compare.stability import LABELS, StabilityRules, label_run

__all__ = [
    "LABELS",
    "Reference",
    "References",
    "RunRecord",
    "StabilityRules",
    "heatmap_table",
    "label_run",
    "load_references",
    "load_runs",
    "load_wandb_runs",
    "param",
    "stability_table",
    "write_report",
]
