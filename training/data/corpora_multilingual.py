"""Readers of the non-English corpora: ASED (Amharic) and nEMO (Polish).

They widen the training voices beyond acted North American English, so that a model has to learn emotion
rather than a handful of speakers and one language. Both are distributed here as Ogg Opus; names follow
each corpus's own convention (see ../shared/corpora/README.md), and a file that does not fit is a one-line
CorpusError naming it.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from training.data.corpus_base import CorpusError, audio_files, map_or_fail, nonempty, require_dir
from training.data.labels import category_vad
from training.data.types import Utterance

# `{e}{n}-{sentence}-{repetition}-{gender}-{speaker}`, e.g. n1-01-01-01-01 (letter + folder number first).
_ASED_RE = re.compile(r"^([nfhsaNFHSA])(\d)-(\d\d)-(\d\d)-(\d\d)-(\d+)$")
_ASED_GENDERS = {"01": "female", "02": "male"}


def read_ased(root: Path) -> list[Utterance]:
    """ASED v1: the emotion is the first letter; the speaker is the last field alone (a few speaker
    numbers appear under both gender codes, so the gender code is not part of the identity)."""
    require_dir(root, "ASED")
    out: list[Utterance] = []
    for path in audio_files(root):
        m = _ASED_RE.match(path.stem)
        if m is None:
            raise CorpusError(f"not an ASED file name (e.g. n1-01-01-01-01): {path}")
        letter, _folder, _sentence, _rep, gender, speaker = m.groups()
        label = map_or_fail("ased", letter.lower(), path)
        out.append(
            Utterance(
                path=path,
                corpus="ased",
                speaker=f"ased_{int(speaker):02d}",
                label=label,
                original_label=letter.lower(),
                vad=category_vad(label),
                gender=_ASED_GENDERS.get(gender),
            )
        )
    return nonempty(out, "ASED", root)


_NEMO_RE = re.compile(r"^([A-Za-z0-9]+)_([a-z]+)_(\d+)$")


def _nemo_table(root: Path) -> dict[str, dict[str, str]]:
    """data.tsv rows by file stem (the table names .wav files; the copies here may be .opus)."""
    table = root / "data.tsv"
    if not table.is_file():
        raise CorpusError(f"nEMO table not found: {table}")
    try:
        with table.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise CorpusError(f"unreadable nEMO table {table}: {exc}") from None
    if rows and not {"file_id", "emotion", "speaker_id"} <= set(rows[0]):
        raise CorpusError(f"nEMO table {table} lacks file_id, emotion or speaker_id columns")
    return {Path(r["file_id"].strip()).stem: r for r in rows}


def read_nemo(root: Path) -> list[Utterance]:
    """nEMO: `<speaker>_<emotion>_<n>` in per-speaker folders; speaker, gender and transcript from data.tsv,
    whose emotion must agree with the file name."""
    require_dir(root, "nEMO")
    table = _nemo_table(root)
    out: list[Utterance] = []
    for path in audio_files(root):
        m = _NEMO_RE.match(path.stem)
        if m is None:
            raise CorpusError(f"not an nEMO file name (<speaker>_<emotion>_<n>): {path}")
        name_speaker, emo, _n = m.groups()
        row = table.get(path.stem)
        if row is None:
            raise CorpusError(f"nEMO file {path} is not listed in {root / 'data.tsv'}")
        if row["emotion"].strip().lower() != emo:
            raise CorpusError(f"nEMO file {path}: data.tsv says {row['emotion']!r}, the name says {emo!r}")
        speaker = row["speaker_id"].strip() or name_speaker
        label = map_or_fail("nemo", emo, path)
        out.append(
            Utterance(
                path=path,
                corpus="nemo",
                speaker=f"nemo_{speaker}",
                label=label,
                original_label=emo,
                vad=category_vad(label),
                transcript=(row.get("raw_text") or "").strip() or None,
                gender=(row.get("gender") or "").strip().lower() or None,
            )
        )
    return nonempty(out, "nEMO", root)
