"""``--find-max``: the most concurrent streams a setting sustains (p95 within bound, nothing dropped).

Doubling from a start count until a trial fails (or the cap), then bisection between the last pass and
the first failure, until the gap is within ``resolution`` of the passing count. Each trial is reported as
it finishes. Latency grows with load but not strictly (other processes share the cores), so the result is
"sustained in these trials", not a guarantee.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Trial = Callable[[int], Awaitable[dict[str, Any]]]
Report = Callable[[dict[str, Any]], None]


async def find_max(
    trial: Trial, *, start: int = 1, cap: int = 256, resolution: float = 0.1, report: Report | None = None
) -> dict[str, Any]:
    """Search for the largest passing stream count; returns ``{max_streams, best, trials}``."""
    if start < 1 or cap < start:
        raise ValueError(f"find-max needs 1 <= start <= cap (got start {start}, cap {cap})")
    trials: list[dict[str, Any]] = []
    passed: dict[str, Any] | None = None
    best, fail = 0, None

    async def attempt(n: int) -> bool:
        nonlocal passed, best
        r = await trial(n)
        trials.append(r)
        if report is not None:
            report(r)
        if r["ok"] and n > best:
            best, passed = n, r
        return bool(r["ok"])

    n = start
    while True:
        if not await attempt(n):
            fail = n
            break
        if n >= cap:
            break
        n = min(cap, n * 2)
    if fail is not None:
        lo = best if best else 0
        while fail - lo > max(1, round(lo * resolution)):
            mid = (lo + fail) // 2
            if await attempt(mid):
                lo = mid
            else:
                fail = mid
    return {"max_streams": best, "first_failing": fail, "best": passed, "trials": trials}
