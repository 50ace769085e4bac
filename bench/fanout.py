"""The fan-out's own Python cost per frame, without sockets: `python -m bench.fanout`.

    python -m bench.fanout                          # the three shapes below
    python -m bench.fanout --clients 10000 --batch 3 --messages 2000

`app.core.fanout.Fanout.publish` over N clients that each watch 10 random symbols of 100 (so each
is a cohort of its own, as in the stream workload), with a sink that only counts: what is left
is the Python between a bus message and the writes (grouping, encoding, framing, the per-member
checks). The full benchmark (`python -m bench.run`) measures it with the system calls, whose
cache misses make the same Python cost several times more there; this isolates it, so a change
to the hot path can be compared in seconds. The collector is tuned as the server tunes it.
"""

from __future__ import annotations

import argparse
import random
import time
from decimal import Decimal

from app.core.fanout import Fanout
from app.core.outbox import OnDirect, Outbox
from app.formats import JSON_FORMAT
from app.models import Quote
from app.ws.framing import text_frame
from app.ws.gctune import restore, tune

# (clients, quotes per message, messages): a stream of singles, the stream workload, a tick.
SHAPES = (
    (10_000, 1, 2000),
    (10_000, 3, 2000),
    (19_000, 100, 20),
)


class CountingSink:
    __slots__ = ("frames",)
    prepare = staticmethod(text_frame)

    def __init__(self) -> None:
        self.frames = 0

    def write(self, prepared: bytes) -> bool:
        self.frames += 1
        return True

    def watch(self, on_direct: OnDirect | None) -> None:
        if on_direct is not None:
            on_direct(self.write)


def quote(symbol: str, seq: int) -> Quote:
    price = Decimal(100) + Decimal(seq) / 100
    one = Decimal("1.00")
    return Quote(
        symbol, price, one, one, price, price, price, price, 1000, "USD", "NASDAQ", symbol,
        "simulated", int(time.time() * 1000), True, seq, 1, int(time.time() * 1000),
    )  # fmt: skip


def measure(clients: int, batch: int, messages: int, seed: int = 1) -> dict[str, float]:
    rng = random.Random(seed)
    symbols = [f"S{i:03d}" for i in range(100)]
    fanout = Fanout()
    sinks = []
    for _ in range(clients):
        outbox = Outbox(JSON_FORMAT)
        outbox.sink = sink = CountingSink()
        sinks.append(sink)
        outbox.symbols.update(rng.sample(symbols, 10))
        fanout.regroup(outbox)
    bus = [[quote(s, n) for s in rng.sample(symbols, batch)] for n in range(messages)]
    previous = tune()
    try:
        started = time.perf_counter()
        for message in bus:
            fanout.publish(message)
        spent = time.perf_counter() - started
    finally:
        restore(previous)
    frames = sum(sink.frames for sink in sinks)
    return {
        "clients": clients, "batch": batch, "messages": messages, "frames": frames,
        "us_per_frame": spent * 1e6 / frames, "ms_per_message": spent * 1e3 / messages,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    shapes = [(args.clients, args.batch, args.messages)] if args.clients else SHAPES
    print("| clients | quotes/message | us per frame | ms per message |")
    print("|---|---|---|---|")
    for clients, batch, messages in shapes:
        row = measure(clients, batch, messages)
        print(
            f"| {clients:,} | {batch} | {row['us_per_frame']:.2f} | {row['ms_per_message']:.2f} |"
        )


if __name__ == "__main__":
    main()
