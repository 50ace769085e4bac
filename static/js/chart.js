// Intraday chart: an SVG polyline that gains a point with every applied quote.
//
// No chart library: one line, a previous-close reference and a dot are ~80 lines of SVG, cost no
// download and need nothing a strict Content-Security-Policy forbids. The server renders the same
// SVG from its recent history (app/chart.py), so the chart shows even before this script runs.

const H = 260;
const PAD = 12;
const KEEP = 5000;

export class Chart {
  constructor(svg) {
    this.svg = svg;
    this.symbol = svg.dataset.symbol;
    this.prev = parseFloat(svg.dataset.prev);
    this.zone = svg.dataset.zone || "UTC";
    // The zone's abbreviation as the server writes it (IST, EST): browsers name zones differently.
    const end = document.getElementById("chart-end");
    this.zoneLabel = end ? end.textContent.split(" ").slice(1).join(" ") : "";
    // The server renders the recent history it has; the line grows from there.
    this.points = JSON.parse(svg.dataset.points || "[]").map(([t, p]) => [t, parseFloat(p)]);
    // Draw in real pixels (viewBox = the element's width) so the dot stays round at any size.
    new ResizeObserver(() => this.draw()).observe(svg);
    this.draw();
  }

  add(row) {
    if (row.dataset.symbol !== this.symbol) return;
    const t = Number(row.dataset.time);
    const price = parseFloat(row.dataset.price);
    if (!Number.isFinite(price)) return;
    const last = this.points[this.points.length - 1];
    if (last && t < last[0]) return;
    if (last && t === last[0]) last[1] = price;
    else this.points.push([t, price]);
    if (this.points.length > KEEP) this.points.splice(0, this.points.length - KEEP);
    this.draw();
  }

  draw() {
    const pts = this.points;
    this.svg.dataset.count = String(pts.length);
    if (!pts.length) return;
    const W = Math.max(Math.round(this.svg.clientWidth), 100);
    this.svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    const prices = pts.map((p) => p[1]);
    const hasPrev = Number.isFinite(this.prev);
    let lo = Math.min(...prices, ...(hasPrev ? [this.prev] : []));
    let hi = Math.max(...prices, ...(hasPrev ? [this.prev] : []));
    if (hi - lo < 1e-9) { hi += 1; lo -= 1; }
    const t0 = pts[0][0];
    const span = Math.max(pts[pts.length - 1][0] - t0, 1);
    const x = (t) => (pts.length === 1 ? W - PAD : PAD + ((t - t0) / span) * (W - 2 * PAD));
    const y = (p) => PAD + (1 - (p - lo) / (hi - lo)) * (H - 2 * PAD);
    const line = pts.map(([t, p]) => `${x(t).toFixed(1)},${y(p).toFixed(1)}`).join(" ");
    this.svg.querySelector(".line").setAttribute("points", line);
    const [lt, lp] = pts[pts.length - 1];
    const dot = this.svg.querySelector(".dot");
    dot.setAttribute("cx", x(lt).toFixed(1));
    dot.setAttribute("cy", y(lp).toFixed(1));
    const prevLine = this.svg.querySelector(".prev-line");
    prevLine.setAttribute("x2", String(W));
    if (hasPrev) {
      prevLine.setAttribute("y1", y(this.prev).toFixed(1));
      prevLine.setAttribute("y2", y(this.prev).toFixed(1));
    }
    const up = hasPrev ? lp >= this.prev : lp >= pts[0][1];
    this.svg.classList.toggle("down", !up);
    const fmt = (v) => v.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    const high = document.getElementById("chart-high");
    const low = document.getElementById("chart-low");
    if (high) high.textContent = fmt(hi);
    if (low) low.textContent = fmt(lo);
    this.timeAxis(t0, pts[pts.length - 1][0]);
    this.svg.setAttribute("aria-label", `${this.symbol} intraday price chart: ${pts.length} points, last ${fmt(lp)}`);
  }

  // The time axis: first, middle and last point's time in the exchange's zone (as the server
  // renders it, app/chart.py).
  // Over less than three minutes the labels show seconds (HH:MM alone could read the same thrice).
  timeAxis(t0, t1) {
    const seconds = t1 - t0 < 3 * 60 * 1000 ? { second: "2-digit" } : {};
    const hhmm = (t) => new Date(t).toLocaleTimeString("en-GB", {
      hour: "2-digit", minute: "2-digit", ...seconds, hour12: false, timeZone: this.zone,
    });
    const set = (id, text) => { const el = document.getElementById(id); if (el) el.textContent = text; };
    set("chart-start", hhmm(t0));
    set("chart-mid", hhmm((t0 + t1) / 2));
    set("chart-end", this.zoneLabel ? `${hhmm(t1)} ${this.zoneLabel}` : hhmm(t1));
  }
}
