// StockTracker Live page script: keeps the server-rendered quotes live. No build step.
//
// One Connection (WebSocket, else long-poll) feeds server-rendered rows into Quotes, which applies
// the newer ones in ~100 ms batches; the badge, toasts, chart, movers and the polite summary all
// follow from what was applied. Forms (add/remove) stay plain htmx.

import { ageText, markAges } from "./js/age.js";
import { AlertToasts } from "./js/alerts.js";
import { Badge, Toasts } from "./js/badge.js";
import { SortableTable, rerankMovers } from "./js/board.js";
import { Chart } from "./js/chart.js";
import { Connection } from "./js/connection.js";
import { installKeys } from "./js/keys.js";
import { Quotes, freshNote } from "./js/quotes.js";
import { extendSparkline } from "./js/sparkline.js";

const SUMMARY_EVERY_MS = 20000;

const body = document.body;
const interval = parseFloat(body.dataset.interval) || 2;
// The server confirms each price current in freshness notes (app.core.freshness), changed or
// not. A price unconfirmed for `fresh.staleAfter` (two refresh periods plus 2 s: the server's
// figure, this one until its first note) is stale; the page is Delayed when all of them are.
const fresh = {
  at: 0, // the newest note's time (server clock, ms)
  offset: 0, // the server's clock minus ours, from the newest note
  staleAfter: 2 * interval * 1000 + 2000,
  asOf: new Map(), // symbol -> when last confirmed (server clock)
};
// After the link comes up, the rows still show what they had before it went down until the
// server's snapshot lands (the next batch): judge freshness, for toasts, only after that.
const SETTLE_MS = 3000;

const view = {
  link: "connecting",
  transport: null,
  retryAt: null,
  server: "live",
  stale: false,
  closed: false,
  lastData: null,
  latency: null,
  source: body.dataset.source || null,
  unreal: "", // "simulated" / "replayed" while any price on the page is (rows' data-unreal)
};
// The data state last announced (live or delayed): one toast per real change only. A page starts
// out presumed live, so data that is delayed when the page settles is told once.
let announced = "live";
let settleUntil = 0;

const badge = new Badge(document.getElementById("conn"));
const toasts = new Toasts(document.getElementById("toasts"));
const summary = document.getElementById("summary");
const notice = document.getElementById("unreal-notice");
const chartSvg = document.getElementById("chart");
const chart = chartSvg ? new Chart(chartSvg) : null;
const tables = [...document.querySelectorAll("table[data-sortable]")].map((t) => new SortableTable(t));
let lastSummary = 0;

const alerts = new AlertToasts(toasts, document.getElementById("notify-allow"));

const quotes = new Quotes({
  onAlert: (el) => alerts.show(el),
  onApplied: applied,
  onStatus: serverStatus,
  onLatency: (ms) => { view.latency = ms; },
  onReconnect: (ms) => connection.drainNotice(ms),
  onFresh: noted,
});

function noted(note) {
  if (!note.at || note.at < fresh.at) return; // none yet (a new server), or an older one
  // The server's clock minus ours. A note may reach us late (it waits up to a quarter threshold
  // for a batch to ride with), which only makes this smaller: keep the largest, unless it jumps
  // by more than 5 s (a clock was set).
  const offset = note.now - Date.now();
  const steady = fresh.at && Math.abs(offset - fresh.offset) < 5000;
  fresh.offset = steady ? Math.max(offset, fresh.offset) : offset;
  fresh.at = note.at;
  if (note.staleAfter) fresh.staleAfter = note.staleAfter;
  for (const symbol of quotes.symbols()) {
    const when = symbol in note.stale ? note.stale[symbol] : note.at;
    fresh.asOf.set(symbol, Math.max(fresh.asOf.get(symbol) || 0, when));
  }
  refresh();
}

// When the server last confirmed the row's price current: its note, or the quote's publication.
function confirmedAt(row) {
  return Math.max(fresh.asOf.get(row.dataset.symbol) || 0, Number(row.dataset.published) || 0);
}

function freshness() {
  const rows = quotes.rows().filter((row) => Number(row.dataset.seq) > 0);
  const serverNow = Date.now() + fresh.offset;
  const confirmed = rows.map(confirmedAt).filter((t) => t > 0);
  const newest = confirmed.length ? Math.max(...confirmed) : null;
  view.lastData = newest === null ? null : newest - fresh.offset; // on our clock, for the tooltip
  view.closed = rows.length > 0 && rows.every((row) => row.dataset.market === "closed");
  view.stale = newest !== null && serverNow - newest > fresh.staleAfter;
  const sources = new Set(rows.map((row) => row.dataset.source).filter(Boolean));
  if (sources.size) view.source = [...sources].join(", ");
  const kinds = new Set(rows.map((row) => row.dataset.unreal).filter(Boolean));
  view.unreal = [...kinds].sort().reverse().join(", ");
  showNotice([...kinds].sort().reverse());
  markAges(rows, Date.now(), (row) => serverNow - confirmedAt(row), fresh.staleAfter);
}

