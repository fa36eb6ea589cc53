"""MicSource through real PyAudio → PortAudio → ALSA, using alsa-file-mic as the capture device.

PortAudio reads ~/.asoundrc when it initialises, so each scenario runs in a subprocess with HOME set
to the device directory. The tool's reads are not paced and give silence after the file ends.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamer.sources.base import SourceError
from streamer.sources.mic import DeviceInfo, resolve_device
from tests.shared_data import MIC_MISSING, alsa_file_mic

REPO = Path(__file__).resolve().parents[1]
TOOL = alsa_file_mic() or Path("alsa-file-mic")

needs_mic = pytest.mark.skipif(
    importlib.util.find_spec("pyaudio") is None or alsa_file_mic() is None,
    reason=f"needs pyaudio (pip install '.[mic]') and {MIC_MISSING}",
)


def make_device(src: Path, directory: Path, rate: int, channels: int) -> np.ndarray:
    """Build the ALSA file device; returns the exact int16 frames it will hand out, as float32."""
    subprocess.run(
        [str(TOOL), str(src), str(directory), str(rate), str(channels)], check=True, capture_output=True
    )
    raw = np.fromfile(directory / "filemic.raw", dtype="<i2").reshape(-1, channels)
    return (raw.astype(np.float32) / 32768.0).astype(np.float32)


def run_mic(directory: Path, script: str, *args: str) -> dict[str, object]:
    env = {**os.environ, "HOME": str(directory), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, env=env, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    last = proc.stdout.decode().strip().splitlines()[-1]
    result: dict[str, object] = json.loads(last)
    return result


CAPTURE = """
import asyncio, json, sys
import numpy as np
from streamer.messages import AudioChunk
from streamer.sources.mic import MicSource, list_devices

device, rate, channels = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
split, want = sys.argv[4] == "1", int(sys.argv[5])

async def main():
    devs = list_devices()
    src = MicSource(device, "mic", rate=rate or None, channels=channels, split_channels=split,
                    chunk_ms=50, buffer_s=120.0)
    await src.open()
    got = {}
    async for ev in src:
        assert isinstance(ev, AudioChunk), ev
        lst = got.setdefault(ev.stream_id, [])
        assert ev.start_sample == sum(len(c) for c in lst)
        lst.append(ev.samples)
        if min(sum(len(c) for c in v) for v in got.values()) >= want and len(got) == len(src.stream_ids):
            break
    await src.aclose()
    for sid, parts in got.items():
        np.save(sys.argv[6] + "/" + sid + ".npy", np.concatenate(parts))
    print(json.dumps({"devices": [d.name for d in devs], "ids": src.stream_ids, "rate": src.rate,
                      "device": src.device_info.name, "stats": src.stats}))

asyncio.run(main())
"""


@needs_mic
def test_mic_captures_speech_exactly_at_16k(speech_wav: Path, tmp_path: Path) -> None:
    dev = tmp_path / "alsa"
    ref = make_device(speech_wav, dev, 16000, 1)[:, 0]
    out = tmp_path / "out"
    out.mkdir()
    want = len(ref) + 8000
    res = run_mic(dev, CAPTURE, "FileM", "0", "1", "0", str(want), str(out))
    assert "filemic" in res["devices"]  # type: ignore[operator]
    assert res["device"] == "filemic" and res["rate"] == 16000 and res["ids"] == ["mic"]
    x = np.load(out / "mic.npy")
    stats = res["stats"]
    assert isinstance(stats, dict) and stats["frames_dropped"] == 0
    # The device hands over the file's bytes unchanged: the speech arrives sample-exact, then silence.
    np.testing.assert_array_equal(x[: len(ref)], ref)
    assert np.abs(x[len(ref) : want]).max() < 1e-3
    assert np.abs(ref).max() > 0.2


@needs_mic
def test_mic_44k_stereo_split_resamples_each_channel(speech_wav: Path, tmp_path: Path) -> None:
    dev = tmp_path / "alsa"
    ref44 = make_device(speech_wav, dev, 44100, 2)
    out = tmp_path / "out"
    out.mkdir()
    want = round(len(ref44) * 16000 / 44100)
    res = run_mic(dev, CAPTURE, "filemic", "44100", "2", "1", str(want), str(out))
    assert res["ids"] == ["mic.ch0", "mic.ch1"] and res["rate"] == 44100
    ref16, _ = sf.read(speech_wav, dtype="float32")
    for sid in ("mic.ch0", "mic.ch1"):
        x = np.load(out / f"{sid}.npy")[: len(ref16)]
        assert abs(len(x) - len(ref16)) <= 4
        n = min(len(x), len(ref16))
        corr = np.corrcoef(x[:n], ref16[:n])[0, 1]
        assert corr > 0.95, f"{sid}: captured speech does not match the file (r={corr:.3f})"


LOST = """
import asyncio, json, sys
from streamer.messages import AudioChunk
from streamer.sources.mic import MicSource

