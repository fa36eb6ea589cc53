"""StreamTracker: records from windows and scores, per-stream seq, utterance summaries, state."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamer.messages import AudioChunk, Scores, SpeechWindow, UtteranceEnded, UtteranceStarted
from streamer.records import EngineRef, UtteranceRecord, WindowRecord
from streamer.segmenter import Segmenter, WindowConfig
from streamer.smoothing import SmoothingConfig
from streamer.tracker import StreamTracker
from streamer.vad import VadConfig

SR = 16000
LABELS = ("neutral", "happy", "sad", "angry")
ENGINE = EngineRef("tiny", "0.0.1")


def window(utt: int, index: int, start_s: float, length_s: float = 2.0) -> SpeechWindow:
    s = int(start_s * SR)
    n = int(length_s * SR)
    return SpeechWindow("s1", utt, index, s, s + n, np.zeros(n, np.float32), 1000.0 + (s + n) / SR)


def scores_from_audio(samples: np.ndarray) -> Scores:
    """A deterministic stand-in for an engine: probabilities and V/A/D from level and brightness."""
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    spec = np.abs(np.fft.rfft(samples[: 4096 if len(samples) >= 4096 else len(samples)]))
    centroid = float((spec * np.arange(len(spec))).sum() / (spec.sum() + 1e-9) / len(spec))
    logits = np.array([1.0, 8 * rms, 4 * centroid, 20 * rms * centroid])
    p = np.exp(logits - logits.max())
    p /= p.sum()
    return Scores(
        probabilities=dict(zip(LABELS, p.tolist(), strict=True)),
        vad=(float(np.tanh(centroid - 0.2)), float(np.tanh(5 * rms)), float(np.tanh(rms - 0.1))),
    )


def tracker(start_seq: int = 0) -> StreamTracker:
    return StreamTracker("s1", ENGINE, LABELS, True, SmoothingConfig(), start_seq=start_seq)


def test_window_records_carry_raw_and_smoothed_values() -> None:
    tr = tracker()
    s = Scores({"neutral": 0.1, "happy": 0.7, "sad": 0.1, "angry": 0.1}, (0.5, 0.4, 0.3))
    rec = tr.on_window(window(0, 0, 1.0), s)
    assert isinstance(rec, WindowRecord)
    assert (rec.stream, rec.seq, rec.utterance, rec.window) == ("s1", 0, 0, 0)
    assert (rec.start, rec.end) == (1.0, 3.0)
    assert rec.wall_time == pytest.approx(1003.0)
    assert rec.raw.label == "happy" and rec.raw.valence == 0.5
    assert rec.smoothed.label == "happy"
    assert rec.engine == ENGINE
    payload = json.loads(json.dumps(rec.to_dict()))
    assert payload["type"] == "window" and payload["smoothed"]["scores"]["happy"] == 0.7


def test_seq_is_shared_monotonic_and_skips_dropped_windows() -> None:
    tr = tracker(start_seq=41)
    s = Scores({k: 0.25 for k in LABELS}, None)
    seqs = []
    for utt in range(3):
        for i in range(4):
            rec = tr.on_window(window(utt, utt * 4 + i, utt * 10 + 0.5 * i), None if i == 2 else s)
            if i == 2:
                assert rec is None
            else:
                assert rec is not None
                seqs.append(rec.seq)
        end = tr.on_utterance_end(UtteranceEnded("s1", utt, utt * 10 * SR, (utt * 10 + 3) * SR, 0.0, 4))
        seqs.append(end.seq)
        assert (end.windows, end.dropped) == (4, 1)
    assert seqs == list(range(41, 41 + 12))
    assert tr.next_seq == 53
    assert tr.stats.windows_dropped == 3 and tr.stats.windows_scored == 9
    assert tr.state("silent", 40.0, 1040.0).seq == 52


def test_utterance_summary_is_the_mean_of_its_scored_windows() -> None:
    rng = np.random.default_rng(7)
    tr = tracker()
    rows = []
    for i in range(5):
        p = rng.dirichlet(np.ones(4))
        v = tuple(rng.uniform(-1, 1, 3).tolist())
        s = Scores(dict(zip(LABELS, p.tolist(), strict=True)), v)  # type: ignore[arg-type]
        rows.append((p, v))
        tr.on_window(window(0, i, 0.5 * i), s)
    tr.on_window(window(0, 5, 2.5), None)
    rec = tr.on_utterance_end(UtteranceEnded("s1", 0, 0, 72000, 1004.5, 6))
    assert isinstance(rec, UtteranceRecord)
    mean_p = np.mean([p for p, _ in rows], axis=0)
    mean_v = np.mean([v for _, v in rows], axis=0)
    assert rec.summary.scores is not None
    assert [rec.summary.scores[k] for k in LABELS] == pytest.approx(mean_p.tolist())
    assert rec.summary.label == LABELS[int(np.argmax(mean_p))]
    assert (rec.summary.valence, rec.summary.arousal, rec.summary.dominance) == pytest.approx(tuple(mean_v))
    assert (rec.start, rec.end, rec.windows, rec.dropped) == (0.0, 4.5, 6, 1)
    assert json.loads(json.dumps(rec.to_dict()))["duration"] == 4.5


def test_utterance_with_every_window_dropped_has_an_empty_summary() -> None:
    tr = tracker()
    tr.on_window(window(0, 0, 0.0), None)
    rec = tr.on_utterance_end(UtteranceEnded("s1", 0, 0, 32000, 1002.0, 1))
    assert rec.summary.label is None and rec.summary.scores is None and rec.summary.valence is None
    assert rec.dropped == 1


def test_state_applies_the_silence_policy() -> None:
    tr = StreamTracker("s1", ENGINE, LABELS, True, SmoothingConfig(silence="decay", silence_tau_s=1.0))
    assert tr.state("silent", 0.0, 1000.0).seq == -1  # nothing published yet
    tr.on_window(window(0, 0, 0.0), Scores({"neutral": 0, "happy": 0, "sad": 1.0, "angry": 0}, (-1, -1, -1)))
    speaking = tr.state("speaking", 2.0, 1002.0)
    assert speaking.current.valence == pytest.approx(-1.0)
    silent = tr.state("silent", 12.0, 1012.0)
    assert silent.current.valence == pytest.approx(-np.exp(-10.0), abs=1e-6)
    assert silent.current.label == "neutral"
    assert json.loads(json.dumps(silent.to_dict()))["status"] == "silent"
    with pytest.raises(ValueError, match="status"):
        tr.state("asleep", 12.0, 1012.0)


def test_vad_only_engine() -> None:
    tr = StreamTracker("s1", ENGINE, None, True, SmoothingConfig())
    rec = tr.on_window(window(0, 0, 0.0), Scores(None, (0.2, 0.3, 0.4)))
    assert rec is not None and rec.raw.label is None and rec.smoothed.scores is None
    end = tr.on_utterance_end(UtteranceEnded("s1", 0, 0, 32000, 1002.0, 1))
    assert end.summary.label is None and end.summary.arousal == pytest.approx(0.3)


def test_segmenter_to_records_on_real_speech(speech_wav: Path) -> None:
    """Segment real speech, score every window from its audio (every 3rd one lost), build records."""
    audio, _ = sf.read(speech_wav, dtype="float32")
    seg = Segmenter("s1", VadConfig(), WindowConfig())
    tr = tracker()
    records: list[WindowRecord | UtteranceRecord] = []
    expected_means: dict[int, list[Scores]] = {}
    started = []
    for i in range(0, len(audio), 3200):
        chunk = AudioChunk("s1", np.asarray(audio[i : i + 3200], np.float32), i, 1000.0 + i / SR)
        for ev in seg.feed(chunk) + (seg.finish(0.0) if i + 3200 >= len(audio) else []):
            if isinstance(ev, UtteranceStarted):
                started.append(ev.utterance_id)
            elif isinstance(ev, SpeechWindow):
                s = None if ev.index % 3 == 2 else scores_from_audio(ev.samples)
                if s is not None:
                    expected_means.setdefault(ev.utterance_id, []).append(s)
                rec = tr.on_window(ev, s)
                if rec is not None:
                    records.append(rec)
            else:
                records.append(tr.on_utterance_end(ev))
    assert started == [0, 1]
    assert [r.seq for r in records] == list(range(len(records)))
    utts = [r for r in records if isinstance(r, UtteranceRecord)]
    assert [u.utterance for u in utts] == [0, 1]
    for u in utts:
        mine = [r for r in records if isinstance(r, WindowRecord) and r.utterance == u.utterance]
        assert u.windows == len(mine) + u.dropped and u.dropped >= 1
        assert all(u.start <= r.start and r.end <= u.end for r in mine)
        probs = np.mean([[s.probabilities[k] for k in LABELS] for s in expected_means[u.utterance]], axis=0)  # type: ignore[index]
        assert u.summary.scores is not None
        assert [u.summary.scores[k] for k in LABELS] == pytest.approx(probs.tolist())
    for r in records:
        json.dumps(r.to_dict())
