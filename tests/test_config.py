"""Configuration: defaults < TOML < environment < overrides < flags, and one-line errors naming the key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from streamer.config import ConfigError, EmotrackConfig, defaults_toml, load_config

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "emotrack.toml"
    p.write_text(text)
    return p


def test_defaults() -> None:
    cfg = load_config(environ={})
    assert cfg.inference.max_batch == 8
    assert cfg.inference.max_wait_ms == 0.0
    assert cfg.inference.max_pending == 256
    assert cfg.inference.workers == 2
    assert cfg.stdout == "off"
    assert cfg.embedded_broker
    assert cfg.sources == ()


def test_precedence_toml_env_flags(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
stdout = "text"
sources = ["file:a.wav", {spec = "mic:0", id = "desk"}]
[inference]
max_batch = 8
max_wait_ms = 5
[mqtt]
url = "mqtt://broker.example:1884"
prefix = "house"
""",
    )
    cfg = load_config(path, environ={})
    assert cfg.inference.max_batch == 8
    assert cfg.inference.max_wait_ms == 5.0 and isinstance(cfg.inference.max_wait_ms, float)
    assert [s.spec for s in cfg.sources] == ["file:a.wav", "mic:0"]
    assert cfg.sources[1].id == "desk"
    assert not cfg.embedded_broker
    env = {"EMOTRACK_INFERENCE__MAX_BATCH": "4", "EMOTRACK_MQTT__PREFIX": "env", "EMOTRACK_STDOUT": "json"}
    cfg = load_config(path, environ=env)
    assert (cfg.inference.max_batch, cfg.mqtt.prefix, cfg.stdout) == (4, "env", "json")
    assert cfg.inference.max_wait_ms == 5.0  # untouched keys keep the file's value
    cfg = load_config(path, environ=env, overrides=[("inference.max_batch", "2")], flags={"stdout": "off"})
    assert cfg.inference.max_batch == 2 and cfg.stdout == "off"
    cfg = load_config(path, environ=env, flags={"inference": {"max_batch": 1}})
    assert cfg.inference.max_batch == 1 and cfg.mqtt.prefix == "env"


def test_env_types_parse() -> None:
    cfg = load_config(
        environ={
            "EMOTRACK_DAEMON__WATCHDOG": "off",
            "EMOTRACK_ENGINE__INTRA_OP_THREADS": "2",
            "EMOTRACK_ENGINE__PATH": "~/engines/x",
            "EMOTRACK_WINDOWS__WINDOW_S": "1.5",
            "EMOTRACK_SOURCES": '["file:a.wav", "file:b.wav"]',
            "EMOTRACK_MQTT__URL": "none",
        }
    )
    assert cfg.daemon.watchdog is False
    assert cfg.engine.intra_op_threads == 2
    assert cfg.engine.path == Path("~/engines/x").expanduser()
    assert cfg.windows.window_s == 1.5
    assert [s.spec for s in cfg.sources] == ["file:a.wav", "file:b.wav"]
    assert cfg.mqtt.url is None


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[inference]\nmax_batch = 'x'\n", "inference.max_batch: expected int"),
        ("[inference]\nmax_batch = 0\n", "inference.max_batch: must be >= 1"),
        ("[inference]\nmax_bach = 3\n", "inference.max_bach: unknown key"),
        ("[nosuch]\na = 1\n", "nosuch: unknown section"),
        ("stdout = 'loud'\n", "stdout: expected one of"),
        ("[vad]\naggressiveness = 7\n", "vad.aggressiveness must be 0..3"),
        ("[mqtt]\nqos = 3\n", "mqtt.qos must be 0, 1 or 2"),
        ("[engine]\nbackend = 'cuda'\n", "engine.backend: expected one of"),
        ("[daemon]\nwatchdog = 1\n", "daemon.watchdog: expected bool"),
        ("sources = [{id = 'x'}]\n", "sources[0].spec: missing"),
        ("[inference\n", "invalid TOML"),
        ("[centring]\nstrength = 1.5\n", "centring.strength must be in [0, 1]"),
        ("[centring]\nestimator = 'median'\n", "centring.estimator: expected one of"),
        ("[centring]\nwarm_up = 3\n", "centring.warm_up: unknown key"),
    ],
)
def test_file_errors_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as ei:
        load_config(write(tmp_path, text), environ={})
    msg = str(ei.value)
    assert needle in msg
    assert "\n" not in msg


def test_env_errors_name_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"EMOTRACK_INFERENCE__MAX_WAIT_MS: expected float"):
        load_config(environ={"EMOTRACK_INFERENCE__MAX_WAIT_MS": "soon"})
    with pytest.raises(ConfigError, match=r"EMOTRACK_BOGUS: unknown setting"):
        load_config(environ={"EMOTRACK_BOGUS": "1"})
    with pytest.raises(ConfigError, match=r"EMOTRACK_INFERENCE__NOPE: unknown key"):
        load_config(environ={"EMOTRACK_INFERENCE__NOPE": "1"})


def test_centring_from_file_env_and_set(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "[centring]\nenabled = false\n"), environ={})
    assert cfg.centring.enabled is False and cfg.centring.strength == 1.0
    cfg = load_config(environ={"EMOTRACK_CENTRING__STRENGTH": "0.5"}, overrides=[("centring.warmup_s", "10")])
    assert (cfg.centring.strength, cfg.centring.warmup_s) == (0.5, 10.0)
    with pytest.raises(ConfigError, match=r"centring.warmup_s"):
        load_config(environ={}, overrides=[("centring.warmup_s", "-1")])


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file .*nope.toml: not found"):
        load_config(tmp_path / "nope.toml", environ={})


def test_defaults_toml_round_trips() -> None:
    text = defaults_toml()
    table = tomllib.loads(text)
    assert set(table) >= {"engine", "vad", "windows", "inference", "smoothing", "mqtt", "logs", "daemon"}
    assert table["inference"]["max_batch"] == 8
    assert table["centring"] == {
        "enabled": True,
        "strength": 1.0,
        "warmup_s": 30.0,
        "horizon_s": 600.0,
        "reset_after_s": 120.0,
        "estimator": "mean",
        "gate": 0.6,
    }
    assert "# url =" in text  # None defaults are listed, commented out
    from streamer.config import apply_table

    assert apply_table(EmotrackConfig(), table) == EmotrackConfig()


def test_log_directory_follows_systemd() -> None:
    cfg = EmotrackConfig()
    assert cfg.log_directory({"LOGS_DIRECTORY": "/var/log/emotrack"}) == Path("/var/log/emotrack")
    assert cfg.log_directory({"STATE_DIRECTORY": "/var/lib/emotrack:/x"}) == Path("/var/lib/emotrack")
    assert cfg.log_directory({}) == Path("emotrack-logs")
    cfg = load_config(environ={"EMOTRACK_LOGS__DIRECTORY": "/tmp/x"})
    assert cfg.log_directory({"LOGS_DIRECTORY": "/var/log/emotrack"}) == Path("/tmp/x")


def test_example_systemd_config_loads() -> None:
    cfg = load_config(REPO / "systemd" / "emotrack.toml", environ={})
    assert cfg.sources and cfg.sources[0].id == "room"
