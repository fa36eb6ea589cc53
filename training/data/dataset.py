"""Torch dataset over Utterance lists: decoded 16 kHz mono audio cached in RAM, random training crops,
optional augmentation, padding collation, and a sampler that balances corpora, speakers and classes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
from torch.utils.data import Dataset, WeightedRandomSampler

from training.data.augment import Augmenter
from training.data.types import Batch, Utterance

SAMPLE_RATE = 16000


class AudioLoadError(Exception):
    """An audio file that cannot be decoded (one-line message naming it)."""


def load_audio(path: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 at `sample_rate`: channels averaged, resampled with soxr when needed."""
    try:
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioLoadError(f"cannot read audio file {path}: {e}") from None
    mono = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    if sr != sample_rate and len(mono) > 0:
        mono = soxr.resample(mono, sr, sample_rate)
    return np.clip(np.nan_to_num(mono), -1.0, 1.0).astype(np.float32)


def trim_silence(
    x: np.ndarray, top_db: float, sample_rate: int = SAMPLE_RATE, pad_s: float = 0.1
) -> np.ndarray:
    """Drop leading/trailing audio whose 20 ms frame energy is `top_db` below the loudest frame (keeping
    `pad_s` either side): the corpora keep their silences, the streamer only ever scores speech."""
    frame = sample_rate // 50
    n = len(x) // frame
    if n < 3:
        return x
    energy = np.mean(x[: n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1)
    db = 10.0 * np.log10(energy + 1e-12)
    loud = np.flatnonzero(db >= db.max() - top_db)
    pad = int(pad_s * sample_rate)
    start = max(int(loud[0]) * frame - pad, 0)
    end = min((int(loud[-1]) + 1) * frame + pad, len(x))
    return x[start:end]


def label_indices(utts: Sequence[Utterance], labels: Sequence[str]) -> list[int]:
    """Index of each utterance's label in `labels`, -1 where it has none or one outside the set."""
    pos = {lab: i for i, lab in enumerate(labels)}
    return [pos.get(u.label, -1) if u.label is not None else -1 for u in utts]


def select_labels(utts: Sequence[Utterance], labels: Sequence[str]) -> list[Utterance]:
    """Only the utterances whose common label is in `labels` (e.g. the four-class protocol)."""
    keep = set(labels)
    return [u for u in utts if u.label in keep]


@dataclass
class Item:
    """One dataset item before collation."""

    audio: np.ndarray
    label: int
    vad: tuple[float, float, float] | None
    text: str | None
    speaker: str
    corpus: str


class AudioDataset(Dataset[Item]):
    """Utterances as training items.

    crop_s: training crop length (a random window of that many seconds where the utterance is longer; the
    whole utterance otherwise); None keeps whole utterances (evaluation). Randomness (crop position,
    augmentation) comes from (seed, epoch, index), so results do not depend on the number of workers.
    """

    def __init__(
        self,
        utts: Sequence[Utterance],
        labels: Sequence[str],
        *,
        crop_s: float | None = None,
        augment: Augmenter | None = None,
        seed: int = 0,
        sample_rate: int = SAMPLE_RATE,
        trim_db: float | None = 40.0,
        cache: bool = True,
    ) -> None:
        if crop_s is not None and crop_s <= 0:
            raise ValueError(f"crop_s must be positive, got {crop_s}")
        self.utts = list(utts)
        self.labels = list(labels)
        self.targets = label_indices(self.utts, self.labels)
        self.crop = None if crop_s is None else round(crop_s * sample_rate)
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.sample_rate = sample_rate
        self.trim_db = trim_db
        self.cache = cache
        self._audio: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.utts)

    def set_epoch(self, epoch: int) -> None:
        """New crop positions and augmentations for each epoch."""
        self.epoch = epoch

    def audio(self, index: int) -> np.ndarray:
        """Decoded (and trimmed) audio of utterance `index`, stored as int16 in RAM after the first read."""
        cached = self._audio.get(index)
        if cached is not None:
            return cached.astype(np.float32) / 32767.0
        x = load_audio(self.utts[index].path, self.sample_rate)
        if self.trim_db is not None:
            x = trim_silence(x, self.trim_db, self.sample_rate)
        if self.cache:  # return what later reads will return, so the first epoch is not special
            stored = np.round(x * 32767.0).astype(np.int16)
            self._audio[index] = stored
            return stored.astype(np.float32) / 32767.0
        return x

    def preload(self) -> None:
        """Decode everything now (before DataLoader workers fork, so they share the cache)."""
        for i in range(len(self.utts)):
            self.audio(i)

    def __getitem__(self, index: int) -> Item:
        u = self.utts[index]
        x = self.audio(index)
        rng = np.random.default_rng((self.seed, self.epoch, index))
        if self.augment is not None:
            x = self.augment(x, rng)
        if self.crop is not None and len(x) > self.crop:
            start = int(rng.integers(0, len(x) - self.crop + 1))
            x = x[start : start + self.crop]
        return Item(
            audio=np.ascontiguousarray(x, dtype=np.float32),
            label=self.targets[index],
            vad=u.vad,
            text=u.transcript,
            speaker=u.speaker,
            corpus=u.corpus,
        )


