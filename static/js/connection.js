// The page's link to the server: WebSocket first, long-poll when the WebSocket cannot be opened.
//
// A WebSocket counts as connected only once a frame arrives (the server sends the data status
// first), so a proxy that accepts the upgrade and then drops it counts as a failure. After a
// failure we ask /health: if the server answers HTTP while WebSockets keep failing, something in
// between blocks them and we fall back to long-poll, retrying the WebSocket now and then; if it
// does not answer, we are offline and retry with backoff.

const tuning = {
  backoff: [1000, 2000, 4000, 8000, 16000, 30000],
  jitter: 0.2, // each delay is scaled by a random factor in [1 - jitter, 1 + jitter]
  blockedAfter: 2, // WebSocket failures, with HTTP working, before falling back to long-poll
  wsRetryMs: 10000, // while on long-poll, how often to try the WebSocket again
  connectTimeoutMs: 8000, // a WebSocket that brings no frame within this counts as failed
  // Tests shorten the waits through an init script; the page itself never sets this.
  ...(window.__stocktrackerTuning || {}),
};

export function backoffDelay(attempt, random = Math.random) {
  const steps = tuning.backoff;
  const base = steps[Math.min(attempt, steps.length - 1)];
  const jittered = base * (1 - tuning.jitter + 2 * tuning.jitter * random());
  return Math.round(Math.min(jittered, steps[steps.length - 1]));
}

