"""Speech-to-text for text-using models when a corpus has no transcript: a pluggable `Recognizer`.

The default implementation is CMU PocketSphinx (PyPI `pocketsphinx`, which ships a US-English acoustic
model, language model and dictionary), so transcription runs offline on a CPU with no downloads. Its word
error rate on emotional speech is high; the models that use text are trained with text dropout so that a
wrong or empty transcript degrades them gracefully.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

SAMPLE_RATE = 16000


class RecognizerError(Exception):
    """The recogniser cannot be set up (package missing, model directory incomplete): one line."""


@runtime_checkable
class Recognizer(Protocol):
    """Anything that turns mono float32 audio in [-1, 1] into a transcript ("" when nothing is heard)."""

    def transcribe(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str: ...


def _to_pcm16(audio: np.ndarray, sample_rate: int) -> bytes:
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    if sample_rate != SAMPLE_RATE:
        import soxr

        x = soxr.resample(x, sample_rate, SAMPLE_RATE).astype(np.float32)
    x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    return (np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


class PocketSphinxRecognizer:
    """Offline English recognition with PocketSphinx; `model_dir` overrides the bundled en-us model
    (a directory with the acoustic model folder `en-us/`, `en-us.lm.bin` and `cmudict-en-us.dict`)."""

    def __init__(self, model_dir: Path | str | None = None, *, quiet: bool = True) -> None:
        try:
            import pocketsphinx
        except ImportError:
            raise RecognizerError(
                "pocketsphinx is not installed: pip install 'emotrack[train]' (or pip install pocketsphinx)"
            ) from None
        kwargs: dict[str, Any] = {"samprate": SAMPLE_RATE}
        if quiet:
            kwargs["loglevel"] = "FATAL"
        if model_dir is not None:
            d = Path(model_dir).expanduser()
            parts = {"hmm": d / "en-us" / "en-us", "lm": d / "en-us" / "en-us.lm.bin"}
            parts["dict"] = d / "en-us" / "cmudict-en-us.dict"
            missing = [str(p) for p in parts.values() if not p.exists()]
            if missing:
                raise RecognizerError(f"pocketsphinx model incomplete, missing {missing[0]}")
            kwargs.update({k: str(v) for k, v in parts.items()})
        try:
            self._decoder = pocketsphinx.Decoder(**kwargs)
        except (RuntimeError, ValueError) as e:
            raise RecognizerError(f"pocketsphinx could not start: {' '.join(str(e).split())}") from None

    def transcribe(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str:
        """Decode one utterance; words only (fillers and silences removed), lower case."""
        d = self._decoder
        d.start_utt()
        d.process_raw(_to_pcm16(audio, sample_rate), full_utt=True)
        d.end_utt()
        words = [seg.word for seg in d.seg()]
        keep = [
            w.split("(")[0] for w in words if not (w.startswith("<") or w.startswith("[") or w == "<sil>")
        ]
        return " ".join(keep).lower()


def transcribe_missing(
    texts: list[str | None], audio: list[np.ndarray], recognizer: Recognizer, sample_rate: int = SAMPLE_RATE
) -> list[str]:
    """Fill the missing transcripts of a list of utterances with the recogniser's."""
    if len(texts) != len(audio):
        raise ValueError(f"{len(texts)} transcripts for {len(audio)} clips")
    return [t if t else recognizer.transcribe(a, sample_rate) for t, a in zip(texts, audio, strict=True)]
