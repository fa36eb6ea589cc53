"""The abstention measurement (docs/abstention.md): false emotions on non-speech, speech kept.

Every window the daemon's segmenter cuts (webrtcvad + windows, gate off) would be scored and publish an
emotion; the window gate decides which of them still are. So the figures need no engine: the false
emotion rate of a non-speech kind is the share of its windows the gate lets through, and a corpus's
speech kept is the share of its windows the gate lets through. The non-speech set is generated here at
run time (sox and numpy; never committed): two disjoint parameter sets, ``dev`` and ``test``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf

from streamer.errors import EmotrackError
from streamer.messages import SAMPLE_RATE, AudioChunk, FloatArray, SpeechWindow
from streamer.segmenter import Segmenter, WindowConfig
from streamer.speechgate import GateThresholds, WindowFeatures, window_features
from streamer.vad import VadConfig

SR = SAMPLE_RATE
SECONDS = 10.0
CORPORA = {"ravdess": "*/*.flac", "tess": "*/*.flac", "ased": "*/*.opus", "nemo": "*/*.opus"}


def _sox(*synth: str, seconds: float = SECONDS, effects: tuple[str, ...] = ()) -> FloatArray:
    cmd = ["sox", "-R", "-n", "-r", str(SR), "-c", "1", "-t", "f32", "-", "synth", str(seconds), *synth]
    out = subprocess.run([*cmd, *effects], capture_output=True, check=True).stdout
    return np.frombuffer(out, dtype="<f4").astype(np.float32)


def _hum(f0: float, rng: np.random.Generator, level: float) -> FloatArray:
    t = np.arange(int(SECONDS * SR)) / SR
    x = sum((0.7**h) * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6.28)) for h in range(1, 10))
    x = np.asarray(x) + 0.002 * rng.standard_normal(len(t))
    return (level * x / np.max(np.abs(x))).astype(np.float32)


def _clicks(rate: float, rng: np.random.Generator) -> FloatArray:
    x = 0.001 * rng.standard_normal(int(SECONDS * SR))
    for start in np.arange(0.1, SECONDS - 0.01, 1.0 / rate):
        i = int(start * SR)
        x[i : i + 40] += 0.8 * np.exp(-np.arange(40) / 8.0) * rng.choice([-1, 1], 40)
    return x.astype(np.float32)


_DTMF = {
    d: (r, c)
    for d, (r, c) in zip(
        "123456789*0#", [(r, c) for r in (697, 770, 852, 941) for c in (1209, 1336, 1477)], strict=True
    )
}


def _dtmf(digits: str, on_s: float, off_s: float) -> FloatArray:
    parts: list[FloatArray] = []
    t = np.arange(int(on_s * SR)) / SR
    while sum(len(p) for p in parts) < SECONDS * SR:
        for d in digits:
            lo, hi = _DTMF[d]
            parts.append(
                (0.25 * (np.sin(2 * np.pi * lo * t) + np.sin(2 * np.pi * hi * t))).astype(np.float32)
            )
            parts.append(np.zeros(int(off_s * SR), np.float32))
    return np.concatenate(parts)[: int(SECONDS * SR)]


def _arpeggio(notes: list[str], note_s: float, voice: str) -> FloatArray:
    parts = [_sox(voice, n, seconds=note_s, effects=("gain", "-8")) for n in notes]
    x = np.concatenate(parts * int(np.ceil(SECONDS / (note_s * len(notes)))))
    return x[: int(SECONDS * SR)]


def generated(split: str) -> Iterator[tuple[str, str, FloatArray]]:
    """(kind, name, audio) of the generated non-speech set of ``split`` ("dev" or "test")."""
    if shutil.which("sox") is None:
        raise EmotrackError("sox is not installed (apt-get install sox): it generates the non-speech set")
    dev = split == "dev"
    rng = np.random.default_rng(1 if dev else 2)
    for f in [440, 1000, 250] if dev else [440, 700, 3000, 150]:
        yield "tone", f"sine {f} Hz", _sox("sine", str(f), effects=("gain", "-6"))
    for f in [220] if dev else [330, 110]:
        yield "tone", f"square {f} Hz", _sox("square", str(f), effects=("gain", "-12"))
    for f0 in [50.0] if dev else [60.0, 50.0]:
        for level in [0.3, 0.05] if dev else [0.5, 0.1, 0.02]:
            yield "hum", f"{f0:.0f} Hz hum at {level}", _hum(f0, rng, level)
    for colour in ("white", "pink", "brown"):
        for gain in [-12, -30] if dev else [-6, -20, -40]:
            yield "noise", f"{colour} noise {gain} dB", _sox(f"{colour}noise", effects=("gain", str(gain)))
    for sweep in ["200-2000"] if dev else ["100:1500", "300-800", "2000-400"]:
        yield "chirp", f"chirp {sweep} Hz", _sox("sine", sweep, effects=("gain", "-6"))
    for rate in [4.0, 10.0] if dev else [2.0, 6.0, 20.0]:
        yield "clicks", f"clicks {rate:g}/s", _clicks(rate, rng)
    chords = [["C4", "E4", "G4"]] if dev else [["A3", "C4", "E4"], ["F3", "A3", "C4", "E4"]]
    for chord in chords:
        synth = [x for n in chord for x in ("pluck", n)]
        yield "music", f"plucked chord {'-'.join(chord)}", _sox(*synth, effects=("gain", "-10"))
        yield "music", f"arpeggio {'-'.join(chord)}", _arpeggio(chord * 2, 0.25 if dev else 0.18, "pluck")
    if not dev:
        yield "music", "square arpeggio", _arpeggio(["C4", "G4", "E5", "C5"], 0.3, "square")
    for digits in ["5551234"] if dev else ["0800*#17", "9"]:
        yield "dtmf", f"DTMF {digits}", _dtmf(digits, 0.1 if dev else 0.15, 0.08 if dev else 0.1)
    yield "silence", "digital silence", np.zeros(int(SECONDS * SR), np.float32)


def corpus_files(corpora: Path, corpus: str, split: str, per_corpus: int) -> list[Path]:
    files = sorted((corpora / corpus).glob(CORPORA[corpus]))
    half = files[0 if split == "dev" else 1 :: 2]
    step = max(1, len(half) // per_corpus)
    return half[::step][:per_corpus]


def speech_span(x: FloatArray) -> tuple[int, int] | None:
    """First and last sample of 20 ms frames within 30 dB of the file's loudest frame."""
    n = len(x) // 320
    if n == 0:
        return None
    db = 10 * np.log10(np.mean(x[: n * 320].reshape(n, 320) ** 2, axis=1) + 1e-12)
    on = np.flatnonzero(db >= db.max() - 30.0)
    return int(on[0] * 320), int((on[-1] + 1) * 320)


