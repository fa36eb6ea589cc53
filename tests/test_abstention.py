"""Abstention: tones, hum, noise, music, clicks and silence publish no emotion; speech still does.

Non-speech is generated here (sox, numpy), never committed. The figures of docs/abstention.md come from
``emotrack evaluate-abstention``; these tests hold the gate to them on the real daemon."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from engines import load_engine
from streamer.config import load_config
from streamer.daemon import Daemon
from streamer.records import Record, StateRecord, UtteranceRecord, WindowRecord
from streamer.sources.spec import SourceSpec, open_source
from streamer.speechgate import window_features
from streamer.vad import VadConfig
from tests.daemon_helpers import CollectSink, run_cli

SR = 16000


def sox(out: Path, *synth: str, seconds: float = 4.0) -> Path:
    if shutil.which("sox") is None:
        pytest.skip("sox is not installed (apt-get install sox)")
    subprocess.run(
        ["sox", "-R", "-n", "-r", str(SR), "-c", "1", "-b", "16", str(out), "synth", str(seconds), *synth],
        check=True,
        capture_output=True,
    )
    return out


def predict(*args: str) -> list[dict[str, Any]]:
    r = run_cli("predict", *args)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_predict_says_no_emotion_for_a_tone_and_pink_noise_but_scores_speech(
    tmp_path: Path, speech_wav: Path
) -> None:
    """The bundled engine through the real daemon: before the gate a 440 Hz tone was "sad 0.96"."""
    tone = sox(tmp_path / "tone440.wav", "sine", "440", "gain", "-6")
    pink = sox(tmp_path / "pink.wav", "pinknoise", "gain", "-10")
    rows = predict(str(tone), str(pink), str(speech_wav))
    for row in rows[:2]:
        assert row["label"] is None and row["windows"] == 0 and row["note"] == "no speech found", row
    assert rows[2]["label"] is not None and rows[2]["windows"] > 5
    off = tmp_path / "off.toml"  # the gate is what does it: off, webrtcvad's windows get emotions
    off.write_text("[vad]\nwindow_gate = false\n")
    assert all(row["windows"] > 0 for row in predict("-c", str(off), str(tone), str(pink)))


async def daemon_records(engine_dir: Path, path: Path) -> list[Record]:
    engine = load_engine(engine_dir, backend="onnxruntime-cpu", intra_op_threads=1, inter_op_threads=1)
    spec = SourceSpec(kind="file", target=str(path), stream_id="s", text=str(path))
    sink = CollectSink()
    await Daemon(load_config(environ={}), engine, [sink], sources=[(spec, open_source(spec))]).run()
    return sink.records


async def test_a_blip_of_noise_before_speech_is_no_utterance(
    tiny_engine_dir: Path, speech_wav: Path, tmp_path: Path
) -> None:
    """0.54 s of loud noise, a pause, then speech: the blip was "utterance 0" (labelled sad) and held
    the smoothed label through the next clip; now it publishes no window and no utterance."""
    x, _ = sf.read(speech_wav, dtype="float32")
    rng = np.random.default_rng(0)
    blip = (0.3 * rng.standard_normal(int(0.54 * SR))).astype(np.float32)
    gap = np.zeros(SR, np.float32)
    path = tmp_path / "blip.wav"
    sf.write(path, np.concatenate([gap, blip, gap, x]), SR, subtype="PCM_16")
    records = await daemon_records(tiny_engine_dir, path)
    speech_from = 2.54 + 0.9  # speech_wav's own leading second of silence, less the VAD padding
    utts = [r for r in records if isinstance(r, UtteranceRecord)]
    windows = [r for r in records if isinstance(r, WindowRecord)]
    assert utts and windows
    assert min(u.start for u in utts) >= speech_from - 0.5, [(u.start, u.end) for u in utts]
    assert min(w.start for w in windows) >= speech_from - 0.5
    states = [r for r in records if isinstance(r, StateRecord)]
    assert any(r.status == "no-speech" for r in states)
    assert all(r.audio_time >= speech_from - 0.5 for r in states if r.status == "speaking")


@pytest.mark.parametrize("kind", ["hum", "clicks", "dtmf", "music", "brown", "silence"])
async def test_generated_non_speech_publishes_no_window(
    tiny_engine_dir: Path, tmp_path: Path, kind: str
) -> None:
    from streamer.bench import abstention as ab

    pick = {
        "hum": lambda: ab._hum(60.0, np.random.default_rng(5), 0.4),
        "clicks": lambda: ab._clicks(5.0, np.random.default_rng(5)),
        "dtmf": lambda: ab._dtmf("2468", 0.12, 0.09),
        "music": lambda: ab._arpeggio(["D4", "F#4", "A4"], 0.2, "pluck"),
        "brown": lambda: ab._sox("brownnoise", effects=("gain", "-3")),
        "silence": lambda: np.zeros(4 * SR, np.float32),
    }
    path = tmp_path / f"{kind}.wav"
    sf.write(path, pick[kind](), SR, subtype="PCM_16")
    records = await daemon_records(tiny_engine_dir, path)
    assert not [r for r in records if isinstance(r, WindowRecord | UtteranceRecord)]


async def test_random_bytes_on_a_tcp_source_publish_no_emotion(tiny_engine_dir: Path) -> None:
    """320 kB of random bytes as raw PCM (full-scale white noise) once published 17 "angry" windows."""
    from streamer.sources.pcm import PcmFormat, PcmServerSource

    engine = load_engine(tiny_engine_dir, backend="onnxruntime-cpu", intra_op_threads=1, inter_op_threads=1)
    src = PcmServerSource("tcp", PcmFormat(), port=0, chunk_ms=100)
    sink = CollectSink()
    d = Daemon(load_config(environ={}), engine, [sink], sources=[(None, src)])
    run = asyncio.create_task(d.run())
    await src.start()
    _, w = await asyncio.open_connection("127.0.0.1", src.port)
    w.write(np.random.default_rng(0).bytes(320_000))
    await w.drain()
    w.close()
    while src.stats["active_clients"] or d.pipelines or not d.streams_ended:
        await asyncio.sleep(0.05)
    d.request_stop()
    await asyncio.wait_for(run, 60)
    assert d.stats()["streams"]["tcp"]["nonspeech"] > 0  # webrtcvad cut windows; the gate rejected them
    assert not [r for r in sink.records if isinstance(r, WindowRecord | UtteranceRecord)]


def test_window_features_tell_tones_from_noise_from_speech(speech_wav: Path) -> None:
    t = np.arange(2 * SR) / SR
    tone = window_features((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    noise = window_features((0.1 * np.random.default_rng(0).standard_normal(2 * SR)).astype(np.float32))
    x, _ = sf.read(speech_wav, dtype="float32")
    speech = window_features(x[SR + SR // 2 : 3 * SR + SR // 2])
    defaults = VadConfig().window_thresholds
    assert tone.frozen > 0.9 and tone.modulation < 1.0 and not tone.is_speech(defaults)
    assert noise.voiced == 0.0 and not noise.is_speech(defaults)
    assert speech.is_speech(defaults) and speech.frozen < 0.3


def test_window_gate_settings_are_checked() -> None:
    with pytest.raises(ValueError, match=r"vad\.window_gate_voicing"):
        VadConfig(window_gate_voicing=2.0)
    with pytest.raises(ValueError, match=r"vad\.window_gate_modulation_db"):
        VadConfig(window_gate_modulation_db=-1.0)


def test_evaluate_abstention_on_the_generated_set(tmp_path: Path) -> None:
    r = run_cli("evaluate-abstention", "--split", "dev", "--out", str(tmp_path), timeout=300)
    assert r.returncode == 0, r.stderr
    assert "non-speech overall" in r.stdout and "tone" in r.stdout
    figures = json.loads((tmp_path / "abstention-dev.json").read_text())["figures"]
    assert figures["non-speech overall"]["windows"] > 50
    assert figures["non-speech overall"]["false_emotion_rate"] <= 0.02


@pytest.mark.timeout(600)
def test_abstention_targets_on_the_corpora(corpora_dir: Path, tmp_path: Path) -> None:
    """The README figures' command on a smaller sample: ≤ 2 % false emotions, ≥ 97 % of the windows
    within the files' speech kept (the blips webrtcvad cuts in their leading silence are rejected)."""
    r = run_cli(
        "evaluate-abstention",
        "--corpora",
        str(corpora_dir),
        "--per-corpus",
        "40",
        "--out",
        str(tmp_path),
        timeout=590,
    )
    assert r.returncode == 0, r.stderr
    figures = json.loads((tmp_path / "abstention-test.json").read_text())["figures"]
    assert figures["non-speech overall"]["false_emotion_rate"] <= 0.02
    for corpus in ("ravdess", "tess", "ased", "nemo"):
        row = figures[f"speech {corpus}"]
        assert row["in_span_kept_rate"] >= 0.97 and row["kept_rate"] >= 0.9, (corpus, row)
