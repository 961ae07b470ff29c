"""The HTML that notebooks show: escaping, tables and the box around an object.

Every ``_repr_html_`` in pilothouse (models, registry records, lineage, runs, deployments,
servers, profiles and drift reports) builds its markup from these few pieces, so that text
from the registry or the data is escaped exactly once and tables look alike. Values are
escaped unless they are :class:`Html` already. The drift report's page and its styling are
``_report_html.py``'s.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["Html", "box", "dict_table", "escape", "table", "td", "th", "tr"]


class Html(str):
    """Text that is HTML already: :func:`escape` and the builders leave it as it is."""

    __slots__ = ()


class _Cell(Html):
    """A whole ``<td>`` or ``<th>`` element: a row takes it as it is."""

    __slots__ = ()


def escape(value: object) -> Html:
    """``value`` as text in HTML (quotes escaped too, so it also fits an attribute)."""
    if isinstance(value, Html):
        return value
    return Html(html.escape(str(value), quote=True))


def _attributes(attributes: Mapping[str, object]) -> str:
    """``class_="x", data_sort=1`` -> `` class="x" data-sort="1"``; None leaves one out."""
    return "".join(
        f' {name.rstrip("_").replace("_", "-")}="{escape(value)}"'
        for name, value in attributes.items()
        if value is not None
    )


def _element(tag: str, content: object, attributes: Mapping[str, object]) -> str:
    return f"<{tag}{_attributes(attributes)}>{escape(content)}</{tag}>"


def td(content: object = "", **attributes: object) -> Html:
    """One data cell; ``class_=``, ``data_sort=`` and the like become its attributes."""
    return _Cell(_element("td", content, attributes))


def th(content: object = "", **attributes: object) -> Html:
    """One header cell."""
    return _Cell(_element("th", content, attributes))


def tr(cells: Iterable[object], **attributes: object) -> Html:
    """One row: a value becomes a ``<td>``; a cell made by :func:`td` or :func:`th` stays."""
    inner = "".join(c if isinstance(c, _Cell) else td(c) for c in cells)
    return Html(f"<tr{_attributes(attributes)}>{inner}</tr>")


def table(
    head: Sequence[object] | None, rows: Iterable[Html | Iterable[object]], **attributes: object
) -> Html:
    """A table: ``head`` names the columns (a value becomes a ``<th>``; None: no header
    row), each of ``rows`` is a :func:`tr` or a sequence of cells."""
    out = [f"<table{_attributes(attributes)}>"]
    if head is not None:
        out.append("<thead>" + tr(c if isinstance(c, _Cell) else th(c) for c in head) + "</thead>")
    out.append("<tbody>")
    out.extend(r if isinstance(r, Html) else tr(r) for r in rows)
    out.append("</tbody></table>")
    return Html("".join(out))


def dict_table(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> Html:
    """Dicts as a table, one column per key in ``columns`` (a missing key: an empty cell)."""
    return table(columns, ([r.get(c, "") for c in columns] for r in rows))


def box(title: object, *body: object, **attributes: object) -> Html:
    """The box every object shows itself in: a ``<div>`` with a bold title, then ``body``
    (text is escaped; tables and other :class:`Html` go in as they are)."""
    inner = "".join(escape(b) for b in body)
    return Html(f"<div{_attributes(attributes)}><strong>{escape(title)}</strong>{inner}</div>")
