"""Real record instances for sink tests (what the tracker produces), built directly."""

from __future__ import annotations

from streamer.records import EmotionValues, EngineRef, StateRecord, UtteranceRecord, WindowRecord

ENGINE = EngineRef("emotrack-test", "1.0.0")
LABELS = ("neutral", "happy", "sad", "angry")


def values(i: int) -> EmotionValues:
    """Deterministic, varied emotion values (probabilities sum to 1)."""
    raw = [1.0 + ((i + k) % 4) for k in range(len(LABELS))]
    total = sum(raw)
    scores = {lab: r / total for lab, r in zip(LABELS, raw, strict=True)}
    label = max(scores, key=lambda k: scores[k])
    return EmotionValues(label, scores, 0.1 * (i % 5) - 0.2, 0.05 * (i % 7), -0.3 + 0.01 * i)


def window(stream: str, seq: int, *, utterance: int = 0, wall_time: float = 1.8e9) -> WindowRecord:
    start = 0.5 * seq
    return WindowRecord(
        stream=stream,
        seq=seq,
        utterance=utterance,
        window=seq,
        start=start,
        end=start + 2.0,
        wall_time=wall_time + start + 2.0,
        raw=values(seq),
        smoothed=values(seq + 1),
        engine=ENGINE,
    )


def utterance(stream: str, seq: int, *, utterance: int = 0, windows: int = 3) -> UtteranceRecord:
    return UtteranceRecord(
        stream=stream,
        seq=seq,
        utterance=utterance,
        start=0.25,
        end=0.25 + 0.5 * windows + 1.5,
        wall_time=1.8e9 + 4.0,
        windows=windows,
        dropped=0,
        summary=values(seq),
        engine=ENGINE,
    )


def state(stream: str, seq: int, status: str = "speaking") -> StateRecord:
    return StateRecord(
        stream=stream,
        seq=seq,
        status=status,
        audio_time=0.5 * seq + 2.0,
        wall_time=1.8e9 + 0.5 * seq + 2.0,
        current=values(seq),
        engine=ENGINE,
    )
