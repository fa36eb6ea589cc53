"""The no-microphone demo: espeak-ng speech whose arousal is known, and how well a track follows it.

Calm segments are slow, low and soft; excited ones fast, high and loud (SSML ``<prosody>``), in
several voices, so a watcher of ``emotrack listen`` sees arousal rise and fall on cue. The audio is
synthesised once into a cache directory (keyed by the script and the espeak-ng version) with a
timeline of its segments, which ``score`` uses to measure the separation a run achieved.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf

from streamer.errors import EmotrackError
from streamer.records import WindowRecord

Kind = Literal["calm", "excited"]
GAP_S = 1.0  # silence between segments: the VAD ends the utterance, as between real sentences
CALM = {"rate": "x-slow", "pitch": "x-low", "range": "x-low", "volume": "x-soft"}
EXCITED = {"rate": "x-fast", "pitch": "x-high", "range": "x-high", "volume": "x-loud"}


class DemoError(EmotrackError):
    """espeak-ng is missing or failed; one line naming it."""


@dataclass(frozen=True, slots=True)
class Line:
    """One segment of the script: what is said, by which espeak-ng voice, in which mood."""

    kind: Kind
    voice: str
    text: str


SCRIPT: tuple[Line, ...] = (
    Line(
        "calm",
        "en-us",
        "Good evening. I am sitting by the window, and the rain is falling softly. "
        "There is nothing I need to do tonight.",
    ),
    Line(
        "excited",
        "en-us",
        "Oh wow, did you see that? We actually won the final! I can't believe it, this is incredible! "
        "Come on, everybody, let's celebrate right now! Turn the music up!",
    ),
    Line(
        "calm",
        "en",
        "The lake is very still this morning. A few birds move slowly over the water, "
        "and the air is cool and quiet.",
    ),
    Line(
        "excited",
        "en",
        "Hurry up, hurry up, the train is leaving! Grab the bags and run! Run! "
        "We are going to make it, I know we are going to make it! Faster, faster!",
    ),
    Line(
        "calm",
        "en+f3",
        "Let me read you something gentle before you sleep. Close your eyes, breathe slowly, "
        "and let the day drift away.",
    ),
    Line(
        "excited",
        "en+f3",
        "No way! You got the tickets? Front row? That is amazing! I am so excited, I could scream! "
        "Thank you, thank you, thank you!",
    ),
    Line(
        "calm",
        "en+m3",
        "I walked home along the river. The lights were low, the streets were empty, "
        "and I was tired, but at peace.",
    ),
    Line(
        "excited",
        "en+m3",
        "Stop! Look out! The dog is running into the road! Quick, grab him, grab him now! "
        "Oh my goodness, that was close! That was so close!",
    ),
)


@dataclass(frozen=True, slots=True)
class Segment:
    """Where one line lies in the demo audio (seconds from its start)."""

    kind: Kind
    voice: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class DemoAudio:
    path: Path
    duration: float  # seconds of one pass (segments and gaps)
    segments: tuple[Segment, ...]


def ssml(line: Line) -> str:
    """The line wrapped in the prosody of its kind."""
    p = CALM if line.kind == "calm" else EXCITED
    attrs = " ".join(f'{k}="{v}"' for k, v in p.items())
    text = line.text.replace("&", "and").replace("<", " ").replace(">", " ")
    return f"<speak><prosody {attrs}>{text}</prosody></speak>"


def espeak_version(espeak: str) -> str:
    try:
        r = subprocess.run([espeak, "--version"], capture_output=True, text=True, timeout=30)
    except OSError as exc:
        raise DemoError(f"cannot run espeak-ng ({espeak}): {exc.strerror or exc}") from None
    return r.stdout.strip()


def _speak(espeak: str, line: Line, out: Path) -> tuple[np.ndarray, int]:
    try:
        r = subprocess.run(
            [espeak, "-v", line.voice, "-m", "-w", str(out), ssml(line)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DemoError(f"espeak-ng failed on voice {line.voice}: {exc}") from None
    if r.returncode != 0 or not out.is_file():
        reason = " ".join(r.stderr.split()) or f"exit {r.returncode}"
        raise DemoError(f"espeak-ng failed on voice {line.voice}: {reason}")
    data, rate = sf.read(str(out), dtype="float32", always_2d=True)
    return data[:, 0], int(rate)


def cache_key(script: Sequence[Line], version: str, loops: int) -> str:
    blob = json.dumps([[asdict(x) for x in script], CALM, EXCITED, GAP_S, version, loops])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def synthesise(
    cache_dir: Path, *, script: Sequence[Line] = SCRIPT, loops: int = 1, espeak: str | None = None
) -> DemoAudio:
    """The demo wav (``loops`` passes back to back) and its one-pass timeline, from the cache if there.

    Nothing is left outside ``cache_dir``: espeak-ng writes into a temporary directory inside it,
    removed at once, and the result is renamed into place so an interrupted run leaves no half file.
    """
    exe = espeak or shutil.which("espeak-ng")
    if exe is None:
        raise DemoError("the demo needs espeak-ng (apt-get install espeak-ng)")
    key = cache_key(script, espeak_version(exe), loops)
    wav, meta = cache_dir / f"demo-{key}.wav", cache_dir / f"demo-{key}.json"
    if wav.is_file() and meta.is_file():
        try:
            d = json.loads(meta.read_text())
            segs = tuple(Segment(**s) for s in d["segments"])
            return DemoAudio(wav, float(d["duration"]), segs)
        except (ValueError, KeyError, TypeError):
            pass  # a damaged cache entry: synthesise again
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DemoError(f"demo cache {cache_dir}: cannot create ({exc.strerror or exc})") from None
    parts: list[np.ndarray] = []
    segments: list[Segment] = []
    rate = 0
    t = 0
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".synth-") as tmp:
        for i, line in enumerate(script):
            audio, r = _speak(exe, line, Path(tmp) / f"{i}.wav")
            if rate and r != rate:
                raise DemoError(f"espeak-ng voice {line.voice} speaks at {r} Hz, the others at {rate}")
            rate = r
            gap = np.zeros(round(GAP_S * r), dtype=np.float32)
            segments.append(Segment(line.kind, line.voice, t / r, (t + len(audio)) / r))
            parts += [audio, gap]
            t += len(audio) + len(gap)
        one = np.concatenate(parts)
        part = Path(tmp) / "demo.wav"
        sf.write(str(part), np.tile(one, loops), rate, subtype="PCM_16")
        os.replace(part, wav)
    duration = len(one) / rate
    meta.write_text(json.dumps({"duration": duration, "segments": [asdict(s) for s in segments]}))
    for old in cache_dir.glob("demo-*.*"):  # one entry kept: older scripts, voices or loop counts go
        if old not in (wav, meta):
            old.unlink(missing_ok=True)
    return DemoAudio(wav, duration, tuple(segments))


def kind_at(audio: DemoAudio, start: float, end: float) -> Kind | None:
    """The kind of segment covering most of the window [start, end] (modulo one pass); None: mostly gap."""
    best: tuple[float, Kind | None] = (0.0, None)
    span = max(end - start, 1e-9)
    for k in range(int(start // audio.duration), int(end // audio.duration) + 1):
        off = k * audio.duration
        for s in audio.segments:
            overlap = min(end, s.end + off) - max(start, s.start + off)
            if overlap > best[0]:
                best = (overlap, s.kind)
    return best[1] if best[0] >= 0.5 * span else None


@dataclass(frozen=True, slots=True)
class KindScore:
    windows: int
    raw_arousal: float | None
    smoothed_arousal: float | None


@dataclass(frozen=True, slots=True)
class DemoScore:
    """Mean arousal per segment kind, and how often an excited window beats the calm mean."""

    calm: KindScore
    excited: KindScore
    raw_separation: float | None  # excited mean - calm mean
    smoothed_separation: float | None
    raw_above_calm: float | None  # share of excited windows above the calm windows' mean (raw)
    smoothed_above_calm: float | None
    auc_raw: float | None  # P(a random excited window's raw arousal > a random calm one's)
    auc_smoothed: float | None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _mean(xs: Sequence[float]) -> float | None:
    return round(float(np.mean(xs)), 4) if xs else None


def _auc(hi: Sequence[float], lo: Sequence[float]) -> float | None:
    if not hi or not lo:
        return None
    a, b = np.asarray(hi)[:, None], np.asarray(lo)[None, :]
    return round(float(np.mean((a > b) + 0.5 * (a == b))), 4)


def _above(xs: Sequence[float], mean: float | None) -> float | None:
    return None if not xs or mean is None else round(float(np.mean(np.asarray(xs) > mean)), 4)


def score(audio: DemoAudio, windows: Iterable[WindowRecord]) -> DemoScore:
    """Arousal of a run's windows by the kind of segment they fall in (gap windows are left out)."""
    raw: dict[Kind, list[float]] = {"calm": [], "excited": []}
    smo: dict[Kind, list[float]] = {"calm": [], "excited": []}
    for w in windows:
        kind = kind_at(audio, w.start, w.end)
        if kind is None:
            continue
        if w.raw.arousal is not None:
            raw[kind].append(float(w.raw.arousal))
        if w.smoothed.arousal is not None:
            smo[kind].append(float(w.smoothed.arousal))

    def kscore(k: Kind) -> KindScore:
        return KindScore(max(len(raw[k]), len(smo[k])), _mean(raw[k]), _mean(smo[k]))

    calm, exc = kscore("calm"), kscore("excited")

    def sep(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round(a - b, 4)

    return DemoScore(
        calm=calm,
        excited=exc,
        raw_separation=sep(exc.raw_arousal, calm.raw_arousal),
        smoothed_separation=sep(exc.smoothed_arousal, calm.smoothed_arousal),
        raw_above_calm=_above(raw["excited"], calm.raw_arousal),
        smoothed_above_calm=_above(smo["excited"], calm.smoothed_arousal),
        auc_raw=_auc(raw["excited"], raw["calm"]),
        auc_smoothed=_auc(smo["excited"], smo["calm"]),
    )


__all__ = ["SCRIPT", "DemoAudio", "DemoError", "DemoScore", "Line", "Segment", "score", "synthesise"]
