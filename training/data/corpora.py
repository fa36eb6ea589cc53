"""Readers that turn an emotional-speech corpus on disk into a list of Utterance records.

Each reader follows the corpus's own file naming (so the original downloads and converted copies with .flac
both work) and fails with a one-line CorpusError naming the directory or file when the layout is not
recognised, nothing is found, or a file carries a label the corpus does not have. This module holds the
readers of corpora whose file names carry the labels and the `load_corpus` entry point.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from pathlib import Path

from training.data.corpora_db import read_csv_manifest, read_iemocap, read_msp_podcast
from training.data.corpora_multilingual import read_ased, read_nemo
from training.data.corpus_base import (
    AUDIO_SUFFIXES,
    CorpusError,
    audio_files,
    map_or_fail,
    nonempty,
    require_dir,
)
from training.data.labels import RAVDESS_NAMES, category_vad
from training.data.types import Utterance

__all__ = ["AUDIO_SUFFIXES", "READERS", "CorpusError", "audio_files", "load_corpus", "parse_corpus_specs"]

_RAVDESS_RE = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
_RAVDESS_STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}


def read_ravdess(root: Path) -> list[Utterance]:
    """RAVDESS speech: `03-01-EE-II-SS-RR-AA` (modality, channel, emotion, intensity, statement, rep,
    actor)."""
    require_dir(root, "RAVDESS")
    out: list[Utterance] = []
    for path in audio_files(root):
        m = _RAVDESS_RE.match(path.stem)
        if m is None:
            raise CorpusError(f"not a RAVDESS file name (03-01-EE-II-SS-RR-AA): {path}")
        _modality, channel, emo, inten, stmt, _rep, actor = m.groups()
        if channel != "01":
            continue  # song recordings are not part of the speech corpus
        if emo not in RAVDESS_NAMES or inten not in ("01", "02") or stmt not in _RAVDESS_STATEMENTS:
            raise CorpusError(
                f"mislabelled RAVDESS file {path}: emotion {emo}, intensity {inten}, statement {stmt}"
            )
        label = map_or_fail("ravdess", emo, path)
        intensity = 0.5 if inten == "01" else 1.0
        out.append(
            Utterance(
                path=path,
                corpus="ravdess",
                speaker=f"ravdess_{int(actor):02d}",
                label=label,
                original_label=RAVDESS_NAMES[emo],
                vad=category_vad(label, intensity),
                intensity=intensity,
                transcript=_RAVDESS_STATEMENTS[stmt],
                gender="male" if int(actor) % 2 == 1 else "female",
            )
        )
    return nonempty(out, "RAVDESS", root)


def read_tess(root: Path) -> list[Utterance]:
    """TESS: `<speaker>_<word>_<emotion>` in `<speaker>_<emotion>/` folders; label from the file name."""
    require_dir(root, "TESS")
    out: list[Utterance] = []
    for path in audio_files(root):
        parts = path.stem.split("_")
        if len(parts) < 3:
            raise CorpusError(f"not a TESS file name (<speaker>_<word>_<emotion>): {path}")
        speaker, word, emo = parts[0].upper(), parts[1], "_".join(parts[2:]).lower()
        label = map_or_fail("tess", emo, path)
        out.append(
            Utterance(
                path=path,
                corpus="tess",
                speaker=f"tess_{speaker}",
                label=label,
                original_label=emo,
                vad=category_vad(label),
                transcript=f"Say the word {word}",
                gender="female",
            )
        )
    return nonempty(out, "TESS", root)


_EMODB_RE = re.compile(r"^(\d\d)([ab]\d\d)([WLEAFTN])([a-z])$")
_EMODB_MALE = {"03", "10", "11", "12", "15"}


def read_emodb(root: Path) -> list[Utterance]:
    """Berlin EmoDB: `03a01Fa` = speaker 03, text a01, emotion F (German initial), version a."""
    require_dir(root, "EmoDB")
    out: list[Utterance] = []
    for path in audio_files(root):
        m = _EMODB_RE.match(path.stem)
        if m is None:
            raise CorpusError(f"not an EmoDB file name (e.g. 03a01Fa): {path}")
        spk, _text, emo, _version = m.groups()
        label = map_or_fail("emodb", emo, path)
        out.append(
            Utterance(
                path=path,
                corpus="emodb",
                speaker=f"emodb_{spk}",
                label=label,
                original_label=emo,
                vad=category_vad(label),
                gender="male" if spk in _EMODB_MALE else "female",
            )
        )
    return nonempty(out, "EmoDB", root)


_CREMAD_RE = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
_CREMAD_SENTENCES = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
_CREMAD_LEVELS: dict[str, float | None] = {"LO": 0.25, "MD": 0.5, "HI": 1.0, "XX": None, "X": None}


def _cremad_genders(root: Path) -> dict[str, str]:
    """Actor genders from VideoDemographics.csv where the download includes it."""
    for cand in (root / "VideoDemographics.csv", root.parent / "VideoDemographics.csv"):
        if cand.is_file():
            with cand.open(newline="") as f:
                return {
                    row["ActorID"].strip(): row["Sex"].strip().lower()
                    for row in csv.DictReader(f)
                    if row.get("ActorID") and row.get("Sex")
                }
    return {}


def read_cremad(root: Path) -> list[Utterance]:
    """CREMA-D: `1001_DFA_ANG_XX` = actor, sentence, emotion, level (LO/MD/HI/XX)."""
    require_dir(root, "CREMA-D")
    genders = _cremad_genders(root)
    out: list[Utterance] = []
    for path in audio_files(root):
        m = _CREMAD_RE.match(path.stem)
        if m is None:
            raise CorpusError(f"not a CREMA-D file name (e.g. 1001_DFA_ANG_XX): {path}")
        actor, sentence, emo, level = m.groups()
        if level not in _CREMAD_LEVELS:
            raise CorpusError(f"mislabelled CREMA-D file {path}: unknown level {level!r}")
        label = map_or_fail("cremad", emo, path)
        intensity = _CREMAD_LEVELS[level]
        out.append(
            Utterance(
                path=path,
                corpus="cremad",
                speaker=f"cremad_{actor}",
                label=label,
                original_label=emo,
                vad=category_vad(label, intensity),
                intensity=intensity,
                transcript=_CREMAD_SENTENCES.get(sentence),
                gender=genders.get(actor),
            )
        )
    return nonempty(out, "CREMA-D", root)


READERS: dict[str, Callable[[Path], list[Utterance]]] = {
    "ravdess": read_ravdess,
    "tess": read_tess,
    "emodb": read_emodb,
    "cremad": read_cremad,
    "ased": read_ased,
    "nemo": read_nemo,
    "iemocap": read_iemocap,
    "msp-podcast": read_msp_podcast,
    "csv": read_csv_manifest,
}


def load_corpus(name: str, root: Path | str) -> list[Utterance]:
    """Read corpus `name` (one of READERS) from `root`, sorted by path for reproducible splits."""
    key = name.strip().lower().replace("_", "-")
    key = {"crema-d": "cremad", "msp": "msp-podcast", "emo-db": "emodb"}.get(key, key)
    if key not in READERS:
        raise CorpusError(f"unknown corpus {name!r}: use one of {', '.join(READERS)}")
    utts = READERS[key](Path(root).expanduser())
    return sorted(utts, key=lambda u: str(u.path))


def parse_corpus_specs(specs: list[str]) -> list[Utterance]:
    """CLI `--corpus NAME=PATH` values read and concatenated."""
    out: list[Utterance] = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise CorpusError(f"bad --corpus {spec!r}: expected NAME=PATH, e.g. ravdess=/data/ravdess")
        out.extend(load_corpus(name, Path(path)))
    return out
