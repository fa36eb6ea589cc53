"""emotrack bench: the whole pipeline through the CLI (both backends), its search, its figures."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from streamer.bench.audio import ClipPool, make_stream_audio, speech_span
from streamer.bench.metrics import onset_delays, percentile, pipeline_latencies, window_receipts
from streamer.bench.search import find_max

torch = pytest.importorskip("torch", reason="bench tests build an engine with torch (the train extra)")

REPO = Path(__file__).resolve().parents[1]
LABELS = ["neutral", "happy", "sad", "angry"]
SMALL = {"channels": 16, "prosody_channels": 8, "blocks": 1, "heads": 2, "n_mels": 32}


@pytest.fixture(scope="module")
def bench_engine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small `realtime` model exported as an engine, with its PyTorch copy beside it."""
    from engines.manifest import EngineManifest, EngineOutputs, Provenance
    from training.export import export_engine
    from training.models import build_model
    from training.torch_copy import save_torch_copy

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model("realtime", SMALL, LABELS).eval()
    manifest = EngineManifest(
        name="bench-test",
        version="0.0.1",
        labels=tuple(LABELS),
        outputs=EngineOutputs(logits=True, vad=True),
        window_s=2.0,
        hop_s=0.5,
        min_window_s=0.5,
        max_window_s=8.0,
        padding="repeat",
        provenance=Provenance(
            training_data="none", code_version="tests", license="Apache-2.0", command="test"
        ),
    )
    out = tmp_path_factory.mktemp("bench_engine")
    export_engine(model, out, manifest)
    save_torch_copy(model, out)
    return out


def bench(*args: str, timeout: float = 240.0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "streamer.cli", "bench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
    )


FIELDS = (
    "streams",
    "seconds",
    "windows_scored",
    "windows_dropped",
    "latency_ms",
    "pipeline_latency_ms",
    "onset_to_first_emotion_ms",
    "cpu",
    "peak_rss_mb",
    "engine",
    "backend",
    "threads",
    "machine",
    "broker",
)


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_quick_bench_prints_one_json_object(bench_engine: Path, backend: str) -> None:
    r = bench(
        "--engine", str(bench_engine), "--streams", "2", "--seconds", "3",
        "--backend", backend, "--threads", "1", "--json",
        *([] if backend == "onnxruntime" else ["--stagger"]),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)  # exactly one JSON object on stdout
    for key in FIELDS:
        assert key in out, key
    assert out["streams"] == 2 and out["backend"] == backend
    assert out["windows_scored"] > 0
    assert out["windows_received"] == out["windows_scored"]
    assert out["latency_ms"]["n"] == out["windows_received"]
    assert out["latency_ms"]["p50"] is not None and out["latency_ms"]["max"] >= out["latency_ms"]["p95"]
    assert out["cpu"]["process_s"] > 0 and out["cpu"]["per_stream"] > 0
    assert 0 <= out["cpu"]["non_engine_per_stream"] <= out["cpu"]["per_stream"]
    assert out["cpu"]["engine_s"] > 0
    assert out["peak_rss_mb"] > 10
    assert out["engine"]["name"] == "bench-test"
    assert out["engine"]["backend"] == ("torch-eager" if backend == "torch" else "onnxruntime-cpu")
    assert out["batching"]["max_batch"] == (1 if backend == "torch" else 8)
    assert out["threads"]["intra_op"] == 1 and out["stagger"] == (backend == "torch")
    assert out["machine"]["cores"] >= 1


