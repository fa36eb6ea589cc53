"""MQTT connection settings: URL or host/port, auth, TLS, outbox and reconnect policy.

Kept apart from the sink so the config loader and the CLI can validate settings without
touching the network. The password never appears in a repr or a log line.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import ssl
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal, NamedTuple
from urllib.parse import unquote, urlsplit

import aiomqtt
import paho.mqtt.client as mqtt_client
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.reasoncodes import ReasonCode

from streamer.sinks.base import SinkError

PLAIN_SCHEMES = ("mqtt", "tcp")
TLS_SCHEMES = ("mqtts", "ssl", "tls")


class MqttConfigError(SinkError, ValueError):
    """A bad MQTT setting; the message is one line naming the setting."""


class BrokerUnreachableError(SinkError, ConnectionError):
    """The broker could not be reached or refused us; one line naming host:port and the reason."""


class BrokerRefusedError(BrokerUnreachableError):
    """The broker answered and refused us (credentials, authorisation, client id): retrying cannot help."""


# CONNACK codes retrying cannot change. MQTT 3.1.1: 1 protocol version, 2 client id, 4 bad user name or
# password, 5 not authorised; paho reports them as the MQTT 5 codes 132, 133, 134, 135 (138 banned,
# 140 bad authentication method). "Server unavailable" (3, 136) and "server busy" (137) are transient.
_PERMANENT_CONNACK = {1: "", 2: "client id", 4: "credentials", 5: "credentials", 132: "", 133: "client id",
                      134: "credentials", 135: "credentials", 138: "", 140: "credentials"}  # fmt: skip


def refusal(exc: BaseException, endpoint: Endpoint) -> BrokerRefusedError | None:
    """The permanent refusal ``exc`` stands for (one line naming the broker and its reason), else None."""
    if not isinstance(exc, MqttConnectError):
        return None
    rc = exc.rc
    code = rc.value if isinstance(rc, ReasonCode) else rc
    if not isinstance(code, int) or code not in _PERMANENT_CONNACK:
        return None
    reason = str(rc) if isinstance(rc, ReasonCode) else mqtt_client.connack_string(code)
    hint = {
        "credentials": "; check the MQTT username and password ([mqtt] username/password or the URL)",
        "client id": "; check [mqtt] client_id",
    }.get(_PERMANENT_CONNACK[code], "")
    return BrokerRefusedError(
        f"MQTT broker at {endpoint} refused the connection: {reason} (CONNACK code {code}){hint}"
    )


_ERRNO = re.compile(r"^\[Errno -?\d+\]\s*")


def describe_error(exc: BaseException) -> str:
    """A short reason for a log line ('Connection refused', '[code:134] Bad user name or password')."""
    text = _ERRNO.sub("", str(exc)).strip()
    cause = exc.__cause__
    if text == "Disconnected during message iteration":  # aiomqtt's words for "the socket closed"
        detail = _ERRNO.sub("", str(cause)).strip() if cause is not None else ""
        return f"connection closed ({detail})" if detail else "connection closed"
    if text in ("", "Operation timed out") and cause is not None:
        text = _ERRNO.sub("", str(cause)).strip() or text
    return text.splitlines()[0] if text else type(exc).__name__


class Endpoint(NamedTuple):
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True, repr=False)
class MqttConfig:
    """Where and how to publish. ``url`` (``mqtt://[user:pass@]host:1883``, ``mqtts://host:8883``)
    wins over ``host``/``port``/``tls``; with neither, ``127.0.0.1:1883``."""

    url: str | None = None
    host: str | None = None
    port: int | None = None
    tls: bool = False
    prefix: str = "emotrack"
    qos: int = 1
    retain_state: bool = True
    client_id: str | None = None  # default emotrack-<hostname>-<pid>
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False  # TLS without certificate and hostname verification
    keepalive: int = 30
    timeout_s: float = 10.0  # CONNACK / PUBACK wait
    outbox_size: int = 1000
    max_inflight: int = 20  # publishes awaiting their acknowledgement at once
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    flush_timeout_s: float = 5.0
    homeassistant: bool = False  # Home Assistant MQTT discovery (streamer.hass)
    discovery_prefix: str = "homeassistant"
    # On-disk spool of window/utterance messages in <daemon.state_directory>/spool (streamer.sinks.spool);
    # used only when a state directory is known (configured, or systemd's $STATE_DIRECTORY).
    spool: bool = True
    spool_max_bytes: int = 256 * 1024 * 1024
    spool_max_records: int = 1_000_000
    spool_fsync: Literal["always", "interval", "never"] = "interval"

    def __post_init__(self) -> None:
        if self.qos not in (0, 1, 2):
            raise MqttConfigError(f"mqtt.qos must be 0, 1 or 2, got {self.qos!r}")
        if not 1 <= self.keepalive <= 65535:
            raise MqttConfigError(f"mqtt.keepalive must be 1..65535 seconds, got {self.keepalive!r}")
        if self.outbox_size < 1:
            raise MqttConfigError(f"mqtt.outbox_size must be >= 1, got {self.outbox_size!r}")
        if self.max_inflight < 1:
            raise MqttConfigError(f"mqtt.max_inflight must be >= 1, got {self.max_inflight!r}")
        if self.timeout_s <= 0 or self.flush_timeout_s < 0:
            raise MqttConfigError("mqtt.timeout_s must be > 0 and mqtt.flush_timeout_s >= 0")
        if self.spool_max_bytes < 4096 or self.spool_max_records < 1:
            raise MqttConfigError(
                f"mqtt.spool_max_bytes must be >= 4096 and mqtt.spool_max_records >= 1, "
                f"got {self.spool_max_bytes!r} and {self.spool_max_records!r}"
            )
        if self.spool_fsync not in ("always", "interval", "never"):
            raise MqttConfigError(
                f"mqtt.spool_fsync must be always, interval or never, got {self.spool_fsync!r}"
            )
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise MqttConfigError(
                f"mqtt.reconnect_min_s must be > 0 and <= reconnect_max_s, "
                f"got {self.reconnect_min_s!r} and {self.reconnect_max_s!r}"
            )
        p = self.prefix
        if not p.strip("/") or any(c in p for c in "+#\0") or p.startswith("$"):
            raise MqttConfigError(f"mqtt.prefix {p!r} must be non-empty, without + # or a leading $")
        if self.port is not None and not 0 < self.port < 65536:
            raise MqttConfigError(f"mqtt.port must be 1..65535, got {self.port!r}")
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, key)
            if path is not None and not Path(path).is_file():
                raise MqttConfigError(f"mqtt.{key} not found: {path}")
        if (self.cert_file is None) != (self.key_file is None):
            raise MqttConfigError("mqtt.cert_file and mqtt.key_file must be given together")
        self.endpoint()  # validates the URL

    @property
    def display_url(self) -> str | None:
        """``url`` with any password replaced by ``***``: the only form to print or log."""
        return None if self.url is None else _redact(self.url)

    @property
    def base(self) -> str:
        """The topic prefix without surrounding slashes."""
        return self.prefix.strip("/")

    def resolved_client_id(self) -> str:
        return self.client_id or f"emotrack-{socket.gethostname()}-{os.getpid()}"

    def endpoint(self) -> Endpoint:
        """Host, port, TLS and credentials after applying the URL (credentials from the URL win)."""
        if self.url is None:
            tls = self.tls
            port = self.port or (8883 if tls else 1883)
            return Endpoint(self.host or "127.0.0.1", port, tls, self.username, self.password)
        try:
            parts = urlsplit(self.url)
            url_port = parts.port
        except ValueError as exc:
            raise MqttConfigError(f"mqtt.url {_redact(self.url)!r} is not valid: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in PLAIN_SCHEMES + TLS_SCHEMES:
            raise MqttConfigError(
                f"mqtt.url {_redact(self.url)!r} must start with mqtt:// or mqtts://, got {scheme or 'none'}"
            )
        if not parts.hostname:
            raise MqttConfigError(f"mqtt.url {_redact(self.url)!r} has no host")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise MqttConfigError(f"mqtt.url {_redact(self.url)!r} must not have a path or query")
        tls = scheme in TLS_SCHEMES or self.tls
        port = url_port or self.port or (8883 if tls else 1883)
        user = unquote(parts.username) if parts.username is not None else self.username
        password = unquote(parts.password) if parts.password is not None else self.password
        return Endpoint(parts.hostname, port, tls, user, password)

    def make_client(
        self, *, identifier: str | None = None, will: aiomqtt.Will | None = None
    ) -> aiomqtt.Client:
        """An unconnected aiomqtt client with these settings (MQTT 3.1.1, clean session)."""
        ep = self.endpoint()
        tls_params = None
        if ep.tls:
            tls_params = aiomqtt.TLSParameters(
                ca_certs=self.ca_file,
                certfile=self.cert_file,
                keyfile=self.key_file,
                cert_reqs=ssl.CERT_NONE if self.insecure else ssl.CERT_REQUIRED,
            )
        return aiomqtt.Client(
            ep.host,
            ep.port,
            logger=_paho_logger(),
            username=ep.username,
            password=ep.password,
            identifier=identifier or self.resolved_client_id(),
            will=will,
            clean_session=True,
            keepalive=self.keepalive,
            timeout=self.timeout_s,
            tls_params=tls_params,
            tls_insecure=True if (ep.tls and self.insecure) else None,
        )

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "password" and value is not None:
                value = "***"
            elif f.name == "url" and value is not None:
                value = _redact(value)
            shown.append(f"{f.name}={value!r}")
        return f"MqttConfig({', '.join(shown)})"

    __str__ = __repr__


def _paho_logger() -> logging.Logger:
    """paho logs every socket error at ERROR; the sink already logs one line per failure.

    Quiet unless someone configured ``emotrack.mqtt.paho`` themselves (to debug the protocol).
    """
    lg = logging.getLogger("emotrack.mqtt.paho")
    if lg.level == logging.NOTSET:
        lg.setLevel(logging.CRITICAL)
    return lg


def _redact(url: str) -> str:
    """The URL with any password replaced by ***."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, hostpart = rest.rpartition("@")
    if ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    return f"{scheme}://{userinfo}@{hostpart}"
