"""``emotrack config --check`` accepts exactly what ``emotrack run`` accepts (one validation), and a config
file that cannot be read as UTF-8 TOML is one error line naming the file (subprocess, as a user runs it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_cli import emotrack, one_error_line


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[windows]\nwindow_s = 0.1\n", "must be in (0, window_s]"),
        ("[windows]\nhop_s = 30\n", "hop_s must be in (0, window_s]"),
    ],
)
def test_check_rejects_what_run_rejects(tmp_path: Path, speech_wav: Path, text: str, needle: str) -> None:
    """Both against the same (bundled) engine manifest, whose windows these values contradict."""
    f = tmp_path / "bad.toml"
    f.write_text(text)
    checked = one_error_line(emotrack("config", "--check", str(f)), 1, "windows", needle)
    ran = one_error_line(emotrack("run", "-c", str(f), "--source", str(speech_wav), "--no-logs"), 1, needle)
    assert checked == ran


def test_check_and_run_accept_a_valid_window_override(tmp_path: Path) -> None:
    f = tmp_path / "ok.toml"
    f.write_text("[windows]\nhop_s = 0.5\n")  # the default engine takes exactly 2 s windows
    r = emotrack("config", "--check", str(f))
    assert r.returncode == 0 and r.stdout.startswith(f"{f}: ok"), r.stderr


def test_non_utf8_config_is_one_line_naming_the_file(tmp_path: Path, speech_wav: Path) -> None:
    f = tmp_path / "latin1.toml"
    f.write_bytes("# café réglages\n[windows]\nhop_s = 0.5\n".encode("latin-1"))
    for args in (("config", "--check", str(f)), ("run", "-c", str(f), "--source", str(speech_wav))):
        line = one_error_line(emotrack(*args), 1, str(f), "not UTF-8")
        assert "unexpected" not in line and "byte 0xe9" in line and "line 1" in line, line
