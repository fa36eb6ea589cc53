"""Every ``emotrack ...`` command line quoted in README.md parses, and the cheap ones run (issue 15, item 12).

Commands are taken from fenced code blocks (``\\`` continuations joined, shell loops split, their
variables set to 0) and inline code spans. Synopses (``[--opt]``, ``A \\| B``, ``FILE...``) are expanded:
brackets dropped, the first alternative kept, placeholders (FILE, LOG, DIR, URL, ...) replaced by small
real fixtures. Then:

- every command must parse with the real parser (a flag renamed or removed fails here);
- commands of ``RUN`` run as a subprocess on tiny inputs and must exit 0; ``listen`` (against a real
  Mosquitto) and ``run`` with a socket source must still be running after ``LIVE_S``, then get SIGTERM;
- ``PARSE_ONLY`` lists the commands only parsed, with the reason; a subcommand in neither is parsed
  only, so a new README command is checked without an edit here;
- a bare prose mention (``emotrack run``, ``emotrack config --check``) must name a real command and real
  flags.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from streamer.cli import build_parser
from tests.daemon_helpers import REPO, cli_cmd, cli_env
from tests.fixtures_mqtt import MosquittoServer

README = REPO / "README.md"
DEFAULT_ENGINE = REPO / "engines" / "default"

RUN = {"config", "predict", "replay", "report", "plot", "run", "listen", "devices"}
PARSE_ONLY = {
    "bench": "runs N real-time streams for minutes of CPU (tests/test_bench.py runs it small)",
    "train": "trains a model with torch on the corpora (tests/test_trainer.py trains tiny ones)",
    "evaluate": "needs a trained engine and the corpora (tests/test_evaluate.py)",
    "baseline": "extracts openSMILE features from the corpora (tests/test_evaluate.py)",
    "export": "needs a training checkpoint (tests/test_export.py)",
    "build-trt": "needs an NVIDIA GPU with TensorRT (tests/test_export.py)",
}
NEEDS = {  # a token in a command line -> why that line cannot run here
    "mic:": "needs a microphone (tests/test_mic.py runs one through alsa-file-mic)",
    "broker.lan": "needs the user's broker broker.lan",
}
TIMEOUT_S = 120
LIVE_S = 4.0  # how long a command that runs until stopped runs before SIGTERM
LIVE_SOURCES = ("tcp://", "unix:")  # a daemon reading these runs until stopped (stdin gets EOF at once)


def runs_until_stopped(args: list[str]) -> bool:
    """``listen``, and ``run`` with a socket source: they never end on their own."""
    return args[0] == "listen" or (args[0] == "run" and any(a.startswith(LIVE_SOURCES) for a in args))


@dataclass(frozen=True)
class Quoted:
    text: str
    line: int
    inline: bool


def quoted_commands(text: str) -> list[Quoted]:
    """``emotrack ...`` lines in fenced blocks and inline code spans, with their README line numbers."""
    out: list[Quoted] = []
    fenced = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
    for m in fenced.finditer(text):
        start = text.count("\n", 0, m.start(1)) + 1
        joined, first = "", 0
        for i, line in enumerate(m.group(1).splitlines()):
            if not joined:
                first = start + i
            joined += line.rstrip().removesuffix("\\") + " "
            if line.rstrip().endswith("\\"):
                continue
            shell = re.sub(r"\s#\s.*$", "", joined).strip()
            for part in re.split(r";|&&|\|\|", shell):  # one command of a shell loop or list
                cmd = re.sub(r"^\s*(do|then)\s+", "", part).strip()
                if re.match(r"(\S*/)?emotrack(\s|$)", cmd):
                    out.append(Quoted(" ".join(cmd.split()), first, False))
            joined = ""
    prose = fenced.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for m in re.finditer(r"`([^`]+)`", prose):
        cmd = " ".join(m.group(1).split())
        if re.match(r"(\S*/)?emotrack(\s|$)", cmd):
            out.append(Quoted(cmd, prose.count("\n", 0, m.start()) + 1, True))
    return out


COMMANDS = quoted_commands(README.read_text())


def words(q: Quoted) -> list[str]:
    """The arguments after ``emotrack``, synopsis brackets dropped and only the first alternative kept."""
    text = re.sub(r"\$\{?\w+\}?", "0", q.text)  # a shell loop's variable: any value of it
    toks = shlex.split(text.replace("\\|", " | "))[1:]
    out: list[str] = []
    i = 0
    while i < len(toks):
        t = toks[i].replace("[", "").replace("]", "")
        if t == "|":  # drop the other alternative (a flag, and its placeholder value if any)
            i += 2
            if i < len(toks) and toks[i].strip("[]").isupper():
                i += 1
            continue
        if t == "..." and out and out[-1] == "--corpus":  # "--corpus ...": some corpus
            t = "NAME=PATH"
        t = t.removesuffix("...")
        if t:
            out.append(t)
        i += 1
    return out


def is_mention(q: Quoted, args: list[str]) -> bool:
    """Prose naming a command (``emotrack predict``, ``emotrack config --check``), not a line to type: inline,
    at most one flag and no values, and incomplete as it stands."""
    if not args:
        return True
    if not (q.inline and len(args) <= 2 and all(a.startswith("-") for a in args[1:])):
        return False
    try:
        build_parser()[0].parse_args(PARSE_INPUTS.fill(args))
    except Exception:
        return True
    return False


@dataclass
class Inputs:
    """Real small files standing for the README's placeholders."""

    wav: Path
    toml: Path
    log: Path
    tmp: Path
    url: str = "mqtt://127.0.0.1:1"

    def fill(self, args: list[str]) -> list[str]:
        """Placeholders replaced by real small inputs (what each one stands for depends on its flag)."""
        out: list[str] = []
        for i, a in enumerate(args):
            prev = args[i - 1] if i else ""
            n = len(out)
            if prev in ("-c", "--config", "--check") or a in ("emotrack.toml", "CONFIG.toml"):
                out.append(str(self.toml))
            elif a in ("FILE", "call.wav"):
                out.append(str(self.wav))
            elif a in ("LOG", "LOG_OR_AUDIO"):
                out.append(str(self.log))
            elif a in ("DIR", "D", "ENGINE", "CHECKPOINT"):
                engine_like = prev == "--engine" or (a == "ENGINE" and not prev.startswith("-"))
                out.append(str(DEFAULT_ENGINE) if engine_like else str(self.tmp / f"out{n}"))
            elif a == "SPEC":
                out.append(f"file:{self.wav}?id=readme")
            elif a == "URL":
                out.append(self.url)
            elif a == "SECTION.KEY=VALUE":
                out.append("smoothing.tau_s=2")
            elif a == "NAME=PATH":
                out.append("ravdess=../shared/corpora/ravdess")
            elif a == "M":
                out.append("realtime")
            elif a in ("N", "S"):  # a count or seconds
                out.append("1")
            else:
                out.append(a.replace("call.wav", str(self.wav)))
        return out


