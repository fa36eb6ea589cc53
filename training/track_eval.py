"""`emotrack evaluate-track`: the published track scored on streams of speakers an engine never heard.

Once per stream set and engine, the streams (``training.track_streams``) run through the real daemon
(file sources, unpaced: VAD, 2 s windows, batcher, engine, tracker) with centring off, into conversation
logs under WORK. Every smoothing/adaptation setting is then replayed over those logs' raw window scores
(``streamer.replay.resmooth``, what `emotrack replay` does), so a grid of settings costs seconds, and
scored by ``training.track_figures``. A corpus is given with the engine that scores it
(``--engine DIR:CORPUS,...``), so leave-one-corpus-out folds each score the corpus their engine never saw;
a speaker the engine's provenance lists among its training speakers is left out (and said so).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from streamer.centring import CentringConfig
from streamer.convlog import Conversation, read_conversations
from streamer.records import UtteranceRecord, WindowRecord
from streamer.replay import resmooth
from streamer.smoothing import SmoothingConfig
from training.data.types import Utterance
from training.track_figures import KindFigures, StreamOutcome, figures_by_kind, stream_outcome
from training.track_streams import KINDS, ClipSpan, StreamPlan, plan_speaker, render, usable

CORPORA = ("ravdess", "tess", "ased", "nemo")
RAVDESS_TEST = tuple(f"ravdess_{a:02d}" for a in range(19, 25))
PER_PART = {"ased": 8, "nemo": 4, "ravdess": 6, "tess": 1}  # speakers per part (bounded run time)
STREAMS_PER_RUN = 4  # streams per daemon run


class TrackEvalError(Exception):
    """A user-caused failure (bad engine/corpus pair, a speaker the engine trained on): one line."""


@dataclass(frozen=True)
class Setting:
    name: str
    smoothing: SmoothingConfig
    centring: CentringConfig


@dataclass(frozen=True)
class EngineJob:
    engine: Path | None  # None: the bundled default
    corpora: tuple[str, ...]


def parse_engine_pairs(items: Sequence[str]) -> list[EngineJob]:
    """``DIR:CORPUS[,CORPUS]`` (``default`` names the bundled engine); each corpus once."""
    jobs, seen = [], set[str]()
    for item in items:
        path, sep, names = item.rpartition(":")
        corpora = tuple(n.strip().lower() for n in names.split(",") if n.strip())
        if not sep or not path or not corpora:
            raise TrackEvalError(f"--engine {item!r}: expected DIR:CORPUS[,CORPUS...]")
        bad = [c for c in corpora if c not in CORPORA]
        if bad:
            raise TrackEvalError(f"--engine {item!r}: unknown corpus {bad[0]!r} ({', '.join(CORPORA)})")
        twice = seen.intersection(corpora)
        if twice:
            raise TrackEvalError(f"--engine {item!r}: corpus {sorted(twice)[0]} is given twice")
        seen.update(corpora)
        jobs.append(EngineJob(None if path == "default" else Path(path), corpora))
    return jobs


def select_speakers(corpus: str, utts: Sequence[Utterance], part: str, seed: int = 0) -> list[str]:
    """A seeded, disjoint dev and test sample of the corpus's speakers (RAVDESS test: actors 19-24;
    RAVDESS dev: six of actors 1-18, for engines that never heard RAVDESS)."""
    by_speaker: dict[str, list[Utterance]] = {}
    for u in utts:
        by_speaker.setdefault(u.speaker, []).append(u)
    if corpus == "ravdess":
        pool = [s for s in sorted(by_speaker) if (s in RAVDESS_TEST) == (part == "test")]
        if part == "test":
            return [s for s in pool if usable(by_speaker[s])]
    else:
        pool = sorted(by_speaker)
    pool = [s for s in pool if usable(by_speaker[s])]
    order = [pool[int(i)] for i in np.random.default_rng(seed).permutation(len(pool))]
    n = PER_PART[corpus]
    if corpus == "ravdess":
        return sorted(order[:n])
    return sorted(order[:n] if part == "dev" else order[n : 2 * n])


def trained_speakers(engine_dir: Path) -> set[str]:
    """Speakers the engine's provenance says it was trained on (empty if it does not say)."""
    try:
        manifest = json.loads((engine_dir / "engine.json").read_text())
    except (OSError, ValueError) as e:
        raise TrackEvalError(f"{engine_dir}: cannot read engine.json ({e})") from None
    text = str(manifest.get("provenance", {}).get("training_data", ""))
    m = re.search(r"train speakers: ([^;]*)", text)
    return {s.strip() for s in m.group(1).split(",")} if m else set()


def engine_dir(job: EngineJob) -> Path:
    from engines import default_engine_path

    return default_engine_path() if job.engine is None else job.engine


def plan(
    corpora_root: Path, jobs: Sequence[EngineJob], part: str, seed: int, log: Any = print
) -> list[tuple[int, StreamPlan]]:
    """Every job's streams (job index, plan), leaving out (and saying so) speakers its engine trained on."""
    from training.data.corpora import load_corpus

    out = []
    for j, job in enumerate(jobs):
        seen = trained_speakers(engine_dir(job))
        for corpus in job.corpora:
            utts = load_corpus(corpus, corpora_root / corpus)
            chosen = select_speakers(corpus, utts, part, seed)
            heard = [s for s in chosen if s in seen]
            if heard:
                log(f"left out: {', '.join(heard)} (engine {engine_dir(job)} trained on them)")
            for speaker in (s for s in chosen if s not in seen):
                own = [u for u in utts if u.speaker == speaker]
                out += [(j, p) for p in plan_speaker(own, seed)]
    if not out:
        raise TrackEvalError(f"no speaker in part {part!r} that its engine never trained on")
    return out


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:12]


