"""Self-supervised speech encoders and a text encoder from local directories or from configs.

Nothing is ever downloaded: a pretrained backbone is a local directory written by `save_pretrained`
(config.json + model.safetensors) loaded with ``local_files_only=True``; without a directory the model is
built from a config with random weights (sizes overridable, tiny in tests). A config-built speech encoder
starts from `SMALL_SPEECH` (a reduced base layout), so a seed model can be trained from scratch on a small
machine; pass the real sizes (or a pretrained directory) for the paper setup.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import Tensor
from transformers import (
    BertTokenizer,
    DistilBertConfig,
    DistilBertModel,
    HubertConfig,
    HubertModel,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Wav2Vec2Config,
    Wav2Vec2Model,
    WavLMConfig,
    WavLMModel,
)

SPEECH_KINDS: dict[str, tuple[type[PretrainedConfig], type[PreTrainedModel]]] = {
    "wav2vec2": (Wav2Vec2Config, Wav2Vec2Model),
    "hubert": (HubertConfig, HubertModel),
    "wavlm": (WavLMConfig, WavLMModel),
}

# Defaults for a config-built speech encoder: the base conv stack (20 ms frames) with a narrower transformer.
SMALL_SPEECH: dict[str, Any] = {
    "hidden_size": 256,
    "num_hidden_layers": 9,
    "num_attention_heads": 4,
    "intermediate_size": 1024,
    "conv_dim": (256, 256, 256, 256, 256, 256, 256),
    "num_conv_pos_embeddings": 64,
    "num_conv_pos_embedding_groups": 8,
    "feat_extract_norm": "group",
    "do_stable_layer_norm": False,
    "mask_time_prob": 0.05,
    "layerdrop": 0.0,
}

SMALL_TEXT: dict[str, Any] = {"dim": 256, "n_layers": 4, "n_heads": 4, "hidden_dim": 1024}


class BackboneError(Exception):
    """A backbone that cannot be loaded or built (missing directory, not a model, bad config key)."""


def _offline() -> None:
    """Make the hub client refuse network access in this process (local loading only)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _checked_dir(path: Path | str, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise BackboneError(f"{what} path not found: {p}")
    if not p.is_dir() or not (p / "config.json").is_file():
        raise BackboneError(f"{what} path is not a model directory (no config.json): {p}")
    if not any(p.glob("*.safetensors")):
        raise BackboneError(f"{what} directory has no .safetensors weights: {p}")
    return p


def _make_config(cls: type[PretrainedConfig], base: dict[str, Any], overrides: dict[str, Any] | None) -> Any:
    cfg = cls(**base)
    for key, value in (overrides or {}).items():
        if not hasattr(cfg, key):
            raise BackboneError(f"{cls.__name__} has no setting {key!r}")
        if isinstance(value, list):
            value = tuple(value)  # JSON round trips turn tuples (conv_dim, ...) into lists
        setattr(cfg, key, value)
    if key_mismatch := _conv_mismatch(cfg):
        raise BackboneError(f"{cls.__name__}: {key_mismatch}")
    return cfg


def _conv_mismatch(cfg: Any) -> str | None:
    if not hasattr(cfg, "conv_dim"):
        return None
    n = (len(cfg.conv_dim), len(cfg.conv_stride), len(cfg.conv_kernel))
    if len(set(n)) != 1:
        return f"conv_dim, conv_stride and conv_kernel must have the same length, got {n}"
    cfg.num_feat_extract_layers = n[0]
    return None


def speech_config(kind: str, overrides: dict[str, Any] | None = None) -> Any:
    """The config a speech encoder of `kind` is built from: `SMALL_SPEECH` updated with `overrides`."""
    if kind not in SPEECH_KINDS:
        raise BackboneError(f"unknown speech backbone kind {kind!r}: choose one of {', '.join(SPEECH_KINDS)}")
    base = dict(SMALL_SPEECH)
    if kind == "wavlm":
        base.pop("mask_time_prob")
    return _make_config(SPEECH_KINDS[kind][0], base, overrides)


def load_speech_encoder(
    kind: str, path: Path | str | None = None, config: dict[str, Any] | None = None
) -> PreTrainedModel:
    """A wav2vec2 / HuBERT / WavLM encoder from a local `save_pretrained` directory, else from a config.

    `config` overrides config fields in both cases (e.g. ``mask_time_prob`` or ``layerdrop``); loading
    never touches the network.
    """
    if kind not in SPEECH_KINDS:
        raise BackboneError(f"unknown speech backbone kind {kind!r}: choose one of {', '.join(SPEECH_KINDS)}")
    cfg_cls, model_cls = SPEECH_KINDS[kind]
    if path is None:
        model = model_cls(speech_config(kind, config))
    else:
        d = _checked_dir(path, f"{kind} backbone")
        _offline()
        try:
            loaded = cfg_cls.from_pretrained(str(d), local_files_only=True)
            cfg = _make_config(cfg_cls, loaded.to_dict(), config)
            model = model_cls.from_pretrained(str(d), config=cfg, local_files_only=True, use_safetensors=True)
        except Exception as e:  # transformers/safetensors raise many types for bad files
            first = " ".join(str(e).split())[:200]
            raise BackboneError(f"{kind} backbone at {d} could not be loaded: {first}") from None
    if not isinstance(model, PreTrainedModel):  # pragma: no cover - from_pretrained always returns one
        raise BackboneError(f"{kind} backbone did not build a model")
    return model


def load_text_encoder(
    path: Path | str | None = None,
    config: dict[str, Any] | None = None,
    *,
    vocab_file: Path | str | None = None,
) -> tuple[DistilBertModel, PreTrainedTokenizerBase]:
    """A DistilBERT encoder and its WordPiece tokenizer from one local directory, else a config-built
    encoder (random init, `SMALL_TEXT` sizes) with a tokenizer from `vocab_file` (a vocab.txt)."""
    if path is not None:
        d = _checked_dir(path, "text backbone")
        _offline()
        try:
            cfg = _make_config(
                DistilBertConfig,
                DistilBertConfig.from_pretrained(str(d), local_files_only=True).to_dict(),
                config,
            )
            model = DistilBertModel.from_pretrained(
                str(d), config=cfg, local_files_only=True, use_safetensors=True
            )
            tok = BertTokenizer.from_pretrained(str(d), local_files_only=True)
        except Exception as e:  # transformers/safetensors raise many types for bad files
            first = " ".join(str(e).split())[:200]
            raise BackboneError(f"text backbone at {d} could not be loaded: {first}") from None
        return model, tok
    if vocab_file is None:
        raise BackboneError("a config-built text encoder needs a WordPiece vocab file (text_vocab)")
    tok = wordpiece_tokenizer(vocab_file)
    cfg = _make_config(DistilBertConfig, {**SMALL_TEXT, "vocab_size": len(tok)}, config)
    return DistilBertModel(cfg), tok


def wordpiece_tokenizer(vocab_file: Path | str) -> PreTrainedTokenizerBase:
    """A lower-casing BERT WordPiece tokenizer from a vocab.txt (one token a line, with [PAD], [UNK], ...)."""
    p = Path(vocab_file).expanduser()
    if not p.is_file():
        raise BackboneError(f"text vocabulary not found: {p}")
    tokens = p.read_text(encoding="utf-8").split()
    missing = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]") if t not in tokens]
    if missing:
        raise BackboneError(f"text vocabulary {p} lacks the special tokens {', '.join(missing)}")
    return BertTokenizer(vocab_file=str(p), do_lower_case=True)


