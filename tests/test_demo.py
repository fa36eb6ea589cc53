"""``emotrack demo``: synthetic calm and excited speech whose published arousal follows the script."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
from pathlib import Path

import pytest

from streamer.demo import DemoAudio, Segment, kind_at, score
from streamer.records import EmotionValues, EngineRef, WindowRecord
from tests.daemon_helpers import cli_env, start_cli

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def _window(start: float, end: float, raw: float, smoothed: float) -> WindowRecord:
    def v(a: float) -> EmotionValues:
        return EmotionValues(label=None, scores=None, valence=0.0, arousal=a, dominance=0.0)

    return WindowRecord("demo", 0, 0, 0, start, end, 0.0, v(raw), v(smoothed), EngineRef("t", "1"))


def test_windows_are_scored_by_the_segment_they_mostly_cover() -> None:
    audio = DemoAudio(
        Path("x.wav"), 10.0, (Segment("calm", "en", 0.0, 4.0), Segment("excited", "en", 5.0, 9.0))
    )
    assert kind_at(audio, 0.5, 2.5) == "calm"
    assert kind_at(audio, 3.5, 5.5) is None  # mostly the gap
    assert kind_at(audio, 4.5, 6.5) == "excited"
    assert kind_at(audio, 15.5, 17.5) == "excited"  # second pass
    assert kind_at(audio, 9.5, 11.5) == "calm"  # across the loop point
    s = score(audio, [_window(0.5, 2.5, 0.1, 0.2), _window(5.5, 7.5, 0.5, 0.3), _window(6, 8, 0.3, 0.4)])
    assert s.calm.windows == 1 and s.excited.windows == 2
    assert s.raw_separation == pytest.approx(0.3) and s.smoothed_separation == pytest.approx(0.15)
    assert s.raw_above_calm == 1.0 and s.auc_raw == 1.0


@needs_espeak
async def test_one_pass_excited_arousal_exceeds_calm_and_nothing_left_in_tmp(tmp_path: Path) -> None:
    """The bundled engine on one unpaced pass; TMPDIR is private and must stay empty."""
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    cache = tmp_path / "cache"
    proc = await start_cli(
        *("demo", "--loops", "1", "--fast", "--score", "--stdout", "off", "--broker-port", "0"),
        *("--log-dir", str(tmp_path / "logs"), "--cache-dir", str(cache), "--threads", "1"),
        env=cli_env({"TMPDIR": str(private_tmp)}),
        cwd=tmp_path,  # the daemon's default state directory is ./emotrack-state
    )
    assert await proc.wait(180) == 0, proc.stderr.decode()
    result = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert result["calm"]["windows"] >= 20 and result["excited"]["windows"] >= 15, result
    assert result["excited"]["raw_arousal"] > result["calm"]["raw_arousal"] + 0.15, result
    assert result["excited"]["smoothed_arousal"] > result["calm"]["smoothed_arousal"] + 0.1, result
    assert result["auc_raw"] >= 0.9 and result["auc_smoothed"] >= 0.8, result
    # onnxruntime itself keeps one small ".ses" file in TMPDIR (overwritten, not ours); nothing else
    assert [p.name for p in private_tmp.rglob("*") if p.name != ".ses"] == []
    assert sorted(p.suffix for p in cache.iterdir()) == [".json", ".wav"]


@needs_espeak
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_looping_demo_ends_cleanly_on_a_signal(tmp_path: Path, sig: signal.Signals) -> None:
    proc = await start_cli(
        *("demo", "--stdout", "json", "--broker-port", "0", "--threads", "1"),
        *("--log-dir", str(tmp_path / "logs"), "--cache-dir", str(tmp_path / "cache")),
        cwd=tmp_path,
    )
    assert proc.proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.proc.stdout.readline(), 120)  # the first record: it runs
        assert json.loads(line)["stream"] == "demo"
        await asyncio.sleep(1.0)
        assert proc.proc.returncode is None, "the looping demo ended by itself"
        proc.signal(sig)
        assert await proc.wait(60) == 0, proc.stderr.decode()
    finally:
        await proc.kill()
    assert "until Ctrl-C" in proc.stderr.decode()


@needs_espeak
async def test_quickstart_without_a_microphone_runs_the_demo_and_leaves_nothing_in_tmp(
    tmp_path: Path,
) -> None:
    """scripts/quickstart in a copy whose .venv runs this checkout; Debian packages are already there."""
    import os
    import sys

    from tests.daemon_helpers import REPO

    for pkg in ("python3-venv", "portaudio19-dev", "libsndfile1", "espeak-ng"):
        r = await asyncio.create_subprocess_exec(
            "dpkg-query", "-W", "-f=${Status}", pkg, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await r.communicate()
        if b"install ok installed" not in out:
            pytest.skip(f"{pkg} is not installed: the quickstart would run apt-get")
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    for name in ("quickstart", "_setup.sh"):
        shutil.copy(REPO / "scripts" / name, root / "scripts" / name)
    venv = root / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").symlink_to(sys.executable)
    (venv / "pip").write_text("#!/bin/sh\nexit 0\n")
    (venv / "emotrack").write_text(  # `devices` finds no microphone; anything else is this checkout
        '#!/bin/sh\n[ "$1" = devices ] && { echo "[]"; exit 0; }\n'
        f'exec {sys.executable} -m streamer.cli "$@"\n'
    )
    for exe in ("pip", "emotrack"):
        os.chmod(venv / exe, 0o755)
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    env = cli_env({"TMPDIR": str(private_tmp), "EMOTRACK_DAEMON__BROKER_PORT": "0"})
    proc = await asyncio.create_subprocess_exec(
        "bash",
        str(root / "scripts" / "quickstart"),
        env=env,
        cwd=str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        while True:  # the quickstart's own line, then the demo's records
            line = await asyncio.wait_for(proc.stdout.readline(), 120)
            assert line, "the quickstart ended before any record"
            if line.startswith(b"[demo] "):
                break
        proc.send_signal(signal.SIGINT)  # the script exec'd the demo: Ctrl-C reaches it
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0 and b"Traceback" not in err, err.decode()
    assert [p.name for p in private_tmp.rglob("*") if p.name != ".ses"] == []  # .ses: onnxruntime's
    assert [p.suffix for p in (root / "emotrack-state" / "demo").glob("demo-*.wav")] == [".wav"]
