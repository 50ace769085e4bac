"""Percentiles from a millisecond histogram, and the markdown table of a set of runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def percentiles(hist: dict[int, int]) -> dict[str, int | None]:
    """p50/p90/p99/max in ms of a {ms: count} histogram (None when it is empty)."""
    total = sum(hist.values())
    out: dict[str, int | None] = {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None}
    if not total:
        return out
    marks = [("p50_ms", 0.50), ("p90_ms", 0.90), ("p99_ms", 0.99)]
    running = 0
    for ms in sorted(hist):
        running += hist[ms]
        while marks and running >= marks[0][1] * total:
            out[marks.pop(0)[0]] = ms
    out["max_ms"] = max(hist)
    return out


COLUMNS = (
    ("workload", "workload"), ("clients", "clients"), ("connected", "connected"),
    ("p50_ms", "p50 ms"), ("p90_ms", "p90 ms"), ("p99_ms", "p99 ms"), ("max_ms", "max ms"),
    ("server_lag_p99", "server p99"),
    ("published_per_s", "published/s"), ("deliveries_per_s", "quotes/s"),
    ("frames_per_s", "frames/s"), ("loss", "loss"),
    ("conflated", "conflated"), ("closes", "closes"), ("server_cpu", "server CPU"),
    ("server_rss_peak_mb", "server RSS MB"), ("gen_cpu", "gen CPU"), ("valid", "valid"),
    ("load_before", "load"), ("target", "target"),
)  # fmt: skip


def _cell(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if key == "workload":
        extra = [f"{k}={v}" for k, v in row.get("label_env", {}).items()]
        if row.get("label"):
            extra.append(str(row["label"]))
        return f"{value}" + (f" ({', '.join(extra)})" if extra else "")
    if key == "valid":
        return "yes" if value else "INVALID: " + "; ".join(row.get("invalid_because", []))
    if key == "closes":
        merged = {**(value or {})}
        for code, count in (row.get("slow_closes") or {}).items():
            merged[f"slow {code}"] = count
        return " ".join(f"{k}:{v}" for k, v in merged.items()) or "-"
    if key == "server_cpu" or key == "gen_cpu":
        return "-" if value is None else f"{float(value):.0%}"
    if key == "server_rss_peak_mb" and row.get("rss_per_conn_kb") is not None:
        return f"{value} ({row['rss_per_conn_kb']} KB/conn)"
    if key == "p99_ms" and row.get("p99_vs_abuse_none") is not None:
        return f"{value} ({row['p99_vs_abuse_none']}x abuse-none)"
    if key == "server_rss_peak_mb" and row.get("rss_settled_mb") is not None:
        return (
            f"{value} peak; {row['rss_baseline_mb']} before, {row['rss_settled_mb']} 60 s after "
            f"({row['rss_settled_vs_baseline']}x)"
        )
    if key == "p99_ms" and row.get("storm_p99_s") is not None:
        return f"back: p50 {row['storm_p50_s']}s, p99 {row['storm_p99_s']}s"
    return "-" if value is None else str(value)


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row, key) for key, _ in COLUMNS) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    # python -m bench.report bench/results/<date>.jsonl: the table of every run in the file
    paths = [Path(p) for p in sys.argv[1:]]
    print(markdown([json.loads(line) for p in paths for line in p.read_text().splitlines()]))
