"""Tables that fit the terminal without ever splitting an identifier or a number.

A listing declares its columns with :class:`Col`: what a cell holds (``id``: one identifier or number
per line, never split; ``words``: identifiers separated by spaces or commas, wrapped between them;
``text``: prose, wrapped by words) and how much it matters (``priority`` 0 is always shown, higher
numbers are dropped first). :func:`render` measures the narrowest width each column can take without
splitting a token, drops the least important columns until the table fits the console, and when even
the essential columns do not fit, prints the rows as a list instead::

    finance.credit_risk
      task: binary
      dataset: finance.credit_data

A user can then copy any name from the output and paste it into the next command.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Col", "console", "render"]

_TEXT_MIN = 16  # prose columns narrower than this read badly: drop the column instead
_TOKENS = re.compile(r"[^\s]+")


@dataclass(frozen=True)
class Col:
    """One column of a listing.

    Attributes:
        key: the row's key holding the cell.
        header: the column's title (wrapped between words when narrow).
        kind: ``id``, ``words`` or ``text`` (see the module's docstring).
        priority: 0 = always shown; columns with higher numbers are dropped first when narrow.
        justify: ``left`` or ``right`` (numbers).
    """

    key: str
    header: str
    kind: str = "id"
    priority: int = 0
    justify: str = "left"


def console() -> Any:
    """A rich console on stdout, as wide as the terminal (``COLUMNS`` when set; 80 when piped)."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value)
    return str(value)


def _min_width(col: Col, cells: list[str]) -> int:
    """Narrowest width that splits no token: whole lines for ``id``, whole tokens otherwise."""
    header = max((len(w) for w in col.header.split()), default=1)
    lines = [line for c in cells for line in c.splitlines()]
    if col.kind == "id":
        return max([header, *(len(line) for line in lines)])
    longest = max([header, *(len(t) for line in lines for t in _TOKENS.findall(line))])
    if col.kind == "text":
        widest = max([header, *(len(line) for line in lines)])
        return max(longest, min(widest, _TEXT_MIN))
    return longest


def _natural_width(col: Col, cells: list[str]) -> int:
    return max([len(col.header), *(len(line) for c in cells for line in c.splitlines())])


def column_widths(columns: Sequence[Col], cells: Mapping[str, list[str]], width: int) -> list[int]:
    """Column widths within ``width``: each at least its minimum, spare room to the most cramped first."""
    got = [_min_width(c, cells[c.key]) for c in columns]
    want = [max(g, _natural_width(c, cells[c.key])) for c, g in zip(columns, got, strict=True)]
    spare = width - _table_width(got)
    while spare > 0:
        short = [(want[i] - got[i], -i) for i in range(len(got)) if want[i] > got[i]]
        if not short:
            break
        _, neg = max(short)
        got[-neg] += 1
        spare -= 1
    return got


def _table_width(widths: Sequence[int]) -> int:
    # rich's default box: one padding space each side of a cell, a rule between and around columns
    return sum(widths) + 3 * len(widths) + 1


def fit(columns: Sequence[Col], rows: Sequence[Mapping[str, Any]], width: int) -> list[Col] | None:
    """The columns to show at ``width`` (least important dropped first), or None: use the list layout."""
    cells = {c.key: [_cell(r.get(c.key)) for r in rows] for c in columns}
    shown = list(columns)
    while True:
        if _table_width([_min_width(c, cells[c.key]) for c in shown]) <= width:
            return shown
        droppable = [c for c in shown if c.priority > 0]
        if not droppable:
            return None
        worst = max(droppable, key=lambda c: (c.priority, shown.index(c)))
        shown.remove(worst)


def render(title: str, columns: Sequence[Col], rows: Sequence[Mapping[str, Any]], *, out: Any = None,
           empty: str | None = None) -> None:
    """Print ``rows`` as a table that fits the console, or as a list when it cannot."""
    from rich.table import Table
    from rich.text import Text

    out = out or console()
    if not rows:
        out.print(Text(empty or f"{title}: none"))
        return
    width = out.width
    shown = fit(columns, rows, width)
    if shown is None:
        _render_list(title, columns, rows, out, width)
        return
    cells = {c.key: [_cell(r.get(c.key)) for r in rows] for c in shown}
    out.print(Text(title, style="italic"), soft_wrap=True)  # a title may hold a path: never wrapped
    table = Table()
    # Fixed widths, computed here: rich's own shrinking ignores minimum widths and would split names.
    for c, w in zip(shown, column_widths(shown, cells, width), strict=True):
        table.add_column(c.header, no_wrap=c.kind == "id", width=w, justify=c.justify,  # type: ignore[arg-type]
                         overflow="fold")
    for i in range(len(rows)):
        table.add_row(*(Text(cells[c.key][i]) for c in shown))
    out.print(table)
    dropped = [c.header for c in columns if c not in shown]
    if dropped:
        out.print(Text(f"(not shown at {width} columns: {', '.join(dropped)}; widen the terminal or use --json)"))


def _render_list(title: str, columns: Sequence[Col], rows: Sequence[Mapping[str, Any]], out: Any,
                 width: int) -> None:
    """One block per row: the first column on its own line, then ``header: value`` lines."""
    from rich.text import Text

    lines = [title]
    first, rest = columns[0], columns[1:]
    for row in rows:
        lines.append(_cell(row.get(first.key)))
        for c in rest:
            value = _cell(row.get(c.key))
            if not value:
                continue
            lead = f"  {c.header}: "
            for i, part in enumerate(value.splitlines()):
                prefix = lead if i == 0 else " " * len(lead)
                if c.kind == "id":  # never split: one line, however long
                    lines.append(prefix + part)
                    continue
                wrapped = textwrap.wrap(part, width=max(width - len(prefix), 20), break_long_words=False,
                                        break_on_hyphens=False) or [""]
                lines.append(prefix + wrapped[0])
                lines.extend(" " * len(prefix) + w for w in wrapped[1:])
    # soft_wrap: the console never inserts a line break inside a long identifier
    out.print(Text("\n".join(lines)), soft_wrap=True)
