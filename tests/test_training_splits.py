"""Training data beyond the readers: labels, speaker splits, balanced sampling, datasets, augmentation."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_training_data import make_ravdess, make_tess, tone, write
from training.data.augment import (
    Augmenter,
    change_speed,
    mix_at_snr,
    pink_noise,
    shift_pitch,
    synthetic_rir,
    time_stretch,
    white_noise,
)
from training.data.corpora import load_corpus
from training.data.dataset import (
    AudioDataset,
    balanced_sampler,
    balanced_weights,
    collate,
    label_indices,
    load_audio,
    select_labels,
    trim_silence,
)
from training.data.labels import LABEL_SETS, category_vad, map_label, normalise_label, resolve_label_set
from training.data.splits import (
    SplitError,
    default_split,
    devall_split,
    devfold_actors,
    devfold_split,
    fraction_by_speaker,
    kfold_by_speaker,
    parse_split,
    speakers_out,
)
from training.data.types import Utterance

torch.set_num_threads(1)
SR = 16000


def test_labels() -> None:
    assert map_label("ravdess", "06") == "fear"
    assert map_label("tess", "ps") == "surprise"
    assert map_label("emodb", "W") == "angry"
    assert map_label("iemocap", "exc") == "happy" and map_label("iemocap", "fru") is None
    assert normalise_label("Fearful") == "fear" and normalise_label("boredom") is None
    assert resolve_label_set("4") == ["neutral", "happy", "sad", "angry"]
    assert resolve_label_set("sad,angry") == ["sad", "angry"]
    assert len(LABEL_SETS["all"]) == 8
    with pytest.raises(ValueError):
        resolve_label_set("5")
    v, a, d = category_vad("angry", 0.5)  # type: ignore[misc]
    assert (v, a, d) == pytest.approx((-0.51 * 0.75, 0.59 * 0.75, 0.25 * 0.75))
    assert category_vad("neutral", 1.0) == (0.0, 0.0, 0.0) and category_vad(None) is None


# ---------------------------------------------------------------- splits


def _utts(tmp_path: Path) -> list[Utterance]:
    return load_corpus("ravdess", make_ravdess(tmp_path / "rav")) + load_corpus(
        "tess", make_tess(tmp_path / "tess")
    )


def test_default_split(tmp_path: Path) -> None:
    utts = _utts(tmp_path)
    split = default_split(utts)
    spk = split.speakers()
    assert spk["test"] == [f"ravdess_{a}" for a in range(19, 25)]
    assert spk["val"] == ["ravdess_16", "ravdess_17", "ravdess_18"]
    assert spk["train"] == [f"ravdess_{a:02d}" for a in range(1, 16)] + ["tess_OAF", "tess_YAF"]
    assert len(split.train) + len(split.val) + len(split.test) == len(utts)
    assert parse_split("default-test", utts) == split.test
    assert {u.speaker for u in parse_split("speakers=19,tess_OAF", utts)} == {"ravdess_19", "tess_OAF"}
    dev = parse_split("speakers=1-18", utts)  # a range of RAVDESS actors: the development actors only
    assert {u.speaker for u in dev} == {f"ravdess_{a:02d}" for a in range(1, 19)}
    assert {u.speaker for u in parse_split("speakers=2-3,20", utts)} == {
        "ravdess_02",
        "ravdess_03",
        "ravdess_20",
    }
    with pytest.raises(SplitError, match="empty actor range"):
        parse_split("speakers=18-1", utts)
    with pytest.raises(SplitError, match="unknown split"):
        parse_split("random", utts)
    with pytest.raises(SplitError, match="needs RAVDESS"):
        default_split(load_corpus("tess", tmp_path / "tess"))


def test_splits_never_leak_speakers(tmp_path: Path) -> None:
    utts = _utts(tmp_path)
    everyone = {u.speaker for u in utts}
    held_all: list[str] = []
    for fold in range(5):
        train, test = kfold_by_speaker(utts, 5, fold)
        assert not {u.speaker for u in train} & {u.speaker for u in test}
        assert len(train) + len(test) == len(utts)
        held_all += sorted({u.speaker for u in test})
    assert sorted(held_all) == sorted(everyone)  # every speaker tested exactly once
    rest, held = fraction_by_speaker(utts, 0.25, seed=3)
    assert not {u.speaker for u in rest} & {u.speaker for u in held}
    assert {u.corpus for u in held} == {"ravdess", "tess"}  # at least one speaker of each corpus
    assert fraction_by_speaker(utts, 0.25, seed=3) == (rest, held)
    train, test = speakers_out(utts, ["ravdess_03"])
    assert {u.speaker for u in test} == {"ravdess_03"} and "ravdess_03" not in {u.speaker for u in train}
    with pytest.raises(SplitError, match="unknown speaker"):
        speakers_out(utts, ["ravdess_99"])
    with pytest.raises(SplitError):
        kfold_by_speaker(utts, 5, 5)


def test_devfold_split_partitions_actors_1_to_18(tmp_path: Path) -> None:
    utts = _utts(tmp_path)
    default = default_split(utts)
    seen: list[str] = []
    for fold in range(6):
        split = devfold_split(utts, 6, fold)
        spk = split.speakers()
        assert split.test == default.test  # the test set is exactly the default split's
        assert not set(spk["train"]) & set(spk["val"]) and not set(spk["train"]) & set(spk["test"])
        assert not set(spk["val"]) & set(spk["test"])
        assert len(split.train) + len(split.val) + len(split.test) == len(utts)
        assert {"tess_OAF", "tess_YAF"} <= set(spk["train"])
        actors = devfold_actors(6, fold)
        assert len(actors) == 3 and {a % 2 for a in actors} == {0, 1}  # both genders (odd male, even female)
        assert spk["val"] == [f"ravdess_{a:02d}" for a in actors]
        seen += spk["val"]
    assert sorted(seen) == [f"ravdess_{a:02d}" for a in range(1, 19)]  # folds partition actors 1-18
    assert devfold_split(utts, 6, 5).speakers() == default.speakers()  # the last fold is the default split
    for k in range(2, 10):
        folds = [devfold_actors(k, f) for f in range(k)]
        assert sorted(a for f in folds for a in f) == list(range(1, 19))
        assert all({a % 2 for a in f} == {0, 1} for f in folds)
    with pytest.raises(SplitError):
        devfold_actors(6, 6)
    with pytest.raises(SplitError):
        devfold_actors(10, 0)  # folds of one actor would hold one gender


def test_devall_split_trains_on_every_development_actor(tmp_path: Path) -> None:
    utts = _utts(tmp_path)
    default, split = default_split(utts), devall_split(utts)
    assert split.test == default.test and split.val == []
    assert sorted(split.train, key=id) == sorted(default.train + default.val, key=id)
    with pytest.raises(SplitError, match="devall split needs RAVDESS"):
        devall_split([u for u in utts if u.corpus == "tess"])


# ---------------------------------------------------------------- dataset and sampler


def test_balanced_sampler_equalises_corpora_and_speakers(tmp_path: Path) -> None:
    utts = _utts(tmp_path)  # 24 RAVDESS speakers x 4 files vs 2 TESS speakers x 8 files
    labels = LABEL_SETS["4"]
    w = balanced_weights(utts, labels)
    assert w.sum() == pytest.approx(1.0)
    mass = Counter[str]()
    spk_mass = Counter[str]()
    for u, wi in zip(utts, w, strict=True):
        mass[u.corpus] += wi
        spk_mass[u.speaker] += wi
    assert mass["ravdess"] == pytest.approx(0.5) and mass["tess"] == pytest.approx(0.5)
    assert spk_mass["tess_OAF"] == pytest.approx(0.25) and spk_mass["ravdess_07"] == pytest.approx(0.5 / 24)
    cls_mass = Counter[str]()
    for u, wi in zip(utts, w, strict=True):
        cls_mass[u.label or ""] += wi
    assert all(v == pytest.approx(0.25) for v in cls_mass.values())
    draws = list(balanced_sampler(utts, labels, num_samples=4000, seed=1))
    tess_share = sum(utts[i].corpus == "tess" for i in draws) / len(draws)
    assert 0.45 < tess_share < 0.55


def test_dataset_crops_resamples_and_collates(tmp_path: Path) -> None:
    stereo_44k = np.stack([tone(1.5, 300, 44100), tone(1.5, 300, 44100)], axis=1)
    write(tmp_path / "Actor_01" / "03-01-03-02-01-01-01.wav", stereo_44k, 44100)
    write(tmp_path / "Actor_02" / "03-01-02-01-01-01-02.flac", tone(0.4, 200, silence=0.5))
    utts = load_corpus("ravdess", tmp_path)
    assert load_audio(utts[0].path).shape == (int(1.5 * SR),)  # downmixed and resampled to 16 kHz
    labels = LABEL_SETS["4"]
    assert label_indices(utts, labels) == [1, -1]  # calm is outside the four-class set
    assert select_labels(utts, labels) == [utts[0]]
    ds = AudioDataset(utts, labels, crop_s=1.0, seed=7)
    a, b = ds[0], ds[1]
    assert a.audio.shape == (SR,) and a.audio.dtype == np.float32 and a.label == 1
    assert 0.4 * SR <= len(b.audio) <= 0.65 * SR  # silence trimmed (keeping 0.1 s padding), not cropped
    assert np.array_equal(ds[0].audio, a.audio)  # same seed and epoch: same crop
    ds.set_epoch(1)
    assert not np.array_equal(ds[0].audio, a.audio)
    batch = collate([a, b])
    assert batch.audio.shape == (2, SR) and batch.audio.dtype == torch.float32
    assert batch.lengths.tolist() == [SR, len(b.audio)] and batch.labels.tolist() == [1, -1]
    assert float(batch.audio[1, len(b.audio) :].abs().sum()) == 0.0
    assert batch.speakers == ["ravdess_01", "ravdess_02"] and batch.corpora == ["ravdess", "ravdess"]
    assert batch.text[0] == "Kids are talking by the door"
    none_vad = collate([b.__class__(b.audio, -1, None, None, "s", "c")])
    assert torch.isnan(none_vad.vad).all()
    ds_aug = AudioDataset(utts, labels, crop_s=0.5, augment=Augmenter(noise_prob=1.0), seed=1)
    assert ds_aug[0].audio.shape == (SR // 2,)


def test_trim_silence_keeps_speech() -> None:
    x = tone(0.5, 250, silence=1.0)
    y = trim_silence(x, 40.0)
    assert 0.5 * SR <= len(y) <= 0.75 * SR


# ---------------------------------------------------------------- augmentation


def test_augment_keeps_shape_dtype_finite() -> None:
    rng = np.random.default_rng(0)
    x = tone(1.0, 180)
    pool = [tone(0.7, 300), tone(0.4, 500)]
    full = Augmenter(noise_prob=1, reverb_prob=1, gain_prob=1, speed_prob=1, pitch_prob=1, babble_pool=pool)
    for _ in range(10):
        y = full(x, rng)
        assert (
            y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all() and np.abs(y).max() <= 1.0
        )
        assert not np.array_equal(y, x)
    assert full(np.zeros(0, np.float32), rng).shape == (0,)
    nan_in = x.copy()
    nan_in[10] = np.nan
    assert np.isfinite(full(nan_in, rng)).all()
    free = Augmenter(speed_prob=1, noise_prob=0, reverb_prob=0, gain_prob=0, pitch_prob=0, keep_length=False)
    assert len(free(x, rng)) != len(x)
    with pytest.raises(ValueError):
        Augmenter(noise_prob=2.0)
    with pytest.raises(ValueError):
        Augmenter(noise_kinds=("brown",))


def test_augment_pieces() -> None:
    rng = np.random.default_rng(1)
    x = tone(1.0, 200)
    noise = white_noise(len(x), rng)
    y = mix_at_snr(x, noise, 10.0)
    snr = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean((y - x).astype(np.float64) ** 2))
    assert snr == pytest.approx(10.0, abs=0.01)
    p = pink_noise(SR, rng)
    spec = np.abs(np.fft.rfft(p)) ** 2
    assert spec[10:100].mean() > 5 * spec[4000:8000].mean()  # more energy at low frequencies
    ir = synthetic_rir(SR, 0.5, rng)
    assert ir[0] == ir.max() and np.abs(ir[-100:]).max() < 0.05 * ir[0]
    assert len(change_speed(x, 1.1, SR)) == pytest.approx(len(x) / 1.1, abs=2)
    assert len(time_stretch(x, 1.25)) == int(len(x) / 1.25)
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    shifted = shift_pitch(x, 2.0, SR)
    assert len(shifted) == len(x)
    assert freqs[np.argmax(np.abs(np.fft.rfft(shifted)))] == pytest.approx(200 * 2 ** (2 / 12), abs=3)


# ---------------------------------------------------------------- real corpora


@pytest.mark.corpora
def test_real_corpora_counts_and_default_split(corpora_dir: Path) -> None:
    rav = load_corpus("ravdess", corpora_dir / "ravdess")
    tess = load_corpus("tess", corpora_dir / "tess")
    assert len(rav) == 1440 and len(tess) == 2800
    assert len({u.speaker for u in rav}) == 24 and len({u.speaker for u in tess}) == 2
    assert (
        Counter(u.label for u in rav)["neutral"] == 96 and Counter(u.label for u in tess)["surprise"] == 400
    )
    split = default_split(rav + tess)
    spk = split.speakers()
    assert spk["test"] == [f"ravdess_{a}" for a in range(19, 25)] and len(split.test) == 360
    assert spk["val"] == ["ravdess_16", "ravdess_17", "ravdess_18"] and len(split.val) == 180
    assert len(split.train) == 900 + 2800
    assert not set(spk["train"]) & set(spk["test"])


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 9)), min_size=4, max_size=60),
    st.integers(2, 5),
    st.floats(0.0, 0.9),
    st.integers(0, 1000),
)
def test_property_splits_never_share_speakers(
    rows: list[tuple[str, int]], k: int, fraction: float, seed: int
) -> None:
    utts = [Utterance(Path(f"{i}.wav"), c, f"{c}_{s}", "happy", "happy") for i, (c, s) in enumerate(rows)]
    n_speakers = len({u.speaker for u in utts})
    for fold in range(k):
        if n_speakers < k:
            with pytest.raises(SplitError):
                kfold_by_speaker(utts, k, fold)
            break
        train, test = kfold_by_speaker(utts, k, fold)
        assert test and not {u.speaker for u in train} & {u.speaker for u in test}
        assert sorted(map(id, train + test)) == sorted(map(id, utts))
    rest, held = fraction_by_speaker(utts, fraction, seed)
    assert not {u.speaker for u in rest} & {u.speaker for u in held}
    assert len(rest) + len(held) == len(utts)
