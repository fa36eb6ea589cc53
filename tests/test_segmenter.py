"""Segmenter: utterances and sliding windows from real audio, exact sample timestamps, bounded memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.messages import AudioChunk, SegmentEvent, SpeechWindow, UtteranceEnded, UtteranceStarted
from streamer.segmenter import SampleBuffer, Segmenter, WindowConfig
from streamer.vad import VadConfig

SR = 16000
FRAME = 480
T0 = 1_700_000_000.0  # wall time of sample 0


def white(n: int, seed: int = 0) -> np.ndarray:
    return (0.3 * np.random.default_rng(seed).standard_normal(n)).clip(-1, 1).astype(np.float32)


def segment(
    audio: np.ndarray,
    chunk: int,
    vad: VadConfig | None = None,
    windows: WindowConfig | None = None,
    start_sample: int = 0,
) -> tuple[list[SegmentEvent], Segmenter]:
    seg = Segmenter("mic", vad or VadConfig(), windows or WindowConfig())
    events: list[SegmentEvent] = []
    for i in range(0, len(audio), chunk):
        s = start_sample + i
        events += seg.feed(AudioChunk("mic", audio[i : i + chunk], s, T0 + s / SR))
    events += seg.finish(T0 + (start_sample + len(audio)) / SR)
    return events, seg


def windows_of(events: list[SegmentEvent]) -> list[SpeechWindow]:
    return [e for e in events if isinstance(e, SpeechWindow)]


def ends_of(events: list[SegmentEvent]) -> list[UtteranceEnded]:
    return [e for e in events if isinstance(e, UtteranceEnded)]


def speech_truth(audio: np.ndarray) -> list[tuple[int, int]]:
    """Where the fixture's two copies of the espeak sentence are (first/last non-silent sample)."""
    half = len(audio) // 2
    out = []
    for lo, hi in ((0, half), (half, len(audio))):
        idx = np.flatnonzero(np.abs(audio[lo:hi]) > 1e-3) + lo
        out.append((int(idx[0]), int(idx[-1]) + 1))
    return out


@pytest.fixture(scope="module")
def speech(speech_wav: Path) -> np.ndarray:
    a, sr = sf.read(speech_wav, dtype="float32")
    assert sr == SR
    return np.asarray(a, dtype=np.float32)


def test_espeak_sentences_give_two_utterances_near_the_truth(speech: np.ndarray) -> None:
    events, seg = segment(speech, 1600)
    truth = speech_truth(speech)
    starts = [e for e in events if isinstance(e, UtteranceStarted)]
    ends = ends_of(events)
    assert [e.utterance_id for e in starts] == [e.utterance_id for e in ends] == [0, 1]
    pad = seg.vad_cfg.pad_samples
    for (t0, t1), beg, en in zip(truth, starts, ends, strict=True):
        assert beg.start_sample == en.start_sample
        assert t0 - pad - 0.05 * SR <= beg.start_sample <= t0 + 0.1 * SR
        # webrtcvad's own hangover keeps ~3-4 frames after the last voiced sound
        assert t1 - 0.1 * SR <= en.end_sample <= t1 + pad + 0.15 * SR
        assert beg.wall_time == pytest.approx(T0 + beg.start_sample / SR, abs=1e-6)
        assert en.wall_time == pytest.approx(T0 + en.end_sample / SR, abs=1e-6)
    # events come in order: start, its windows, end
    kinds = [type(e).__name__[0] for e in events]
    assert "".join(kinds) == "U" + "S" * ends[0].n_windows + "U" + "U" + "S" * ends[1].n_windows + "U"


def test_windows_cover_speech_on_the_hop_schedule(speech: np.ndarray) -> None:
    cfg = WindowConfig()
    events, _ = segment(speech, 1600, windows=cfg)
    win, hop = int(cfg.window_s * SR), int(cfg.hop_s * SR)
    wins = windows_of(events)
    assert [w.index for w in wins] == list(range(len(wins)))
    for end in ends_of(events):
        mine = [w for w in wins if w.utterance_id == end.utterance_id]
        assert len(mine) == end.n_windows >= 2
        for k, w in enumerate(mine):
            on_schedule = (
                w.start_sample == end.start_sample + k * hop and w.end_sample - w.start_sample == win
            )
            tail = k == len(mine) - 1 and w.end_sample == end.end_sample
            assert on_schedule or tail
        # covered from the utterance start to (almost) its end, no hole between windows
        assert mine[0].start_sample == end.start_sample
        assert max(w.end_sample for w in mine) >= end.end_sample - int(cfg.min_segment_s * SR)
        for w in mine:
            assert end.start_sample <= w.start_sample < w.end_sample <= end.end_sample
            assert w.samples.dtype == np.float32
            assert np.array_equal(w.samples, speech[w.start_sample : w.end_sample])
            assert w.wall_time == pytest.approx(T0 + w.end_sample / SR, abs=1e-6)


