"""Corpus readers on generated files named as each corpus names them, and their one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from training.data.corpora import CorpusError, load_corpus, parse_corpus_specs
from training.data.labels import category_vad

torch.set_num_threads(1)
SR = 16000


def tone(seconds: float = 0.3, freq: float = 220.0, sr: int = SR, silence: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * np.random.default_rng(int(freq)).standard_normal(len(t))
    pad = np.zeros(int(silence * sr))
    return np.concatenate([pad, x, pad]).astype(np.float32)


def write(path: Path, x: np.ndarray | None = None, sr: int = SR) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone() if x is None else x, sr)
    return path


def make_ravdess(
    root: Path, actors: range = range(1, 25), emotions: tuple[str, ...] = ("01", "03", "04", "05")
) -> Path:
    for a in actors:
        for e in emotions:
            inten = "01" if e == "01" else "02"
            write(
                root / f"Actor_{a:02d}" / f"03-01-{e}-{inten}-01-01-{a:02d}.wav", tone(0.3, 150 + 40 * int(e))
            )
    return root


def make_tess(root: Path) -> Path:
    for spk in ("OAF", "YAF"):
        for emo in ("angry", "happy", "sad", "neutral"):
            for word in ("back", "bath"):
                write(root / f"{spk}_{emo}" / f"{spk}_{word}_{emo}.wav")
    return root


# ---------------------------------------------------------------- readers


def test_ravdess_reader_wav_and_flac(tmp_path: Path) -> None:
    write(tmp_path / "Actor_12" / "03-01-05-02-01-01-12.wav")
    write(tmp_path / "Actor_01" / "03-01-02-01-02-02-01.flac")
    write(tmp_path / "Actor_01" / "03-02-03-01-01-01-01.wav")  # song: not part of the speech corpus
    utts = load_corpus("ravdess", tmp_path)
    assert [u.path.name for u in utts] == ["03-01-02-01-02-02-01.flac", "03-01-05-02-01-01-12.wav"]
    calm, angry = utts
    assert (angry.label, angry.original_label, angry.speaker, angry.gender) == (
        "angry",
        "angry",
        "ravdess_12",
        "female",
    )
    assert angry.intensity == 1.0 and angry.transcript == "Kids are talking by the door"
    assert angry.vad == pytest.approx(category_vad("angry"))  # strong intensity: the full PAD point
    assert (calm.label, calm.speaker, calm.gender, calm.intensity) == ("calm", "ravdess_01", "male", 0.5)
    assert calm.vad == pytest.approx(tuple(0.75 * v for v in category_vad("calm")))  # type: ignore[union-attr]
    assert calm.transcript == "Dogs are sitting by the door"


def test_tess_reader(tmp_path: Path) -> None:
    write(tmp_path / "OAF_angry" / "OAF_back_angry.wav")
    write(tmp_path / "YAF_pleasant_surprised" / "YAF_bath_ps.flac")
    utts = load_corpus("tess", tmp_path)
    by_name = {u.path.name: u for u in utts}
    a, ps = by_name["OAF_back_angry.wav"], by_name["YAF_bath_ps.flac"]
    assert (a.label, a.speaker, a.transcript, a.gender) == (
        "angry",
        "tess_OAF",
        "Say the word back",
        "female",
    )
    assert (ps.label, ps.original_label, ps.speaker) == ("surprise", "ps", "tess_YAF")


def test_emodb_reader(tmp_path: Path) -> None:
    write(tmp_path / "wav" / "03a01Fa.wav")
    write(tmp_path / "wav" / "08b02Lc.wav")
    utts = {u.path.stem: u for u in load_corpus("emodb", tmp_path)}
    assert (utts["03a01Fa"].label, utts["03a01Fa"].speaker, utts["03a01Fa"].gender) == (
        "happy",
        "emodb_03",
        "male",
    )
    bored = utts["08b02Lc"]
    assert (
        bored.label is None and bored.original_label == "L" and bored.gender == "female" and bored.vad is None
    )


def test_cremad_reader(tmp_path: Path) -> None:
    write(tmp_path / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    write(tmp_path / "AudioWAV" / "1002_IEO_SAD_HI.flac")
    (tmp_path / "VideoDemographics.csv").write_text(
        "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,C,N\n1002,21,Female,C,N\n"
    )
    utts = {u.path.stem: u for u in load_corpus("crema-d", tmp_path)}
    a = utts["1001_DFA_ANG_XX"]
    assert (a.label, a.speaker, a.intensity, a.transcript, a.gender) == (
        "angry",
        "cremad_1001",
        None,
        "Don't forget a jacket",
        "male",
    )
    s = utts["1002_IEO_SAD_HI"]
    assert (s.label, s.intensity, s.gender, s.transcript) == ("sad", 1.0, "female", "It's eleven o'clock")


def make_iemocap(root: Path) -> Path:
    s = root / "IEMOCAP_full_release" / "Session1"
    ev = s / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt"
    ev.parent.mkdir(parents=True)
    ev.write_text(
        "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
        "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\n"
        "C-E2:\tNeutral;\t()\n\n"
        "[10.0100 - 11.3925]\tSes01F_impro01_M001\texc\t[4.0000, 4.5000, 3.5000]\n\n"
        "[14.8872 - 18.0175]\tSes01F_impro01_F002\tfru\t[1.5000, 3.5000, 3.0000]\n\n"
        "[20.0 - 21.0]\tSes01F_impro01_F003\tang\t[1.0000, 5.0000, 5.0000]\n"
    )
    tr = s / "dialog" / "transcriptions" / "Ses01F_impro01.txt"
    tr.parent.mkdir(parents=True)
    tr.write_text(
        "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.\nSes01F_impro01_M001 [010.0100-011.3925]: Yes!\n"
    )
    wav = s / "sentences" / "wav" / "Ses01F_impro01"
    for utt in ("Ses01F_impro01_F000", "Ses01F_impro01_M001", "Ses01F_impro01_F002"):  # F003 has no audio
        write(wav / f"{utt}.wav")
    return root


def test_iemocap_reader(tmp_path: Path) -> None:
    utts = {u.path.stem: u for u in load_corpus("iemocap", make_iemocap(tmp_path))}
    assert sorted(utts) == ["Ses01F_impro01_F000", "Ses01F_impro01_F002", "Ses01F_impro01_M001"]
    f0, m1, f2 = utts["Ses01F_impro01_F000"], utts["Ses01F_impro01_M001"], utts["Ses01F_impro01_F002"]
    assert (f0.label, f0.speaker, f0.gender, f0.transcript) == (
        "neutral",
        "iemocap_1F",
        "female",
        "Excuse me.",
    )
    assert f0.vad == pytest.approx((-0.25, -0.25, -0.25))
    assert (m1.label, m1.original_label, m1.speaker, m1.gender) == ("happy", "exc", "iemocap_1M", "male")
    assert m1.vad == pytest.approx((0.5, 0.75, 0.25))
    assert f2.label is None and f2.original_label == "fru" and f2.transcript is None


def test_msp_podcast_reader_csv_and_json(tmp_path: Path) -> None:
    write(tmp_path / "Audios" / "MSP-PODCAST_0001_0008.wav")
    write(tmp_path / "Audios" / "MSP-PODCAST_0002_0010.wav")
    (tmp_path / "Labels").mkdir()
    (tmp_path / "Labels" / "labels_consensus.csv").write_text(
        "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set\n"
        "MSP-PODCAST_0001_0008.wav,H,5.2,6.0,4.0,127,Female,Train\n"
        "MSP-PODCAST_0002_0010.wav,X,1.0,4.0,7.0,Unknown,Male,Test1\n"
        "MSP-PODCAST_9999_0001.wav,A,4,4,4,1,Male,Train\n"  # audio not in this copy: skipped
    )
    (tmp_path / "Transcripts").mkdir()
    (tmp_path / "Transcripts" / "MSP-PODCAST_0001_0008.txt").write_text("well that is great\n")
    utts = {u.path.stem: u for u in load_corpus("msp-podcast", tmp_path)}
    h, x = utts["MSP-PODCAST_0001_0008"], utts["MSP-PODCAST_0002_0010"]
    assert (h.label, h.speaker, h.gender, h.transcript) == (
        "happy",
        "msp_127",
        "female",
        "well that is great",
    )
    assert h.vad == pytest.approx((2 / 3, 1.2 / 3, 0.0))
    assert x.label is None and x.vad == pytest.approx((0.0, -1.0, 1.0))
    (tmp_path / "Labels" / "labels_consensus.csv").unlink()
    (tmp_path / "Labels" / "labels_consensus.json").write_text(
        json.dumps(
            {
                "MSP-PODCAST_0001_0008.wav": {
                    "EmoClass": "S",
                    "EmoAct": 2,
                    "EmoVal": 2,
                    "EmoDom": 2,
                    "SpkrID": 5,
                }
            }
        )
    )
    (only,) = load_corpus("msp-podcast", tmp_path)
    assert (only.label, only.speaker) == ("sad", "msp_5")


def test_csv_manifest(tmp_path: Path) -> None:
    write(tmp_path / "a" / "one.flac")
    write(tmp_path / "b.wav")
    (tmp_path / "m.csv").write_text(
        "path,speaker,label,valence,arousal,dominance,transcript\n"
        "a/one.flac,s1,Fearful,,,,hello\n"
        f"{tmp_path / 'b.wav'},s2,happy,0.1,0.2,0.3,\n"
    )
    one, two = load_corpus("csv", tmp_path / "m.csv")
    assert (one.label, one.speaker, one.corpus, one.transcript) == ("fear", "s1", "csv", "hello")
    assert one.vad == pytest.approx(category_vad("fear"))
    assert two.vad == pytest.approx((0.1, 0.2, 0.3)) and two.transcript is None


@pytest.mark.parametrize(
    ("corpus", "files", "message"),
    [
        ("ravdess", [], "no RAVDESS audio files"),
        ("ravdess", ["Actor_01/03-01-09-01-01-01-01.wav"], "mislabelled RAVDESS file"),
        ("ravdess", ["Actor_01/hello.wav"], "not a RAVDESS file name"),
        ("tess", ["OAF_bored/OAF_back_bored.wav"], "mislabelled tess file"),
        ("tess", ["OAF_back.wav"], "not a TESS file name"),
        ("emodb", ["03a01Xa.wav"], "not an EmoDB file name"),
        ("cremad", ["1001_DFA_BOR_XX.wav"], "mislabelled cremad file"),
        ("iemocap", ["x.wav"], "unrecognised IEMOCAP layout"),
        ("msp-podcast", ["Audios/x.wav"], "unrecognised MSP-Podcast layout"),
        ("msp-podcast", [], "no Audios/ folder"),
    ],
)
def test_reader_errors_are_one_line(tmp_path: Path, corpus: str, files: list[str], message: str) -> None:
    for f in files:
        write(tmp_path / f)
    with pytest.raises(CorpusError, match=message) as info:
        load_corpus(corpus, tmp_path)
    assert "\n" not in str(info.value) and str(tmp_path) in str(info.value)


def test_loader_errors(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="unknown corpus 'voxceleb'"):
        load_corpus("voxceleb", tmp_path)
    with pytest.raises(CorpusError, match="directory not found"):
        load_corpus("ravdess", tmp_path / "nope")
    (tmp_path / "m.csv").write_text("path,label\nx.wav,happy\n")
    with pytest.raises(CorpusError, match="lacks column"):
        load_corpus("csv", tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("path,speaker,label\nx.wav,s,happy\n")
    with pytest.raises(CorpusError, match="line 2: audio file not found"):
        load_corpus("csv", tmp_path / "m.csv")
    write(tmp_path / "x.wav")
    (tmp_path / "m.csv").write_text("path,speaker,label\nx.wav,s,bored\n")
    with pytest.raises(CorpusError, match="mislabelled entry"):
        load_corpus("csv", tmp_path / "m.csv")
    with pytest.raises(CorpusError, match="expected NAME=PATH"):
        parse_corpus_specs(["ravdess"])


# ---------------------------------------------------------------- labels
