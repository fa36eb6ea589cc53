"""Voice activity: webrtcvad frame decisions, an optional spectral gate, and onset/offset hysteresis.

webrtcvad is fast and sensitive but calls loud stationary noise and pure tones speech. The optional
gate adds per-frame checks that speech passes and those signals fail: absolute energy, spectral
flatness (white noise, broadband bursts), tonality (energy concentrated in one spectral peak: pure
tones) and level modulation over the last half second (speech is syllabic; stationary noise of any
colour and steady hums are not, and speech ~10 dB above such noise still modulates). All per-frame
features are computed vectorised for every full frame of a feed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import webrtcvad

from streamer.messages import SAMPLE_RATE, FloatArray
from streamer.speechgate import GateThresholds

GateMode = Literal["off", "spectral"]

_SILENCE_DB = -100.0  # floor for energies in dB (digital silence)
_BAND_HZ = (100.0, 4000.0)  # band where flatness, tonality and modulation are measured
_MOD_FROM_HZ = 300.0  # modulation ignores the lowest bins (few, so noisy for brown noise)
_MIN_STEADY_FRAMES = 3  # loud frames a modulation estimate needs


@dataclass(frozen=True, slots=True)
class VadConfig:
    """How speech is found. Times are in milliseconds of audio."""

    aggressiveness: int = 2  # webrtcvad mode 0 (least) .. 3 (most aggressive at rejecting non-speech)
    frame_ms: int = 30  # webrtcvad supports 10, 20, 30
    start_ms: int = 90  # voiced time (consecutive) before speech starts
    end_ms: int = 400  # unvoiced time (consecutive) before speech ends
    # audio kept before the onset and (at most end_ms) after the offset: webrtcvad starts on voicing, so
    # 250 ms catches the unvoiced consonant or soft attack before it (bench: onset to first emotion)
    pad_ms: int = 250
    gate: GateMode = "off"
    gate_energy_dbfs: float = -60.0  # frames quieter than this (RMS, dB full scale) are not speech
    gate_flatness_max: float = 0.45  # spectral flatness above this is broadband noise
    gate_tonality_max: float = 0.99  # share of band energy in the strongest peak (±2 bins) above: a tone
    gate_modulation_db: float = 3.0  # std of the level (dB) over gate_modulation_ms below this: stationary
    gate_modulation_ms: int = 480
    # window gate (streamer/speechgate.py, docs/abstention.md): a whole window that is not speech by its
    # voicing, pitch movement and level modulation is not scored and publishes no emotion
    window_gate: bool = True
    window_gate_voiced_min: float = 0.05  # share of the window's frames that must be voiced
    window_gate_voicing: float = 0.5  # normalised autocorrelation peak that makes a frame voiced
    window_gate_frozen_max: float = 0.5  # share of voiced frame pairs with a frozen pitch (tones, music)
    window_gate_peak_max: float = 1.0  # energy share of the strongest spectral peak (1 = not checked)
    window_gate_modulation_db: float = 2.0  # std of the loud frames' level (dB) below this: stationary

    def __post_init__(self) -> None:
        if self.aggressiveness not in (0, 1, 2, 3):
            raise ValueError(f"vad.aggressiveness must be 0..3 (got {self.aggressiveness!r})")
        if self.frame_ms not in (10, 20, 30):
            raise ValueError(f"vad.frame_ms must be 10, 20 or 30 (got {self.frame_ms!r})")
        for name in ("start_ms", "end_ms", "pad_ms"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"vad.{name} must be an integer >= 0 (got {v!r})")
        if self.gate not in ("off", "spectral"):
            raise ValueError(f"vad.gate must be 'off' or 'spectral' (got {self.gate!r})")
        if not 0.0 < self.gate_flatness_max <= 1.0:
            raise ValueError(f"vad.gate_flatness_max must be in (0, 1] (got {self.gate_flatness_max!r})")
        if not 0.0 < self.gate_tonality_max <= 1.0:
            raise ValueError(f"vad.gate_tonality_max must be in (0, 1] (got {self.gate_tonality_max!r})")
        if self.gate_modulation_db < 0.0:
            raise ValueError(f"vad.gate_modulation_db must be >= 0 (got {self.gate_modulation_db!r})")
        for name in ("window_gate_voiced_min", "window_gate_voicing", "window_gate_frozen_max"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"vad.{name} must be in [0, 1] (got {getattr(self, name)!r})")
        if not 0.0 < self.window_gate_peak_max <= 1.0:
            raise ValueError(
                f"vad.window_gate_peak_max must be in (0, 1] (got {self.window_gate_peak_max!r})"
            )
        if self.window_gate_modulation_db < 0.0:
            raise ValueError(
                f"vad.window_gate_modulation_db must be >= 0 (got {self.window_gate_modulation_db!r})"
            )
        if self.gate_modulation_ms < 4 * self.frame_ms:
            raise ValueError(f"vad.gate_modulation_ms must be >= 4 frames (got {self.gate_modulation_ms!r})")

    @property
    def window_thresholds(self) -> GateThresholds:
        return GateThresholds(
            voiced_min=self.window_gate_voiced_min,
            voicing=self.window_gate_voicing,
            frozen_max=self.window_gate_frozen_max,
            peak_max=self.window_gate_peak_max,
            modulation_min=self.window_gate_modulation_db,
        )

    @property
    def frame_samples(self) -> int:
        return SAMPLE_RATE * self.frame_ms // 1000

    @property
    def start_frames(self) -> int:
        return max(1, math.ceil(self.start_ms / self.frame_ms))

    @property
    def end_frames(self) -> int:
        return max(1, math.ceil(self.end_ms / self.frame_ms))

    @property
    def pad_samples(self) -> int:
        return SAMPLE_RATE * self.pad_ms // 1000


@dataclass(frozen=True, slots=True)
class SpeechOnset:
    """Speech began at ``start_sample`` (padding included); decided once ``decided_at`` was judged."""

    start_sample: int
    decided_at: int


@dataclass(frozen=True, slots=True)
class SpeechOffset:
    """Speech ended at ``end_sample`` (padding included); decided once ``decided_at`` was judged."""

    end_sample: int
    decided_at: int


VadEvent = SpeechOnset | SpeechOffset


@dataclass(slots=True)
class VadStats:
    frames: int = 0  # frames judged
    webrtc_voiced: int = 0  # frames webrtcvad called speech
    gate_rejected: int = 0  # of those, frames the spectral gate rejected
    voiced: int = 0  # frames finally called speech


class SpectralGate:
    """Per-frame speech plausibility from the spectrum; keeps the short history modulation needs."""

    def __init__(self, cfg: VadConfig) -> None:
        self._cfg = cfg
        n = cfg.frame_samples
        self._window = np.hanning(n).astype(np.float32)
        freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
        self._band = np.flatnonzero((freqs >= _BAND_HZ[0]) & (freqs <= _BAND_HZ[1]))
        self._mod_from = int(np.searchsorted(freqs[self._band], _MOD_FROM_HZ))
        self._hist_len = cfg.gate_modulation_ms // cfg.frame_ms - 1
        self._hist_db = np.zeros(self._hist_len, dtype=np.float64)
        self._hist_steady = np.zeros(self._hist_len, dtype=bool)
        self._prev_loud = False

    def reset(self) -> None:
        self._hist_db[:] = 0.0
        self._hist_steady[:] = False
        self._prev_loud = False

    def passes(self, frames: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
        """frames [m, frame_samples] -> bool[m]: True where the frame looks like speech."""
        cfg = self._cfg
        rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
        loud = 20.0 * np.log10(np.maximum(rms, 1e-5)) >= cfg.gate_energy_dbfs
        power = np.abs(np.fft.rfft(frames * self._window, axis=1)) ** 2
        band = power[:, self._band] + 1e-12
        band_sum = band.sum(axis=1)
        flatness = np.exp(np.log(band).mean(axis=1)) / (band_sum / band.shape[1])
        c = np.cumsum(np.pad(band, ((0, 0), (3, 2))), axis=1)
        peak = (c[:, 5:] - c[:, :-5]).max(axis=1) / band_sum  # largest 5-bin sum
        # level above 300 Hz (many bins: < 2 dB spread for stationary noise of any colour, even
        # brown), as a power sum so that voiced harmonics dominate it even in noise
        level = 10.0 * np.log10(band[:, self._mod_from :].sum(axis=1))
        modulation = self._modulation(np.maximum(level, _SILENCE_DB), loud)
        return (
            loud
            & (flatness <= cfg.gate_flatness_max)
            & (peak <= cfg.gate_tonality_max)
            & (modulation >= cfg.gate_modulation_db)
        )

    def _modulation(
        self, db: npt.NDArray[np.float64], loud: npt.NDArray[np.bool_]
    ) -> npt.NDArray[np.float64]:
        """Std of the band level over the trailing window, counting only loud frames that follow a
        loud frame: silence and the frame a sound switches on in (partly silent) would otherwise
        make any noise onset look like syllabic modulation."""
        k = self._hist_len + 1
        steady = loud & np.concatenate([[self._prev_loud], loud[:-1]])
        self._prev_loud = bool(loud[-1])
        x = np.concatenate([self._hist_db, db])
        w = np.concatenate([self._hist_steady, steady])
        self._hist_db = x[len(x) - self._hist_len :].copy()
        self._hist_steady = w[len(w) - self._hist_len :].copy()
        wf = w.astype(np.float64)
        xw = x * wf
        cn = np.concatenate([[0.0], np.cumsum(wf)])
        c1 = np.concatenate([[0.0], np.cumsum(xw)])
        c2 = np.concatenate([[0.0], np.cumsum(xw * x)])
        n = cn[k:] - cn[:-k]
        s1 = c1[k:] - c1[:-k]
        s2 = c2[k:] - c2[:-k]
        safe = np.maximum(n, 1.0)
        var = np.maximum(s2 / safe - (s1 / safe) ** 2, 0.0)
        return np.where(n >= _MIN_STEADY_FRAMES, np.sqrt(var), 0.0)


class VoiceActivity:
    """Frames a stream's float32 16 kHz audio and turns frame decisions into padded onsets/offsets.

    Frames are aligned to ``start_sample`` and partial frames are carried between feeds, so the
    events depend only on the audio, never on how it was chunked.
    """

    def __init__(self, cfg: VadConfig, start_sample: int = 0) -> None:
        self.cfg = cfg
        self.stats = VadStats()
        self._vad = webrtcvad.Vad(cfg.aggressiveness)
        self._gate = SpectralGate(cfg) if cfg.gate == "spectral" else None
        self._frame = cfg.frame_samples
        self.reset(start_sample)

    def reset(self, start_sample: int) -> None:
        """Start over at ``start_sample`` (after a gap in the stream): no speech, empty history."""
        self._pos = start_sample  # first sample not yet judged (frame aligned)
        self._floor = start_sample  # onsets never reach before this (stream start / last offset)
        self._pending = np.zeros(0, dtype=np.float32)
        self._in_speech = False
        self._run = 0  # consecutive voiced (in silence) or unvoiced (in speech) frames
        self._run_start = start_sample
        self._last_voiced_end = start_sample
        if self._gate is not None:
            self._gate.reset()

    @property
    def position(self) -> int:
        """Sample index up to which audio has been judged."""
        return self._pos

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    def feed(self, samples: FloatArray) -> list[VadEvent]:
        """Judge every full frame now available; returns onsets/offsets in order."""
        if len(self._pending):
            samples = np.concatenate([self._pending, samples])
        m = len(samples) // self._frame
        self._pending = np.array(samples[m * self._frame :], dtype=np.float32)
        if m == 0:
            return []
        frames = np.asarray(samples[: m * self._frame], dtype=np.float32).reshape(m, self._frame)
        return self._hysteresis(self._classify(frames))

    def flush(self, end_sample: int) -> SpeechOffset | None:
        """End of stream: close open speech at its padded end, never past ``end_sample``."""
        if not self._in_speech:
            return None
        self._in_speech = False
        end = min(self._last_voiced_end + self.cfg.pad_samples, max(end_sample, self._last_voiced_end))
        self._floor = end
        return SpeechOffset(end_sample=end, decided_at=max(end_sample, self._pos))

    def _classify(self, frames: npt.NDArray[np.float32]) -> npt.NDArray[np.bool_]:
        pcm = (np.clip(frames, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        step = 2 * self._frame
        is_speech = self._vad.is_speech
        voiced = np.fromiter(
            (is_speech(pcm[i * step : (i + 1) * step], SAMPLE_RATE) for i in range(len(frames))),
            dtype=bool,
            count=len(frames),
        )
        self.stats.frames += len(frames)
        self.stats.webrtc_voiced += int(voiced.sum())
        if self._gate is not None:
            gated = voiced & self._gate.passes(frames)
            self.stats.gate_rejected += int(voiced.sum() - gated.sum())
            voiced = gated
        self.stats.voiced += int(voiced.sum())
        return voiced

    def _hysteresis(self, voiced: npt.NDArray[np.bool_]) -> list[VadEvent]:
        cfg, f = self.cfg, self._frame
        events: list[VadEvent] = []
        pos = self._pos
        if not self._in_speech and not voiced.any():  # common case: silence stays silence
            self._run = 0
            self._pos = pos + len(voiced) * f
            return events
        for v in voiced.tolist():
            end = pos + f
            if not self._in_speech:
                if v:
                    if self._run == 0:
                        self._run_start = pos
                    self._run += 1
                    self._last_voiced_end = end
                    if self._run >= cfg.start_frames:
                        self._in_speech = True
                        self._run = 0
                        start = max(self._run_start - cfg.pad_samples, self._floor)
                        events.append(SpeechOnset(start_sample=start, decided_at=end))
                else:
                    self._run = 0
            elif v:
                self._run = 0
                self._last_voiced_end = end
            else:
                self._run += 1
                if self._run >= cfg.end_frames:
                    self._in_speech = False
                    self._run = 0
                    stop = self._last_voiced_end + min(cfg.pad_samples, cfg.end_frames * f)
                    self._floor = stop
                    events.append(SpeechOffset(end_sample=stop, decided_at=end))
            pos = end
        self._pos = pos
        return events
