"""``emotrack bench``: the whole pipeline for N concurrent real-time streams, measured end to end."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HELP = "measure latency, CPU and memory of the whole pipeline for N concurrent streams"


def _threads(text: str) -> tuple[int | None, int | None]:
    intra, _, inter = text.partition(":")
    try:
        a = int(intra) if intra else None
        b = int(inter) if inter else None
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--threads {text!r}: expected INTRA or INTRA:INTER (integers)"
        ) from None
    if (a is not None and a < 1) or (b is not None and b < 1):
        raise argparse.ArgumentTypeError(f"--threads {text!r}: thread counts must be >= 1")
    return a, b


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return v


def _nonneg_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return v


def _positive_float(text: str) -> float:
    v = _nonneg_float(text)
    if v == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return v


def _sweep(
    p: argparse.ArgumentParser, flag: str, kind: Callable[[str], Any], default: Any, metavar: str, text: str
) -> None:
    """A setting the bench can sweep (one trial per value), defaulting to the daemon's own value."""
    text = f"{text} (default: the daemon's, {default})"
    p.add_argument(flag, type=kind, nargs="+", default=[default], metavar=metavar, help=text)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    from streamer.config import InferenceSection

    daemon = InferenceSection()  # the bench runs the daemon's defaults unless told otherwise
    p: argparse.ArgumentParser = sub.add_parser(
        "bench",
        help=HELP,
        description=f"{HELP}: paced audio files → VAD → windows → batched inference → smoothing → MQTT "
        "(real broker, subscriber in its own process) and conversation logs. Prints one JSON object "
        "with --json. List values (--threads 1 2:1) run every combination.",
    )
    p.add_argument("--streams", type=_positive_int, default=4, help="concurrent streams (find-max: start)")
    p.add_argument("--seconds", type=_positive_float, default=20.0, help="audio seconds per stream")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--engine", type=Path, metavar="DIR", help="engine directory (default: bundled)")
    src.add_argument(
        "--standin",
        choices=["realtime", "heavy"],
        help="random-weight stand-in engine (exported once to a cache dir; needs the train extra)",
    )
    src.add_argument("--heavy", action="store_true", help="same as --standin heavy (wav2vec2-base size)")
    p.add_argument(
        "--backend",
        choices=["onnxruntime", "torch"],
        default="onnxruntime",
        help="onnxruntime: ours (batched); torch: the research way (eager, one window per call)",
    )
    p.add_argument(
        "--compare",
        action="store_true",
        help="find-max ours, then the research way, on the same files; report the ratio",
    )
    p.add_argument("--find-max", action="store_true", help="search the most streams within the bound")
    p.add_argument("--max-streams", type=_positive_int, default=256, help="find-max: largest count tried")
    p.add_argument(
        "--resolution", type=_nonneg_float, default=0.1, help="find-max: stop bisecting within this fraction"
    )
    p.add_argument("--p95-bound-ms", type=_nonneg_float, default=150.0, help="find-max: p95 latency bound")
    p.add_argument(
        "--bound-on",
        choices=["pipeline", "window-end"],
        default="window-end",
        help="what the bound limits: latency from the window's end in audio time (default: the issue's "
        "definition; holds the wait for the rest of the source chunk), or only what the pipeline adds "
        "after the completing chunk arrived",
    )
    p.add_argument(
        "--threads",
        type=_threads,
        nargs="+",
        metavar="INTRA[:INTER]",
        help="engine threads (default: runtime's)",
    )
    _sweep(p, "--max-batch", _positive_int, daemon.max_batch, "N", "windows per engine call")
    _sweep(p, "--max-wait-ms", _nonneg_float, daemon.max_wait_ms, "MS", "wait for a batch to fill")
    _sweep(p, "--workers", _positive_int, daemon.workers, "N", "engine calls at once (ours; research: 1)")
    p.add_argument(
        "--max-pending",
        type=_positive_int,
        default=daemon.max_pending,
        metavar="N",
        help="batcher queue bound",
    )
    p.add_argument(
        "--chunk-ms",
        type=_nonneg_float,
        default=daemon.chunk_ms,
        metavar="MS",
        help="source chunk size (the daemon default)",
    )
    p.add_argument(
        "--stagger",
        action="store_true",
        help="spread stream starts over one chunk period (default: every stream's chunk arrives at once, "
        "the worst case)",
    )
    p.add_argument(
        "--engine-cost",
        action="store_true",
        help="time the engine alone instead: CPU and wall ms per window, ours (ONNX Runtime at batch 1 and "
        "--max-batch) and the research way (PyTorch eager, batch 1), per --threads INTRA (default 1 and 2)",
    )
    p.add_argument("--no-warmup", action="store_true", help="do not call the engine once before measuring")
    p.add_argument("--mqtt", metavar="URL", help="use this broker (default: start mosquitto, else amqtt)")
    p.add_argument(
        "--corpora",
        type=Path,
        metavar="DIR",
        help="corpora root (default: $EMOTRACK_CORPORA, else ../shared/corpora from the working directory)",
    )
    p.add_argument("--workdir", type=Path, metavar="DIR", help="where temp audio and logs go")
    p.add_argument(
        "--json",
        action="store_true",
        help="the result (JSON either way) on one line instead of indented, and each trial's progress on "
        "stderr as a JSON line instead of text",
    )
    return p


