"""The results report: benchmark JSON files in, ``report.md`` + a static ``index.html`` + PNG plots out. No torch."""

from turbo_edge.report.render import ReportError, render_report, table_from_dicts

__all__ = ["ReportError", "render_report", "table_from_dicts"]