def test_find_max_on_a_tiny_budget(bench_engine: Path) -> None:
    r = bench(
        "--engine", str(bench_engine), "--find-max", "--streams", "1", "--max-streams", "2",
        "--seconds", "2", "--p95-bound-ms", "10000", "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    trials = out["trials"]
    assert [t["streams"] for t in trials][:1] == [1]
    assert 1 <= len(trials) <= 2
    # every trial is also printed as it finishes (JSON lines on stderr with --json)
    printed = [json.loads(ln) for ln in r.stderr.splitlines() if ln.startswith("{")]
    assert len(printed) == len(trials)
    assert out["max_streams"] in (0, 1, 2)
    assert out["bound"] == {"p95_ms": 10000.0, "on": "window-end"}


def test_user_errors_are_one_line(tmp_path: Path, bench_engine: Path) -> None:
    r = bench("--engine", str(tmp_path / "nope"), "--seconds", "1")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "nope" in r.stderr and "Traceback" not in r.stderr
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ("engine.json", "model.onnx"):
        (bare / f).write_bytes((bench_engine / f).read_bytes())
    r = bench("--engine", str(bare), "--backend", "torch", "--seconds", "1")
    assert r.returncode == 1 and "torch/config.json" in r.stderr and r.stderr.count("\n") == 1
    r = bench("--threads", "0")
    assert r.returncode == 2 and "thread" in r.stderr


def test_torch_copy_round_trip_and_errors(bench_engine: Path, tmp_path: Path) -> None:
    from engines import EngineError
    from training.models import build_model
    from training.torch_copy import load_torch_copy, read_torch_config

    torch.manual_seed(0)
    ref = build_model("realtime", SMALL, LABELS).eval()
    got = load_torch_copy(bench_engine)
    x = torch.from_numpy(np.random.default_rng(0).uniform(-0.3, 0.3, (1, 16000)).astype(np.float32))
    with torch.inference_mode():
        for a, b in zip(ref(x), got(x), strict=True):
            assert torch.allclose(a, b)
    assert read_torch_config(bench_engine)["model"] == "realtime"
    with pytest.raises(EngineError, match=r"config\.json"):
        load_torch_copy(tmp_path)
    broken = tmp_path / "broken"
    (broken / "torch").mkdir(parents=True)
    (broken / "torch" / "config.json").write_text((bench_engine / "torch" / "config.json").read_text())
    (broken / "torch" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(EngineError, match=r"model\.safetensors"):
        load_torch_copy(broken)


def test_torch_backend_scores_one_window_per_call(bench_engine: Path) -> None:
    from engines import load_engine
    from streamer.bench.engines import TimedEngine, load_torch_engine

    ours = load_engine(bench_engine, backend="onnxruntime-cpu", intra_op_threads=1)
    research = TimedEngine(load_torch_engine(bench_engine, 1, None))
    audio = np.random.default_rng(1).uniform(-0.3, 0.3, (3, 32000)).astype(np.float32)
    a, b = ours.infer(audio), research.infer(audio)
    assert a.probabilities is not None and b.probabilities is not None
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-3)
    assert research.calls == 1 and research.rows == 3 and research.cpu_s > 0


async def test_batcher_under_overload_drops_oldest_and_counts(bench_engine: Path) -> None:
    """Submitting faster than the engine runs never blocks or grows the queue: the oldest go, counted."""
    from engines import load_engine
    from streamer.inference import Batcher
    from streamer.messages import SpeechWindow

    engine = load_engine(bench_engine, backend="onnxruntime-cpu", intra_op_threads=1)
    batcher = Batcher(engine, max_batch=2, max_wait_ms=0, max_pending=3)
    x = np.zeros(16000, dtype=np.float32)
    futs = [batcher.submit(SpeechWindow("s", 0, i, 0, 16000, x, 0.0)) for i in range(10)]
    assert batcher.pending <= 3  # bounded, whatever was submitted
    await batcher.drain()
    results = [f.result() for f in futs]
    assert results[:7] == [None] * 7 and all(r is not None for r in results[7:])
    assert batcher.stats.dropped == 7 and batcher.stats.scored == 3


def test_figures_from_receipts() -> None:
    receipts: list[dict[str, Any]] = [
        {"t": 101.05, "topic": "p/s000/window", "payload": {"type": "window", "stream": "s000", "seq": 0,
                                                           "window": 0, "start": 0.5, "end": 2.5}},
        {"t": 101.90, "topic": "p/s000/window", "payload": {"type": "window", "stream": "s000", "seq": 0,
                                                           "window": 0, "start": 0.5, "end": 2.5}},
        {"t": 104.2, "topic": "p/s000/window", "payload": {"type": "window", "stream": "s000", "seq": 2,
                                                          "window": 1, "start": 3.0, "end": 4.0}},
        {"t": 104.3, "topic": "p/s000/state", "payload": {"type": "state", "stream": "s000", "seq": 3}},
    ]  # fmt: skip
    wins = window_receipts(receipts)
    assert sorted(wins) == [("s000", 0), ("s000", 2)]  # the QoS-1 duplicate counts once, first receipt
    starts = {"s000": 98.5}
    pipe = pipeline_latencies(wins, starts, {"s000": {"0": 2.5, "1": 4.5}})
    assert pipe == pytest.approx([0.05, 1.2])
    from streamer.bench.audio import StreamAudio

    audio = {"s000": StreamAudio(Path("x"), 6.0, ((0.8, 2.0), (3.2, 3.9), (5.0, 5.5)))}
    delays, missed = onset_delays(wins, starts, audio)
    assert delays == pytest.approx([101.05 - 99.3, 104.2 - 101.7]) and missed == 1
    assert percentile([1, 2, 3, 4], 50) == 2.5 and percentile([], 95) is None


async def test_find_max_doubles_then_bisects() -> None:
    capacity = 37
    seen: list[int] = []

    async def trial(n: int) -> dict[str, Any]:
        seen.append(n)
        return {"streams": n, "ok": n <= capacity}

    out = await find_max(trial, start=1, cap=256, resolution=0.0)
    assert out["max_streams"] == 37 and out["first_failing"] == 38
    assert seen[:7] == [1, 2, 4, 8, 16, 32, 64]
    out = await find_max(trial, start=64, cap=256, resolution=0.0)
    assert out["max_streams"] == 37
    out = await find_max(trial, start=4, cap=8)
    assert out["max_streams"] == 8 and out["first_failing"] is None
    with pytest.raises(ValueError):
        await asyncio.wait_for(find_max(trial, start=0), 1)


def test_stream_audio_from_espeak(tmp_path: Path) -> None:
    import shutil

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    pool = ClipPool(None, tmp_path)
    assert pool.source == "espeak-ng" and pool.files
    a = make_stream_audio(pool, tmp_path / "s.wav", 6.0, seed=3)
    x, sr = sf.read(a.path, dtype="float32")
    assert sr == 16000 and len(x) == 96000 and a.speech
    for onset, offset in a.speech:
        assert 0 <= onset < offset <= 6.0
        i = int(onset * sr)
        assert np.abs(x[i : i + 1600]).max() > 10 * np.abs(x[max(0, i - 3200) : i - 1600]).max() + 1e-4


def test_speech_span_finds_the_loud_part() -> None:
    x = np.zeros(16000, dtype=np.float32)
    x[4000:8960] = 0.5 * np.sin(np.arange(4960) * 0.1)  # whole 10 ms frames
    first, last = speech_span(x)
    assert first == 4000 and last == 8960


def test_speech_span_ignores_a_click_in_a_quiet_recordings_noise_floor() -> None:
    """A quiet clip (loudest frame -35 dBFS): a lone -69 dBFS frame of floor noise is within 35 dB of
    it but is not the onset; the first sustained run is."""
    rng = np.random.default_rng(0)
    x = (10 ** (-85 / 20) * rng.standard_normal(32000)).astype(np.float32)
    x[3200:3360] = (10 ** (-69 / 20) * np.sqrt(2) * np.sin(np.arange(160) * 0.3)).astype(np.float32)
    x[12000:24000] = (10 ** (-35 / 20) * np.sqrt(2) * np.sin(np.arange(12000) * 0.1)).astype(np.float32)
    first, last = speech_span(x)
    assert first == 12000 and last == 24000


async def test_trial_through_the_embedded_broker(bench_engine: Path, tmp_path: Path) -> None:
    """Where mosquitto is absent the bench falls back to the embedded amqtt broker (forced here)."""
    from streamer.bench.audio import AudioSet
    from streamer.bench.broker import BenchBroker
    from streamer.bench.runner import Runner, Settings

    async with BenchBroker(mosquitto=False) as broker:
        assert broker.kind == "amqtt (embedded)"
        runner = Runner(broker.url, tmp_path, AudioSet(tmp_path / "audio", 3.0))
        out = await runner.trial(Settings(engine=str(bench_engine), intra_threads=1), 1)
    assert out["windows_scored"] > 0 and out["windows_received"] == out["windows_scored"]
    assert out["logs"]["written"] > 0 and out["logs"]["dropped"] == 0
    assert not list(tmp_path.glob("*.jsonl"))  # receipts and logs of the trial are cleaned up


def test_compare_runs_both_backends_on_the_same_files(bench_engine: Path) -> None:
    r = bench(
        "--engine", str(bench_engine), "--compare", "--streams", "1", "--max-streams", "1",
        "--seconds", "2", "--p95-bound-ms", "10000", "--threads", "1", "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ours"]["backend"] == "onnxruntime" and out["research"]["backend"] == "torch"
    ours, research = out["ours"]["trials"][0], out["research"]["trials"][0]
    assert ours["audio_s"] == research["audio_s"] == 2.0
    assert ours["windows_scored"] == research["windows_scored"] > 0  # same files, same windows
    s = out["sustained_streams"]
    assert s["ours"] == out["ours"]["max_streams"] and s["research"] == out["research"]["max_streams"]
    assert s["ratio"] == (round(s["ours"] / s["research"], 2) if s["research"] else None)


def test_engine_cost_times_ours_and_the_research_way_per_window(bench_engine: Path) -> None:
    r = bench(
        "--engine", str(bench_engine), "--engine-cost", "--threads", "1", "--max-batch", "4", "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["engine"] == "bench-test 0.0.1" and out["batch"] == 4
    for side, calls in (("ours", ("batch_1", "batch_4")), ("research", ("batch_1",))):
        for call in calls:
            fig = out[side]["threads_1"][call]
            assert fig["cpu_ms_per_window"] > 0 and fig["wall_ms_per_window"] > 0


def test_sweep_over_workers_reports_each_setting(bench_engine: Path) -> None:
    r = bench(
        "--engine", str(bench_engine), "--streams", "2", "--seconds", "2", "--threads", "1",
        "--workers", "1", "2", "--p95-bound-ms", "10000", "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    runs = json.loads(r.stdout)["runs"]
    assert [run["batching"]["workers"] for run in runs] == [1, 2]
    assert all(run["windows_scored"] > 0 and run["windows_dropped"] == 0 for run in runs)