def test_identical_windows_whatever_the_chunk_size(speech: np.ndarray) -> None:
    ref_events, _ = segment(speech, len(speech), VadConfig(gate="spectral"))
    ref = [(type(e).__name__, e.utterance_id, getattr(e, "start_sample", None)) for e in ref_events]
    ref_w = windows_of(ref_events)
    for chunk in (16, 160, 333, 480, 1000, 4000, 16000):
        events, _ = segment(speech, chunk, VadConfig(gate="spectral"))
        assert [(type(e).__name__, e.utterance_id, getattr(e, "start_sample", None)) for e in events] == ref
        got = windows_of(events)
        assert [(w.index, w.start_sample, w.end_sample) for w in got] == [
            (w.index, w.start_sample, w.end_sample) for w in ref_w
        ]
        for a, b in zip(got, ref_w, strict=True):
            assert np.array_equal(a.samples, b.samples)
            assert a.wall_time == pytest.approx(b.wall_time, abs=1e-6)
        assert [(e.utterance_id, e.start_sample, e.end_sample, e.n_windows) for e in ends_of(events)] == [
            (e.utterance_id, e.start_sample, e.end_sample, e.n_windows) for e in ends_of(ref_events)
        ]


def _bursts() -> np.ndarray:
    """Noise bursts of 0.3-3.2 s with pauses around end_ms: short, long, merged and split utterances."""
    rng = np.random.default_rng(11)
    parts = []
    for burst_s, pause_s in ((0.3, 0.8), (2.3, 0.3), (1.0, 0.6), (3.2, 1.1), (0.7, 0.45)):
        parts += [
            white(int(burst_s * SR), seed=int(rng.integers(1000))),
            np.zeros(int(pause_s * SR), np.float32),
        ]
    return np.concatenate(parts)


BURSTS = _bursts()
BURSTS_REF = segment(BURSTS, len(BURSTS))[0]


@settings(max_examples=12, deadline=None)
@given(st.lists(st.integers(1, 9000), min_size=1, max_size=40))
def test_any_chunking_gives_identical_events(sizes: list[int]) -> None:
    seg = Segmenter("mic", VadConfig(), WindowConfig())
    events: list[SegmentEvent] = []
    i = k = 0
    while i < len(BURSTS):
        n = sizes[k % len(sizes)]
        events += seg.feed(AudioChunk("mic", BURSTS[i : i + n], i, T0 + i / SR))
        i, k = i + n, k + 1
    events += seg.finish(T0 + len(BURSTS) / SR)

    def key(evs: list[SegmentEvent]) -> list[tuple[object, ...]]:
        return [
            (
                type(e).__name__,
                e.utterance_id,
                e.start_sample,
                getattr(e, "end_sample", None),
                round(e.wall_time, 6),
            )
            for e in evs
        ]

    assert key(events) == key(BURSTS_REF)
    assert len(windows_of(BURSTS_REF)) >= 8
    for a, b in zip(windows_of(events), windows_of(BURSTS_REF), strict=True):
        assert np.array_equal(a.samples, b.samples)


def test_timestamps_count_from_the_stream_start_sample(speech: np.ndarray) -> None:
    offset = 123_457
    events, _ = segment(speech, 1000, start_sample=offset)
    base, _ = segment(speech, 1000)
    assert [(w.start_sample - offset, w.end_sample - offset) for w in windows_of(events)] == [
        (w.start_sample, w.end_sample) for w in windows_of(base)
    ]


def test_first_window_as_soon_as_window_s_of_speech_exists(speech: np.ndarray) -> None:
    seg = Segmenter("mic", VadConfig(), WindowConfig())
    chunk = 160  # 10 ms
    for i in range(0, len(speech), chunk):
        out = seg.feed(AudioChunk("mic", speech[i : i + chunk], i, T0 + i / SR))
        wins = windows_of(out)
        if wins:
            first = wins[0]
            fed_to = i + chunk
            assert first.end_sample - first.start_sample == 2 * SR
            assert first.end_sample <= fed_to < first.end_sample + FRAME + chunk
            return
    pytest.fail("no window")


