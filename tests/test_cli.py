"""The emotrack CLI as a user runs it (subprocess): outputs, one-line errors, exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.daemon_helpers import REPO, cli_cmd, cli_env
from tests.fixtures_mqtt import MosquittoServer, free_port
from tests.shared_data import MIC_MISSING, alsa_file_mic


def emotrack(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        cli_cmd(*args), capture_output=True, text=True, env=env or cli_env(), cwd=REPO, timeout=timeout
    )
    assert "Traceback" not in r.stderr, r.stderr
    return r


def one_error_line(r: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("emotrack: error: ")
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_version_and_defaults() -> None:
    r = emotrack("--version")
    assert r.returncode == 0 and r.stdout.startswith("emotrack 0.1.0")
    line = r.stdout.strip()
    assert len(r.stdout.strip().splitlines()) == 1 and "default engine emotrack-" in line, line
    # this host has no GPU build of ONNX Runtime in CI; whatever it has, a known backend is named
    assert any(f"backend {b}" in line for b in ("onnxruntime-cpu", "onnxruntime-cuda", "tensorrt")), line
    r = emotrack("config", "--defaults")
    assert r.returncode == 0
    table = tomllib.loads(r.stdout)
    assert table["inference"]["max_batch"] == 8
    r = emotrack("config", "--check", str(REPO / "systemd" / "emotrack.toml"))
    assert r.returncode == 0 and "ok" in r.stdout


def test_version_says_when_the_default_engine_is_missing_or_broken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import engines
    from streamer.cli import version_text

    monkeypatch.setattr(engines, "default_engine_path", lambda: tmp_path / "absent")
    assert version_text() == f"emotrack 0.1.0; no default engine ({tmp_path / 'absent'} not found)"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "engine.json").write_text("{not json")
    monkeypatch.setattr(engines, "default_engine_path", lambda: broken)
    text = version_text()
    assert text.startswith("emotrack 0.1.0; default engine broken (") and "\n" not in text, text


def test_usage_errors_exit_2() -> None:
    one_error_line(emotrack("run", "--bogus"), 2, "--bogus")
    one_error_line(emotrack(), 2, "command is required")
    one_error_line(emotrack("predict"), 2, "FILE")
    one_error_line(emotrack("run", "--stdout", "loud"), 2, "loud")
    one_error_line(emotrack("run", "--set", "novalue"), 2, "SECTION.KEY=VALUE")
    one_error_line(emotrack("replay", "x.jsonl", "--out", "o", "--set", "=v"), 2, "SECTION.KEY=VALUE")


def test_runtime_errors_exit_1(
    tiny_engine_dir: Path, tiny_engine_copy: Path, speech_wav: Path, tmp_path: Path
) -> None:
    eng = str(tiny_engine_dir)
    one_error_line(emotrack("run", "--engine", eng, "--source", str(tmp_path / "nope.wav")), 1, "nope.wav")
    one_error_line(
        emotrack("run", "--engine", str(tmp_path / "noengine"), "--source", str(speech_wav)), 1, "noengine"
    )
    bad = tmp_path / "bad.toml"
    bad.write_text("[inference]\nmax_bach = 3\n")
    one_error_line(
        emotrack("run", "-c", str(bad), "--engine", eng, "--source", str(speech_wav)),
        1,
        "inference.max_bach",
        "unknown key",
    )
    one_error_line(
        emotrack("config", "--check", str(tmp_path / "missing.toml")), 1, "missing.toml", "not found"
    )
    env = cli_env({"EMOTRACK_INFERENCE__MAX_WAIT_MS": "soon"})
    one_error_line(
        emotrack("run", "--engine", eng, "--source", str(speech_wav), env=env),
        1,
        "EMOTRACK_INFERENCE__MAX_WAIT_MS",
        "float",
    )
    one_error_line(
        emotrack("run", "--engine", eng, "--source", str(speech_wav), "--mqtt", "http://x"), 1, "mqtt.url"
    )
    one_error_line(
        emotrack("run", "--engine", eng, "--source", "mic:nosuchdevice?id=m", "--no-logs"), 1, "nosuchdevice"
    )
    one_error_line(
        emotrack(
            "run",
            "--engine",
            eng,
            "--source",
            str(speech_wav),
            "--log-dir",
            "/proc/nope",
            "--broker-port",
            "0",
        ),
        1,
        "log directory",
    )
    model = tiny_engine_copy / "model.onnx"
    model.write_bytes(model.read_bytes()[:1000])  # truncated: checksum and graph are both wrong
    one_error_line(
        emotrack("run", "--engine", str(tiny_engine_copy), "--source", str(speech_wav)), 1, "model.onnx"
    )
    one_error_line(emotrack("predict", "--engine", str(tiny_engine_copy), str(speech_wav)), 1, "model.onnx")


def test_predict_without_engine_uses_the_bundled_default(speech_wav: Path) -> None:
    manifest = json.loads((REPO / "engines" / "default" / "engine.json").read_text())
    r = emotrack("predict", str(speech_wav))
    assert r.returncode == 0, r.stderr
    (out,) = [json.loads(x) for x in r.stdout.splitlines()]
    assert out["label"] in manifest["labels"] and set(out["scores"]) == set(manifest["labels"])
    assert all(-1.0 <= out[k] <= 1.0 for k in ("valence", "arousal", "dominance"))


def test_predict_json_lines(tiny_engine_dir: Path, speech_wav: Path, tmp_path: Path) -> None:
    silent = tmp_path / "silence.flac"
    sf.write(str(silent), np.zeros(16000 * 2, dtype=np.float32), 16000)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"not audio at all" * 10)
    r = emotrack(
        "predict",
        "--engine",
        str(tiny_engine_dir),
        "--json",
        "--track",
        str(speech_wav),
        str(tmp_path / "missing.wav"),
        str(silent),
        str(garbage),
    )
    assert r.returncode == 1  # two files failed, the others still printed
    out = [json.loads(x) for x in r.stdout.splitlines()]
    assert [Path(d["file"]).name for d in out] == [speech_wav.name, "silence.flac"]
    speech, quiet = out
    assert speech["label"] in {"neutral", "happy", "sad", "angry"}
    assert abs(sum(speech["scores"].values()) - 1) < 1e-3
    assert speech["label"] == max(speech["scores"], key=speech["scores"].get)
    assert all(-1 <= speech[k] <= 1 for k in ("valence", "arousal", "dominance"))
    assert speech["windows"] == len(speech["track"]) >= 6
    assert 0 < speech["speech_seconds"] < speech["duration"]
    assert speech["track"][0]["raw"]["scores"] and speech["track"][0]["smoothed"]["label"]
    assert quiet["label"] is None and quiet["windows"] == 0 and quiet["note"] == "no speech found"
    err = r.stderr.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("emotrack: error: ") for e in err)
    assert "missing.wav" in err[0] and "garbage.wav" in err[1]


def test_predict_text(tiny_engine_dir: Path, speech_wav: Path) -> None:
    r = emotrack("predict", "--text", "--engine", str(tiny_engine_dir), str(speech_wav))
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith(f"{speech_wav}: ") and "windows" in r.stdout


def test_listen_prints_streams(
    mosquitto: MosquittoServer, tiny_engine_dir: Path, speech_wav: Path, tmp_path: Path
) -> None:
    args = [
        "--engine",
        str(tiny_engine_dir),
        "--threads",
        "1",
        "--no-logs",
        "--mqtt",
        mosquitto.url,
        "--prefix",
        "lst",
        "--source",
        f"file:{speech_wav}?id=s1",
    ]
    assert emotrack("run", *args).returncode == 0
    # retained state and status are what a late listener sees first
    r = emotrack("listen", "--mqtt", mosquitto.url, "--prefix", "lst", "--count", "2", "--timeout", "20")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert len(lines) == 2
    assert any(x.startswith("[s1] state") and "ended" in x for x in lines)
    assert any(x == "status: offline" for x in lines)
    r = emotrack(
        "listen", "--mqtt", mosquitto.url, "--prefix", "lst", "--raw", "--count", "1", "--timeout", "20"
    )
    topic, _payload = r.stdout.split(" ", 1)
    assert topic.startswith("lst/")


def test_listen_unreachable_broker() -> None:
    port = free_port()
    r = emotrack("listen", "--mqtt", f"mqtt://127.0.0.1:{port}", "--timeout", "2")  # it waits, then gives up
    assert r.stderr.startswith("emotrack listen: waiting for the MQTT broker"), r.stderr
    r.stderr = r.stderr.split("\n", 1)[1]
    one_error_line(r, 1, f"127.0.0.1:{port} within 2s", "Connection refused")


def test_devices_lists_the_file_microphone(speech_wav: Path, tmp_path: Path) -> None:
    tool = alsa_file_mic()
    if tool is None:
        pytest.skip(MIC_MISSING)
    subprocess.run([str(tool), str(speech_wav), str(tmp_path)], check=True, capture_output=True)
    r = emotrack("devices", env=cli_env({"HOME": str(tmp_path)}))
    assert r.returncode == 0 and "filemic" in r.stdout


def _predict_with_tty_stderr(*args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run `emotrack predict` with stdout a pipe and stderr a pseudo-terminal; return (result, stderr)."""
    import os
    import pty
    import threading

    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:  # keep the pty buffer empty so the child never blocks on stderr
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO once the child closed its end
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        proc = subprocess.run(
            cli_cmd("predict", *args), stdout=subprocess.PIPE, stderr=slave, text=True,
            env=cli_env(), cwd=REPO, timeout=120,
        )  # fmt: skip
    finally:
        os.close(slave)
        reader.join(timeout=10)
        os.close(master)
    return proc, b"".join(chunks).decode(errors="replace")


