"""Figures of a fault-injection test: printed (``pytest -s``) and written as JSON when asked.

``EMOTRACK_FAULT_REPORT=<dir>`` collects one ``<test name>.json`` per test in that directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def delivery_figures(sent: Iterable[int], received: Iterable[int]) -> dict[str, Any]:
    """Sent/received/duplicated/lost counts from the seqs sent and every seq received (with repeats)."""
    sent_set = set(sent)
    got = list(received)
    distinct = set(got)
    return {
        "sent": len(sent_set),
        "received": len(distinct & sent_set),
        "deliveries": len(got),
        "duplicated": len(got) - len(distinct),
        "lost": len(sent_set - distinct),
        "unexpected": len(distinct - sent_set),
    }


def report(name: str, figures: dict[str, Any]) -> dict[str, Any]:
    """Print the figures on one line and store them under $EMOTRACK_FAULT_REPORT if set."""
    print(f"\n[fault] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    out = os.environ.get("EMOTRACK_FAULT_REPORT")
    if out:
        d = Path(out)
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{name}.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return figures


def first_arrivals(seqs: Iterable[int]) -> list[int]:
    """Seqs in the order they first arrived (a subscriber dropping duplicates by seq sees this)."""
    seen: set[int] = set()
    out = []
    for s in seqs:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out