def _paused_burst() -> np.ndarray:
    """1.3 s of sound, then silence: the VAD judges a full window (padded onset + 2 s) while the
    utterance's end is still undecided (``PAUSE_VAD``: 600 ms of hangover)."""
    a = np.zeros(5 * SR, dtype=np.float32)
    a[SR : SR + int(1.3 * SR)] = white(int(1.3 * SR), seed=3)
    return a


PAUSE_VAD = VadConfig(end_ms=600)


def test_first_window_goes_out_at_its_end_even_while_the_end_of_speech_is_undecided() -> None:
    a = _paused_burst()
    seg = Segmenter("mic", PAUSE_VAD, WindowConfig())
    chunk = 160
    first: SpeechWindow | None = None
    events: list[SegmentEvent] = []
    for i in range(0, len(a), chunk):
        out = seg.feed(AudioChunk("mic", a[i : i + chunk], i, T0 + i / SR))
        events += out
        if first is None and windows_of(out):
            first = windows_of(out)[0]
            assert i + chunk < first.end_sample + FRAME + chunk  # as soon as its audio was judged
            assert not ends_of(events)  # the VAD had not decided the end yet
    events += seg.finish(T0 + len(a) / SR)
    assert first is not None
    (end,) = ends_of(events)
    assert (first.start_sample, first.end_sample) == (end.start_sample, end.start_sample + 2 * SR)
    # it reaches into the hangover, never past the end verdict
    assert end.end_sample < first.end_sample <= end.end_sample + PAUSE_VAD.end_ms * SR // 1000
    assert end.n_windows == 1 and windows_of(events) == [first]  # speech covered: no tail window


@pytest.mark.parametrize("chunk", [160, 481, 4000, 9000, 5 * SR])
def test_early_first_window_is_the_same_whatever_the_chunk_size(chunk: int) -> None:
    a = _paused_burst()
    ref = windows_of(segment(a, 480, PAUSE_VAD)[0])
    got = windows_of(segment(a, chunk, PAUSE_VAD)[0])
    assert [(w.start_sample, w.end_sample) for w in got] == [(w.start_sample, w.end_sample) for w in ref]
    assert len(ref) == 1


def test_short_utterance_gets_exactly_one_whole_window() -> None:
    a = np.zeros(3 * SR, dtype=np.float32)
    a[40 * FRAME : 50 * FRAME] = white(10 * FRAME)  # 300 ms burst
    events, _ = segment(a, 800)
    (end,) = ends_of(events)
    (w,) = windows_of(events)
    assert end.n_windows == 1
    assert w.start_sample == end.start_sample
    # it ends where the VAD decided the end: the padded end plus at most end_ms - pad_ms of hangover
    vad = VadConfig()
    assert end.end_sample <= w.end_sample <= end.end_sample + (vad.end_ms - vad.pad_ms) * SR // 1000 + FRAME
    assert 0.25 * SR <= len(w.samples) < 2 * SR
    assert np.array_equal(w.samples, a[w.start_sample : w.end_sample])


def test_too_short_segment_is_dropped_and_counted() -> None:
    a = np.zeros(3 * SR, dtype=np.float32)
    a[40 * FRAME : 43 * FRAME] = white(3 * FRAME)
    vad = VadConfig(start_ms=30, pad_ms=0)  # webrtcvad hangover makes it ~7 frames: 210 ms < 250 ms
    events, seg = segment(a, 800, vad)
    (end,) = ends_of(events)
    assert end.n_windows == 0
    assert end.end_sample - end.start_sample < 0.25 * SR
    assert windows_of(events) == []
    assert seg.stats.short_dropped == 1


def test_tail_window_when_stream_ends_mid_speech() -> None:
    a = np.concatenate([np.zeros(SR, dtype=np.float32), white(int(2.3 * SR))])
    events, _ = segment(a, 1000, VadConfig(pad_ms=150))  # 2.45 s: two windows and a 0.45 s tail
    (end,) = ends_of(events)
    assert end.end_sample == len(a)  # closed at the end of the stream
    wins = windows_of(events)
    assert [w.end_sample - w.start_sample for w in wins] == [2 * SR, 2 * SR]
    assert wins[0].start_sample == end.start_sample
    assert wins[1].end_sample == end.end_sample  # the tail, with a full window of context
    assert end.n_windows == 2


