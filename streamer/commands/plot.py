"""``emotrack plot``: draw the emotion trajectory of conversation logs (PNG and/or one HTML page)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

HELP = "plot the emotion trajectory of conversation logs (PNG, self-contained HTML)"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser("plot", help=HELP, description=HELP)
    p.add_argument("logs", nargs="+", type=Path, metavar="LOG", help="conversation logs (.jsonl) or dirs")
    p.add_argument("--out", type=Path, metavar="FILE.png", help="PNG to write (default: emotrack-plot.png)")
    p.add_argument("--html", type=Path, metavar="FILE.html", help="also write one self-contained HTML page")
    p.add_argument("--stream", action="append", metavar="ID", help="only these streams (repeatable)")
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    return p


def run(args: argparse.Namespace) -> int:
    from streamer.convlog import read_conversations
    from streamer.plot import PlotError, write_outputs

    convs = read_conversations(args.logs)
    if args.stream:
        convs = [c for c in convs if c.stream in set(args.stream)]
        if not convs:
            raise PlotError(f"no conversation of stream(s) {', '.join(args.stream)} in the logs")
    png = args.out
    if png is None and args.html is None:
        png = Path("emotrack-plot.png")
    written = write_outputs(convs, png, args.html)
    if args.json:
        print(json.dumps({"written": [str(p) for p in written], "streams": [c.stream for c in convs]}))
    else:
        for p in written:
            print(f"wrote {p} ({len(convs)} lane(s))")
    return 0
