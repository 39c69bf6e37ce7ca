"""The one table printer of the bench scripts: rows of {column: value}, columns in first-seen order."""

from __future__ import annotations


def print_rows(rows: list[dict[str, object]]) -> None:
    """Print ``rows`` as an aligned `a | b` table; a row without a column prints it empty."""
    columns = [c for c in dict.fromkeys(k for r in rows for k in r) if not c.startswith("_")]
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    print(" | ".join(c.ljust(widths[c]) for c in columns))
    print("-|-".join("-" * widths[c] for c in columns))
    for r in rows:
        print(" | ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns))