def build(
    corpora_root: Path, jobs: Sequence[EngineJob], part: str, work: Path, seed: int = 0, log: Any = print
) -> dict[str, Any]:
    """Render the streams and run each job's through the daemon, once (cached in WORK); the index of
    streams with their spans and log directories."""
    plans = plan(corpora_root, jobs, part, seed, log)
    key = _key([p.stream for _, p in plans], [str(engine_dir(j).resolve()) for j in jobs], seed)
    index_path = work / f"index_{part}_{key}.json"
    if index_path.is_file():
        return dict(json.loads(index_path.read_text()))
    streams: dict[str, Any] = {}
    for j, job in enumerate(jobs):
        mine = [p for k, p in plans if k == j]
        edir = engine_dir(job)
        ekey = _key(str(edir.resolve()), (edir / "engine.json").read_text())
        logdir = work / "logs" / ekey
        for at in range(0, len(mine), STREAMS_PER_RUN):
            batch = mine[at : at + STREAMS_PER_RUN]
            wavs = []
            for p in batch:
                wav = work / "audio" / f"{p.stream}.wav"
                spans = render(p, wav, seed)
                streams[p.stream] = {
                    "kind": p.kind,
                    "speaker": p.speaker,
                    "corpus": p.corpus,
                    "logs": str(logdir / p.stream),
                    "end_s": float(sf.info(str(wav)).duration),
                    "spans": [dataclasses.asdict(s) for s in spans],
                }
                wavs.append(wav)
            log(f"daemon: {', '.join(p.stream for p in batch)} ({edir.name})")
            asyncio.run(record(job.engine, wavs, logdir))
            for wav in wavs:
                wav.unlink()
    index = {"part": part, "seed": seed, "streams": streams}
    index_path.parent.mkdir(parents=True, exist_ok=True)
    index_path.write_text(json.dumps(index))
    return index


async def record(engine: Path | None, wavs: Sequence[Path], logdir: Path) -> None:
    """One unpaced daemon run over the files (one stream each), centring off, logging every record."""
    from streamer.config import load_config
    from streamer.daemon import Daemon
    from streamer.service import load_configured_engine
    from streamer.sources.spec import SourceSpec, open_source

    flags: dict[str, Any] = {
        "logs": {"enabled": False},
        "stdout": "off",
        "centring": {"enabled": False},
    }
    if engine is not None:
        flags["engine"] = {"path": str(engine)}
    cfg = load_config(None, environ={}, flags=flags)
    cfg = dataclasses.replace(cfg, daemon=dataclasses.replace(cfg.daemon, realtime=False, watchdog=False))
    loaded = await load_configured_engine(cfg)
    opened = []
    for f in wavs:
        spec = SourceSpec(kind="file", target=str(f), stream_id=f.stem, text=str(f))
        opened.append((spec, open_source(spec, chunk_ms=cfg.inference.chunk_ms)))
    from streamer.sinks.logfile import ConversationLog, LogConfig

    sink = ConversationLog(
        LogConfig(logdir, rotate_bytes=cfg.logs.rotate_bytes, rotate_seconds=None, fsync=False),
        sources={f.stem: str(f) for f in wavs},
    )
    await Daemon(cfg, loaded, [sink], sources=opened).run()


@dataclass
class Loaded:
    conv: Conversation
    kind: str
    corpus: str
    spans: list[ClipSpan]
    end_s: float


def load(index: dict[str, Any]) -> list[Loaded]:
    out = []
    for stream, s in index["streams"].items():
        convs = [c for c in read_conversations([Path(s["logs"])]) if c.stream == stream]
        if not convs:
            raise TrackEvalError(f"no log of stream {stream} under {s['logs']}")
        conv = convs[-1]
        spans = [ClipSpan(**c) for c in s["spans"]]
        out.append(Loaded(conv, s["kind"], s["corpus"], spans, float(s["end_s"])))
    return out


def dropped(streams: Sequence[Loaded]) -> int:
    return sum(u.dropped for s in streams for u in s.conv.utterances)


def outcomes(streams: Sequence[Loaded], setting: Setting) -> dict[str, list[tuple[str, StreamOutcome]]]:
    """Per kind: (corpus, outcome) of each stream replayed under the setting."""
    out: dict[str, list[tuple[str, StreamOutcome]]] = {k: [] for k in KINDS}
    for s in streams:
        recs = resmooth(s.conv, setting.smoothing, setting.centring)
        windows = [r for r in recs if isinstance(r, WindowRecord)]
        utts = [r for r in recs if isinstance(r, UtteranceRecord)]
        out[s.kind].append((s.corpus, stream_outcome(s.spans, windows, utts, s.end_s)))
    return out


def score(streams: Sequence[Loaded], setting: Setting) -> dict[str, Any]:
    """Figures per kind (pooled) and per kind and corpus."""
    per = outcomes(streams, setting)
    pooled: dict[str, KindFigures] = figures_by_kind({k: [o for _, o in v] for k, v in per.items() if v})
    by_corpus = {
        f"{k}/{c}": f.to_dict()
        for k, v in per.items()
        for c in sorted({c for c, _ in v})
        for f in [figures_by_kind({k: [o for cc, o in v if cc == c]})[k]]
    }
    return {
        "setting": setting.name,
        "smoothing": dataclasses.asdict(setting.smoothing),
        "centring": dataclasses.asdict(setting.centring),
        "kinds": {k: f.to_dict() for k, f in pooled.items()},
        "by_corpus": by_corpus,
    }
