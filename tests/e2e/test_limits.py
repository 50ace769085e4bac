"""What one anonymous client can make a request cost: request heads, bodies and slow senders are
bounded by app.http_limits, and the worst request stalls the event loop no longer than an honest
page does. Real `python -m app` (the Procfile's protocols), raw sockets where a client library
would refuse to send what an attacker sends."""

from __future__ import annotations

import inspect
import socket
from collections.abc import Callable, Iterator

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from app.feeds.universe import universe
from tests.e2e.conftest import serve
from tests.support import (
    AppServer,
    eventually,
    http_raw,
    quotes_in,
    recv_json,
    recv_until,
    wait_for,
)


@pytest.fixture(scope="module")
def app_server() -> Iterator[AppServer]:
    yield from serve({"REQUEST_TIMEOUT": "1", "MAX_MESSAGE_BYTES": "65536"})


def status_and_error(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), orjson.loads(body)["error"]["code"]


def test_a_huge_header_is_refused_while_it_arrives(app_server: AppServer) -> None:
    answer = b""
    with socket.create_connection(("127.0.0.1", app_server.port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        try:
            while sent < 10 * 1024 * 1024:  # a 10 MB header, 64 KB at a time
                sock.sendall(b"x" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    assert sent < 10 * 1024 * 1024, "the server read the whole 10 MB header"
    assert status_and_error(answer) == (431, "header_too_large")
    assert app_server.health().status_code == 200


def test_many_headers_within_one_read_are_counted_too(app_server: AppServer) -> None:
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(200))  # ~22 KB
    answer = http_raw(app_server.port, b"GET /health HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert status_and_error(answer) == (431, "header_too_large")


def test_a_long_request_line_is_414(app_server: AppServer) -> None:
    symbols = ",".join(f"S{i:04d}" for i in range(1800))  # ~11 KB
    answer = http_raw(
        app_server.port, f"GET /api/quotes?symbols={symbols} HTTP/1.1\r\n\r\n".encode()
    )
    assert status_and_error(answer) == (414, "uri_too_long")


def test_bodies_are_bounded_declared_or_chunked(app_server: AppServer) -> None:
    declared = http_raw(
        app_server.port,
        b"POST /watchlist HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\nsymbol=TCS",
    )
    assert status_and_error(declared) == (413, "body_too_large")
    chunk = b"%x\r\n%s\r\n" % (32768, b"a" * 32768)
    chunked = http_raw(
        app_server.port,
        b"POST /watchlist HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 4,
    )
    assert status_and_error(chunked) == (413, "body_too_large")
    # A body cut short by its client (it sent part, then left) ends quietly too.
    with socket.create_connection(("127.0.0.1", app_server.port)) as sock:
        sock.sendall(b"POST /watchlist HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nsym")
    ok = httpx.post(f"{app_server.base}/watchlist", data={"symbol": "TCS"}, timeout=10)
    assert ok.status_code in (200, 303)
    # None of it is an application error with a traceback, each request costing ~50 log lines.
    assert "Traceback" not in app_server.log() and "Exception in ASGI" not in app_server.log()


def test_slow_and_silent_connections_are_dropped(app_server: AppServer) -> None:
    # REQUEST_TIMEOUT=1: a request must be complete a second after the connection opens.
    slow = [socket.create_connection(("127.0.0.1", app_server.port)) for _ in range(50)]
    silent = [socket.create_connection(("127.0.0.1", app_server.port)) for _ in range(50)]
    for sock in slow:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    answers = []
    for sock in slow + silent:
        sock.settimeout(15)
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        answers.append(data)
        sock.close()
    assert all(status_and_error(a) == (408, "request_timeout") for a in answers[:50])
    assert all(a == b"" for a in answers[50:])  # nothing to answer: just closed
    assert app_server.health().status_code == 200  # honest requests are unaffected


def test_refusals_are_logged_once_a_minute_not_once_each(app_server: AppServer) -> None:
    for _ in range(100):
        http_raw(app_server.port, b"BREW /coffee HTCPCP/1.0\r\n\r\n")
    answer = http_raw(app_server.port, b"NOT HTTP AT ALL\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400")
    lines = [line for line in app_server.log().splitlines() if "invalid HTTP request" in line]
    assert len(lines) == 1, lines


@pytest.fixture(scope="module")
def capped_server() -> Iterator[AppServer]:
    yield from serve({"MAX_CONNECTIONS": "3"})


async def test_past_the_connection_cap_upgrades_get_503_and_health_still_answers(
    capped_server: AppServer,
) -> None:
    server = capped_server
    held = [await connect(server.ws_url) for _ in range(3)]
    try:
        with pytest.raises(InvalidStatus) as info:
            await connect(server.ws_url)
        assert info.value.response.status_code == 503
        assert server.health().status_code == 200
        async with httpx.AsyncClient() as client:
            busy = await client.get(f"{server.base}/api/quotes", timeout=10)
        assert busy.status_code == 503
        assert busy.json()["error"]["code"] == "too_many_connections"
        await held.pop().close()

        async def admitted() -> bool:
            try:
                async with connect(server.ws_url) as ws:
                    welcome = await recv_json(ws)
                    return bool(welcome["type"] == "welcome")
            except InvalidStatus:
                return False

        await eventually(admitted, 10, "a freed slot to be reused")
    finally:
        for ws in held:
            await ws.close()


# ---- the event loop under the worst requests ---------------------------------------------------

LAG = "stocktracker_event_loop_lag_max_seconds "


def max_lag_since_last(server: AppServer) -> float:
    for line in server.metrics_text().splitlines():
        if line.startswith(LAG):
            return float(line[len(LAG) :])
    raise AssertionError("no loop lag metric")


# Pages every trader loads, at their heaviest (every row priced and rendered).
HONEST_PAGES = ("watchlist", "market", "stock")


def worst_requests(server: AppServer) -> dict[str, Callable[[], object]]:
    """The most expensive request of each kind an anonymous client can send within the limits."""
    head_room = 16 * 1024 - 200
    cookie = ",".join(f"S{i:05d}" for i in range(head_room // 7))  # a forged watchlist cookie
    query = ",".join(f"S{i:04d}" for i in range(8 * 1024 // 6 - 10))

    def get(path: str, **kwargs: object) -> Callable[[], object]:
        return lambda: httpx.get(f"{server.base}{path}", timeout=30, **kwargs)  # type: ignore[arg-type]

    return {
        "cookie": get("/", cookies={"watchlist": cookie}),
        # The heaviest honest pages: every row priced and rendered.
        "watchlist": get("/", cookies={"watchlist": ",".join(list(universe())[:50])}),
        "market": get("/market"),
        "stock": get("/stock/TCS"),
        "quotes": get(f"/api/quotes?symbols={query}"),
        "poll": get(f"/api/poll?symbols={query}"),
        "poll-html": get(f"/api/poll?format=html&symbols={','.join(list(universe())[:50])}"),
        "form": lambda: httpx.post(
            f"{server.base}/watchlist",
            content=b"symbol=" + b"A" * 60_000,
            timeout=30,
            headers={"content-type": "application/x-www-form-urlencoded"},
        ),  # fmt: skip
    }


@pytest.fixture(scope="module")
def sampled_server() -> Iterator[AppServer]:
    # The loop's lag sampled every 2 ms; the attacker's message budget out of the way (this
    # measures what one request costs, not how many the budget lets through).
    yield from serve({
        "LOOP_LAG_INTERVAL": "0.002", "FETCH_INTERVAL": "0.1", "MAX_MESSAGE_BYTES": "65536",
        "CLIENT_RATE": "10000", "MAX_SYMBOLS_PER_CONNECTION": "50",
    })  # fmt: skip


async def test_the_worst_requests_stall_the_loop_less_than_honest_pages_and_no_client_sees_a_gap(
    sampled_server: AppServer,
) -> None:
    server = sampled_server
    distinct = orjson.dumps(
        {"action": "subscribe", "symbols": [f"S{i:04d}" for i in range(65_000 // 8)]}
    )
    repeated = orjson.dumps({"action": "subscribe", "symbols": ["TCS"] * (65_000 // 6)})
    assert len(distinct) <= 65536 and len(repeated) <= 65536
    async with connect(server.ws_url) as honest, connect(server.ws_url) as attacker:
        await recv_json(honest)
        await recv_json(attacker)
        await honest.send(orjson.dumps({"action": "subscribe", "symbols": ["TCS", "INFY"]}))
        seen: dict[str, int] = {}

        async def read_honest() -> None:
            # Everything queued for the honest client: no seq of a symbol may be skipped.
            while True:
                try:
                    message = await recv_json(honest, 0.01)
                except TimeoutError:
                    return
                for q in quotes_in(message):
                    last = seen.get(q["symbol"])
                    assert last is None or q["seq"] == last + 1, (q["symbol"], last, q["seq"])
                    seen[q["symbol"]] = q["seq"]

        async def ws_request(frame: bytes) -> None:
            await attacker.send(frame)
            reply = await recv_until(attacker, lambda m: m["type"] == "subscribed", 30)
            assert len(orjson.dumps(reply)) <= 2 * len(frame)
            await attacker.send(orjson.dumps({"action": "unsubscribe", "symbols": ["TCS"]}))
            await recv_until(attacker, lambda m: m["type"] == "unsubscribed", 30)

        requests: dict[str, Callable[[], object]] = {
            **worst_requests(server),
            "ws-distinct": lambda: ws_request(distinct),
            "ws-repeated": lambda: ws_request(repeated),
        }
        lags: dict[str, float] = {}
        for name, send in requests.items():
            samples = []
            for _ in range(7):
                await read_honest()
                max_lag_since_last(server)  # start a new window
                outcome = send()
                if inspect.isawaitable(outcome):
                    await outcome
                samples.append(max_lag_since_last(server))
            # The second lowest of seven: the request's own work stalls the loop in every
            # sample, while the OS descheduling the server on a loaded machine only adds to some.
            lags[name] = sorted(samples)[1]
        await read_honest()
        assert len(seen) == 2, "the honest client got no quotes"
    # What an attacker can make one request cost, against the heaviest honest page measured on
    # the same machine in the same run (a 50-row watchlist: ~15 ms on a quiet 2-core machine,
    # twice that under the test suite's own load): no worse than 20 ms, or 1.5 times that page
    # where the machine is slower than that.
    heaviest = max(lags[name] for name in HONEST_PAGES)
    bound = max(0.020, 1.5 * heaviest)
    forged = {name: lag for name, lag in lags.items() if name not in HONEST_PAGES}
    assert all(lag < bound for lag in forged.values()), (bound, lags)
    assert heaviest < 0.1, lags  # a sanity ceiling: page speed itself is measured in bench/


def test_running_out_of_descriptors_is_logged_once_and_survived() -> None:
    server = AppServer({"REQUEST_TIMEOUT": "30"}, fd_limit=200)
    server.start()
    try:
        # Connections that send nothing, until the process has no descriptor left.
        held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(300)]
        try:
            wait_for(
                lambda: "out of file descriptors (limit 200)" in server.log(), 15, "the log line"
            )
        finally:
            for sock in held:
                sock.close()
        wait_for(lambda: "file descriptors available again" in server.log(), 15, "recovery")
        assert server.health().status_code == 200
        assert server.log().count("out of file descriptors") == 1
    finally:
        server.stop()


def test_pipelined_requests_are_answered_in_order_and_not_counted_as_one_head(
    app_server: AppServer,
) -> None:
    one = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    many = one * 600  # ~20 KB, more than a head may be, in one stream of small requests
    with socket.create_connection(("127.0.0.1", app_server.port), timeout=10) as sock:
        sock.sendall(many[:-10])  # the last request split across two reads
        sock.sendall(many[-10:] + b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    # (The status line, not the digits: a replica named vm-14314-… has "431" in every body.)
    assert data.count(b"HTTP/1.1 200") == 601 and b"HTTP/1.1 431" not in data
    # A refusal behind requests still being answered does not overtake their answers.
    big = b"GET /health HTTP/1.1\r\nX-Big: " + b"x" * 20_000 + b"\r\n\r\n"
    answer = http_raw(app_server.port, one * 3 + big)
    assert answer.count(b"HTTP/1.1 200") == 3
    assert answer.index(b"HTTP/1.1 200") == 0 and b"HTTP/1.1 431" not in answer[:20]


@pytest.fixture(scope="module")
def budget_server() -> Iterator[AppServer]:
    yield from serve({"CLIENT_HTTP_RATE": "5", "MAX_CONNECTIONS_PER_CLIENT": "2"})


def client_from(address: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=10)


def test_one_client_over_its_request_rate_does_not_slow_another(budget_server: AppServer) -> None:
    url = f"{budget_server.base}/api/quotes?symbols=TCS"
    with client_from("127.0.0.2") as greedy, client_from("127.0.0.3") as other:
        answers = [greedy.get(url) for _ in range(30)]  # burst 10, then 5 a second
        assert [a.status_code for a in answers[:10]] == [200] * 10
        refused = next(a for a in answers if a.status_code == 429)
        assert refused.json()["error"]["code"] == "rate_limited"
        assert int(refused.headers["retry-after"]) >= 1
        assert other.get(url).status_code == 200
        assert greedy.get(f"{budget_server.base}/health").status_code == 200  # never limited


async def test_one_client_cannot_hold_every_connection(budget_server: AppServer) -> None:
    def from_address(address: str) -> socket.socket:
        sock = socket.socket()
        sock.bind((address, 0))
        sock.connect(("127.0.0.1", budget_server.port))
        return sock

    held = [await connect(budget_server.ws_url, sock=from_address("127.0.0.4")) for _ in range(2)]
    try:
        with pytest.raises(InvalidStatus) as info:
            await connect(budget_server.ws_url, sock=from_address("127.0.0.4"))
        assert info.value.response.status_code == 503
        # Its HTTP requests count against the same cap.
        async with httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(local_address="127.0.0.4")
        ) as http:
            busy = await http.get(f"{budget_server.base}/api/quotes?symbols=TCS", timeout=10)
            assert busy.status_code == 503
            assert busy.json()["error"]["code"] == "too_many_connections"
        async with connect(budget_server.ws_url, sock=from_address("127.0.0.5")) as other:
            assert (await recv_json(other))["type"] == "welcome"
    finally:
        for ws in held:
            await ws.close()


def test_a_refusal_never_adds_a_second_answer_or_loses_owed_ones(app_server: AppServer) -> None:
    # The app answered (405) before the chunked body grew too large: no 413 after it.
    chunk = b"%x\r\n%s\r\n" % (32768, b"a" * 32768)
    with socket.create_connection(("127.0.0.1", app_server.port), timeout=10) as sock:
        sock.sendall(b"POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        sock.sendall(chunk)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 405")
        try:
            sock.sendall(chunk * 3)
            while more := sock.recv(65536):
                answer += more
        except ConnectionResetError:
            pass
    assert answer.count(b"HTTP/1.1 ") == 1, answer[:400]
    # Long-polls still being answered when a pipelined request is refused, and the client
    # sending more meanwhile: both polls are answered, then the connection closes.
    cursor = httpx.get(f"{app_server.base}/api/poll?symbols=TCS", timeout=10).json()["cursor"]
    poll = f"GET /api/poll?symbols=TCS&cursor={cursor} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    big = b"GET /health HTTP/1.1\r\nX-Big: " + b"x" * 20_000 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", app_server.port), timeout=10) as sock:
        sock.sendall(poll + poll + big)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")  # more, while they wait
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.count(b"HTTP/1.1 200") == 2 and b"HTTP/1.1 400" not in data, data[:300]