PARSE_INPUTS = Inputs(Path("a.wav"), Path("c.toml"), Path("l.jsonl"), Path("/tmp"))  # parsing opens nothing


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, speech_wav: Path) -> Inputs:
    """A speech file, a config running it into a log directory, and the log that run writes."""
    tmp = tmp_path_factory.mktemp("readme")
    logs = tmp / "logs"
    toml = tmp / "emotrack.toml"
    toml.write_text(
        f'[[sources]]\nspec = "file:{speech_wav}?id=readme"\n\n[logs]\ndirectory = "{logs}"\n\n'
        "[daemon]\nbroker_port = 0\n\n[inference]\nworkers = 1\n"
    )
    r = subprocess.run(
        cli_cmd("run", "-c", str(toml)), env=cli_env(), cwd=tmp, capture_output=True, timeout=TIMEOUT_S
    )
    assert r.returncode == 0, r.stderr.decode()
    log = next(logs.rglob("*.jsonl"))
    return Inputs(speech_wav, toml, log, tmp)


def _id(q: Quoted) -> str:
    return f"L{q.line}:{q.text[:60]}"


def test_readme_has_commands() -> None:
    assert len(COMMANDS) >= 20, [q.text for q in COMMANDS]


@pytest.mark.parametrize("q", COMMANDS, ids=_id)
def test_readme_command_parses(q: Quoted) -> None:
    parser, mods = build_parser()
    args = words(q)
    if not args:
        return  # the program's name alone
    assert args[0] in mods, f"README line {q.line}: {q.text!r}: no command {args[0]!r}"
    sub = parser._subparsers._group_actions[0].choices[args[0]]  # type: ignore[union-attr]
    for a in args[1:]:
        if a.startswith("-"):
            flag = a.split("=", 1)[0]
            assert flag in sub._option_string_actions, f"README line {q.line}: {args[0]} has no {flag}"
    if is_mention(q, args):
        return
    parser.parse_args(
        PARSE_INPUTS.fill(args)
    )  # the CLI's parser raises UsageError (one line) on anything it rejects


