// Fired price alerts: a toast naming the symbol, the condition, the price and its source, and a
// browser notification when the trader allowed them (asked only on a click of the /alerts page's
// button, never on load). An alert may arrive twice (a tab opening just as it fires gets it from
// the inbox and live): each is shown once, by its number.

const ALERT_TOAST_MS = 15000;

export class AlertToasts {
  constructor(toasts, allowButton) {
    this.toasts = toasts;
    this.seen = new Set();
    this.shown = []; // what this tab showed, for tests and debugging
    if (allowButton && "Notification" in window && Notification.permission === "default") {
      allowButton.hidden = false;
      allowButton.addEventListener("click", async () => {
        const answer = await Notification.requestPermission();
        allowButton.hidden = true;
        this.toasts.show(
          answer === "granted" ? "Browser notifications are on for alerts." : "Browser notifications stay off.",
          answer === "granted" ? "ok" : "warn",
        );
      });
    }
  }

  show(el) {
    const d = el.dataset;
    const key = d.seq || `${d.id}:${d.firedAt}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    const title = `🔔 ${d.symbol} ${d.condition}`;
    const body = `Now ${d.price} ${d.currency} · source ${d.source}${d.note ? ` · ${d.note}` : ""}`;
    const publishedAt = Number(d.publishedAt) || null; // when the crossing price was published
    this.shown = [...this.shown.slice(-19), { seq: d.seq, id: d.id, symbol: d.symbol, title, body, at: Date.now(), publishedAt }];
    this.toasts.show(`${title} — ${body}`, "alert", ALERT_TOAST_MS);
    if ("Notification" in window && Notification.permission === "granted") {
      try {
        new Notification(title, { body, tag: `alert-${key}` });
      } catch {
        // Some browsers allow notifications only from a service worker: the toast is enough.
      }
    }
  }
}
