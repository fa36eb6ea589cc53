"""Bench audio: one WAV per stream, speech clips joined by pauses, with the true speech onsets.

Clips come from the corpora when present (RAVDESS and TESS: real emotional speech, each stream a different
mix of speakers) and otherwise from espeak-ng (several voices and speeds). Each clip's speech onset is found
by frame energy (first 10 ms frame within 35 dB of the clip's loudest), giving the ground truth for
"speech onset → first published emotion". Files are written once into a temp dir and reused across trials.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from streamer.messages import SAMPLE_RATE, FloatArray

SENTENCES = (
    "I can't believe you did that, this is absolutely wonderful news.",
    "Please leave the documents on the table by the door.",
    "Why would anyone ever do something like that to me?",
    "We walked along the river until the sun went down.",
    "Stop it right now, I have had enough of this.",
    "The meeting has been moved to Thursday afternoon.",
)
VOICES = ("en", "en-us", "en+f3", "en+m3", "en-gb", "en+f2")


class BenchAudioError(Exception):
    """No speech source for the bench (no corpora and no espeak-ng): one line saying what to install."""


@dataclass(frozen=True, slots=True)
class StreamAudio:
    """A stream's file and the audio time (s) of each speech onset and offset in it."""

    path: Path
    seconds: float
    speech: tuple[tuple[float, float], ...]  # (onset_s, offset_s) per clip


def find_corpora(
    explicit: Path | None = None, *, cwd: Path | None = None, environ: Mapping[str, str] | None = None
) -> Path | None:
    """The first of: ``explicit`` (``--corpora``), ``$EMOTRACK_CORPORA``, ``$EMOTRACK_SHARED/corpora``,
    ``../shared/corpora`` from the working directory (a checkout), ``../shared/corpora`` beside the source
    tree (an editable install); None if none holds RAVDESS or TESS. The working directory comes before the
    package's own location because a regular install puts the package in the venv, far from the checkout.
    """
    env = os.environ if environ is None else environ
    here = Path.cwd() if cwd is None else cwd
    cands = [explicit] if explicit else []
    if env.get("EMOTRACK_CORPORA"):
        cands.append(Path(env["EMOTRACK_CORPORA"]))
    if env.get("EMOTRACK_SHARED"):
        cands.append(Path(env["EMOTRACK_SHARED"]) / "corpora")
    cands += [here.parent / "shared" / "corpora", Path(__file__).resolve().parents[3] / "shared" / "corpora"]
    for c in cands:
        if c is not None and ((c / "ravdess").is_dir() or (c / "tess").is_dir()):
            return c
    return None


def speech_span(
    x: FloatArray,
    frame: int = SAMPLE_RATE // 100,
    floor_db: float = 35.0,
    abs_floor_dbfs: float = -60.0,
    sustain: int = 5,
) -> tuple[int, int]:
    """(first, last) sample of the speech: from the first to the last run of ``sustain`` 10 ms frames
    within ``floor_db`` of the loudest frame and above ``abs_floor_dbfs``. A lone click or a breath in a
    quiet recording's noise floor is not the onset; a clip with no such run spans its loud frames."""
    n = len(x) // frame
    if n == 0:
        return 0, len(x)
    rms = np.sqrt(np.mean(x[: n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1) + 1e-12)
    db = 20 * np.log10(rms)
    loud = db >= max(db.max() - floor_db, min(abs_floor_dbfs, db.max()))
    k = min(sustain, n)
    runs = np.flatnonzero(np.convolve(loud.astype(np.int64), np.ones(k, dtype=np.int64), "valid") == k)
    if len(runs) == 0:
        idx = np.flatnonzero(loud)
        return int(idx[0]) * frame, int(idx[-1] + 1) * frame
    return int(runs[0]) * frame, int(runs[-1] + k) * frame


class ClipPool:
    """Speech clips to draw from: corpus files, or espeak-ng renderings made on demand."""

    def __init__(self, corpora: Path | None, workdir: Path) -> None:
        self.workdir = workdir
        self.files: list[Path] = []
        if corpora is not None:
            for sub in ("ravdess", "tess"):
                if (corpora / sub).is_dir():
                    self.files += sorted((corpora / sub).rglob("*.flac")) + sorted(
                        (corpora / sub).rglob("*.wav")
                    )
        self.source = "corpora" if self.files else "espeak-ng"
        if not self.files:
            self.files = self._espeak_clips()

    def _espeak_clips(self) -> list[Path]:
        exe = shutil.which("espeak-ng")
        if exe is None:
            raise BenchAudioError(
                "bench needs speech: no corpora found (--corpora, $EMOTRACK_CORPORA, ../shared/corpora) "
                "and espeak-ng is not installed"
            )
        out_dir = self.workdir / "espeak"
        out_dir.mkdir(parents=True, exist_ok=True)
        clips = []
        for i, text in enumerate(SENTENCES):
            for j, voice in enumerate(VOICES):
                path = out_dir / f"s{i}_v{j}.wav"
                speed = str(130 + 15 * ((i + j) % 4))
                try:
                    subprocess.run(
                        [exe, "-v", voice, "-s", speed, "-w", str(path), text],
                        check=True,
                        capture_output=True,
                    )
                except subprocess.CalledProcessError:
                    continue  # a voice this espeak-ng build lacks
                clips.append(path)
        if not clips:
            raise BenchAudioError("espeak-ng produced no audio (try: espeak-ng -w /tmp/x.wav hello)")
        return clips

    def read(self, path: Path) -> FloatArray:
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
        mono = x.mean(axis=1)
        if sr != SAMPLE_RATE:
            mono = soxr.resample(mono, sr, SAMPLE_RATE)
        return np.ascontiguousarray(mono, dtype=np.float32)


def make_stream_audio(pool: ClipPool, path: Path, seconds: float, seed: int) -> StreamAudio:
    """Clips drawn at random (seeded) with 0.3–1.5 s pauses until ``seconds`` of audio; written as WAV."""
    rng = random.Random(seed)
    total = round(seconds * SAMPLE_RATE)
    parts: list[FloatArray] = []
    speech: list[tuple[float, float]] = []
    pos = 0
    while pos < total:
        pause = np.zeros(round(rng.uniform(0.3, 1.5) * SAMPLE_RATE), dtype=np.float32)
        clip = pool.read(rng.choice(pool.files))
        first, last = speech_span(clip)
        parts += [pause, clip]
        onset = pos + len(pause) + first
        if onset < total:
            speech.append((onset / SAMPLE_RATE, min(pos + len(pause) + last, total) / SAMPLE_RATE))
        pos += len(pause) + len(clip)
    audio = np.concatenate(parts)[:total]
    sf.write(str(path), audio, SAMPLE_RATE, subtype="PCM_16")
    return StreamAudio(path, total / SAMPLE_RATE, tuple(speech))


class AudioSet:
    """Per-stream files for up to any number of streams, made lazily and kept for later trials."""

    def __init__(self, workdir: Path, seconds: float, corpora: Path | None = None, seed: int = 0) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.seconds = seconds
        self.seed = seed
        self.pool = ClipPool(find_corpora(corpora), workdir)
        self._streams: list[StreamAudio] = []

    @property
    def source(self) -> str:
        return self.pool.source

    def streams(self, n: int) -> list[StreamAudio]:
        while len(self._streams) < n:
            i = len(self._streams)
            path = self.workdir / f"stream{i:03d}.wav"
            self._streams.append(make_stream_audio(self.pool, path, self.seconds, self.seed * 100_003 + i))
        return self._streams[:n]
