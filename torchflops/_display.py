"""Rich display for result objects: one description, shown as text, Markdown and HTML.

A result object (``Profile``, a ``compare`` table, and later results such as a memory breakdown
or a time estimate) describes itself once as a ``Shown``: a title, a few summary facts and a
table. ``Displayable`` turns that into ``__repr__``, IPython's ``_repr_pretty_`` and Jupyter's
``_repr_html_`` / ``_repr_markdown_``. A frozen dataclass that mixes it in declares
``@dataclass(frozen=True, repr=False)`` so that the dataclass keeps this ``__repr__``.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any, Optional

from tabulate import tabulate

__all__ = ["Shown", "Displayable", "Table"]

# One short style sheet, scoped to the element it styles, so a notebook's own CSS is left alone.
_STYLE = ("<style>.torchflops-shown td,.torchflops-shown th{text-align:right;padding:1px 8px}"
          ".torchflops-shown td:first-child,.torchflops-shown th:first-child{text-align:left}</style>")


@dataclass(frozen=True)
class Shown:
    """What a result shows: ``title``, ``facts`` (label, value) and a table; ``exact`` holds, per
    table cell, the exact figure behind a rounded one (shown on hover in HTML), or None."""

    title: str
    facts: tuple[tuple[str, str], ...] = ()
    headers: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    exact: Optional[tuple[tuple[Optional[str], ...], ...]] = None
    note: str = ""

    def text(self) -> str:
        lines = [self.title] if self.title else []
        lines += [f"  {label}: {value}" for label, value in self.facts]
        if self.headers:
            lines.append(tabulate(self.rows, headers=self.headers, disable_numparse=True))
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)

    def markdown(self) -> str:
        parts = [f"**{_md(self.title)}**"] if self.title else []
        if self.facts:
            parts.append("\n".join(f"- {_md(label)}: {_md(value)}" for label, value in self.facts))
        if self.headers:
            parts.append(tabulate([[_md(c) for c in row] for row in self.rows],
                                  headers=[_md(h) for h in self.headers], tablefmt="github",
                                  disable_numparse=True))
        if self.note:
            parts.append(_md(self.note))
        return "\n\n".join(parts)

    def html(self) -> str:
        out = [f'<div class="torchflops-shown">{_STYLE}']
        if self.title:
            out.append(f"<p><b>{html.escape(self.title)}</b></p>")
        if self.facts:
            out.append("<ul>" + "".join(f"<li>{html.escape(label)}: {html.escape(value)}</li>"
                                        for label, value in self.facts) + "</ul>")
        if self.headers:
            out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in self.headers)
                       + "</tr></thead><tbody>")
            for index, row in enumerate(self.rows):
                exact = self.exact[index] if self.exact is not None else (None,) * len(row)
                cells = []
                for cell, value in zip(row, exact):
                    hover = f' title="{html.escape(value)}"' if value is not None else ""
                    cells.append(f"<td{hover}>{html.escape(cell)}</td>")
                out.append("<tr>" + "".join(cells) + "</tr>")
            out.append("</tbody></table>")
        if self.note:
            out.append(f"<p>{html.escape(self.note)}</p>")
        out.append("</div>")
        return "".join(out)


def _md(text: str) -> str:
    # table cells and list items: a pipe would split a cell, an asterisk start emphasis
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")


class Displayable:
    """Mix-in: ``_shown()`` describes the object; text, pretty, Markdown and HTML follow from it."""

    def _shown(self) -> Shown:
        raise NotImplementedError

    def _summary(self) -> str:
        """The one-line ``repr``; by default the title."""
        return self._shown().title

    def __repr__(self) -> str:
        return f"<{self._summary()}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self) if cycle else self._shown().text())

    def _repr_markdown_(self) -> str:
        return self._shown().markdown()

    def _repr_html_(self) -> str:
        return self._shown().html()


class Table(str):
    """A rendered text table (still a ``str``: print it, write it, compare it) that a notebook
    shows as itself rather than as an escaped string, and as an HTML table."""

    _headers: tuple[str, ...]
    _rows: tuple[tuple[str, ...], ...]

    def __new__(cls, text: str, headers: tuple[str, ...], rows: list[list[str]]) -> Table:
        made = super().__new__(cls, text)
        made._headers = tuple(headers)
        made._rows = tuple(tuple(row) for row in rows)
        return made

    def _shown(self) -> Shown:
        return Shown("", headers=self._headers, rows=self._rows)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))

    def _repr_markdown_(self) -> str:
        return self._shown().markdown()

    def _repr_html_(self) -> str:
        return self._shown().html()
