"""Readers of corpora distributed with label databases rather than label-bearing file names: IEMOCAP
(EmoEvaluation files per dialogue), MSP-Podcast (a consensus-label table) and generic CSV manifests. Their
dimensional ratings become the V/A/D targets."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from training.data.corpus_base import AUDIO_SUFFIXES, CorpusError, map_or_fail, nonempty, require_dir
from training.data.labels import UnknownLabelError, category_vad, map_label, scale_rating
from training.data.types import Utterance

_IEMOCAP_LINE = re.compile(
    r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(\S+)\s+(\S+)\s+\[\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*\]"
)
_IEMOCAP_TRANSCRIPT = re.compile(r"^(Ses\S+)\s+\[[^\]]*\]:\s*(.*)$")


def _iemocap_sessions(root: Path) -> list[Path]:
    for base in (root, root / "IEMOCAP_full_release"):
        sessions = sorted(p for p in base.glob("Session[1-5]") if p.is_dir())
        if sessions:
            return sessions
    return []


def read_iemocap(root: Path) -> list[Utterance]:
    """IEMOCAP: `SessionN/dialog/EmoEvaluation/*.txt` labels + `SessionN/sentences/wav/<dialog>/<utt>.wav`.

    Valence/activation/dominance ratings (1-5) become the V/A/D targets; the speaker is the session plus the
    gender letter of the utterance id (Ses01F_impro01_M003 is spoken by the man of session 1).
    """
    require_dir(root, "IEMOCAP")
    sessions = _iemocap_sessions(root)
    if not sessions:
        raise CorpusError(f"unrecognised IEMOCAP layout in {root}: expected Session1..Session5 folders")
    out: list[Utterance] = []
    for session in sessions:
        eval_dir = session / "dialog" / "EmoEvaluation"
        if not eval_dir.is_dir():
            raise CorpusError(f"unrecognised IEMOCAP layout: {eval_dir} is missing")
        transcripts: dict[str, str] = {}
        for tfile in sorted((session / "dialog" / "transcriptions").glob("*.txt")):
            for line in tfile.read_text(errors="replace").splitlines():
                tm = _IEMOCAP_TRANSCRIPT.match(line.strip())
                if tm:
                    transcripts[tm.group(1)] = tm.group(2).strip()
        for efile in sorted(eval_dir.glob("*.txt")):
            dialog = efile.stem
            for line in efile.read_text(errors="replace").splitlines():
                m = _IEMOCAP_LINE.match(line.strip())
                if m is None:
                    continue
                utt_id, emo, v, a, d = m.groups()
                wav_dir = session / "sentences" / "wav" / dialog
                path = next(
                    (
                        wav_dir / f"{utt_id}{s}"
                        for s in AUDIO_SUFFIXES
                        if (wav_dir / f"{utt_id}{s}").is_file()
                    ),
                    None,
                )
                if path is None:
                    continue  # labelled turn without audio (the release has a few); skipped, not an error
                label = map_or_fail("iemocap", emo, efile)
                gender_letter = utt_id.rsplit("_", 1)[-1][:1]
                vad = (
                    scale_rating(float(v), 1, 5),
                    scale_rating(float(a), 1, 5),
                    scale_rating(float(d), 1, 5),
                )
                out.append(
                    Utterance(
                        path=path,
                        corpus="iemocap",
                        speaker=f"iemocap_{session.name[-1]}{gender_letter}",
                        label=label,
                        original_label=emo,
                        vad=vad,
                        transcript=transcripts.get(utt_id),
                        gender={"F": "female", "M": "male"}.get(gender_letter),
                    )
                )
    return nonempty(out, "IEMOCAP", root)


def _msp_rows(root: Path) -> list[dict[str, str]]:
    labels = root / "Labels"
    csv_path, json_path = labels / "labels_consensus.csv", labels / "labels_consensus.json"
    if csv_path.is_file():
        with csv_path.open(newline="") as f:
            return [dict(r) for r in csv.DictReader(f)]
    if json_path.is_file():
        try:
            data = json.loads(json_path.read_text())
        except json.JSONDecodeError as e:
            raise CorpusError(f"corrupt MSP-Podcast labels {json_path}: {e.msg}") from None
        if not isinstance(data, dict):
            raise CorpusError(
                f"corrupt MSP-Podcast labels {json_path}: expected an object keyed by file name"
            )
        return [{"FileName": k, **{kk: str(vv) for kk, vv in v.items()}} for k, v in data.items()]
    raise CorpusError(
        f"unrecognised MSP-Podcast layout in {root}: Labels/labels_consensus.csv or .json missing"
    )


def _msp_transcript(root: Path, name: str) -> str | None:
    p = root / "Transcripts" / f"{Path(name).stem}.txt"
    return p.read_text(errors="replace").strip() if p.is_file() else None


def read_msp_podcast(root: Path) -> list[Utterance]:
    """MSP-Podcast: `Labels/labels_consensus.{csv,json}` (EmoClass, EmoAct/Val/Dom 1-7, SpkrID) and
    `Audios/`."""
    require_dir(root, "MSP-Podcast")
    audio_dir = next((root / d for d in ("Audios", "Audio", "audios") if (root / d).is_dir()), None)
    if audio_dir is None:
        raise CorpusError(f"unrecognised MSP-Podcast layout in {root}: no Audios/ folder")
    out: list[Utterance] = []
    for row in _msp_rows(root):
        name = row.get("FileName", "").strip()
        path = audio_dir / name
        if not name or not path.is_file():
            continue  # labels of the whole release, audio of a partial copy
        emo = row.get("EmoClass", "").strip()
        label = map_or_fail("msp-podcast", emo, path)
        try:
            vad = (
                scale_rating(float(row["EmoVal"]), 1, 7),
                scale_rating(float(row["EmoAct"]), 1, 7),
                scale_rating(float(row["EmoDom"]), 1, 7),
            )
        except (KeyError, ValueError):
            vad = None
        spk = row.get("SpkrID", "").strip() or "unknown"
        gender = row.get("Gender", "").strip().lower() or None
        out.append(
            Utterance(
                path=path,
                corpus="msp-podcast",
                speaker=f"msp_{spk}",
                label=label,
                original_label=emo,
                vad=vad,
                transcript=_msp_transcript(root, name),
                gender=gender if gender in ("female", "male") else None,
            )
        )
    return nonempty(out, "MSP-Podcast", root)


def _opt_float(row: dict[str, str], key: str, manifest: Path, line: int) -> float | None:
    raw = (row.get(key) or "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise CorpusError(f"{manifest} line {line}: {key} {raw!r} is not a number") from None


def read_csv_manifest(manifest: Path) -> list[Utterance]:
    """A generic manifest: columns path, speaker, label (required); corpus, valence, arousal, dominance (in
    [-1, 1]), intensity, transcript, gender (optional). Relative paths are relative to the manifest."""
    if manifest.is_dir():
        manifest = manifest / "manifest.csv"
    if not manifest.is_file():
        raise CorpusError(f"CSV manifest not found: {manifest}")
    with manifest.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"path", "speaker", "label"} - set(reader.fieldnames or [])
        if missing:
            raise CorpusError(f"CSV manifest {manifest} lacks column(s): {', '.join(sorted(missing))}")
        rows = list(reader)
    out: list[Utterance] = []
    for i, row in enumerate(rows, start=2):
        path = Path(row["path"].strip())
        path = path if path.is_absolute() else manifest.parent / path
        if not path.is_file():
            raise CorpusError(f"{manifest} line {i}: audio file not found: {path}")
        original = row["label"].strip()
        label = None
        if original:
            try:
                label = map_label("csv", original)
            except UnknownLabelError:
                raise CorpusError(
                    f"mislabelled entry {manifest} line {i}: unknown emotion {original!r}"
                ) from None
        v, a, d = (_opt_float(row, k, manifest, i) for k in ("valence", "arousal", "dominance"))
        intensity = _opt_float(row, "intensity", manifest, i)
        vad = (
            (v, a, d) if v is not None and a is not None and d is not None else category_vad(label, intensity)
        )
        out.append(
            Utterance(
                path=path,
                corpus=(row.get("corpus") or "").strip() or "csv",
                speaker=row["speaker"].strip() or "unknown",
                label=label,
                original_label=original or None,
                vad=vad,
                intensity=intensity,
                transcript=(row.get("transcript") or "").strip() or None,
                gender=(row.get("gender") or "").strip().lower() or None,
            )
        )
    return nonempty(out, "CSV manifest", manifest)
