"""CPU cost of one stream's VAD + segmentation (+ smoothing/records), in CPU seconds per audio second.

Usage: python scripts/bench_segmenter.py [--seconds 120] [--chunk-ms 20 100]
Speech comes from espeak-ng (sentences with pauses), so the VAD sees realistic speech/silence.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from streamer.messages import AudioChunk, Scores, SpeechWindow, UtteranceEnded
from streamer.records import EngineRef
from streamer.segmenter import Segmenter, WindowConfig
from streamer.smoothing import SmoothingConfig
from streamer.tracker import StreamTracker
from streamer.vad import VadConfig

SR = 16000
LABELS = ("neutral", "happy", "sad", "angry")


def espeak_audio(seconds: float) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        sys.exit("bench_segmenter: espeak-ng is not installed")
    text = "Hello there. I am really happy to see you today, this is wonderful news for all of us."
    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "s.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), "-s", "150", text], check=True, capture_output=True)
        x, sr = sf.read(wav, dtype="float32")
    x = soxr.resample(x, sr, SR).astype(np.float32)
    piece = np.concatenate([x, np.zeros(SR, np.float32)])
    reps = int(np.ceil(seconds * SR / len(piece)))
    return np.tile(piece, reps)[: int(seconds * SR)]


def run(audio: np.ndarray, chunk: int, gate: str, with_tracker: bool) -> tuple[float, int]:
    seg = Segmenter("bench", VadConfig(gate=gate), WindowConfig())  # type: ignore[arg-type]
    tr = StreamTracker("bench", EngineRef("bench", "0"), LABELS, True, SmoothingConfig())
    scores = Scores(dict(zip(LABELS, (0.4, 0.3, 0.2, 0.1), strict=True)), (0.1, 0.2, 0.3))
    n_windows = 0
    t0 = time.process_time()
    for i in range(0, len(audio), chunk):
        events = seg.feed(AudioChunk("bench", audio[i : i + chunk], i, 1e9 + i / SR))
        for ev in events:
            if isinstance(ev, SpeechWindow):
                n_windows += 1
                if with_tracker:
                    tr.on_window(ev, scores)
                    tr.state("speaking", ev.end_s, ev.wall_time)
            elif isinstance(ev, UtteranceEnded) and with_tracker:
                tr.on_utterance_end(ev)
    seg.finish(0.0)
    return time.process_time() - t0, n_windows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--chunk-ms", type=int, nargs="+", default=[10, 20, 100])
    args = ap.parse_args()
    audio = espeak_audio(args.seconds)
    dur = len(audio) / SR
    print(f"{dur:.0f} s of espeak speech with 1 s pauses, one stream, CPU seconds per audio second:")
    for gate in ("off", "spectral"):
        for ms in args.chunk_ms:
            for tracker in (False, True):
                cpu, n = run(audio, SR * ms // 1000, gate, tracker)
                what = "vad+segmenter+tracker" if tracker else "vad+segmenter"
                print(
                    f"  gate={gate:8s} chunk={ms:4d} ms  {what:22s} {cpu / dur:.5f} "
                    f"({100 * cpu / dur:.2f}% of a core, {n} windows)"
                )


if __name__ == "__main__":
    main()
