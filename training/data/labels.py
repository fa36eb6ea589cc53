"""The common emotion label set, per-corpus label maps and per-category V/A/D coordinates.

Corpora name the same emotion differently (RAVDESS "fearful", TESS "fear", EmoDB "A" for Angst); models and
engines use the common names below so that corpora can be mixed and engines evaluated on any corpus.
"""

from __future__ import annotations

COMMON_LABELS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise", "calm")

LABEL_SETS: dict[str, list[str]] = {
    "4": ["neutral", "happy", "sad", "angry"],
    "all": list(COMMON_LABELS),
}

# Synonyms accepted for any corpus (and for engine labels): lower-cased original -> common label.
_SYNONYMS: dict[str, str] = {
    "neutral": "neutral",
    "neu": "neutral",
    "happy": "happy",
    "happiness": "happy",
    "joy": "happy",
    "hap": "happy",
    "sad": "sad",
    "sadness": "sad",
    "angry": "angry",
    "anger": "angry",
    "ang": "angry",
    "fear": "fear",
    "fearful": "fear",
    "fea": "fear",
    "disgust": "disgust",
    "disgusted": "disgust",
    "dis": "disgust",
    "surprise": "surprise",
    "surprised": "surprise",
    "sur": "surprise",
    "calm": "calm",
}

# Corpus-specific codes. A code mapped to None is a known label without a common equivalent (the utterance is
# kept, unlabelled, so it can still serve V/A/D regression or unsupervised use).
_CORPUS_CODES: dict[str, dict[str, str | None]] = {
    "ravdess": {
        "01": "neutral",
        "02": "calm",
        "03": "happy",
        "04": "sad",
        "05": "angry",
        "06": "fear",
        "07": "disgust",
        "08": "surprise",
    },
    "tess": {"ps": "surprise", "pleasant_surprise": "surprise", "pleasant_surprised": "surprise"},
    "emodb": {
        "W": "angry",
        "L": None,  # Langeweile (boredom)
        "E": "disgust",
        "A": "fear",
        "F": "happy",
        "T": "sad",
        "N": "neutral",
    },
    "cremad": {
        "ANG": "angry",
        "DIS": "disgust",
        "FEA": "fear",
        "HAP": "happy",
        "NEU": "neutral",
        "SAD": "sad",
    },
    # IEMOCAP: excitement is merged with happiness (the usual 4-class protocol); frustration and "other" have
    # no common label.
    "iemocap": {"exc": "happy", "fru": None, "oth": None, "xxx": None},
    "ased": {"n": "neutral", "f": "fear", "h": "happy", "s": "sad", "a": "angry"},
    "nemo": {"surprised": "surprise"},
    "msp-podcast": {
        "A": "angry",
        "S": "sad",
        "H": "happy",
        "U": "surprise",
        "F": "fear",
        "D": "disgust",
        "C": None,  # contempt
        "N": "neutral",
        "O": None,  # other
        "X": None,  # no agreement
    },
}

# RAVDESS emotion codes -> the original label names, for Utterance.original_label.
RAVDESS_NAMES: dict[str, str] = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}


class UnknownLabelError(ValueError):
    """An original label that neither the corpus map nor the synonyms know."""


def is_known(corpus: str, original: str) -> bool:
    """True when `original` is a label of `corpus` (possibly one without a common equivalent)."""
    codes = _CORPUS_CODES.get(corpus, {})
    return original in codes or original.lower() in codes or original.strip().lower() in _SYNONYMS


def map_label(corpus: str, original: str) -> str | None:
    """Common label for a corpus's original label; None for a known label with no common equivalent.

    Raises UnknownLabelError for a label the corpus does not have (a mislabelled file).
    """
    codes = _CORPUS_CODES.get(corpus, {})
    for key in (original, original.lower(), original.upper()):
        if key in codes:
            return codes[key]
    key = original.strip().lower()
    if key in _SYNONYMS:
        return _SYNONYMS[key]
    raise UnknownLabelError(f"unknown {corpus} emotion label {original!r}")


def normalise_label(name: str) -> str | None:
    """Common label for a free-form name (engine labels, CSV manifests); None when it has none."""
    key = name.strip().lower()
    if key in _SYNONYMS:
        return _SYNONYMS[key]
    for codes in _CORPUS_CODES.values():
        if key in codes:
            return codes[key]
    return None


def resolve_label_set(name_or_labels: str | list[str]) -> list[str]:
    """A label set by name ("4", "all") or an explicit comma-separated/list of common labels."""
    if isinstance(name_or_labels, list):
        labels = name_or_labels
    elif name_or_labels in LABEL_SETS:
        return list(LABEL_SETS[name_or_labels])
    else:
        labels = [x.strip() for x in name_or_labels.split(",") if x.strip()]
    bad = [x for x in labels if x not in COMMON_LABELS]
    if bad or not labels:
        raise ValueError(
            f"unknown label set {name_or_labels!r}: "
            f"use 4, all or common labels from {', '.join(COMMON_LABELS)}"
        )
    return list(labels)


# Pleasure/arousal/dominance of each category, from Russell & Mehrabian (1977), "Evidence for a three-factor
# theory of emotions", J. Research in Personality 11:273-294 (the values as tabulated by Gebhard (2005), ALMA,
# for anger, fear, joy, sadness, disgust, surprise; "calm" uses the table's "relaxed"). Neutral is the origin.
PAD_COORDINATES: dict[str, tuple[float, float, float]] = {
    "neutral": (0.0, 0.0, 0.0),
    "happy": (0.76, 0.48, 0.35),
    "sad": (-0.63, -0.27, -0.33),
    "angry": (-0.51, 0.59, 0.25),
    "fear": (-0.64, 0.60, -0.43),
    "disgust": (-0.60, 0.35, 0.11),
    "surprise": (0.40, 0.67, -0.13),
    "calm": (0.68, -0.46, 0.06),
}


def category_vad(label: str | None, intensity: float | None = None) -> tuple[float, float, float] | None:
    """V/A/D target for a category: the PAD point, scaled by 0.5 + 0.5 * intensity where intensity is known.

    A weakly expressed emotion lies closer to neutral than a strongly expressed one; with no intensity the
    full PAD point is used. None for an unlabelled utterance.
    """
    if label is None:
        return None
    base = PAD_COORDINATES[label]
    scale = 1.0 if intensity is None else 0.5 + 0.5 * min(max(intensity, 0.0), 1.0)
    return (base[0] * scale, base[1] * scale, base[2] * scale)


def scale_rating(value: float, low: float, high: float) -> float:
    """A rating on [low, high] (e.g. IEMOCAP 1-5, MSP-Podcast 1-7) mapped linearly onto [-1, 1], clipped."""
    mid = (low + high) / 2.0
    half = (high - low) / 2.0
    return min(max((value - mid) / half, -1.0), 1.0)
