// Live rows: parse server-rendered fragments, keep only what is newer, apply in ~100 ms batches.
//
// Fragments are `_quote_row.html` rows, exactly what the server renders into the page. A row is
// applied only if its (epoch, seq) is greater than the one shown (docs/protocol.md, ordering
// rule), checked both when it arrives and when the batch is applied, so no transport switch or
// reconnect can put an older price back. Rows are merged cell by cell (matched on data-col), so
// cells that only the page has (the remove button) stay.
//
// A `rejected` row (the provider cannot price the symbol; the server ended that subscription) is
// the exception: it is applied whatever the row shows, and its own version is (0, 0), so a later
// quote of the symbol (after the provider's cool-down, on a new subscription) replaces it again.

export const BATCH_MS = 100;
export const FLASH_MS = 2000;
const LATENCY_MAX_MS = 60000;

export function version(row) {
  return [Number(row.dataset.epoch || 0), Number(row.dataset.seq || 0)];
}

export function isNewer(candidate, current) {
  return candidate[0] > current[0] || (candidate[0] === current[0] && candidate[1] > current[1]);
}

// A `<template id="fresh">` (app.formats.fresh_template) as {at, now, staleAfter, stale}.
export function freshNote(el) {
  let stale = {};
  try {
    stale = JSON.parse(el.dataset.stale || "{}");
  } catch {
    stale = {};
  }
  return {
    at: Number(el.dataset.at) || 0,
    now: Number(el.dataset.now) || 0,
    staleAfter: Number(el.dataset.staleAfter) || 0,
    stale,
  };
}

function isRejected(row) {
  return row.classList.contains("rejected");
}

function merge(row, incoming) {
  for (const name of incoming.getAttributeNames()) {
    if (name === "class" || name.startsWith("data-")) row.setAttribute(name, incoming.getAttribute(name));
  }
  for (const cell of incoming.querySelectorAll(":scope > [data-col]")) {
    const mine = row.querySelector(`:scope > [data-col="${cell.dataset.col}"]`);
    if (mine) {
      mine.innerHTML = cell.innerHTML;
      mine.className = cell.className;
    }
  }
}

export class Quotes {
  constructor({ onApplied, onStatus, onLatency, onReconnect, onFresh, onAlert }) {
    this.onReconnect = onReconnect;
    this.onFresh = onFresh;
    this.onAlert = onAlert;
    this.onApplied = onApplied;
    this.onLatency = onLatency;
    this.onStatus = onStatus;
    this.pending = new Map();
    this.timer = null;
    this.ignored = 0;
    this.batches = []; // ids applied per flush, the last few (for tests and debugging)
    this.flashes = new Map();
  }

  // Rows on this page that live data updates (ids are unique: q-<symbol>).
  rows() {
    return [...document.querySelectorAll("table[data-live] tr.quote[id]")];
  }

  symbols() {
    return [...new Set(this.rows().map((row) => row.dataset.symbol))];
  }

  ingest(html) {
    const received = Date.now();
    const template = document.createElement("template");
    template.innerHTML = html;
    let latency = null;
    for (const el of template.content.children) {
      if (el.id === "fresh") {
        // The server's freshness note: when the prices were last confirmed current.
        if (this.onFresh) this.onFresh(freshNote(el));
      } else if (el.id === "reconnect") {
        // The server is draining: it asks for a reconnect after its own spread-out delay.
        if (this.onReconnect) this.onReconnect(Number(el.dataset.delayMs) || 0);
      } else if (el.classList.contains("alert-fired")) {
        // A price alert of this browser fired (static/js/alerts.js shows it).
        if (this.onAlert) this.onAlert(el);
      } else if (el.id === "feed-status") {
        const state = [...el.classList].find((c) => c.startsWith("status-"));
        if (state) this.onStatus(state.slice("status-".length));
      } else if (el.tagName === "TR" && el.id && el.dataset.symbol) {
        const held = this.pending.get(el.id);
        if (isRejected(el)) {
          this.pending.set(el.id, el);
          continue;
        }
        if (held && !isRejected(held) && !isNewer(version(el), version(held))) {
          this.ignored += 1;
          continue;
        }
        this.pending.set(el.id, el);
        const ms = received - Number(el.dataset.published || 0);
        if (ms >= 0 && (latency === null || ms < latency)) latency = ms;
      }
    }
    // Publish-to-browser time of the freshest quote in the frame (a snapshot's are old: skipped).
    if (latency !== null && latency < LATENCY_MAX_MS) this.onLatency(latency);
    if (this.pending.size && this.timer === null) {
      this.timer = setTimeout(() => this.flush(), BATCH_MS);
    }
  }

  flush() {
    clearTimeout(this.timer);
    this.timer = null;
    const applied = [];
    for (const [id, incoming] of this.pending) {
      const row = document.getElementById(id);
      if (!row) continue;
      if (isRejected(incoming)) {
        this.unflash(row);
        merge(row, incoming);
        applied.push(row);
        continue;
      }
      if (!isNewer(version(incoming), version(row))) {
        this.ignored += 1;
        continue;
      }
      const before = parseFloat(row.dataset.price);
      merge(row, incoming);
      const after = parseFloat(row.dataset.price);
      if (Number.isFinite(before) && Number.isFinite(after) && after !== before) {
        this.flash(row, after > before ? "up" : "down");
      } else if (this.flashes.has(row.id)) {
        this.mark(row, this.flashes.get(row.id).direction); // the merge re-rendered the cell
      }
      applied.push(row);
    }
    this.pending.clear();
    if (!applied.length) return;
    this.batches = [...this.batches.slice(-9), applied.map((row) => row.id)];
    this.onApplied(applied);
  }

  mark(row, direction) {
    const cell = row.querySelector(':scope > [data-col="price"]');
    if (!cell) return;
    cell.classList.remove("flash-up", "flash-down");
    cell.querySelectorAll(".arrow").forEach((a) => a.remove());
    cell.classList.add(`flash-${direction}`);
    const arrow = document.createElement("span");
    arrow.className = `arrow arrow-${direction}`;
    arrow.textContent = direction === "up" ? "▲" : "▼";
    arrow.title = direction === "up" ? "Price rose" : "Price fell";
    cell.prepend(arrow);
  }

  unflash(row) {
    clearTimeout(this.flashes.get(row.id)?.timer);
    this.flashes.delete(row.id);
  }

  flash(row, direction) {
    this.mark(row, direction);
    clearTimeout(this.flashes.get(row.id)?.timer);
    const timer = setTimeout(() => {
      // The cell may have been re-rendered since; clear whatever flash it shows now.
      const now = row.querySelector(':scope > [data-col="price"]');
      if (now) {
        now.classList.remove("flash-up", "flash-down");
        now.querySelectorAll(".arrow").forEach((a) => a.remove());
      }
      this.flashes.delete(row.id);
    }, FLASH_MS);
    this.flashes.set(row.id, { timer, direction });
  }
}
