"""Percentiles from a millisecond histogram, and the markdown tables of a set of runs."""

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
        if row.get("peer"):
            extra.insert(0, str(row["peer"]))
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


# The stream-redis workload's peers, in the order they run and their columns appear.
PEERS = ("node", "ours")
PEER_TITLES = {"node": "Node", "ours": "ours"}
PEER_COLUMNS = (
    ("p99_ms", "p99 ms"), ("p50_ms", "p50 ms"), ("server_cpu", "CPU"),
    ("rss_per_conn_kb", "KB/conn"), ("cpu_us_per_quote", "CPU us/quote"),
    ("never_connected", "never connected"), ("connect_s", "connect s"),
    ("join_s", "join s"), ("join_failed", "join failed"),
)  # fmt: skip


def _peer_cell(row: dict[str, Any] | None, key: str) -> str:
    if row is None:
        return "-"
    value = row.get(key)
    if value is None:
        return "-"
    if key == "server_cpu":
        return f"{float(value):.0%}"
    if key in ("connect_s", "join_s"):
        return f"{float(value):.1f}"
    return str(value)


def peers_markdown(rows: list[dict[str, Any]]) -> str:
    """The peers side by side, one line per (workload, clients), with the machine and the
    command in the header; "" when no row has a peer."""
    grouped: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for row in rows:
        if row.get("peer"):
            grouped.setdefault((row["workload"], row["clients"]), {})[row["peer"]] = row
    if not grouped:
        return ""
    first = next(r for r in rows if r.get("peer"))
    m = first.get("machine", {})
    published = [r["published_per_s"] for r in rows if r.get("peer") and r.get("published_per_s")]
    rate = f"{min(published)}-{max(published)}" if published else "-"
    header = [
        f"Peers side by side: {m.get('nproc')} CPUs ({m.get('cpu')}), {m.get('mem_gb')} GB, "
        f"Python {m.get('python')}, commit {first.get('git')}, {first.get('at')}; "
        f"`{first.get('command', 'python -m bench.run')}`; published {rate} quotes/s "
        f"(the leader replica); load before each run in the last column.",
        "",
    ]
    titles = ["workload", "clients"]
    for _, title in PEER_COLUMNS:
        titles += [f"{PEER_TITLES.get(p, p)} {title}" for p in PEERS]
    titles += ["valid", "load"]
    lines = [*header, "| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]
    for (workload, clients), peers in grouped.items():
        cells = [workload, f"{clients:,}"]
        for key, _ in PEER_COLUMNS:
            cells += [_peer_cell(peers.get(p), key) for p in PEERS]
        invalid = [
            f"{PEER_TITLES.get(p, p)}: {'; '.join(r.get('invalid_because', []))}"
            for p, r in peers.items()
            if not r.get("valid")
        ]
        cells.append("INVALID: " + " / ".join(invalid) if invalid else "yes")
        cells.append(" / ".join(str(peers[p].get("load_before", "-")) for p in PEERS if p in peers))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    # python -m bench.report bench/results/<date>.jsonl: the table of every run in the file
    paths = [Path(p) for p in sys.argv[1:]]
    runs = [json.loads(line) for p in paths for line in p.read_text().splitlines()]
    print(markdown(runs))
    if peers_markdown(runs):
        print("\n" + peers_markdown(runs))
