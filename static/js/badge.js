// The connection badge (state, icon, transport, tooltip) and the toasts.
//
// The badge's state is derived, never stored: from the link (connecting, up, reconnecting,
// offline), the server's data status, the age of the freshest quote and the market-open flags.

const LOOK = {
  connecting: ["↻", "Connecting"],
  live: ["●", "Live"],
  delayed: ["◐", "Delayed"],
  closed: ["☾", "Market closed"],
  reconnecting: ["↻", "Reconnecting"],
  offline: ["✕", "Offline"],
};
const DATA_STATES = new Set(["live", "delayed", "closed"]);
const TRANSPORT = { ws: "WebSocket", poll: "Long-poll" };

export function badgeState({ link, server, stale, closed }) {
  if (link === "up") {
    if (server === "closed") return "closed";
    if (server !== "live" || stale) return "delayed";
    return closed ? "closed" : "live";
  }
  if (link === "stopped") return "offline";
  return link;
}

function clock(ms) {
  return ms ? new Date(ms).toLocaleTimeString([], { hour12: false }) : "—";
}

export class Badge {
  constructor(el) {
    this.el = el;
    this.state = el.dataset.state;
  }

  render(view) {
    const state = badgeState(view);
    const [icon, word] = LOOK[state];
    // Simulated or replayed prices on the page: the badge says so ("Live · simulated").
    const label = view.unreal && DATA_STATES.has(state) ? `${word} · ${view.unreal}` : word;
    this.el.dataset.state = state;
    this.el.querySelector(".badge-icon").textContent = icon;
    this.el.querySelector(".badge-label").textContent = label;
    const via = view.link === "up" ? TRANSPORT[view.transport] || "" : "";
    this.el.querySelector(".badge-via").textContent = via;
    const tip = (name, text) => {
      this.el.querySelector(`[data-tip="${name}"]`).textContent = text;
    };
    const age = view.lastData ? Math.max(0, Math.round((Date.now() - view.lastData) / 1000)) : null;
    tip("updated", view.lastData ? `${clock(view.lastData)} (${age} s ago)` : "—");
    tip("latency", view.latency == null ? "—" : `${view.latency} ms`);
    let transport = TRANSPORT[view.transport] || "none";
    if (view.retryAt && view.link !== "up") {
      const wait = Math.max(0, Math.round((view.retryAt - Date.now()) / 1000));
      transport += ` · retrying in ${wait} s`;
    }
    tip("transport", transport);
    if (view.source) tip("source", view.source);
    this.el.setAttribute("aria-label", `Connection: ${label}${via ? ` via ${via}` : ""}`);
    this.state = state;
    return state;
  }
}

export class Toasts {
  constructor(el, limit = 4) {
    this.el = el;
    this.limit = limit;
  }

  show(text, kind = "info", ms = 6000) {
    const toast = document.createElement("div");
    toast.className = `toast toast-${kind}`;
    toast.textContent = text;
    this.el.append(toast);
    // Past the limit the oldest goes, but never an undo toast while it can still act (it
    // leaves on its own timer): a burst of notices must not take a trader's Undo away.
    while (this.el.children.length > this.limit) {
      const kids = [...this.el.children];
      (kids.find((t) => !t.classList.contains("toast-undo")) || kids[0]).remove();
    }
    setTimeout(() => toast.remove(), ms);
  }
}