def hidden_size(model: PreTrainedModel) -> int:
    """Width of a backbone's hidden states (DistilBERT calls it `dim`)."""
    cfg = model.config
    return int(getattr(cfg, "hidden_size", None) or cfg.dim)


def n_layers(model: PreTrainedModel) -> int:
    cfg = model.config
    return int(getattr(cfg, "num_hidden_layers", None) or cfg.n_layers)


def speech_hidden_states(encoder: PreTrainedModel, audio: Tensor, layers: tuple[int, ...]) -> list[Tensor]:
    """Hidden states [B, T, H] of the given transformer layers (0 = input to the first layer)."""
    out = encoder(audio, output_hidden_states=True)
    states = out.hidden_states
    return [states[i] for i in layers]


def truncate_layers(encoder: PreTrainedModel, keep: int) -> None:
    """Drop transformer layers above `keep` (their outputs are never used: saves time and memory)."""
    body: Any = encoder.encoder
    if keep < len(body.layers):
        body.layers = body.layers[:keep]
        encoder.config.num_hidden_layers = keep


def check_layers(name: str, encoder: PreTrainedModel, layers: tuple[int, ...]) -> None:
    """One-line error when a config asks for a layer the backbone does not have."""
    depth = n_layers(encoder)
    bad = [i for i in layers if not 0 <= i <= depth]
    if bad:
        raise BackboneError(f"{name}: backbone has {depth} layers, cannot take layer(s) {bad}")


def freeze(module: Any, *, frozen: bool = True) -> None:
    for p in module.parameters():
        p.requires_grad_(not frozen)
