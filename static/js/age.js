// Each price's age, shown in its row (and its movers entry) once it is no longer fresh.
//
// Two different ages: how long since the server last confirmed a price current (its freshness
// notes; past the threshold the row is stale), and the price's own age (its source time), shown
// once past AGE_AFTER_MS so nobody mistakes a quiet or closed market's price for a new one.

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

// Today's date at an exchange ("2026-11-28"), formatters kept per zone.
const days = new Map();
function todayIn(zone) {
  if (!days.has(zone)) {
    try {
      days.set(zone, new Intl.DateTimeFormat("en-CA", { timeZone: zone }));
    } catch {
      days.set(zone, new Intl.DateTimeFormat("en-CA", { timeZone: "UTC" }));
    }
  }
  return days.get(zone).format(new Date());
}

// A source time shows its date when it is not from the exchange's today (the server decided
// at render time; days pass while the page stays open).
function showDay(time) {
  const day = time && time.querySelector(".day");
  if (day) day.hidden = time.dataset.day === todayIn(time.dataset.zone);
}

function when(ms) {
  const date = new Date(ms);
  const today = date.toDateString() === new Date().toDateString();
  return today ? date.toLocaleTimeString() : date.toLocaleString();
}

// Marks each priced row and mirrors it on the movers' rows. `unconfirmed(row)`: ms since the
// server last confirmed the row's price current (app.core.freshness). Past `staleAfter` the row
// is stale: a marker and how long. Otherwise a price older than AGE_AFTER_MS (a quiet symbol, a
// closed market, an end-of-day price) shows its own age, without the marker: it is still current.
export function markAges(rows, now, unconfirmed, staleAfter) {
  const bySymbol = new Map();
  for (const row of rows) {
    const time = Number(row.dataset.time);
    const priced = Number(row.dataset.seq) > 0 && time > 0;
    const gap = priced ? unconfirmed(row) : 0;
    const stale = priced && gap > staleAfter;
    let text = "";
    let title = "";
    if (stale) {
      text = ageText(gap);
      title = `Not confirmed by the source for ${text}; price from ${when(time)}`;
    } else if (priced && now - time > AGE_AFTER_MS) {
      text = ageText(now - time);
      title = `Price from ${when(time)} (${text} old), confirmed current`;
    }
    row.classList.toggle("stale", stale);
    showDay(row.querySelector(':scope > [data-col="time"] time[data-day]'));
    show(row.querySelector(':scope > [data-col="symbol"] .age'), text, title);
    bySymbol.set(row.dataset.symbol, [text, title, stale]);
  }
  for (const mover of document.querySelectorAll(".movers-table tr[data-symbol]")) {
    const [text, title, stale] = bySymbol.get(mover.dataset.symbol) || ["", "", false];
    mover.classList.toggle("stale", stale);
    show(mover.querySelector(".age"), text, title);
  }
}
