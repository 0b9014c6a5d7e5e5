"""Result files (result.json, reproduction.json), Markdown reports and saved figures."""

from varbayes.report.figures import save_figure
from varbayes.report.markdown import markdown_table, write_reproduction_report, write_run_report
from varbayes.report.results import reproduction_record, result_record, versions

__all__ = [
    "markdown_table",
    "reproduction_record",
    "result_record",
    "save_figure",
    "versions",
    "write_reproduction_report",
    "write_run_report",
]