def _engine_path(args: argparse.Namespace) -> str | None:
    from engines import EngineError, resolve_engine_path

    kind = "heavy" if args.heavy else args.standin
    if kind is not None:
        from streamer.bench.standin import standin_engine

        def note(path: Path) -> None:
            print(f"emotrack bench: exporting the {kind} stand-in engine to {path} (once)", file=sys.stderr)

        return str(standin_engine(kind, on_build=note))
    path = resolve_engine_path(args.engine)
    if not (path / "engine.json").is_file():
        hint = " (no default engine is bundled yet: pass --engine DIR or --standin realtime)"
        raise EngineError(f"{path}: not an engine directory{'' if args.engine else hint}")
    research = args.backend == "torch" or args.compare
    if research and importlib.util.find_spec("torch") is None:
        raise EngineError(
            "the research way (--backend torch, --compare) runs the model in PyTorch, which is not "
            "installed: pip install 'emotrack[train]'"
        )
    if research and not (path / "torch" / "config.json").is_file():
        raise EngineError(
            f"{path / 'torch' / 'config.json'}: not found (--backend torch/--compare need the engine's "
            "PyTorch copy, written by training.torch_copy.save_torch_copy)"
        )
    return str(path) if args.engine is not None else None


def _line(r: dict[str, Any]) -> str:
    lat, pipe, cpu = r["latency_ms"], r["pipeline_latency_ms"], r["cpu"]
    return (
        f"{r['backend']:>11} streams {r['streams']:>3}: window-end p50/p95/max {lat['p50']}/{lat['p95']}/"
        f"{lat['max']} ms, pipeline {pipe['p50']}/{pipe['p95']}/{pipe['max']} ms, "
        f"scored {r['windows_scored']} dropped {r['windows_dropped']} missing {r['windows_missing']}, "
        f"cpu/stream {cpu['per_stream']:.3f} (non-engine {cpu['non_engine_per_stream']:.3f}), "
        f"rss {r['peak_rss_mb']} MB {'ok' if r['ok'] else 'FAIL'}"
    )


def _engine_cost(args: argparse.Namespace, engine: str | None) -> int:
    from streamer.bench.enginecost import engine_cost

    threads = sorted({t for t, _ in args.threads if t is not None}) if args.threads else [1, 2]
    result = engine_cost(Path(engine) if engine else None, threads=threads, batch=args.max_batch[0])
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


def run(args: argparse.Namespace) -> int:
    from engines import EngineError
    from streamer.bench.audio import BenchAudioError
    from streamer.bench.broker import BenchBrokerError
    from streamer.bench.runner import BenchError, Settings
    from streamer.bench.session import BenchRequest, run_bench

    try:
        engine = _engine_path(args)
        if args.engine_cost:
            return _engine_cost(args, engine)
        req = BenchRequest(
            streams=args.streams,
            seconds=args.seconds,
            base=Settings(
                engine=engine,
                backend=args.backend,
                max_pending=args.max_pending,
                chunk_ms=args.chunk_ms,
                warmup=not args.no_warmup,
                stagger=args.stagger,
            ),
            threads=args.threads or [(None, None)],
            max_batch=args.max_batch,
            max_wait_ms=args.max_wait_ms,
            workers=args.workers,
            find_max=args.find_max or args.compare,
            compare=args.compare,
            max_streams=max(args.max_streams, args.streams),
            resolution=args.resolution,
            p95_bound_ms=args.p95_bound_ms,
            bound_on=args.bound_on,
            mqtt_url=args.mqtt,
            corpora=args.corpora,
            workdir=args.workdir,
        )

        def report(r: dict[str, Any]) -> None:
            print(json.dumps(r) if args.json else _line(r), file=sys.stderr, flush=True)

        result = asyncio.run(run_bench(req, report))
    except (EngineError, BenchError, BenchBrokerError, BenchAudioError) as exc:
        print(f"emotrack: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=None if args.json else 2))
    return 0