def corpus_silences(files: list[Path]) -> Iterator[tuple[str, str, FloatArray]]:
    """The leading and trailing silence (room noise, breaths, clicks) of corpus files, ≥ 0.5 s each."""
    for f in files:
        x, _ = sf.read(f, dtype="float32")
        span = speech_span(x)
        if span is None:
            continue
        margin = int(0.15 * SR)
        for name, part in (("lead", x[: max(span[0] - margin, 0)]), ("trail", x[span[1] + margin :])):
            if len(part) >= SR // 2:
                yield "corpus silence", f"{f.name} {name}", part


@dataclass(slots=True)
class Windows:
    """Features of every window the segmenter cut (gate off), per kind or corpus; for corpus files also
    whether at least half the window lies in the file's speech span (``speech_span``): the others are
    webrtcvad's blips in the leading/trailing silence."""

    features: dict[str, list[WindowFeatures]]
    in_span: dict[str, list[bool]]

    def passed(self, key: str, t: GateThresholds, span_only: bool = False) -> int:
        spans = self.in_span.get(key) or [True] * len(self.features[key])
        return sum(
            f.is_speech(t) for f, s in zip(self.features[key], spans, strict=True) if s or not span_only
        )


def cut_windows(audio: FloatArray, vad: VadConfig) -> list[SpeechWindow]:
    seg = Segmenter("eval", replace(vad, gate="off"), WindowConfig())
    out = seg.feed(AudioChunk("eval", np.asarray(audio, np.float32), 0, 0.0))
    out += seg.finish(0.0)
    return [e for e in out if isinstance(e, SpeechWindow)]


def measure(corpora: Path | None, split: str, per_corpus: int, vad: VadConfig, voicing: float) -> Windows:
    feats: dict[str, list[WindowFeatures]] = {}
    in_span: dict[str, list[bool]] = {}

    def add(key: str, audio: FloatArray) -> None:
        windows = cut_windows(audio, vad)
        feats.setdefault(key, []).extend(window_features(w.samples, voicing) for w in windows)
        if key.startswith("speech "):
            a, b = speech_span(audio) or (0, 0)
            in_span.setdefault(key, []).extend(
                2 * (min(w.end_sample, b) - max(w.start_sample, a)) >= len(w.samples) for w in windows
            )

    for kind, _name, audio in generated(split):
        add(kind, audio)
    if corpora is not None:
        for corpus in CORPORA:
            files = corpus_files(corpora, corpus, split, per_corpus)
            for f in files:
                add(f"speech {corpus}", sf.read(f, dtype="float32")[0])
            for kind, _name, audio in corpus_silences(files[: max(1, per_corpus // 3)]):
                add(kind, audio)
    return Windows(feats, in_span)


def figures(w: Windows, t: GateThresholds) -> dict[str, dict[str, float | int]]:
    """Per non-speech kind: windows cut, let through, false emotion rate; per corpus: speech kept."""
    out: dict[str, dict[str, float | int]] = {}
    fe_cut = fe_pass = 0
    for key, fs in sorted(w.features.items()):
        n, p = len(fs), w.passed(key, t)
        if key.startswith("speech "):
            ns = sum(w.in_span[key])
            ps = w.passed(key, t, span_only=True)
            out[key] = {
                "windows": n,
                "kept": p,
                "kept_rate": round(p / n, 4) if n else 1.0,
                "in_span_windows": ns,
                "in_span_kept_rate": round(ps / ns, 4) if ns else 1.0,
            }
        else:
            fe_cut, fe_pass = fe_cut + n, fe_pass + p
            out[key] = {"windows": n, "emotion": p, "false_emotion_rate": round(p / n, 4) if n else 0.0}
    out["non-speech overall"] = {
        "windows": fe_cut,
        "emotion": fe_pass,
        "false_emotion_rate": round(fe_pass / fe_cut, 4) if fe_cut else 0.0,
    }
    return out
