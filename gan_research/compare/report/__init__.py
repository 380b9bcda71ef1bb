"""The comparison report of a sweep: a table, heatmaps over two swept keys, curves, samples, a page.

Written for the question a learning-rate sweep asks (which (lr_G, lr_D) cells train
stably, and how well): every figure is laid out on the sweep's own axes, ``x``
(columns) and ``y`` (rows), cells averaging over seeds, with one panel per value
of any other swept key (e.g. one per loss). Figures use matplotlib's ``Figure``
API with the Agg canvas rather than pyplot: no global backend state to set on a
headless node, and no open-figure registry to leak in a long sweep.

The report is written into a temporary folder beside ``out_dir`` and moved into
place only once every file is written, so a failure leaves no half report; file
names derived from keys and values are sanitised and bounded (a long name is cut
and given a short hash), since swept values can be arbitrarily long.

Modules: :mod:`~gan_research.compare.report.axes` (axis and panel keys, grouping runs into
cells), :mod:`~gan_research.compare.report.tables` (heatmap cells, the runs table),
:mod:`~gan_research.compare.report.figures` (heatmaps, curves, samples),
:mod:`~gan_research.compare.report.tradeoff` (the perception-distortion plane),
:mod:`~gan_research.compare.report.comparison` (measured rows per run or ``group_by`` group beside
published ones, table.csv/json) and
:mod:`~gan_research.compare.report.page` (the page and :func:`write_report`). Their public names
are importable from this package too; a test that replaces a function patches it in the module
that calls it (e.g. ``report.page.plot_samples``), not here.
"""

from gan_research.compare.report.axes import (
    AVERAGED_KEYS,
    Labels,
    Panel,
    check_axis_key,
    describe_run,
    fmt,
    group_runs,
    panel_keys,
    panel_title,
    sorted_values,
)
from gan_research.compare.report.comparison import (
    TABLE_FILES,
    Comparison,
    MeasuredRow,
    Stat,
    all_modes_count,
    beats,
    better,
    comparison_table,
    format_stat,
    format_value,
    metric_stat,
)
from gan_research.compare.report.figures import MAX_LEGEND_RUNS, plot_curves, plot_heatmap, plot_samples
from gan_research.compare.report.page import skipped_lines_note, write_report
from gan_research.compare.report.tables import heatmap_table, run_rows, stability_table, write_tables
from gan_research.compare.report.tradeoff import (
    BASELINE_SUFFIX,
    MAX_ANNOTATED_RUNS,
    TRADEOFF_FIGURE,
    Tradeoff,
    TradeoffPoints,
    check_metric_key,
    higher_is_better,
    pareto_front,
    plot_tradeoff,
    tradeoff_points,
)
from gan_research.utils.metric_direction import HIGHER_IS_BETTER

__all__ = [
    "AVERAGED_KEYS",
    "BASELINE_SUFFIX",
    "HIGHER_IS_BETTER",
    "MAX_ANNOTATED_RUNS",
    "MAX_LEGEND_RUNS",
    "TABLE_FILES",
    "TRADEOFF_FIGURE",
    "Comparison",
    "Labels",
    "MeasuredRow",
    "Panel",
    "Stat",
    "Tradeoff",
    "TradeoffPoints",
    "all_modes_count",
    "beats",
    "better",
    "check_axis_key",
    "check_metric_key",
    "comparison_table",
    "describe_run",
    "fmt",
    "format_stat",
    "format_value",
    "group_runs",
    "heatmap_table",
    "higher_is_better",
    "metric_stat",
    "panel_keys",
    "panel_title",
    "pareto_front",
    "plot_curves",
    "plot_heatmap",
    "plot_samples",
    "plot_tradeoff",
    "run_rows",
    "skipped_lines_note",
    "sorted_values",
    "stability_table",
    "tradeoff_points",
    "write_report",
    "write_tables",
]
