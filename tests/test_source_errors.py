"""Source specs a user gets wrong, through the real CLI: one ``emotrack: error:`` line naming the problem,
non-zero exit, before anything is read."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.daemon_helpers import cli_cmd, cli_env


def run_cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(cli_cmd(*args), input=stdin, capture_output=True, env=cli_env(), timeout=60)


def one_error_line(p: subprocess.CompletedProcess[bytes]) -> str:
    err = p.stderr.decode()
    assert p.returncode != 0, (p.returncode, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("emotrack: error: "), err
    return lines[0]


def test_two_stdin_sources_are_refused(tiny_engine_dir: Path, tmp_path: Path) -> None:
    """Both would read the one standard input, each getting every other block of it."""
    pcm = bytes(32000 * 3)
    for second in ("stdin?id=b", "-"):
        p = run_cli(
            "run", "--engine", str(tiny_engine_dir), "--log-dir", str(tmp_path / "logs"),
            "--source", "stdin?id=a", "--source", second, "--stdout", "json",
            stdin=pcm,
        )  # fmt: skip
        line = one_error_line(p)
        assert "stdin is given more than once" in line
        assert p.stdout == b""
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").rglob("*.jsonl"))


def test_an_invalid_id_is_named_not_taken_for_a_missing_file(speech_wav: Path, tmp_path: Path) -> None:
    for bad_id in ("a/b", "a b", "../x"):
        p = run_cli("run", "--log-dir", str(tmp_path / "logs"), "--source", f"file:{speech_wav}?id={bad_id}")
        line = one_error_line(p)
        assert f"invalid id {bad_id!r}" in line, line
        assert "not found" not in line
    # a '?' that belongs to a path (an unknown key after it) still reads as a path
    p = run_cli("run", "--log-dir", str(tmp_path / "logs"), "--source", f"file:{tmp_path}/what?x=1/a.wav")
    assert "audio file not found" in one_error_line(p)
