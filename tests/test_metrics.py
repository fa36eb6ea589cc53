"""Metrics against hand-computed values (and scikit-learn where it is installed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.metrics import (
    ccc,
    classification_report,
    confusion_matrix,
    macro_f1,
    per_class_recall,
    unweighted_accuracy,
    weighted_accuracy,
    weighted_f1,
)

# truth 0,0,0,1,1,2 ; prediction 0,0,1,1,2,2
# confusion rows (truth) [2,1,0] [0,1,1] [0,0,1]; recall 2/3, 1/2, 1; precision 1, 1/2, 1/2
# F1: 0.8, 0.5, 2/3
T = [0, 0, 0, 1, 1, 2]
P = [0, 0, 1, 1, 2, 2]


def test_confusion_matrix_by_hand() -> None:
    assert confusion_matrix(T, P, 3).tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert confusion_matrix(T, P, 4).shape == (4, 4)


def test_accuracies_by_hand() -> None:
    assert weighted_accuracy(T, P) == pytest.approx(4 / 6)
    assert unweighted_accuracy(T, P, 3) == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    # a class absent from the truth does not enter UA
    assert unweighted_accuracy(T, P, 5) == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    rec = per_class_recall(T, P, 4)
    assert rec[:3] == pytest.approx([2 / 3, 1 / 2, 1.0])
    assert math.isnan(rec[3])


def test_f1_by_hand() -> None:
    assert macro_f1(T, P, 3) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert weighted_f1(T, P, 3) == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)


def test_ua_differs_from_wa_on_imbalance() -> None:
    # 9 of class 0 all right, 1 of class 1 wrong: WA 0.9, UA 0.5
    t = [0] * 9 + [1]
    p = [0] * 10
    assert weighted_accuracy(t, p) == pytest.approx(0.9)
    assert unweighted_accuracy(t, p) == pytest.approx(0.5)
    # class 1 never predicted: its F1 is 0, class 0 F1 = 2*0.9*1/(1.9)
    assert macro_f1(t, p) == pytest.approx((2 * 0.9 / 1.9 + 0.0) / 2)


def test_unlabelled_rows_are_ignored() -> None:
    assert weighted_accuracy([0, -1, 1], [0, 1, 0]) == pytest.approx(0.5)
    assert confusion_matrix([0, -1, 1], [0, 1, 0], 2).sum() == 2


def test_errors() -> None:
    with pytest.raises(ValueError):
        weighted_accuracy([], [])
    with pytest.raises(ValueError):
        weighted_accuracy([0, 1], [0])
    with pytest.raises(ValueError):
        confusion_matrix([0, 1], [0, 3], 2)
    with pytest.raises(ValueError):
        unweighted_accuracy([-1], [0])


def test_ccc_by_hand() -> None:
    x = [1.0, 2.0, 3.0]
    assert ccc(x, x) == pytest.approx(1.0)
    # shift by 1: cov 2/3, var 2/3 each, mean gap 1 -> (4/3)/(7/3)
    assert ccc(x, [2.0, 3.0, 4.0]) == pytest.approx(4 / 7)
    # negated: mean 2 vs -2, cov -2/3 -> (-4/3)/(2/3+2/3+16)
    assert ccc(x, [-1.0, -2.0, -3.0]) == pytest.approx((-4 / 3) / (4 / 3 + 16))
    # halved: mean 1 vs 2, var 1/6 vs 2/3, cov 1/3 -> (2/3)/(2/3+1/6+1)
    assert ccc(x, [0.5, 1.0, 1.5]) == pytest.approx((2 / 3) / (2 / 3 + 1 / 6 + 1))


def test_ccc_edge_cases() -> None:
    assert ccc([0.5, 0.5], [0.5, 0.5]) == 1.0  # identical constants
    assert ccc([1.0, 2.0, 3.0], [2.0, 2.0, 2.0]) == 0.0  # constant prediction at the mean
    assert ccc([1.0, 1.0], [0.0, 0.0]) == 0.0  # different constants
    assert ccc([1.0, np.nan, 3.0, 2.0], [1.0, 5.0, 3.0, np.nan]) == pytest.approx(1.0)  # NaN pairs dropped
    with pytest.raises(ValueError):
        ccc([], [])
    with pytest.raises(ValueError):
        ccc([np.nan], [1.0])
    with pytest.raises(ValueError):
        ccc([1.0, 2.0], [1.0])


def test_classification_report_is_json_ready() -> None:
    rep = classification_report(T, P, ["a", "b", "c", "d"])
    assert rep["n"] == 6
    assert rep["recall"] == {"a": pytest.approx(2 / 3), "b": 0.5, "c": 1.0, "d": None}
    assert rep["confusion"][0] == [2, 1, 0, 0]


pairs = st.integers(1, 40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 3), min_size=n, max_size=n),
        st.lists(st.integers(0, 3), min_size=n, max_size=n),
    )
)


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=60, deadline=None)
@given(pairs)
def test_matches_scikit_learn(tp: tuple[list[int], list[int]]) -> None:
    sk = pytest.importorskip("sklearn.metrics")
    t, p = tp
    assert weighted_accuracy(t, p) == pytest.approx(sk.accuracy_score(t, p))
    assert unweighted_accuracy(t, p) == pytest.approx(sk.balanced_accuracy_score(t, p))
    assert macro_f1(t, p) == pytest.approx(sk.f1_score(t, p, average="macro", zero_division=0))
    assert weighted_f1(t, p, 4) == pytest.approx(sk.f1_score(t, p, average="weighted", zero_division=0))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1, 1), min_size=2, max_size=30), st.floats(0.1, 3), st.floats(-1, 1))
def test_ccc_bounded_and_scale_sensitive(x: list[float], scale: float, shift: float) -> None:
    a = np.asarray(x)
    c = ccc(a, a * scale + shift)
    assert -1.0 - 1e-9 <= c <= 1.0 + 1e-9
    if np.var(a) > 1e-6:
        assert c <= abs(np.corrcoef(a, a * scale + shift)[0, 1]) + 1e-9  # |CCC| <= |Pearson r|