def collate(items: Sequence[Item]) -> Batch:
    """Zero-pad to the longest item; lengths keep the valid sample counts."""
    if not items:
        raise ValueError("cannot collate an empty batch")
    longest = max(max(len(it.audio) for it in items), 1)
    audio = torch.zeros(len(items), longest, dtype=torch.float32)
    for i, it in enumerate(items):
        audio[i, : len(it.audio)] = torch.from_numpy(it.audio)
    vad = torch.full((len(items), 3), float("nan"), dtype=torch.float32)
    for i, it in enumerate(items):
        if it.vad is not None:
            vad[i] = torch.tensor(it.vad, dtype=torch.float32)
    return Batch(
        audio=audio,
        lengths=torch.tensor([len(it.audio) for it in items], dtype=torch.int64),
        labels=torch.tensor([it.label for it in items], dtype=torch.int64),
        vad=vad,
        text=[it.text for it in items],
        speakers=[it.speaker for it in items],
        corpora=[it.corpus for it in items],
    )


def balanced_weights(utts: Sequence[Utterance], labels: Sequence[str]) -> np.ndarray:
    """Sampling weights summing to 1: each corpus gets equal mass, split equally among its speakers, split
    equally among each speaker's classes (labels outside the set form one extra class), split equally among
    that class's utterances. So TESS's 2 speakers weigh as much as RAVDESS's 18 together, not 1400 items'
    worth each, and a class recorded half as often (RAVDESS neutral) is drawn as often as the others."""
    if not utts:
        return np.zeros(0, dtype=np.float64)
    targets = label_indices(utts, labels)
    corpora = Counter(u.corpus for u in utts)
    n_spk = Counter(c for c, _ in {(u.corpus, u.speaker) for u in utts})
    cells = Counter((u.corpus, u.speaker, t) for u, t in zip(utts, targets, strict=True))
    classes_per_speaker = Counter((c, s) for c, s, _ in cells)
    w = np.array(
        [
            1.0
            / len(corpora)
            / n_spk[u.corpus]
            / classes_per_speaker[(u.corpus, u.speaker)]
            / cells[(u.corpus, u.speaker, t)]
            for u, t in zip(utts, targets, strict=True)
        ],
        dtype=np.float64,
    )
    return w / w.sum()


def balanced_sampler(
    utts: Sequence[Utterance], labels: Sequence[str], num_samples: int | None = None, seed: int = 0
) -> WeightedRandomSampler:
    """Sampler drawing `num_samples` (default: len(utts)) items with replacement by `balanced_weights`."""
    w = balanced_weights(utts, labels)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return WeightedRandomSampler(
        w.tolist(), num_samples=num_samples or len(utts), replacement=True, generator=gen
    )
