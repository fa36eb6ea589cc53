"""The shipped default engine (engines/default, emotrack-whisper 2.0): manifest, provenance, size, the
daemon's path, batch independence, and its recorded test figures reproduced from the audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from engines import load_engine, read_manifest
from engines.loader import default_engine_path
from tests.fixtures_engine import scores_through_segmenter_and_batcher, shipped_figures_reproduced

ENGINE = default_engine_path()
pytestmark = pytest.mark.skipif(
    not (ENGINE / "engine.json").is_file(), reason="engines/default is not bundled"
)


def test_manifest_states_provenance_licence_and_figures() -> None:
    m = read_manifest(ENGINE)
    m.validate()
    assert (m.name, m.version) == ("emotrack-whisper", "2.0.0")
    assert list(m.labels) == ["neutral", "happy", "sad", "angry"]
    assert m.outputs.logits and m.outputs.vad and m.window_s == 2.0
    p = m.provenance
    for corpus in ("RAVDESS", "TESS", "ASED", "nEMO"):
        assert corpus in p.training_data
    assert "Whisper-base" in p.training_data and "19-24" in p.training_data
    assert "CC BY-NC-SA 4.0" in p.license and "MIT" in p.license
    assert p.command.startswith("python -m training.whisper.build") and len(p.code_version) >= 40
    for key in ("ua_4", "wa_4", "n_4", "ccc", "test_set", "leave_one_corpus_out", "selection"):
        assert key in p.metrics, key
    loco = p.metrics["leave_one_corpus_out"]
    assert set(loco["per_corpus"]) == {"ravdess", "tess", "ased", "nemo"}
    assert loco["mean_ua"] == pytest.approx(np.mean([v["ua"] for v in loco["per_corpus"].values()]))


def test_engine_files_stay_small() -> None:
    assert sum(f.stat().st_size for f in ENGINE.rglob("*") if f.is_file()) < 30 * 1024 * 1024


def test_a_window_scores_the_same_alone_and_in_any_batch(speech_wav: Path) -> None:
    """The daemon batches windows across streams: one stream's audio must never move another's scores
    (dynamic int8 quantisation did: one scale per batch tensor)."""
    engine = load_engine(ENGINE, backend="onnxruntime-cpu", intra_op_threads=1)
    x, _ = sf.read(speech_wav, dtype="float32")
    window = x[16000:48000]
    loud = np.clip(np.random.default_rng(0).standard_normal(32000) * 0.9, -1, 1).astype(np.float32)
    alone = engine.infer(window[None])
    mixed = engine.infer(np.stack([window, loud, window * 0.01]))
    assert alone.logits is not None and mixed.logits is not None and mixed.vad is not None
    np.testing.assert_allclose(mixed.logits[0], alone.logits[0], atol=1e-4)
    assert np.all(np.abs(mixed.vad) <= 1.0)


async def test_engine_in_the_segmenter_and_batcher_path(speech_wav: Path) -> None:
    await scores_through_segmenter_and_batcher(ENGINE, speech_wav)


@pytest.mark.corpora
def test_shipped_figures_match_a_fresh_evaluation(corpora_dir: Path) -> None:
    shipped_figures_reproduced(ENGINE, corpora_dir / "ravdess", threads=2)