def _why_not_run(args: list[str], q: Quoted) -> str | None:
    if not args or is_mention(q, args):
        return "a prose mention of the command, not a line to type"
    if args[0] not in RUN:
        return PARSE_ONLY.get(args[0], "not run by this test (add it to RUN with small inputs)")
    for token, why in NEEDS.items():
        if any(token in a for a in args):
            return why
    if args[0] == "run" and not {"-c", "--config", "--source"} & set(args):
        return "no source given (the daemon would refuse with a usage error)"
    if args[0] == "listen" and "--mqtt" not in args:
        return "connects to the user's broker at 127.0.0.1:1883 (its synopsis runs against a test broker)"
    return None


RUNNABLE = [q for q in COMMANDS if _why_not_run(words(q), q) is None]


def test_commands_not_run_are_listed_with_a_reason() -> None:
    """Printed with ``pytest -s``: what is only parsed, and why."""
    for q in COMMANDS:
        why = _why_not_run(words(q), q)
        if why is not None:
            print(f"README line {q.line}: parsed only: {q.text[:70]!r}: {why}")
    assert {words(q)[0] for q in RUNNABLE} >= {"run", "predict", "replay", "listen"}


@pytest.mark.parametrize("q", RUNNABLE, ids=_id)
async def test_readme_command_runs(q: Quoted, inputs: Inputs, mosquitto: MosquittoServer) -> None:
    inputs.url = mosquitto.url
    args = inputs.fill(words(q))
    if args[0] == "plot":
        pytest.importorskip("matplotlib", reason="emotrack plot needs the .[plot] extra (matplotlib)")
    if args[0] == "run" and "--engine" not in args:
        args += ["--engine", str(DEFAULT_ENGINE)]
    if args[0] == "run":
        args += ["--set", "inference.workers=1"]
    proc = await asyncio.create_subprocess_exec(
        *cli_cmd(*args),
        env=cli_env(),
        cwd=inputs.tmp,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    if runs_until_stopped(args):  # it must still be running after a while, then stop on SIGTERM
        await asyncio.sleep(LIVE_S)
        assert proc.returncode is None, f"README line {q.line}: {q.text!r} exited early"
        proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT_S)
    text = err.decode(errors="replace")
    assert "Traceback" not in text, text
    ok = (0, -signal.SIGTERM, 128 + signal.SIGTERM) if args[0] == "listen" else (0,)  # run drains: 0
    assert proc.returncode in ok, f"README line {q.line}: {shlex.join(args)} -> {proc.returncode}: {text}"
    if args[0] == "predict" and "--track" in args and "--text" in args:
        lines = out.decode().splitlines()
        assert len(lines) > 1 and lines[1].startswith("  "), lines  # the file's line, then its windows


def test_bench_help_says_the_result_is_json_either_way() -> None:
    """``bench --help`` said JSON needed ``--json``; the result is JSON either way (``--json``: one line)."""
    parser, _ = build_parser()
    sub = parser._subparsers._group_actions[0].choices["bench"]  # type: ignore[union-attr]
    text = " ".join(sub.format_help().split())
    assert "JSON either way" in text, text
