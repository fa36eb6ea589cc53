"""Build the 2.0 engine: fit the chosen head on all training voices, export, quantise, check, describe.

    python -m training.whisper.build CORPORA EMBEDDINGS_DIR OUT_DIR --depth L --c C [--aug]

The head is fitted on RAVDESS actors 1-18, TESS, ASED and nEMO (actors 19-24 never), exported with the
encoder as one ONNX graph whose large weights are stored as fp16 (computed in fp32, like the feature graph the
head was fitted on), and checked: the engine's logits on re-cut windows must match the head applied to the
cached embeddings.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from engines.integrity import sha256_file
from engines.manifest import EngineManifest, EngineOutputs, Provenance, write_manifest
from training.export import export_engine
from training.pipeline import git_revision
from training.whisper.compact import compact_weights
from training.whisper.encoder import pretrained_encoder
from training.whisper.heads import LinearHead
from training.whisper.model import WhisperEmotion
from training.whisper.select import CORPORA, LABELS, CorpusData, fit_setting, layer, load_data, setting_parser

LICENCE = (
    "CC BY-NC-SA 4.0 (non-commercial, attribution, share-alike): head trained on RAVDESS (CC BY-NC-SA 4.0), "
    "TESS (CC BY-NC-ND 4.0), nEMO (CC BY-NC-SA 4.0) and ASED (research use; cite Retta et al., 2022); "
    "encoder weights: OpenAI Whisper-base (MIT)"
)


def main(argv: list[str] | None = None) -> int:
    p = setting_parser(__doc__.splitlines()[0])
    p.add_argument("--hop", type=float, default=1.0, help="window hop (s); 1.0: the cost rule, docs")
    p.add_argument("--version", default="2.0.0")
    p.add_argument(
        "--exclude", action="append", default=[], choices=CORPORA, help="leave a corpus out (a fold engine)"
    )
    args = p.parse_args(argv)

    data = load_data(args.corpora, args.embeddings)
    train = [name for name in CORPORA if name not in args.exclude]
    head = fit_setting(data, train, args.depth, args.c, args.aug)
    model = WhisperEmotion(pretrained_encoder(args.depth), head).eval()
    speakers = sorted({u.speaker for name in train for u in data[name].utts})
    names = {"ravdess": "RAVDESS actors 1-18", "tess": "TESS", "ased": "ASED", "nemo": "nEMO"}
    manifest = EngineManifest(
        name="emotrack-whisper",
        version=args.version,
        labels=LABELS,
        outputs=EngineOutputs(logits=True, vad=True),
        hop_s=args.hop,
        # Every input exactly one 2 s window, as in training: Whisper's positional table is added to the
        # residual stream, so pooled statistics shift with the input's length (a whole 3-8 s clip scored
        # as one input lost 9 points of UA). Shorter segments are tiled up, longer ones windowed.
        min_window_s=2.0,
        max_window_s=2.0,
        provenance=Provenance(
            training_data=(
                f"frozen Whisper-base encoder, {args.depth} blocks; linear head fitted on the four-class "
                f"clips of {', '.join(names[n] for n in train)} ({len(speakers)} speakers, clean"
                f"{' + one channel-augmented copy' if args.aug else ''}); "
                "held-out test: RAVDESS actors 19-24; "
                f"train speakers: {', '.join(speakers)}"
            ),
            code_version=git_revision(),
            license=LICENCE,
            command=" ".join(["python -m training.whisper.build", *(argv or sys.argv[1:])]),
        ),
    )
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_engine(model, Path(tmp) / "fp32", manifest)
        args.out.mkdir(parents=True, exist_ok=True)
        compact_weights(fp32 / "model.onnx", args.out / "model.onnx")
    final = replace(manifest, sha256={"model.onnx": sha256_file(args.out / "model.onnx")})
    write_manifest(args.out, final)
    print(json.dumps({"engine": str(args.out), "bytes": (args.out / "model.onnx").stat().st_size}))
    return check_against_cache(args.out, data["ravdess"], args.depth, head)


def check_against_cache(engine_dir: Path, d: CorpusData, depth: int, head: LinearHead) -> int:
    """The engine's logits on re-cut windows of a few clips against the head on the cached embeddings."""
    from engines.loader import load_engine
    from training.data.dataset import load_audio, trim_silence
    from training.whisper.embed import WindowPlan, clip_windows

    engine = load_engine(engine_dir)
    worst = 0.0
    for i in range(0, 40, 4):
        wins = clip_windows(trim_silence(load_audio(d.utts[i].path), 40.0), WindowPlan())
        got = engine.infer(np.stack(wins)).logits
        if got is None:
            raise SystemExit(f"{engine_dir}: the engine returned no logits")
        cached = layer(d.clean.values[d.clean.clip == i], depth)
        want = head.logits(cached)
        worst = max(worst, float(np.abs(got - want).max()))
    print(json.dumps({"max_abs_logit_diff_vs_cache": worst}))
    return 0 if worst < 1e-2 else 1


if __name__ == "__main__":
    sys.exit(main())