@pytest.mark.parametrize(
    "vad", [VadConfig(pad_ms=150), VadConfig(end_ms=180, pad_ms=150)], ids=["pad150", "end180"]
)
def test_tail_window_inside_the_stream(vad: VadConfig) -> None:
    """A 2.4 s burst: full windows at 0 and 0.5 s, then the ≥ 0.25 s tail gets a final window."""
    a = np.zeros(6 * SR, dtype=np.float32)
    a[SR : SR + int(2.4 * SR)] = white(int(2.4 * SR))
    events, _ = segment(a, 4000, vad)
    (end,) = ends_of(events)
    wins = windows_of(events)
    assert len(wins) == end.n_windows >= 2
    *full, tail = wins
    for k, w in enumerate(full):
        assert (w.start_sample, w.end_sample) == (
            end.start_sample + k * SR // 2,
            end.start_sample + k * SR // 2 + 2 * SR,
        )
    assert full[-1].end_sample <= end.end_sample - 0.25 * SR
    # the tail ends where the VAD decided the end (the padded end plus the rest of the hangover)
    assert tail.end_sample - tail.start_sample == 2 * SR
    assert (
        end.end_sample <= tail.end_sample <= end.end_sample + (vad.end_ms - vad.pad_ms) * SR // 1000 + FRAME
    )


def test_long_utterance_memory_stays_bounded() -> None:
    cfg = WindowConfig()
    seg = Segmenter("mic", VadConfig(), cfg)
    noise = white(60 * SR, seed=4)  # one minute of "speech" for webrtcvad
    peak = 0
    n_windows = 0
    for i in range(0, len(noise), 3200):
        out = seg.feed(AudioChunk("mic", noise[i : i + 3200], i, T0 + i / SR))
        n_windows += len(windows_of(out))
        peak = max(peak, seg.buffered_samples)
    assert seg.in_utterance
    assert n_windows >= (60 - 2.5) / 0.5
    assert peak <= (cfg.max_window_s + cfg.hop_s) * SR
    assert peak <= (cfg.window_s + 0.4 + 0.3) * SR  # window + end_ms + one slice of slack
    out = seg.finish(T0 + 60)
    assert isinstance(out[-1], UtteranceEnded)


def test_one_big_chunk_of_a_long_stream_is_processed_in_bounded_memory() -> None:
    noise = white(30 * SR, seed=5)
    events, seg = segment(noise, len(noise))
    assert seg.buffered_samples <= (2.0 + 0.4 + 0.3) * SR
    assert ends_of(events)[0].n_windows == len(windows_of(events))


def test_gap_in_samples_closes_the_utterance_and_restarts() -> None:
    seg = Segmenter("mic", VadConfig(), WindowConfig())
    n = int(1.5 * SR)
    out = seg.feed(AudioChunk("mic", white(n), 0, T0))
    out += seg.feed(AudioChunk("mic", white(n, seed=2), 10 * SR, T0 + 10))  # 8.5 s lost upstream
    out += seg.finish(T0 + 12)
    ends = ends_of(out)
    assert [e.utterance_id for e in ends] == [0, 1]
    assert ends[0].end_sample <= n
    assert ends[1].start_sample >= 10 * SR
    assert seg.stats.gaps == 1


def test_repeated_audio_is_ignored() -> None:
    a = white(SR)
    seg = Segmenter("mic", VadConfig(), WindowConfig())
    seg.feed(AudioChunk("mic", a[:8000], 0, T0))
    seg.feed(AudioChunk("mic", a[4000:12000], 4000, T0 + 0.25))
    assert seg.stats.overlap_samples == 4000
    assert seg.buffered_samples <= 12000


def test_chunk_of_another_stream_is_refused() -> None:
    seg = Segmenter("a", VadConfig(), WindowConfig())
    with pytest.raises(ValueError, match=r"'a'.*'b'"):
        seg.feed(AudioChunk("b", np.zeros(160, np.float32), 0, T0))


def test_window_config_errors_and_manifest_defaults() -> None:
    with pytest.raises(ValueError, match=r"windows\.hop_s"):
        WindowConfig(hop_s=3.0)
    with pytest.raises(ValueError, match=r"windows\.window_s"):
        WindowConfig(window_s=9.0)

    class Manifest:
        window_s = 3.0
        hop_s = 1.0
        min_window_s = 0.5
        max_window_s = 8.0

    assert WindowConfig.from_manifest(Manifest()) == WindowConfig(3.0, 1.0, 0.5, 8.0, 0.25)


def test_sample_buffer_addresses_absolute_samples() -> None:
    buf = SampleBuffer(100, start_sample=1000)
    data = np.arange(500, dtype=np.float32)
    for i in range(0, 500, 30):
        buf.append(data[i : i + 30])
        buf.discard_before(1000 + i - 40)
    assert buf.end == 1500
    assert np.array_equal(buf.copy(1450, 1500), data[450:500])
    assert buf.capacity <= 200
    with pytest.raises(IndexError):
        buf.copy(1000, 1010)