// The server renders the notice for the prices it sent; this keeps it true as rows change.
function showNotice(kinds) {
  if (!notice) return;
  const text = kinds.map((kind) => notice.dataset[kind]).filter(Boolean).join(" · ");
  const span = notice.querySelector(".unreal-text");
  if (span.textContent !== text) span.textContent = text;
  notice.hidden = !text;
}

function refresh() {
  freshness();
  const state = badge.render(view);
  // Toasts tell changes of the data itself, judged on a settled link: not the rows' age while a
  // (re)connect's snapshot is on its way, nor the link's own comings and goings.
  if (view.link !== "up" || Date.now() < settleUntil) return;
  if ((state !== "live" && state !== "delayed") || state === announced) return;
  announced = state;
  if (state === "delayed") toasts.show("Prices are delayed: no fresh data from the source.", "warn");
  else toasts.show("Prices are live again.", "ok");
}

function applied(rows) {
  const now = Date.now();
  settleUntil = 0; // the link's first batch (a reconnect's snapshot) has landed
  for (const row of rows) {
    const bound = document.querySelectorAll(`[data-quote="${CSS.escape(row.dataset.symbol)}"] [data-bind]`);
    for (const el of bound) {
      const cell = row.querySelector(`:scope > [data-col="${el.dataset.bind}"]`);
      if (cell) el.textContent = cell.lastChild ? cell.lastChild.textContent : cell.textContent;
    }
    const hero = document.querySelector(`[data-quote="${CSS.escape(row.dataset.symbol)}"] .hero`);
    if (hero) hero.className = `hero ${row.classList.contains("down") ? "down" : row.classList.contains("up") ? "up" : "flat"}`;
    if (chart) chart.add(row);
    extendSparkline(row);
  }
  for (const table of tables) table.apply();
  if (document.getElementById("gainers")) rerankMovers(quotes.rows());
  refresh();
  summarize(now);
}

function summarize(now) {
  if (now - lastSummary < SUMMARY_EVERY_MS) return;
  lastSummary = now;
  const rows = quotes.rows().filter((row) => Number(row.dataset.seq) > 0);
  const up = rows.filter((row) => row.classList.contains("up")).length;
  const down = rows.filter((row) => row.classList.contains("down")).length;
  let biggest = null;
  for (const row of rows) {
    if (!biggest || Math.abs(parseFloat(row.dataset.pct)) > Math.abs(parseFloat(biggest.dataset.pct))) biggest = row;
  }
  const move = biggest ? ` Biggest move: ${biggest.dataset.symbol} ${biggest.querySelector('[data-col="pct"]').textContent}.` : "";
  summary.textContent = `${rows.length} symbols: ${up} up, ${down} down.${move}`;
}

function serverStatus(state) {
  view.server = state;
  refresh();
}

const LINK_TOASTS = {
  lost: ["Connection lost. Reconnecting…", "warn"],
  unreachable: ["Server unreachable. Retrying with backoff…", "error"],
  restored: ["Connection restored.", "ok"],
  "fell-back": ["WebSocket unavailable: switched to long-polling.", "warn"],
  "switched-to-ws": ["Back on WebSocket.", "ok"],
};

const connection = new Connection({
  symbols: quotes.symbols(),
  asOf: () => fresh.at,
  onFrame: (html) => quotes.ingest(html),
  onStatus: serverStatus,
  onLink: (info) => {
    const wasDown = view.link !== "up" && view.link !== "connecting";
    const wasUp = view.link === "up";
    Object.assign(view, { link: info.link, transport: info.transport, retryAt: info.retryAt });
    if (info.link === "up" && !wasUp) settleUntil = Date.now() + SETTLE_MS;
    let event = info.event;
    if (info.link === "up" && event === "connected" && wasDown) event = "restored";
    if (info.link === "stopped") toasts.show(`Disconnected by the server: ${event}.`, "error");
    else if (LINK_TOASTS[event]) toasts.show(...LINK_TOASTS[event]);
    refresh();
  },
});

document.body.addEventListener("htmx:afterSettle", () => {
  connection.setSymbols(quotes.symbols());
  refresh(); // rows added or removed: the notice, badge and ages follow
});
setInterval(() => {
  refresh();
  const age = document.getElementById("age");
  if (age && Number(age.dataset.time)) {
    const row = quotes.rows()[0];
    const t = row ? Number(row.dataset.time) : Number(age.dataset.time);
    age.textContent = ageText(Date.now() - t);
  }
}, 1000);

// The page's own note (rendered with it): its prices' freshness before the first frame.
const pageNote = document.getElementById("fresh");
if (pageNote) noted(freshNote(pageNote));
refresh();
connection.start();
installKeys({ toasts });

// A small handle for tests and for debugging from the console.
window.stocktracker = {
  ingest: (html) => quotes.ingest(html),
  flush: () => quotes.flush(),
  ignored: () => quotes.ignored,
  batches: () => quotes.batches,
  view: () => ({ ...view, badge: badge.state }),
  fresh: () => ({ ...fresh, asOf: Object.fromEntries(fresh.asOf) }),
  alerts: () => alerts.shown,
};
