// Each price's age, shown in its row (and its movers entry) once it is no longer fresh.
//
// A row's age is now minus its quote's source time. Only changed prices are published, so a
// quiet symbol's time can lag by a few fetch intervals while its price is still current: a row
// counts as not fresh only past AGE_AFTER_MS (or the page's own delay threshold, if longer).

export const AGE_AFTER_MS = 60000;

// "45 s", "12 min", "3 h", "2 d": short enough for a phone, never a raw count of seconds.
export function ageText(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 48 * 3600) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} d`;
}

function show(el, text, title) {
  if (!el) return;
  el.hidden = text === "";
  if (el.textContent !== text) el.textContent = text;
  el.title = title;
}

// Marks each priced row with its age when past `afterMs`; mirrors it on the movers' rows.
export function markAges(rows, now, afterMs) {
  const bySymbol = new Map();
  for (const row of rows) {
    const time = Number(row.dataset.time);
    const priced = Number(row.dataset.seq) > 0 && time > 0;
    const old = priced && now - time > afterMs;
    const text = old ? ageText(now - time) : "";
    const title = old ? `Price from ${new Date(time).toLocaleString()}: ${text} old` : "";
    // A closed market's last price is old by nature: it shows its age, not a stale marker.
    row.classList.toggle("stale", old && row.dataset.market !== "closed");
    show(row.querySelector(':scope > [data-col="symbol"] .age'), text, title);
    bySymbol.set(row.dataset.symbol, [text, title]);
  }
  for (const mover of document.querySelectorAll(".movers-table tr[data-symbol]")) {
    const [text, title] = bySymbol.get(mover.dataset.symbol) || ["", ""];
    show(mover.querySelector(".age"), text, title);
  }
}
