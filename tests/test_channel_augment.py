"""Codec and channel augmentation: real codecs round trip, the telephone band, lengths kept, bad settings."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("scipy", reason="channel augmentation needs scipy (the train extra)")

from training.data.channel import ChannelConfig, augment_channel, codec_round_trip, telephone

SR = 16_000


def tone(hz: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.mark.parametrize("codec", ["opus", "mp3"])
def test_codec_round_trip_keeps_length_and_content(codec: str) -> None:
    x = tone(440.0)
    y = codec_round_trip(x, codec, 0.5)
    assert y.shape == x.shape and y.dtype == np.float32
    assert not np.array_equal(x, y)  # it went through the codec
    spec = np.abs(np.fft.rfft(y))
    assert abs(int(spec.argmax()) - 440) <= 2  # the tone survives


def test_telephone_band_cuts_low_hum_and_keeps_speech_band() -> None:
    low, mid = telephone(tone(100.0)), telephone(tone(1000.0))
    assert np.std(low[2000:]) < 0.1 * np.std(tone(100.0))
    assert np.std(mid[2000:]) > 0.7 * np.std(tone(1000.0))


def test_chain_is_seeded_and_keeps_length() -> None:
    x = tone(300.0, 1.5)
    a = augment_channel(x, np.random.default_rng(3))
    b = augment_channel(x, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert a.shape == x.shape and np.isfinite(a).all() and np.abs(a).max() <= 1.0


def test_impossible_probability_is_refused() -> None:
    with pytest.raises(ValueError, match="p_codec"):
        ChannelConfig(p_codec=1.5)
