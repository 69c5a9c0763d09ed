"""Rendering the reports: a text table for a terminal, HTML for a notebook, a dict for JSON.

Every report in ``jaxnn.verify`` (``GradientReport``, ``FaultReport``,
``TaylorReport``) builds one list of header cells and rows, and renders it
with ``text_table`` (``__str__``) or ``html_table`` (``_repr_html_``, which
Jupyter calls); ``as_dict`` makes a plain, JSON-serialisable dict of it
(``json.dumps(report.as_dict(), allow_nan=False)`` works: inf and nan become
the strings ``"inf"`` and ``"nan"``).

This module imports nothing from jaxnn and never prints.
"""

import html
import math

from jaxnn.verify.measures import text_table as text_table

__all__ = [
    "html_table",
    "plain",
    "text_table",
]


def html_table(head, rows, *, title: str = "", notes=(), ok: bool | None = None) -> str:
    """An HTML ``<table>`` of ``rows`` under ``head``, with a title and notes as paragraphs.

    Cells equal to ``"FAIL"`` or starting with ``"FAIL"``/``"DIFFERS"`` are
    marked ``class="fail"`` (red), kink verdicts ``class="kink"`` (amber).
    """
    esc = lambda x: html.escape(str(x))

    def cell(x, tag="td"):
        text = str(x)
        kind = "fail" if text.startswith(("FAIL", "DIFFERS")) else ""
        kind = "kink" if "kink" in text and not kind else kind
        style = {"fail": ' style="color:#b00020"', "kink": ' style="color:#a06000"'}.get(kind, "")
        return f"<{tag}{style}>{esc(x)}</{tag}>"

    parts = ['<div class="jaxnn-report">']
    if title:
        parts.append(f"<p><b>{esc(title)}</b></p>")
    parts.append('<table style="font-family:monospace">')
    parts.append("<tr>" + "".join(cell(h, "th") for h in head) + "</tr>")
    parts += ["<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in rows]
    parts.append("</table>")
    parts += [f"<p>{esc(n)}</p>" for n in notes]
    if ok is not None:
        colour = "#006000" if ok else "#b00020"
        parts.append(f'<p style="color:{colour}"><b>{"OK" if ok else "FAILED"}</b></p>')
    parts.append("</div>")
    return "\n".join(parts)


def plain(x):
    """``x`` as plain JSON data: NamedTuples and dataclass-like dicts become dicts, tuples
    lists, numpy scalars Python numbers, and non-finite floats the strings "inf", "-inf", "nan"."""
    if hasattr(x, "_asdict"):
        return {k: plain(v) for k, v in x._asdict().items()}
    if isinstance(x, dict):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if hasattr(x, "item") and getattr(x, "shape", None) == ():
        x = x.item()
    if isinstance(x, int):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else str(x)
    return str(x)
