"""`[data] augment_options` in a training config: each setting reaches the augmenter, and a bad one is a
one-line error from `emotrack train` before any audio is read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training.data.augment import AugmentConfigError, Augmenter, augmenter_from_options

REPO = Path(__file__).resolve().parents[1]


def test_options_override_the_defaults_and_keep_the_rest() -> None:
    aug = augmenter_from_options(
        {"pitch_prob": 1, "pitch_semitones": [-4, 3.5], "noise_kinds": ["pink"]}, babble_pool=[]
    )
    default = Augmenter()
    assert aug.pitch_prob == 1.0 and aug.pitch_semitones == (-4.0, 3.5) and aug.noise_kinds == ("pink",)
    assert aug.speed == default.speed and aug.reverb_prob == default.reverb_prob


def test_pitch_always_on_changes_every_clip_and_off_leaves_it() -> None:
    t = np.arange(16000) / 16000
    tone = (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    off = {"noise_prob": 0, "reverb_prob": 0, "gain_prob": 0, "speed_prob": 0}
    never = augmenter_from_options({**off, "pitch_prob": 0}, babble_pool=[])
    always = augmenter_from_options({**off, "pitch_prob": 1, "pitch_semitones": [3, 4]}, babble_pool=[])
    rng = np.random.default_rng(0)
    np.testing.assert_allclose(never(tone, rng), tone, atol=1e-6)
    shifted = always(tone, rng)
    peak_hz = np.argmax(np.abs(np.fft.rfft(shifted[2000:14000]))) * 16000 / 12000
    assert 200 * 2 ** (3 / 12) - 8 <= peak_hz <= 200 * 2 ** (4 / 12) + 8


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pitch_probability": 0.5}, "unknown augment_options key(s) pitch_probability"),
        ({"pitch_prob": 1.5}, "augment_options.pitch_prob must lie in [0, 1], got 1.5"),
        ({"pitch_semitones": [3]}, "pitch_semitones must be a [low, high] pair"),
        ({"speed": [1.1, 0.9]}, "speed: low 1.1 is above high 0.9"),
        ({"gain_prob": "often"}, "gain_prob must be a number"),
        ({"noise_kinds": ["brown"]}, "unknown noise kind(s): brown"),
    ],
)
def test_bad_options_name_the_setting(options: dict[str, object], message: str) -> None:
    with pytest.raises(AugmentConfigError) as err:
        augmenter_from_options(options, babble_pool=[])
    assert message in str(err.value)


def test_cli_bad_option_is_a_one_line_error(tmp_path: Path) -> None:
    corpus = tmp_path / "c.csv"
    wav = tmp_path / "a.wav"
    import soundfile as sf

    sf.write(wav, np.zeros(16000, np.float32), 16000)
    corpus.write_text("path,speaker,label\n" + "".join(f"{wav},s{i % 3},{lab}\n" for i, lab in
                                                        enumerate(["sad", "angry"] * 6)))  # fmt: skip
    cfg = tmp_path / "c.toml"
    cfg.write_text("[data]\naugment_options = { pitch_prob = 2.0 }\n")
    r = subprocess.run(
        [sys.executable, "-m", "training", "train", str(cfg), "--corpus", f"csv={corpus}", "--split",
         "speakers=s2", "--labels", "sad,angry", "--out", str(tmp_path / "o"), "--no-progress"],
        capture_output=True, text=True, cwd=REPO, timeout=240,
    )  # fmt: skip
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert lines[0].startswith("emotrack: error:")
    assert "augment_options.pitch_prob must lie in [0, 1]" in lines[0]
