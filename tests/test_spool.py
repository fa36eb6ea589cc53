"""The on-disk spool and the seq store: real files, real crashes (torn lines), real permissions."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from streamer.seqstore import SeqStore, SeqStoreError
from streamer.sinks.mqtt_config import MqttConfig
from streamer.sinks.spool import Spool, SpoolConfig, SpoolError
from streamer.statedir import lock_directory, open_state


def _spool(d: Path, **kw: object) -> Spool:
    return Spool(SpoolConfig(d, **kw))  # type: ignore[arg-type]


def _fill(sp: Spool, n: int, start: int = 0) -> list[int]:
    return [sp.append(f"t/{i}", json.dumps({"seq": i}).encode(), 1, False) for i in range(start, start + n)]


def test_append_read_ack_in_order_and_permissions(tmp_path: Path) -> None:
    d = tmp_path / "spool"
    sp = _spool(d, segment_bytes=600)
    idx = _fill(sp, 50)
    assert idx == list(range(50))
    got = sp.read(-1, 1000)
    assert [e.index for e in got] == idx
    assert [json.loads(e.payload)["seq"] for e in got] == list(range(50))
    assert sp.read(19, 5)[0].index == 20  # resume after a position
    assert [e.index for e in sp.read(19, 5)] == [20, 21, 22, 23, 24]
    segs = sorted(d.glob("seg-*.jsonl"))
    assert len(segs) > 3  # rotated
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in segs)
    sp.ack(29)
    assert sp.pending == 20
    assert len(sorted(d.glob("seg-*.jsonl"))) < len(segs)  # fully acked segments deleted
    assert [e.index for e in sp.read(-1, 100)] == list(range(30, 50))
    sp.close()
    assert stat.S_IMODE((d / "ack").stat().st_mode) == 0o600


def test_survives_restart_and_continues_indexes(tmp_path: Path) -> None:
    sp = _spool(tmp_path)
    _fill(sp, 10)
    sp.ack(3)
    sp.close()
    sp2 = _spool(tmp_path)
    assert sp2.acked == 3 and sp2.pending == 6
    assert [e.index for e in sp2.read(-1, 100)] == list(range(4, 10))
    assert sp2.append("t", b"{}", 1, False) == 10  # never reuses an index
    sp2.ack(10)
    sp2.close()
    sp3 = _spool(tmp_path)
    assert sp3.pending == 0 and sp3.append("t", b"{}", 1, False) == 11


def test_crash_without_checkpoint_resends_unacked_only(tmp_path: Path) -> None:
    """A process killed before close(): the last checkpoint decides, so some messages come again."""
    sp = _spool(tmp_path, checkpoint_interval_s=0.0)
    _fill(sp, 10)
    sp.ack(4)  # checkpointed at once (interval 0)
    # no close(): like SIGKILL. Descriptors leak in this process only.
    sp2 = _spool(tmp_path)
    assert [e.index for e in sp2.read(-1, 100)] == list(range(5, 10))


@pytest.mark.parametrize("tail", [b'{"i":10,"t":"x","q":1,"r":fal', b"\x00\x00\x00", b'{"i":99}\n'])
def test_torn_last_line_is_skipped_and_appends_continue(tmp_path: Path, tail: bytes) -> None:
    sp = _spool(tmp_path)
    _fill(sp, 10)
    seg = sorted(tmp_path.glob("seg-*.jsonl"))[-1]
    with open(seg, "ab") as fh:
        fh.write(tail)
    sp2 = _spool(tmp_path)
    assert sp2.torn == 1
    assert [e.index for e in sp2.read(-1, 100)] == list(range(10))
    assert sp2.append("t", b'{"seq":10}', 1, False) == 10
    assert [e.index for e in sp2.read(-1, 100)] == list(range(11))
    for line in seg.read_bytes().splitlines():
        json.loads(line)  # the file is clean JSON lines again


def test_cap_drops_oldest_segment_and_counts(tmp_path: Path) -> None:
    sp = _spool(tmp_path, segment_bytes=512, max_bytes=4096)
    _fill(sp, 400)
    assert sp.size_bytes <= 4096 + 512
    assert sp.dropped > 0
    left = [e.index for e in sp.read(-1, 1000)]
    assert left == list(range(400 - len(left), 400))  # the newest survive, in order, no holes
    assert sp.dropped + len(left) == 400
    sp_rec = _spool(tmp_path / "r", segment_bytes=512, max_records=50)
    _fill(sp_rec, 200)
    assert len(sp_rec.read(-1, 1000)) <= 50 + 10
    assert sp_rec.dropped + len(sp_rec.read(-1, 1000)) == 200


def test_caps_hold_with_default_segment_size(tmp_path: Path) -> None:
    """Small caps with the default 4 MiB segment: segments shrink so whole-segment drops still bound it."""
    sp = _spool(tmp_path / "b", max_bytes=8192)
    _fill(sp, 1000)
    assert sp.size_bytes <= 8192 + 1024 and sp.dropped > 0
    sr = _spool(tmp_path / "r", max_records=16)
    _fill(sr, 1000)
    kept = len(sr.read(-1, 10_000))
    assert kept <= 16 + 2 and sr.dropped + kept == 1000


def test_unusable_directory_is_one_line_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SpoolError, match=r"spool directory .*file.*cannot use"):
        _spool(blocker / "spool")
    with pytest.raises(SpoolError, match="fsync"):
        _spool(tmp_path, fsync="sometimes")


def test_fsync_always_and_never(tmp_path: Path) -> None:
    for policy in ("always", "never"):
        sp = _spool(tmp_path / policy, fsync=policy)
        _fill(sp, 5)
        sp.close()
        assert len(_spool(tmp_path / policy).read(-1, 10)) == 5


def test_seqstore_leases_and_exact_flush(tmp_path: Path) -> None:
    st = SeqStore(tmp_path, lease=10)
    assert st.start_seq("a") == 0
    for seq in range(25):
        st.use("a", seq)
    assert st.writes == 3  # seqs 0, 11, 22 opened a new lease
    # crash now (no flush): the next start skips ahead, never reuses
    crashed = SeqStore(tmp_path, lease=10)
    assert crashed.start_seq("a") >= 25
    st.flush()
    clean = SeqStore(tmp_path, lease=10)
    assert clean.start_seq("a") == 25 and clean.start_seq("b") == 0
    assert stat.S_IMODE((tmp_path / "seq.json").stat().st_mode) == 0o600
    assert not (tmp_path / "seq.json.tmp").exists()


def test_seqstore_corrupt_file_is_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "seq.json").write_text('{"next": {"a": -3}}')
    with pytest.raises(SeqStoreError, match=r"seq file .*seq.json: unreadable") as ei:
        SeqStore(tmp_path)
    assert "\n" not in str(ei.value)


def test_state_dir_lock_is_exclusive(tmp_path: Path) -> None:
    state = open_state(tmp_path / "st", MqttConfig())
    assert state is not None and state.spool is not None
    assert stat.S_IMODE((tmp_path / "st").stat().st_mode) == 0o700
    with pytest.raises(SeqStoreError, match=rf"in use by another emotrack daemon \(pid {os.getpid()}\)"):
        lock_directory(tmp_path / "st")
    state.close()
    state.close()  # idempotent
    lock_directory(tmp_path / "st")  # free again
    assert open_state(None, MqttConfig(), environ={}) is None
