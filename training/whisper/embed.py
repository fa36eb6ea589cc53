"""Pooled Whisper-encoder embeddings of labelled clips, cut into the windows the daemon scores.

The daemon scores 2 s windows of speech, so training sees the same: each silence-trimmed clip becomes up to
``max_windows`` windows of ``window_s`` (hop ``hop_s``; a clip shorter than a window is repeated up to it,
as the engine's ``repeat`` padding does). The encoder runs once per window in ONNX Runtime and returns the
mean and std over time of each layer's states, so that heads and layer choice are fitted on cached numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from training.data.channel import ChannelConfig, augment_channel
from training.data.dataset import SAMPLE_RATE, load_audio, trim_silence
from training.data.types import Utterance

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowPlan:
    window_s: float = 2.0
    hop_s: float = 1.0
    max_windows: int = 4
    trim_db: float = 40.0


def clip_windows(x: npt.NDArray[np.float32], plan: WindowPlan) -> list[npt.NDArray[np.float32]]:
    """Equal-length windows over a trimmed clip (a short clip is tiled up to one window)."""
    win = int(plan.window_s * SAMPLE_RATE)
    hop = int(plan.hop_s * SAMPLE_RATE)
    if len(x) == 0:
        x = np.zeros(win, dtype=np.float32)
    if len(x) < win:
        return [np.tile(x, int(np.ceil(win / len(x))))[:win]]
    starts = list(range(0, len(x) - win + 1, hop))
    if len(starts) > plan.max_windows:  # spread the kept windows over the clip
        starts = [starts[i] for i in np.linspace(0, len(starts) - 1, plan.max_windows).round().astype(int)]
    return [x[s : s + win] for s in starts]


@dataclass(frozen=True)
class Embeddings:
    """Window embeddings [W, D] and the clip each window came from (an index into the utterance list)."""

    values: npt.NDArray[np.float32]
    clip: npt.NDArray[np.int64]

    def save(self, path: Path) -> None:
        np.savez(path, values=self.values, clip=self.clip)

    @staticmethod
    def load(path: Path) -> Embeddings:
        with np.load(path) as z:
            return Embeddings(values=z["values"], clip=z["clip"])


def embed_utterances(
    utts: Sequence[Utterance],
    model_path: Path,
    plan: WindowPlan,
    *,
    augment_seed: int | None = None,
    channel: ChannelConfig | None = None,
    batch: int = 32,
    threads: int = 2,
) -> Embeddings:
    """Run the feature graph (audio -> pooled states) over every window of every clip; with
    ``augment_seed`` each clip first goes through one random recording chain."""
    import onnxruntime as ort
    from tqdm import tqdm

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(augment_seed) if augment_seed is not None else None
    pending: list[npt.NDArray[np.float32]] = []
    owners: list[int] = []
    out: list[npt.NDArray[np.float32]] = []

    def flush() -> None:
        if pending:
            out.append(session.run(None, {"audio": np.stack(pending)})[0].astype(np.float32))
            pending.clear()

    for i, utt in enumerate(tqdm(utts, desc="embedding", unit="clip", mininterval=30)):
        x = load_audio(utt.path)
        if rng is not None:
            x = augment_channel(x, rng, channel)
        for w in clip_windows(trim_silence(x, plan.trim_db), plan):
            pending.append(w)
            owners.append(i)
            if len(pending) == batch:
                flush()
    flush()
    return Embeddings(values=np.concatenate(out), clip=np.asarray(owners, dtype=np.int64))


def main(argv: list[str] | None = None) -> int:
    """``python -m training.whisper.embed CORPORA OUT_DIR [--depth 5] [--aug]``: the four-class clips of
    RAVDESS, TESS, ASED and nEMO, embedded and cached as ``OUT_DIR/emb_<corpus>_<clean|aug>.npz``."""
    import argparse

    from training.whisper.features import export_feature_graph
    from training.whisper.select import four_class

    p = argparse.ArgumentParser(description="cache pooled Whisper-encoder embeddings of the corpora")
    p.add_argument("corpora", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--depth", type=int, default=5, help="encoder blocks (every block's states are kept)")
    p.add_argument("--aug", action="store_true", help="one channel-augmented copy of each clip (seed 17)")
    p.add_argument("--corpus", action="append", help="only these corpora (default: all four)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    graph = args.out / f"features_depth{args.depth}.onnx"
    if not graph.is_file():
        export_feature_graph(args.depth, graph)
    for name in args.corpus or ["ravdess", "tess", "ased", "nemo"]:
        utts = four_class(name, args.corpora)
        emb = embed_utterances(utts, graph, WindowPlan(), augment_seed=17 if args.aug else None)
        emb.save(args.out / f"emb_{name}_{'aug' if args.aug else 'clean'}.npz")
        print(f"{name}: {len(utts)} clips, {len(emb.clip)} windows", flush=True)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
