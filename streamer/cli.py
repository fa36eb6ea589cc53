"""The ``emotrack`` command line: a registry of subcommands, each in ``streamer/commands/<name>.py``.

A command module defines ``HELP`` (one line), ``add_parser(subparsers) -> argparse.ArgumentParser`` and
``run(args) -> int``; dropping a new module into ``streamer/commands/`` adds a command (no edit here).
User errors become one line on stderr (``emotrack: error: ...``): exit 2 for usage, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from streamer import __version__

PROG = "emotrack"
# Shown first, in this order; any other module in streamer/commands/ follows alphabetically.
ORDER = ("run", "predict", "listen", "devices", "config", "bench", "train", "evaluate", "export", "build-trt")


class UsageError(Exception):
    """Bad flags or arguments: exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line instead of usage text + exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def command_modules() -> dict[str, ModuleType]:
    """Import every module of ``streamer.commands`` that has ``add_parser`` and ``run``."""
    import streamer.commands as pkg

    found: dict[str, ModuleType] = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_"):
            continue
        try:
            mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
        except Exception as exc:  # one broken command module must not take the whole CLI down
            logging.getLogger(__name__).warning(
                "command module %s unavailable: %s", info.name, _one_line(exc)
            )
            continue
        if hasattr(mod, "add_parser") and hasattr(mod, "run"):
            found[getattr(mod, "NAME", info.name.replace("_", "-"))] = mod
    rank = {n: i for i, n in enumerate(ORDER)}
    return dict(sorted(found.items(), key=lambda kv: (rank.get(kv[0], len(ORDER)), kv[0])))


def version_text() -> str:
    """Package version, the bundled default engine and the backend it would run on here (one line)."""
    return f"{PROG} {__version__}; {_default_engine_text()}"


def _default_engine_text() -> str:
    """Name, version and backend of the default engine; a missing or broken one is said, not raised."""
    try:
        from engines import default_engine_path, read_manifest
    except Exception as exc:  # engines package incomplete
        return f"no default engine ({_one_line(exc)})"
    path = default_engine_path()
    if not path.is_dir():
        return f"no default engine ({path} not found)"
    try:
        from engines.backends import backend_label, select_backend
        from engines.loader import probe_host
        from engines.manifest import MODEL_NAME

        m = read_manifest(path)
        if not (path / MODEL_NAME).is_file():
            return f"default engine {m.name} {m.version} broken ({path / MODEL_NAME} not found)"
        choice = select_backend("auto", m, probe_host(want_trt=bool(m.tensorrt)), path)
        backend = "tensorrt" if choice.kind == "tensorrt" else backend_label(choice.providers)
    except Exception as exc:  # corrupt manifest, unusable runtime: report, never fail --version
        return f"default engine broken ({_one_line(exc)})"
    return f"default engine {m.name} {m.version}; backend {backend}"


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    parser = _Parser(prog=PROG, description="Real-time speech emotion tracker.")
    parser.add_argument(
        "--version", action="store_true", help="print the version, the default engine and its backend"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-v", "--verbose", action="store_true", help="info-level logs on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    mods = command_modules()
    for mod in mods.values():
        mod.add_parser(sub)
    return parser, mods


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions a user can cause; their message is shown as is (one line)."""
    from streamer.configload import ConfigError

    types: list[type[BaseException]] = [ConfigError, FileNotFoundError, PermissionError, IsADirectoryError]
    for modname, attr in (
        ("engines.errors", "EngineError"),
        ("streamer.sources.base", "SourceError"),
        ("streamer.sinks.base", "SinkError"),
        ("streamer.sinks.mqtt_config", "MqttConfigError"),
        ("streamer.sinks.mqtt_config", "BrokerUnreachableError"),
        ("streamer.sinks.broker", "EmbeddedBrokerError"),
        ("streamer.sinks.logfile", "LogError"),
        ("streamer.errors", "EmotrackError"),
    ):
        try:
            t = getattr(importlib.import_module(modname), attr)
        except (ImportError, AttributeError):
            continue
        if isinstance(t, type) and issubclass(t, BaseException):
            types.append(t)
    return tuple(types)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    try:
        parser, mods = build_parser()
        args = parser.parse_args(args_list)
        logging.basicConfig(
            level=logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        if not args.debug:  # amqtt's state machine logs every transition at INFO
            for noisy in ("transitions", "amqtt", "hbmqtt"):
                logging.getLogger(noisy).setLevel(logging.WARNING)
        if args.version:
            print(version_text())
            return 0
        if not args.command:
            raise UsageError(f"a command is required: {', '.join(mods)} (see '{PROG} --help')")
        return int(mods[args.command].run(args))
    except UsageError as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:
        if debug:
            raise
        if isinstance(exc, _user_error_types()):
            print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        else:
            print(
                f"{PROG}: error: unexpected {type(exc).__name__}: {_one_line(exc)}"
                " (run with --debug for details)",
                file=sys.stderr,
            )
        return 1


if __name__ == "__main__":  # python -m streamer.cli: use the importable module (one UsageError class)
    from streamer.cli import main as _main

    sys.exit(_main())
