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


def machine() -> str:
    """The machine a timing was taken on, for the table's header: CPU model and clock, CPU count, load average.

    Why: the same 2-core kind of machine has run 1.8× slower on one day than on another (docs/results.md,
    2026-12-06 (fresh machine)), so a timing without its machine cannot be compared with another.
    """
    import os
    import platform

    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())  # the first CPU's
    except OSError:
        pass
    model = fields.get("model name") or platform.processor() or platform.machine()
    clock = f" @ {float(fields['cpu MHz']):.0f} MHz" if "cpu MHz" in fields else ""
    return f"{model}{clock}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
