"""`GET /metrics`: Prometheus exposition, built at scrape time from the app's plain counters.

A custom collector reads the hub, fetcher, feed and loop monitor when Prometheus scrapes, so the
hot path never calls prometheus_client. Each app has its own registry (no process-wide globals),
so tests may build several apps in one process. Labels carry only transport, provider, outcome,
breaker state, symbol names (the watched symbols of this process: bounded by the feed's
universe), route templates and status codes; never API keys or anything a user sent besides a
valid, known symbol.

Every series carries `replica` (this process's REPLICA_ID): with several workers behind one port,
consecutive scrapes reach different processes, and without it their counters and gauges would
interleave into one nonsensical series (`fetcher_leader` 0, 1, 0, 0, 1). The exposition format
follows the scraper's `Accept` header: OpenMetrics when it asks for it, else text 0.0.4.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from app.access import CHALLENGE
from app.httpstats import RequestStats
from app.services import Services, services
from app.stats import Histogram

PREFIX = "stocktracker"
BREAKER_STATES = ("closed", "open", "half-open")


def _histogram(name: str, doc: str, hist: Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, buckets=hist.cumulative(), sum_value=hist.total)


class AppCollector(Collector):
    def __init__(self, svc: Services, requests: RequestStats | None = None) -> None:
        self.svc = svc
        self.requests = requests

    def collect(self) -> Iterator[Metric]:
        yield from self._connections()
        yield from self._http()
        yield from self._fanout()
        yield from self._fetcher()
        yield from self._providers()
        yield from self._alerts()
        yield from self._process()

    def _connections(self) -> Iterator[Metric]:
        hub = self.svc.hub
        conns = GaugeMetricFamily(
            f"{PREFIX}_connections", "Open client connections by transport", labels=["transport"]
        )
        # Page renders that wait for a price are neither: waits are not connections.
        conns.add_metric(["websocket"], hub.connections)
        conns.add_metric(["longpoll"], hub.polls_in_flight)
        yield conns
        watchers = hub.subscriptions.local_counts()
        yield GaugeMetricFamily(
            f"{PREFIX}_subscriptions",
            "Symbol subscriptions in this process (a client watching 10 symbols counts 10)",
            value=sum(watchers.values()),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_symbols_watched", "Distinct symbols watched in this process",
            value=len(watchers),
        )  # fmt: skip
        age = GaugeMetricFamily(
            f"{PREFIX}_quote_age_seconds",
            "Seconds since the fetcher published the latest quote of each watched symbol",
            labels=["symbol"],
        )
        now = time.time()
        for symbol in sorted(watchers):
            quote = hub.latest.get(symbol)
            if quote is not None and quote.published_at:
                age.add_metric([symbol], max(0.0, now - quote.published_at / 1000))
        yield age

    def _http(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(
            f"{PREFIX}_http_request_duration_seconds",
            "HTTP requests the app answered, by route template and status, and their durations",
            labels=["route", "status"],
        )
        for (route, status), hist in sorted((self.requests or RequestStats()).by_route.items()):
            family.add_metric([route, status], hist.cumulative(), hist.total)
        yield family

    def _fanout(self) -> Iterator[Metric]:
        hub = self.svc.hub
        yield CounterMetricFamily(
            f"{PREFIX}_quotes_received", "Quotes from the bus new to this process",
            value=hub.received,
        )  # fmt: skip
        yield CounterMetricFamily(
            f"{PREFIX}_quotes_delivered",
            "Quotes handed to clients, written or queued (one per watching client)",
            value=hub.fanout.delivered,
        )
        frames = CounterMetricFamily(
            f"{PREFIX}_frames_sent",
            "WebSocket frames written to clients, by path (fast: app.ws.fastpath; asgi)",
            labels=["path"],
        )
        frames.add_metric(["fast"], hub.fanout.frames_fast + hub.frames_fast)
        frames.add_metric(["asgi"], hub.frames_sent)
        yield frames
        conflated = hub.conflated_closed + sum(o.conflated for o in hub.outboxes)
        yield CounterMetricFamily(
            f"{PREFIX}_quotes_conflated",
            "Pending quotes replaced by a newer one of the same symbol before the client read it",
            value=conflated,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_slow_client_closes", "Clients closed with 1013 for not reading",
            value=hub.slow_closes,
        )  # fmt: skip
        yield _histogram(
            f"{PREFIX}_fanout_lag_seconds",
            "From the fetcher's publish to the client's batch frame written",
            hub.fanout.fanout_lag,
        )

    def _fetcher(self) -> Iterator[Metric]:
        fetcher = self.svc.fetcher
        yield GaugeMetricFamily(
            f"{PREFIX}_fetcher_leader", "1 if this replica holds the fetcher lease",
            value=1 if fetcher.term is not None else 0,
        )  # fmt: skip
        yield CounterMetricFamily(
            f"{PREFIX}_quotes_published", "Changed quotes this replica published as fetcher",
            value=fetcher.published,
        )  # fmt: skip
        fetches = CounterMetricFamily(
            f"{PREFIX}_fetches", "Calls into the feed by outcome", labels=["outcome"]
        )
        for outcome, count in sorted(fetcher.fetch_outcomes.items()):
            fetches.add_metric([outcome], count)
        yield fetches
        yield _histogram(
            f"{PREFIX}_fetch_duration_seconds", "Duration of one call into the feed",
            fetcher.fetch_duration,
        )  # fmt: skip

    def _providers(self) -> Iterator[Metric]:
        calls = CounterMetricFamily(
            f"{PREFIX}_provider_calls",
            "Provider calls by outcome (real providers only)",
            labels=["provider", "outcome"],
        )
        breaker = GaugeMetricFamily(
            f"{PREFIX}_provider_breaker_state",
            "1 for the provider's current circuit breaker state",
            labels=["provider", "state"],
        )
        quota = GaugeMetricFamily(
            f"{PREFIX}_provider_quota_remaining",
            "Calls left in the provider's current window",
            labels=["provider", "window"],
        )
        for provider, info in self.svc.feed.describe().items():
            if not isinstance(info, dict) or "breaker" not in info:
                continue  # simulated or replay: no provider calls, breaker or quota
            for outcome, count in sorted(info.get("calls", {}).items()):
                calls.add_metric([provider, outcome], count)
            for state in BREAKER_STATES:
                breaker.add_metric([provider, state], 1 if info["breaker"] == state else 0)
            _quota(quota, provider, info.get("quota", {}))
        yield calls
        yield breaker
        yield quota

    def _alerts(self) -> Iterator[Metric]:
        alerts = self.svc.alerts
        evaluator, delivery = alerts.evaluator, alerts.delivery
        counters = [
            ("set", "Price alerts set through this replica", alerts.counts["set"]),
            ("removed", "Price alerts removed through this replica", alerts.counts["removed"]),
            ("fired", "Price alerts this replica fired as fetcher", evaluator.fired),
            ("rearmed", "Fired price alerts this replica re-armed as fetcher", evaluator.rearmed),
            ("delivered", "Fired price alerts handed to a tab on this replica", delivery.delivered),
            ("evaluation_failures", "Alert evaluation runs that failed (retried later)",
             evaluator.failures),
            ("listener_rebuilds", "Deaf alert listeners replaced", delivery.rebuilds),
            ("expired", "Idle anonymous owners whose alerts this replica expired",
             alerts.counts["expired"]),
            ("quotes_dropped", "Published quotes dropped unevaluated (evaluation far behind)",
             evaluator.dropped),
        ]  # fmt: skip
        for name, doc, value in counters:
            yield CounterMetricFamily(f"{PREFIX}_alerts_{name}", doc, value=value)
        yield GaugeMetricFamily(
            f"{PREFIX}_alerts_pending_quotes",
            "Published quotes waiting for the alert evaluator on this replica",
            value=evaluator.pending,
        )

    def _process(self) -> Iterator[Metric]:
        hub, lag = self.svc.hub, self.svc.loop_lag
        listener = GaugeMetricFamily(
            f"{PREFIX}_bus_listener_up",
            "1 if the bus listener is connected and hears this replica's own heartbeat",
            value=1 if hub.bus_connected and hub.health.hearing_itself else 0,
        )
        yield listener
        yield CounterMetricFamily(
            f"{PREFIX}_bus_listener_rebuilds", "Deaf bus listeners replaced",
            value=hub.health.rebuilds,
        )  # fmt: skip
        yield GaugeMetricFamily(
            f"{PREFIX}_event_loop_lag_seconds", "Latest measured event-loop wake-up delay",
            value=lag.last,
        )  # fmt: skip
        yield GaugeMetricFamily(
            f"{PREFIX}_event_loop_lag_max_seconds",
            "Largest event-loop wake-up delay since the previous scrape (of any scraper)",
            value=lag.take_worst(),
        )
        yield _histogram(
            f"{PREFIX}_event_loop_lag_distribution_seconds",
            f"Event-loop wake-up delays, sampled every {lag.interval:g} s",
            lag.histogram,
        )
        collections = CounterMetricFamily(
            f"{PREFIX}_gc_collections", "CPython garbage collections by generation",
            labels=["generation"],
        )  # fmt: skip
        for generation, stat in enumerate(gc.get_stats()):
            collections.add_metric([str(generation)], stat["collections"])
        yield collections


def _quota(family: GaugeMetricFamily, provider: str, info: dict[str, Any]) -> None:
    if not info.get("current", True):
        return  # a follower's view of the shared quota is old: the fetcher reports it
    per_minute, per_day = info.get("calls_per_minute"), info.get("calls_per_day")
    if per_minute:
        family.add_metric([provider, "minute"], max(0, per_minute - info["used_this_minute"]))
    if per_day:
        family.add_metric([provider, "day"], max(0, per_day - info["used_today"]))


class Labelled(Collector):
    """Other collectors' metrics with one more label on every sample."""

    def __init__(self, label: str, value: str, *collectors: Collector) -> None:
        self.label, self.value = label, value
        self.collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            for family in collector.collect():
                labelled = Metric(family.name, family.documentation, family.type, family.unit)
                labelled.samples = [
                    Sample(s.name, {**s.labels, self.label: self.value}, s.value, s.timestamp,
                           s.exemplar)
                    for s in family.samples
                ]  # fmt: skip
                yield labelled


def build_registry(svc: Services, requests: RequestStats | None = None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    # process_resident_memory_bytes, CPU, open fds
    process = ProcessCollector(registry=None)
    registry.register(
        Labelled("replica", svc.settings.replica_id, AppCollector(svc, requests), process)
    )
    return registry


async def metrics(request: Request) -> Response:
    """Operators only (app/access.py): with OPERATOR_TOKEN or ACCESS_TOKENS set, others get 401."""
    access = services(request).access
    if not access.operates(access.identify(request.headers, request.cookies)):
        return PlainTextResponse(
            "Unauthorized: send Authorization: Bearer <operator token>\n",
            401,
            headers=CHALLENGE,
        )
    registry: CollectorRegistry = request.state.metrics
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(registry), headers={"Content-Type": content_type})
