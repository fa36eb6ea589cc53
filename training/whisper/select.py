"""Leave-one-corpus-out choice of encoder depth, head strength and augmentation (docs/default-engine.md, 2.0).

Reads the cached window embeddings (``emb_<corpus>_<clean|aug>.npz`` from ``training.whisper.embed``), and
for every candidate trains on three corpora and scores the fourth per clip, zero-shot. RAVDESS actors 19-24
are dropped on read: they are the test of record. Prints and writes every candidate's figures.

    python -m training.whisper.select CORPORA EMBEDDINGS_DIR OUT.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.data.corpora import load_corpus
from training.data.labels import LABEL_SETS
from training.data.types import Utterance
from training.metrics import ccc, unweighted_accuracy
from training.whisper.embed import Embeddings
from training.whisper.heads import F32, I64, LinearHead, clip_log_probs, fit_head

LABELS = tuple(LABEL_SETS["4"])
CORPORA = ("ravdess", "tess", "ased", "nemo")
TEST_ACTORS = range(19, 25)
WIDTH = 1024  # mean + std of 512 channels per layer


def four_class(corpus: str, root: Path) -> list[Utterance]:
    """The corpus's four-class clips in embedding order (load_corpus order, filtered as when embedded)."""
    return [u for u in load_corpus(corpus, root / corpus) if u.label in LABELS]


def is_test(u: Utterance) -> bool:
    return u.corpus == "ravdess" and int(u.speaker.split("_")[1]) in TEST_ACTORS


@dataclass
class CorpusData:
    """One corpus's clips with their window embeddings, RAVDESS test actors removed."""

    utts: list[Utterance]
    clean: Embeddings
    aug: Embeddings | None

    def labels(self) -> I64:
        return np.asarray([LABELS.index(u.label or "") for u in self.utts], dtype=np.int64)


def keep_clips(e: Embeddings, keep: np.ndarray) -> Embeddings:
    """Windows of the kept clips, clip indices renumbered."""
    new_index = np.cumsum(keep) - 1
    mask = keep[e.clip]
    return Embeddings(values=e.values[mask], clip=new_index[e.clip[mask]])


def load_data(corpora: Path, emb_dir: Path) -> dict[str, CorpusData]:
    out = {}
    for name in CORPORA:
        utts = four_class(name, corpora)
        clean = Embeddings.load(emb_dir / f"emb_{name}_clean.npz")
        aug_path = emb_dir / f"emb_{name}_aug.npz"
        aug = Embeddings.load(aug_path) if aug_path.is_file() else None
        keep = np.asarray([not is_test(u) for u in utts])
        out[name] = CorpusData(
            [u for u, k in zip(utts, keep, strict=True) if k],
            keep_clips(clean, keep),
            keep_clips(aug, keep) if aug is not None else None,
        )
    return out


def layer(values: F32, depth: int) -> F32:
    return values[:, (depth - 1) * WIDTH : depth * WIDTH]


def training_set(
    data: dict[str, CorpusData], names: list[str], depth: int, use_aug: bool
) -> tuple[F32, I64, np.ndarray, list[str]]:
    xs, ys, vads, groups = [], [], [], []
    for name in names:
        d = data[name]
        copies = [d.clean] + ([d.aug] if use_aug and d.aug is not None else [])
        clip_labels = d.labels()
        clip_vad = np.asarray([u.vad for u in d.utts], dtype=np.float64)
        for e in copies:
            xs.append(layer(e.values, depth))
            ys.append(clip_labels[e.clip])
            vads.append(clip_vad[e.clip])
            groups += [name] * len(e.clip)
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(vads), groups


def score_clips(head: LinearHead, d: CorpusData, depth: int) -> dict[str, float]:
    """Per-clip four-class UA and V/A/D CCC (clip = mean of its windows) against the PAD coordinates."""
    x = layer(d.clean.values, depth)
    logp = clip_log_probs(head.logits(x), d.clean.clip, len(d.utts))
    vad = np.zeros((len(d.utts), 3))
    np.add.at(vad, d.clean.clip, head.vad(x))
    vad /= np.maximum(np.bincount(d.clean.clip, minlength=len(d.utts)), 1)[:, None]
    truth = np.asarray([u.vad for u in d.utts], dtype=np.float64)
    out = {"ua": unweighted_accuracy(d.labels(), logp.argmax(axis=1), len(LABELS)), "n": float(len(d.utts))}
    for i, name in enumerate(("valence", "arousal", "dominance")):
        out[f"ccc_{name}"] = ccc(vad[:, i], truth[:, i])
    return out


def fit_setting(
    data: dict[str, CorpusData], names: list[str], depth: int, c: float, use_aug: bool
) -> LinearHead:
    """The head of one setting (depth, C, augmentation) fitted on the voices of ``names``."""
    x, y, vad, groups = training_set(data, names, depth, use_aug)
    return fit_head(x, y, vad, groups, c)


def held_out_scores(
    data: dict[str, CorpusData], held: str, depth: int, c: float, use_aug: bool
) -> dict[str, float]:
    """Train on the other corpora, score ``held`` zero-shot."""
    train = [n for n in CORPORA if n != held]
    return score_clips(fit_setting(data, train, depth, c, use_aug), data[held], depth)


def setting_parser(description: str) -> argparse.ArgumentParser:
    """CORPORA EMBEDDINGS OUT --depth L --c C [--aug]: one chosen setting, as build and report take it."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("corpora", type=Path)
    p.add_argument("embeddings", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--depth", type=int, required=True)
    p.add_argument("--c", type=float, required=True)
    p.add_argument("--aug", action="store_true")
    return p


def held_out_ua(data: dict[str, CorpusData], held: str, depth: int, c: float, use_aug: bool) -> float:
    return held_out_scores(data, held, depth, c, use_aug)["ua"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("corpora", type=Path)
    p.add_argument("embeddings", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--depths", default="1,2,3,4,5")
    p.add_argument("--cs", default="0.01,0.1,1")
    p.add_argument("--aug", default="0,1")
    args = p.parse_args(argv)
    data = load_data(args.corpora, args.embeddings)
    results = json.loads(args.out.read_text()) if args.out.is_file() else []
    done = {(r["depth"], r["c"], r["aug"]) for r in results}
    grid = itertools.product(
        [int(v) for v in args.depths.split(",")],
        [float(v) for v in args.cs.split(",")],
        [bool(int(v)) for v in args.aug.split(",")],
    )
    for depth, c, use_aug in grid:
        if (depth, c, use_aug) in done:
            continue
        per = {held: held_out_ua(data, held, depth, c, use_aug) for held in CORPORA}
        row = {
            "depth": depth,
            "c": c,
            "aug": use_aug,
            "held_out": per,
            "mean": float(np.mean(list(per.values()))),
        }
        results.append(row)
        args.out.write_text(json.dumps(results, indent=1))
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
