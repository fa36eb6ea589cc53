"""ASED and nEMO readers: names, speakers, labels and one-line errors, on tiny layouts and the real copies."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from training.data.corpora import CorpusError, load_corpus

NEMO_HEADER = "file_id\temotion\traw_text\tnormalized_text\tspeaker_id\tgender\tage\n"


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_ased_speaker_is_last_field_and_letter_is_label(tmp_path: Path) -> None:
    touch(tmp_path / "01Neutral" / "n1-01-01-01-07.opus")
    touch(tmp_path / "05Angry" / "A5-02-01-02-07.opus")  # same speaker under the other gender code
    touch(tmp_path / "04Sad" / "s4-01-02-02-30.opus")
    utts = load_corpus("ased", tmp_path)
    assert [(u.speaker, u.label) for u in utts] == [
        ("ased_07", "neutral"),
        ("ased_30", "sad"),
        ("ased_07", "angry"),
    ]
    assert utts[2].gender == "male"


@pytest.mark.parametrize("name", ["x1-01-01-01-01.opus", "n1-01-01-01.opus", "notes.opus"])
def test_ased_bad_name_is_one_line_error(tmp_path: Path, name: str) -> None:
    touch(tmp_path / "01Neutral" / name)
    with pytest.raises(CorpusError, match=r"ASED file name.*" + name.split(".")[0]):
        load_corpus("ased", tmp_path)


def test_nemo_speaker_and_transcript_from_table(tmp_path: Path) -> None:
    touch(tmp_path / "EB0" / "EB0_anger_1.opus")
    touch(tmp_path / "EB0" / "EB0_surprised_2.opus")
    (tmp_path / "data.tsv").write_text(
        NEMO_HEADER
        + "EB0_anger_1.wav\tanger\tJest zimno.\tjest zimno\t        EB0\tfemale\t27\n"
        + "EB0_surprised_2.wav\tsurprised\tNaprawdę?\tnaprawdę\t EB0 \tfemale\t27\n",
        encoding="utf-8",
    )
    utts = load_corpus("nemo", tmp_path)
    assert [(u.speaker, u.label, u.transcript) for u in utts] == [
        ("nemo_EB0", "angry", "Jest zimno."),
        ("nemo_EB0", "surprise", "Naprawdę?"),
    ]


def test_nemo_unlisted_or_disagreeing_file_is_an_error(tmp_path: Path) -> None:
    touch(tmp_path / "EB0" / "EB0_anger_1.opus")
    (tmp_path / "data.tsv").write_text(NEMO_HEADER, encoding="utf-8")
    with pytest.raises(CorpusError, match="not listed"):
        load_corpus("nemo", tmp_path)
    (tmp_path / "data.tsv").write_text(
        NEMO_HEADER + "EB0_anger_1.wav\tsadness\tx\tx\tEB0\tfemale\t27\n", encoding="utf-8"
    )
    with pytest.raises(CorpusError, match=r"data\.tsv says 'sadness'"):
        load_corpus("nemo", tmp_path)


def test_nemo_without_table_names_it(tmp_path: Path) -> None:
    touch(tmp_path / "EB0" / "EB0_anger_1.opus")
    with pytest.raises(CorpusError, match=r"nEMO table not found: .*data\.tsv"):
        load_corpus("nemo", tmp_path)


def test_real_copies_have_the_documented_sizes(corpora_dir: Path) -> None:
    if not (corpora_dir / "ased").is_dir() or not (corpora_dir / "nemo").is_dir():
        pytest.skip("../shared/corpora has no ased/ or nemo/")
    ased = load_corpus("ased", corpora_dir / "ased")
    nemo = load_corpus("nemo", corpora_dir / "nemo")
    assert (len(ased), len({u.speaker for u in ased})) == (2474, 65)
    assert (len(nemo), len({u.speaker for u in nemo})) == (4481, 9)
    assert set(Counter(u.label for u in ased)) == {"neutral", "fear", "happy", "sad", "angry"}
    assert Counter(u.label for u in nemo)["surprise"] == 669
