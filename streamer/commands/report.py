"""``emotrack report``: per-speaker summary of conversation logs (time per emotion, V/A/D, turns)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

HELP = "summarise conversation logs per speaker (text or --json)"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser("report", help=HELP, description=HELP)
    p.add_argument("logs", nargs="+", type=Path, metavar="LOG", help="conversation logs (.jsonl) or dirs")
    p.add_argument("--json", action="store_true", help="one JSON object per conversation")
    return p


def run(args: argparse.Namespace) -> int:
    from streamer.convlog import read_conversations
    from streamer.report import format_text, summarise

    summaries = [summarise(c) for c in read_conversations(args.logs)]
    if args.json:
        for s in summaries:
            print(json.dumps(s.to_dict(), ensure_ascii=False))
    else:
        print(format_text(summaries), end="")
    return 0
