"""``wall_time`` is never in the future: an unpaced file is read far faster than real time, so timing its
windows from the first sample on put the last ones minutes ahead of the clock (the real CLI, a real
file)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from tests.daemon_helpers import base_args, read_logs, start_cli


async def test_unpaced_file_windows_are_not_timed_in_the_future(
    tiny_engine_dir: Path, speech_wav: Path, tmp_path: Path
) -> None:
    x, sr = sf.read(speech_wav, dtype="int16")
    wav = tmp_path / "long.wav"
    sf.write(wav, np.tile(x, 4), sr, subtype="PCM_16")  # about a minute, read in a few seconds
    logs = tmp_path / "logs"
    t0 = time.time()
    p = await start_cli(*base_args(tiny_engine_dir, logs, "--source", f"file:{wav}?id=f", "--stdout", "json"))
    assert await p.wait() == 0, p.stderr.decode()
    t1 = time.time()
    lines = read_logs(logs)["f"]
    end = lines[-1]
    assert end["type"] == "stream_end"
    records = [r for r in lines if r["type"] in ("window", "utterance")]
    printed = [json.loads(x) for x in p.stdout.decode().splitlines()]
    timed = records + [r for r in printed if r.get("type") == "state"]
    assert records and len(timed) > len(records)
    assert t1 - t0 < len(x) * 4 / sr / 2, "the file was not read faster than real time: nothing to test"
    for r in timed:  # scored between start and stream end, never after either
        assert t0 <= r["wall_time"] <= end["ended_unix"] + 0.001 <= t1 + 0.001, (r, end)
    walls = [r["wall_time"] for r in records]
    assert walls == sorted(walls)
