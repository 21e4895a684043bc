"""HTML reports with plots, shared by every stage."""

from tuneloom.reports.html import write_report

__all__ = ["write_report"]