def test_predict_progress_bar_only_on_a_terminal(tiny_engine_dir: Path, speech_wav: Path) -> None:
    files = [str(speech_wav), str(speech_wav)]
    piped = emotrack("predict", "--engine", str(tiny_engine_dir), *files)
    assert piped.returncode == 0 and piped.stderr == "", piped.stderr  # not a TTY: no bar
    assert len([json.loads(x) for x in piped.stdout.splitlines()]) == 2
    r, err = _predict_with_tty_stderr("--engine", str(tiny_engine_dir), *files)
    assert r.returncode == 0, err
    assert len([json.loads(x) for x in r.stdout.splitlines()]) == 2  # stdout stays pure JSON lines
    assert "predict" in err and "2/2" in err, err
    r, err = _predict_with_tty_stderr("--engine", str(tiny_engine_dir), "--no-progress", *files)
    assert r.returncode == 0 and "2/2" not in err, err
    r, err = _predict_with_tty_stderr("--engine", str(tiny_engine_dir), str(speech_wav))
    assert r.returncode == 0 and "1/1" not in err, err  # one file: no bar


def _read_all(fd: int) -> str:
    """Everything written to the pty so far (one os.read may return only the first write)."""
    import os
    import select

    out = b""
    while select.select([fd], [], [], 0.2)[0]:
        out += os.read(fd, 4096)
    return out.decode()


def test_progress_bar_helper_shows_only_for_a_tty_and_many_items() -> None:
    import io
    import os
    import pty

    from streamer.progress import progress_bar

    quiet = io.StringIO()
    with progress_bar(3, "work", stream=quiet) as bar:
        bar.update(3)
    assert quiet.getvalue() == ""
    master, slave = pty.openpty()
    with os.fdopen(slave, "w") as tty:
        with progress_bar(3, "work", stream=tty) as bar:
            bar.update(3)
        tty.flush()
        shown = _read_all(master)
        with progress_bar(1, "single", stream=tty) as bar:
            bar.update(1)
        with progress_bar(3, "off", stream=tty, enabled=False) as bar:
            bar.update(3)
        tty.write("END")
        tty.flush()
        rest = _read_all(master)
    os.close(master)
    assert "work" in shown and "3/3" in shown, shown
    assert rest.strip() == "END", rest
