"""The benchmark's smoke test: a few clients for a few seconds produce a report. No timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT


def test_bench_runs_a_tiny_tick_workload_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "runs.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "tick", "--clients", "3", "--duration", "2",
         "--warmup", "0.5", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["workload"] == "tick" and row["connected"] == 3
    assert row["deliveries_per_s"] > 0 and row["p99_ms"] is not None
    assert row["machine"]["nproc"] and "load_before" in row
    assert "| workload |" in done.stdout and "| tick |" in done.stdout


def test_bench_runs_a_tiny_abuse_workload_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "runs.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "abuse-none", "abuse", "--clients", "3",
         "--duration", "3", "--warmup", "0.5", "--settle", "1", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    base, abuse = [json.loads(line) for line in out.read_text().splitlines()]
    assert base["workload"] == "abuse-none" and abuse["workload"] == "abuse"
    assert abuse["abusers"]["requests"] > 0 and abuse["abusers"]["connections"] >= 8
    assert abuse["rss_settled_mb"] > 0 and "p99_vs_abuse_none" in abuse


def test_bench_runs_a_tiny_stream_redis_workload_with_both_peers(tmp_path: Path) -> None:
    # Needs node and npm (`make test-deps` installs them): the driver runs `npm ci` in
    # bench/node-gateway when its node_modules is missing, and fails, saying so, without them.
    out = tmp_path / "runs.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "stream-redis", "--clients", "20", "--duration", "3",
         "--warmup", "0.5", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = {row["peer"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"node", "ours"}
    for row in rows.values():
        assert row["workload"] == "stream-redis" and row["clients"] == 20
        assert row["connected"] == 20 and row["never_connected"] == 0
        # The leader replica fed both; the loadgen read every peer's frames, with no seq gap.
        assert row["published_per_s"] > 0 and row["deliveries_per_s"] > 0
        assert row["p99_ms"] is not None and row["loss"] == 0
        assert row["cpu_us_per_quote"] > 0 and row["rss_per_conn_kb"] is not None
        assert row["connect_s"] >= 0
    assert rows["ours"]["measured_role"] == "follower"  # it only fanned out
    assert "Node p99 ms | ours p99 ms" in done.stdout
    assert "| stream-redis | 20 |" in done.stdout
    assert "python -m bench.run stream-redis --clients 20" in done.stdout


def test_bench_runs_a_tiny_stream_join_workload(tmp_path: Path) -> None:
    """Clients that join while others stream: each counts once its snapshot has arrived."""
    out = tmp_path / "runs.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "stream-join", "--scale", "0.002", "--peers", "ours",
         "--duration", "3", "--warmup", "0.5", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["workload"] == "stream-join" and row["clients"] == 25 and row["connected"] == 25
    assert row["joined"] == 5 and row["join_failed"] == 0 and row["join_errors"] == {}
    assert 0 <= row["join_s"] < 3 and row["valid"]
    assert "| stream-join | 25 |" in done.stdout and "ours join s" in done.stdout
