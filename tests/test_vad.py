"""VoiceActivity: webrtcvad framing, hysteresis, padding and the spectral gate on real signals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamer.vad import SpeechOffset, SpeechOnset, VadConfig, VadEvent, VoiceActivity

SR = 16000
FRAME = 480  # 30 ms


def white(n: int, amp: float = 0.3, seed: int = 0) -> np.ndarray:
    return (amp * np.random.default_rng(seed).standard_normal(n)).clip(-1, 1).astype(np.float32)


def coloured(n: int, exponent: float, seed: int = 0) -> np.ndarray:
    """Stationary noise with power ∝ 1/f^exponent (1: pink, 2: brown), 0.3 RMS."""
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    spec[1:] /= f[1:] ** (exponent / 2)
    spec[0] = 0
    x = np.fft.irfft(spec, n)
    return (0.3 * x / x.std()).astype(np.float32)


def tone(n: int, hz: float = 440.0, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * hz * np.arange(n) / SR)).astype(np.float32)


def run(cfg: VadConfig, audio: np.ndarray, chunk: int | None = None) -> tuple[list[VadEvent], VoiceActivity]:
    va = VoiceActivity(cfg)
    chunk = chunk or len(audio)
    events: list[VadEvent] = []
    for i in range(0, len(audio), chunk):
        events += va.feed(audio[i : i + chunk])
    end = va.flush(len(audio))
    if end is not None:
        events.append(end)
    return events, va


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"vad\.aggressiveness"):
        VadConfig(aggressiveness=5)
    with pytest.raises(ValueError, match=r"vad\.frame_ms"):
        VadConfig(frame_ms=25)
    with pytest.raises(ValueError, match=r"vad\.gate "):
        VadConfig(gate="magic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"vad\.end_ms"):
        VadConfig(end_ms=-1)


def test_onset_offset_and_padding_are_frame_exact() -> None:
    """A noise burst starting on a frame boundary: onset = burst - pad, decided start_ms later."""
    a = np.zeros(6 * SR, dtype=np.float32)
    burst0, burst1 = 33 * FRAME, 133 * FRAME
    a[burst0:burst1] = white(burst1 - burst0)
    cfg = VadConfig()  # gate off: webrtcvad calls loud noise speech
    events, va = run(cfg, a)
    onset, offset = events
    assert onset == SpeechOnset(burst0 - cfg.pad_samples, decided_at=burst0 + cfg.start_frames * FRAME)
    # webrtcvad keeps calling a few frames after loud audio speech (its own hangover)
    assert isinstance(offset, SpeechOffset)
    last_voiced = offset.end_sample - cfg.pad_samples
    assert burst1 <= last_voiced <= burst1 + 8 * FRAME
    assert (last_voiced - burst1) % FRAME == 0
    assert offset.decided_at == last_voiced + cfg.end_frames * FRAME
    assert va.stats.voiced == 100 + (last_voiced - burst1) // FRAME
    assert va.position == len(a) // FRAME * FRAME


def test_burst_shorter_than_start_ms_is_not_speech() -> None:
    """webrtcvad itself holds on ~3 frames after loud audio, so start_ms is set above that here."""
    cfg = VadConfig(start_ms=300)

    def burst(frames: int) -> tuple[list[VadEvent], VoiceActivity]:
        a = np.zeros(2 * SR, dtype=np.float32)
        a[30 * FRAME : (30 + frames) * FRAME] = white(frames * FRAME)
        return run(cfg, a)

    events, va = burst(2)  # 60 ms burst
    assert events == []
    assert 2 <= va.stats.voiced < cfg.start_frames
    events, _ = burst(12)  # 360 ms burst
    assert [type(e) for e in events] == [SpeechOnset, SpeechOffset]


def test_short_pause_keeps_one_segment_long_pause_splits() -> None:
    def with_pause(pause_frames: int) -> list[VadEvent]:
        a = np.zeros(6 * SR, dtype=np.float32)
        a[10 * FRAME : 60 * FRAME] = white(50 * FRAME, seed=1)
        a[(60 + pause_frames) * FRAME : (110 + pause_frames) * FRAME] = white(50 * FRAME, seed=2)
        return run(VadConfig(), a)[0]

    assert len(with_pause(8)) == 2  # 240 ms < end_ms 400: one onset, one offset
    assert len(with_pause(20)) == 4  # 600 ms: two segments


def test_events_do_not_depend_on_chunking(speech_wav: Path) -> None:
    a, _ = sf.read(speech_wav, dtype="float32")
    reference, _ = run(VadConfig(gate="spectral"), a)
    assert len(reference) == 4
    for chunk in (1, 16, 479, 481, 4000):
        assert run(VadConfig(gate="spectral"), a, chunk)[0] == reference


@pytest.mark.parametrize(
    ("name", "signal"),
    [
        ("white", white(3 * SR)),
        ("tone440", tone(3 * SR)),
        ("tone1k", tone(3 * SR, 1000.0, 0.2)),
        ("pink", coloured(3 * SR, 1.0)),
        ("brown", coloured(3 * SR, 2.0)),
    ],
)
def test_webrtcvad_calls_noise_and_tones_speech_but_the_gate_rejects_them(
    name: str, signal: np.ndarray
) -> None:
    lead = np.zeros(SR, dtype=np.float32)  # silence first: the gate must not take the onset for speech
    for audio in (signal, np.concatenate([lead, signal])):
        off_events, off = run(VadConfig(aggressiveness=2), audio)
        assert off.stats.webrtc_voiced >= 0.8 * 3 * SR / FRAME, name
        assert isinstance(off_events[0], SpeechOnset)
        on_events, on = run(VadConfig(aggressiveness=2, gate="spectral"), audio)
        assert on_events == [], (name, on_events)
        assert on.stats.voiced <= 2
        assert on.stats.gate_rejected >= off.stats.webrtc_voiced - 2


def test_gate_lets_espeak_speech_through(speech_wav: Path) -> None:
    a, _ = sf.read(speech_wav, dtype="float32")
    off_events, off = run(VadConfig(), a)
    on_events, on = run(VadConfig(gate="spectral"), a)
    assert len(off_events) == len(on_events) == 4  # two utterances either way
    for e_off, e_on in zip(off_events, on_events, strict=True):
        assert type(e_off) is type(e_on)
        s_off = e_off.start_sample if isinstance(e_off, SpeechOnset) else e_off.end_sample
        s_on = e_on.start_sample if isinstance(e_on, SpeechOnset) else e_on.end_sample
        assert abs(s_off - s_on) <= 0.25 * SR  # the gate trims at most a little at the edges
    assert on.stats.voiced >= 0.7 * off.stats.voiced


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0], ids=["white", "pink", "brown"])
def test_gate_finds_speech_in_stationary_noise_and_nothing_before_it(
    speech_wav: Path, exponent: float
) -> None:
    """Noise all along at ~10 dB below the speech: both sentences found, no onset in noise alone."""
    a, _ = sf.read(speech_wav, dtype="float32")
    noise = coloured(len(a), exponent, seed=3) * 0.1  # RMS 0.03
    events, _ = run(VadConfig(gate="spectral"), (a + noise).astype(np.float32))
    onsets = [e.start_sample for e in events if isinstance(e, SpeechOnset)]
    half = len(a) // 2
    first = np.flatnonzero(np.abs(a) > 1e-3)[0]
    assert len(onsets) >= 2
    assert onsets[0] >= first - 0.3 * SR  # nothing in the leading second of noise alone
    assert any(o < half for o in onsets) and any(o > half for o in onsets)


@pytest.mark.parametrize("frame_ms", [10, 20, 30])
def test_every_frame_size_finds_speech_and_gates_noise(speech_wav: Path, frame_ms: int) -> None:
    a, _ = sf.read(speech_wav, dtype="float32")
    cfg = VadConfig(frame_ms=frame_ms, gate="spectral")
    events, va = run(cfg, a)
    assert sum(isinstance(e, SpeechOnset) for e in events) >= 2
    assert va.position == len(a) // cfg.frame_samples * cfg.frame_samples
    for signal in (white(2 * SR), tone(2 * SR), coloured(2 * SR, 2.0)):
        assert run(cfg, signal)[0] == []
        assert run(VadConfig(frame_ms=frame_ms), signal)[0] != []


@pytest.mark.corpora
def test_acted_emotional_speech_is_found_with_and_without_the_gate(corpora_dir: Path) -> None:
    """One RAVDESS sentence per actor (all emotions, soft and strong) and TESS words."""
    ravdess = sorted((corpora_dir / "ravdess").glob("Actor_*/*.flac"))
    tess = sorted((corpora_dir / "tess").glob("*/*.flac"))
    files = ravdess[7::60] + tess[13::280]
    assert len(files) >= 30
    found = {"off": 0, "spectral": 0}
    for f in files:
        a, sr = sf.read(f, dtype="float32")
        assert sr == SR
        for gate in found:
            events, _ = run(VadConfig(gate=gate), a)  # type: ignore[arg-type]
            found[gate] += any(isinstance(e, SpeechOnset) for e in events)
    assert found["off"] == len(files)
    assert found["spectral"] >= 0.9 * len(files), found