async def main():
    reopen = sys.argv[1] == "1"
    src = MicSource(0, "m", rate=16000, chunk_ms=50, buffer_s=60.0, reopen=reopen, stall_timeout_s=1.0)
    ends, after, stopped = [], [], False
    async for ev in src:
        if isinstance(ev, AudioChunk):
            if ends:
                after.append(ev.start_sample)
            if not stopped and ev.end_sample >= 16000:
                stopped = True
                src._stream.stop_stream()  # the device stops delivering, as when it is unplugged
            if len(after) >= 3:
                break
        else:
            ends.append([ev.stream_id, ev.total_samples, ev.reason])
            if not reopen:
                break
    await src.aclose()
    print(json.dumps({"ends": ends, "after_first_end": after, "stats": src.stats}))

asyncio.run(main())
"""


@needs_mic
@pytest.mark.parametrize("reopen", [False, True])
def test_device_lost_ends_the_stream_and_reopen_restarts_it(
    speech_wav: Path, tmp_path: Path, reopen: bool
) -> None:
    dev = tmp_path / "alsa"
    make_device(speech_wav, dev, 16000, 1)
    res = run_mic(dev, LOST, "1" if reopen else "0")
    ends = res["ends"]
    assert isinstance(ends, list) and ends[0][0] == "m" and ends[0][2] == "device-lost"
    assert ends[0][1] >= 16000
    stats = res["stats"]
    assert isinstance(stats, dict)
    if reopen:
        assert stats["reopens"] == 1
        assert res["after_first_end"][:2] == [0, 800]  # type: ignore[index]
    else:
        assert len(ends) == 1 and stats["reopens"] == 0


@needs_mic
def test_unknown_device_is_a_one_line_source_error(speech_wav: Path, tmp_path: Path) -> None:
    dev = tmp_path / "alsa"
    make_device(speech_wav, dev, 16000, 1)
    script = """
import asyncio, json
from streamer.sources.base import SourceError
from streamer.sources.mic import MicSource
async def main():
    msgs = []
    for dev in ("no-such-xyz", 57):
        try:
            await MicSource(dev, "m").open()
        except SourceError as e:
            msgs.append(str(e))
    try:
        await MicSource("filemic", "m", channels=500).open()
    except SourceError as e:
        msgs.append(str(e))
    print(json.dumps(msgs))
asyncio.run(main())
"""
    env = {**os.environ, "HOME": str(dev), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, env=env, timeout=60, check=True
    )
    msgs = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert msgs[0] == "no input device matching 'no-such-xyz' (see emotrack devices)"
    assert msgs[1] == "no input device with index 57 (see emotrack devices)"
    assert "500 requested" in msgs[2]
    assert all("\n" not in m for m in msgs)


def test_missing_pyaudio_gives_install_hint(tmp_path: Path) -> None:
    script = (
        "import sys; sys.modules['pyaudio'] = None\n"
        "from streamer.sources.mic import list_devices\n"
        "from streamer.sources.base import SourceError\n"
        "try:\n    list_devices()\nexcept SourceError as e:\n    print(e)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, env=env, timeout=60, check=True
    )
    assert proc.stdout.decode().strip() == "microphone input needs PyAudio: pip install 'emotrack[mic]'"


def test_resolve_device_by_index_name_and_default() -> None:
    devs = [
        DeviceInfo(0, "HDA Intel PCH: ALC3246 Analog (hw:0,0)", 2, 44100.0),
        DeviceInfo(3, "USB Audio Device: - (hw:1,0)", 1, 48000.0, is_default=True),
        DeviceInfo(4, "usb", 1, 16000.0),
    ]
    assert resolve_device(devs, None).index == 3
    assert resolve_device(devs, "").index == 3
    assert resolve_device(devs, 0).index == 0
    assert resolve_device(devs, "4").index == 4
    assert resolve_device(devs, "alc3246").index == 0
    assert resolve_device(devs, "USB").index == 4  # exact (case-insensitive) name beats a substring
    assert resolve_device(devs, "usb audio").index == 3
    with pytest.raises(SourceError, match="no input device matching 'webcam'"):
        resolve_device(devs, "webcam")
    with pytest.raises(SourceError, match="no input device found"):
        resolve_device([], None)
