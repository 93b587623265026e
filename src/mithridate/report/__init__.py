"""Self-contained HTML reports and their plots.

>>> from mithridate.report import write_report        # doctest: +SKIP
>>> write_report(result, "report.html")               # doctest: +SKIP

``write_report`` draws with matplotlib (imported only when a report is written) and renders
through an autoescaping Jinja2 template: dataset-derived text is always escaped.
"""

from mithridate.report.html import render_report, to_jsonable, write_report

__all__ = ["write_report", "render_report", "to_jsonable"]