function jitter(ms) {
  return Math.round(ms * (1 - tuning.jitter + 2 * tuning.jitter * Math.random()));
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

// Close codes after which reconnecting cannot help (docs/protocol.md).
const FINAL_CLOSE = new Set([1000, 1008, 1009]);

export class Connection {
  // onFrame(html, transport): live rows; onStatus(state): the server's data state;
  // onLink(info): {link: connecting|up|reconnecting|offline|stopped, transport, retryAt, event}.
  // asOf(): the time of the newest freshness note held (sent with each long-poll, so the server
  // answers when a newer one is due even if no price changed).
  constructor({ symbols, onFrame, onStatus, onLink, asOf = () => 0 }) {
    this.symbols = [...symbols];
    this.asOf = asOf;
    this.onFrame = onFrame;
    this.onStatus = onStatus;
    this.onLink = onLink;
    this.link = "connecting";
    this.transport = null;
    this.attempt = 0;
    this.blocked = 0;
    this.ws = null;
    this.wsSymbols = [];
    this.poll = null;
    this.timer = null;
    this.retryAt = null;
  }

  start() {
    // Connect even with no symbols (an emptied watchlist): the badge then tells the truth about
    // the link, and adding a symbol only needs a subscribe.
    this.openWs();
  }

  setSymbols(symbols) {
    const next = [...symbols];
    const added = next.filter((s) => !this.symbols.includes(s));
    const removed = this.symbols.filter((s) => !next.includes(s));
    this.symbols = next;
    if (!added.length && !removed.length) return;
    if (this.ws && this.ws.readyState === WebSocket.OPEN && this.transport === "ws") {
      this.sync(added, removed);
    } else if (this.transport === "poll") {
      this.stopPoll();
      this.startPoll(false);
    }
  }

  // Tell the open WebSocket about symbols that changed since its URL was built.
  sync(added, removed) {
    if (removed.length) this.ws.send(JSON.stringify({ action: "unsubscribe", symbols: removed }));
    if (added.length) this.ws.send(JSON.stringify({ action: "subscribe", symbols: added }));
    this.wsSymbols = [...this.symbols];
  }

  emit(link, event) {
    this.link = link;
    this.onLink({ link, transport: this.transport, retryAt: this.retryAt, event });
  }

  openWs() {
    clearTimeout(this.timer);
    this.timer = null;
    const url = new URL("/ws", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("format", "html");
    if (this.symbols.length) url.searchParams.set("symbols", this.symbols.join(","));
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      this.wsFailed();
      return;
    }
    this.ws = ws;
    this.wsSymbols = [...this.symbols];
    let live = false;
    const giveUp = setTimeout(() => {
      if (this.ws !== ws || live) return;
      this.ws = null; // a proxy that holds the upgrade open but passes nothing
      ws.close();
      this.wsFailed();
    }, tuning.connectTimeoutMs);
    ws.onmessage = (event) => {
      if (this.ws !== ws) return;
      if (!live) {
        live = true;
        clearTimeout(giveUp);
        this.wsOpened();
      }
      this.onFrame(String(event.data), "ws");
    };
    ws.onclose = (event) => {
      clearTimeout(giveUp);
      if (this.ws !== ws) return;
      this.ws = null;
      if (live) this.wsLost(event);
      else this.wsFailed();
    };
  }

  wsOpened() {
    const from = this.transport;
    this.attempt = 0;
    this.blocked = 0;
    this.retryAt = null;
    this.stopPoll();
    this.transport = "ws";
    // The watchlist may have changed while this socket was opening.
    const added = this.symbols.filter((s) => !this.wsSymbols.includes(s));
    const removed = this.wsSymbols.filter((s) => !this.symbols.includes(s));
    if (added.length || removed.length) this.sync(added, removed);
    if (from === "poll") this.emit("up", "switched-to-ws");
    else this.emit("up", this.link === "connecting" ? "connected" : "restored");
  }

  wsLost(event) {
    if (FINAL_CLOSE.has(event.code)) {
      this.transport = null;
      this.emit("stopped", event.reason || `closed (${event.code})`);
      return;
    }
    this.scheduleWs();
    this.emit("reconnecting", "lost");
  }

  async wsFailed() {
    if (this.transport === "poll") {
      // A background retry while long-poll carries the data: stay quiet, try later.
      this.timer = setTimeout(() => this.openWs(), jitter(tuning.wsRetryMs));
      return;
    }
    const reachable = await this.probe();
    if (this.ws || this.transport === "poll") return;
    if (reachable) {
      this.blocked += 1;
      if (this.blocked >= tuning.blockedAfter) {
        this.startPoll(true);
        return;
      }
      this.scheduleWs();
      this.emit("reconnecting", "retry");
    } else {
      this.blocked = 0;
      this.scheduleWs();
      this.emit("offline", this.link === "offline" ? "retry" : "unreachable");
    }
  }

  // A draining server names the delay before the next attempt (spread over its clients).
  drainNotice(ms) {
    this.drainDelay = ms;
  }

  scheduleWs() {
    this.transport = null;
    const delay = this.drainDelay ?? backoffDelay(this.attempt);
    this.drainDelay = null;
    this.attempt += 1;
    this.retryAt = Date.now() + delay;
    this.timer = setTimeout(() => this.openWs(), delay);
  }

  async probe() {
    try {
      const response = await fetch("/health", { cache: "no-store", signal: AbortSignal.timeout(3000) });
      return response.ok;
    } catch {
      return false;
    }
  }

  startPoll(fellBack) {
    const control = new AbortController();
    this.poll = control;
    this.transport = "poll";
    this.retryAt = null;
    if (fellBack) this.emit("up", "fell-back");
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.openWs(), jitter(tuning.wsRetryMs));
    this.pollLoop(control);
  }

  stopPoll() {
    if (this.poll) this.poll.abort();
    this.poll = null;
  }

  async pollLoop(control) {
    let cursor = "";
    let failures = 0;
    let alertsCursor = ""; // fired price alerts already shown (the server's numbering)
    while (this.poll === control) {
      if (!this.symbols.length) {
        // Nothing to ask for: wait until setSymbols restarts the loop (it aborts this one).
        await sleep(3600 * 1000, control.signal);
        continue;
      }
      try {
        const url = new URL("/api/poll", location.href);
        url.searchParams.set("format", "html");
        url.searchParams.set("symbols", this.symbols.join(","));
        if (cursor) url.searchParams.set("cursor", cursor);
        url.searchParams.set("as_of", String(this.asOf()));
        if (alertsCursor) url.searchParams.set("alerts", alertsCursor);
        const response = await fetch(url, { cache: "no-store", signal: control.signal });
        if (response.status === 401) {
          // The login session ended (ACCESS_TOKENS): sign in again, then come back to this page.
          location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
          return;
        }
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        const body = await response.json();
        if (this.poll !== control) return;
        cursor = body.cursor;
        if (body.alerts_cursor != null) alertsCursor = String(body.alerts_cursor);
        if (failures) this.emit("up", "restored");
        failures = 0;
        this.onStatus(body.status);
        if (body.html) this.onFrame(body.html, "poll");
      } catch {
        if (control.signal.aborted || this.poll !== control) return;
        const reachable = await this.probe();
        if (this.poll !== control) return;
        this.retryAt = Date.now() + backoffDelay(failures);
        this.emit(reachable ? "reconnecting" : "offline", failures ? "retry" : "lost");
        await sleep(this.retryAt - Date.now(), control.signal);
        failures += 1;
      }
    }
  }
}
