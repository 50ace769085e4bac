"""Abusive clients for the `abuse` workloads of `bench.run`.

`big` clients (the `abuse` workload: all of them) send the largest request the server accepts
(`max_bytes`, a `subscribe` naming thousands of symbols: one symbol over and over, or distinct
made-up ones, by turns) as often as their message budget allows (`CLIENT_RATE` units a second,
one unit per started 4 KiB), for `duration` seconds; half of them read what comes back, the
others never read (small socket buffers, and the client library stops reading once one message
waits). `abuse-mixed` adds `churn` clients, which subscribe to 50 real symbols and unsubscribe
again and again (each subscribe draws a snapshot), and `pages` clients, which ask for `/` with a
50-symbol watchlist cookie over one keep-alive connection as fast as the server answers. A client
that is closed reconnects and goes on. Input: one JSON object on the command line; output: one
JSON line at the end.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote as urlquote

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

COST_UNIT = 4096  # as app.endpoints.websocket.COST_UNIT


@dataclass
class Spec:
    url: str
    clients: int = 8
    duration: float = 20.0
    max_bytes: int = 65536
    rate: float = 20.0
    # One kind per client, in turn: big (reading), big-silent, churn, pages.
    kinds: tuple[str, ...] = ("big", "big-silent")
    symbols: tuple[str, ...] = ()  # real symbols, for churn and pages


def requests(max_bytes: int) -> list[bytes]:
    """Two largest requests: one symbol repeated, and distinct made-up symbols."""
    out = []
    for item in ("TCS", "Z{:06d}"):
        symbols: list[str] = []
        size = len(b'{"action":"subscribe","symbols":[]}')
        while True:
            symbol = item.format(len(symbols))
            if size + len(symbol) + 3 > max_bytes:
                break
            symbols.append(symbol)
            size += len(symbol) + 3
        out.append(orjson.dumps({"action": "subscribe", "symbols": symbols}))
    return out


async def abuse(spec: Spec, index: int, reads: bool, stats: Counter[str]) -> None:
    frames = requests(spec.max_bytes)
    # What the budget allows: a request costs one unit per started 4 KiB of itself or of its
    # reply; the made-up symbols draw a reply up to twice the request's size.
    costs = [1 + len(frames[0]) // COST_UNIT, 1 + 2 * len(frames[1]) // COST_UNIT]
    deadline = time.monotonic() + spec.duration
    n = 0
    while time.monotonic() < deadline:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.bind((f"127.0.1.{10 + index}", 0))  # each its own client, as the server sees it
        try:
            sock.connect(_address(spec.url))
            ws = await connect(spec.url, sock=sock, max_size=None, max_queue=None if reads else 1)
        except (OSError, InvalidHandshake):
            stats["connect_errors"] += 1
            await asyncio.sleep(0.5)
            continue
        stats["connections"] += 1
        reader = asyncio.create_task(_read(ws, stats)) if reads else None
        try:
            while time.monotonic() < deadline:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.01)):
                    await ws.send(frames[n % 2])
                n += 1
                stats["requests"] += 1
                await asyncio.sleep(costs[(n - 1) % 2] / spec.rate)
        except ConnectionClosed as exc:
            stats[f"closed_{exc.rcvd.code if exc.rcvd else 1006}"] += 1
        except (TimeoutError, OSError):
            stats["send_blocked"] += 1
        finally:
            if reader is not None:
                reader.cancel()
            await _abandon(ws)
        await asyncio.sleep(0.2)


async def _read(ws: ClientConnection, stats: Counter[str]) -> None:
    try:
        async for message in ws:
            stats["reply_bytes"] += len(message)
    except ConnectionClosed:
        pass


async def _abandon(ws: ClientConnection) -> None:
    ws.transport.abort()  # leave as an abusive client does: without a closing handshake
    await asyncio.sleep(0)


def _address(url: str) -> tuple[str, int]:
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    return host, int(port)


async def churn(spec: Spec, index: int, stats: Counter[str]) -> None:
    symbols = list(spec.symbols[:50])
    subscribe = orjson.dumps({"action": "subscribe", "symbols": symbols})
    unsubscribe = orjson.dumps({"action": "unsubscribe", "symbols": symbols})
    deadline = time.monotonic() + spec.duration
    while time.monotonic() < deadline:
        sock = socket.socket()
        sock.bind((f"127.0.1.{10 + index}", 0))
        try:
            sock.connect(_address(spec.url))
            ws = await connect(spec.url, sock=sock, max_size=None)
        except (OSError, InvalidHandshake):
            stats["connect_errors"] += 1
            await asyncio.sleep(0.5)
            continue
        stats["connections"] += 1
        reader = asyncio.create_task(_read(ws, stats))
        try:
            while time.monotonic() < deadline:
                await ws.send(subscribe)
                await ws.send(unsubscribe)
                stats["requests"] += 2
                # What the budget allows: the subscribe's acknowledgement and 50-quote snapshot
                # cost about 6 units, the unsubscribe 1.
                await asyncio.sleep(7 / spec.rate)
        except ConnectionClosed as exc:
            stats[f"closed_{exc.rcvd.code if exc.rcvd else 1006}"] += 1
        finally:
            reader.cancel()
            await _abandon(ws)
        await asyncio.sleep(0.2)


async def pages(spec: Spec, index: int, stats: Counter[str]) -> None:
    host, port = _address(spec.url)
    cookie = "watchlist=" + urlquote(",".join(spec.symbols[:50]), safe=",")
    request = f"GET / HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n\r\n".encode()
    deadline = time.monotonic() + spec.duration
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection(
                host, port, local_addr=(f"127.0.1.{10 + index}", 0)
            )
        except OSError:
            stats["connect_errors"] += 1
            await asyncio.sleep(0.5)
            continue
        stats["connections"] += 1
        try:
            while time.monotonic() < deadline:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                stats[f"http_{head[9:12].decode()}"] += 1
                if b"connection: close" in head.lower():
                    break
        except (OSError, asyncio.IncompleteReadError, StopIteration, ValueError):
            stats["http_dropped"] += 1
        finally:
            writer.close()


async def main(spec: Spec) -> dict[str, Any]:
    stats: Counter[str] = Counter()
    tasks = []
    for i in range(spec.clients):
        kind = spec.kinds[i % len(spec.kinds)]
        if kind == "churn":
            tasks.append(churn(spec, i, stats))
        elif kind == "pages":
            tasks.append(pages(spec, i, stats))
        else:
            tasks.append(abuse(spec, i, reads=kind == "big", stats=stats))
    await asyncio.gather(*tasks)
    return {"event": "abusers", **stats}


if __name__ == "__main__":
    result = asyncio.run(main(Spec(**json.loads(sys.argv[1]))))
    sys.stdout.write(json.dumps(result) + "\n")
