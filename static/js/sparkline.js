// Sparklines: each watchlist and board row's small intraday line, extended by every applied row.
//
// The server draws them from the shared history (app/sparkline.py, templates/_sparkline.html) in
// a page-only cell that live rows never carry (frames stay the size they were); the row merge
// (quotes.js) leaves that cell alone, and this module adds the row's new (time, price) to it.
// The SVG is the data: the points are recovered once from the server's polyline and its scale
// (data-lo/hi/t0/t1), then kept here, at most MAX_POINTS of them (the closest pair in time is
// merged first, so the line keeps an even spread as it grows).

export const MAX_POINTS = 60; // app/sparkline.py MAX_POINTS
const W = 80;
const H = 24;
const PAD = 2;
const SVG_NS = "http://www.w3.org/2000/svg";
const lines = new WeakMap(); // cell -> { points: [[time ms, price]], first: exact first price }

function number(v) {
  return v.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}

// The words app/sparkline.py `label` uses.
export function label(symbol, day, first, last, count) {
  if (count === 1) return `${symbol} ${day}: ${number(last)}, the only price so far`;
  const move = last - first;
  const span = `${symbol} ${day}: from ${number(first)} to ${number(last)}`;
  if (move === 0) return `${span}, unchanged`;
  const word = move > 0 ? "up" : "down";
  if (first === 0) return `${span}, ${word}`;
  return `${span}, ${word} ${((Math.abs(move) / Math.abs(first)) * 100).toFixed(2)} %`;
}

function recover(cell) {
  const poly = cell.querySelector("svg polyline");
  if (!poly) return [];
  const lo = parseFloat(cell.dataset.lo);
  const hi = parseFloat(cell.dataset.hi);
  const t0 = Number(cell.dataset.t0);
  const t1 = Number(cell.dataset.t1);
  const span = Math.max(t1 - t0, 1);
  const xy = poly.getAttribute("points").trim().split(/\s+/).filter(Boolean).map((pair) => pair.split(",").map(Number));
  const points = xy.map(([x, y]) => [
    xy.length === 1 ? t1 : t0 + ((x - PAD) / (W - 2 * PAD)) * span,
    lo + (1 - (y - PAD) / (H - 2 * PAD)) * (hi - lo),
  ]);
  if (points.length) {
    points[0][0] = t0; // the ends' times exactly
    points[points.length - 1][0] = t1;
  }
  return points;
}

function thin(points) {
  while (points.length > MAX_POINTS) {
    let drop = 1;
    for (let i = 2; i < points.length - 1; i += 1) {
      if (points[i + 1][0] - points[i - 1][0] < points[drop + 1][0] - points[drop - 1][0]) drop = i;
    }
    points.splice(drop, 1);
  }
}

function element(name, attrs) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, value);
  return el;
}

function draw(cell, symbol, line) {
  const pts = line.points;
  const prices = pts.map((p) => p[1]);
  let lo = Math.min(...prices);
  let hi = Math.max(...prices);
  if (hi - lo < 1e-9 * Math.max(Math.abs(hi), 1)) { lo -= 1; hi += 1; }
  const t0 = pts[0][0];
  const t1 = pts[pts.length - 1][0];
  const span = Math.max(t1 - t0, 1);
  const x = (t) => (pts.length === 1 ? W - PAD : PAD + ((t - t0) / span) * (W - 2 * PAD));
  const y = (p) => PAD + (1 - (p - lo) / (hi - lo)) * (H - 2 * PAD);
  let svg = cell.querySelector("svg");
  if (!svg) {
    svg = element("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
    svg.append(element("polyline", {}), element("circle", { r: "2" }));
    cell.replaceChildren(svg);
  }
  const fmt = (v) => String(Math.round(v * 10) / 10);
  svg.querySelector("polyline").setAttribute("points", pts.map(([t, p]) => `${fmt(x(t))},${fmt(y(p))}`).join(" "));
  const dot = svg.querySelector("circle");
  dot.setAttribute("cx", fmt(x(t1)));
  dot.setAttribute("cy", fmt(y(prices[prices.length - 1])));
  const first = parseFloat(line.first);
  const last = line.last;
  svg.setAttribute("class", last > first ? "up" : last < first ? "down" : "flat");
  const text = label(symbol, cell.dataset.day || "today", first, last, pts.length);
  svg.setAttribute("aria-label", text);
  Object.assign(cell.dataset, { lo: String(lo), hi: String(hi), t0: String(t0), t1: String(t1), first: line.first });
}

// Add an applied row's price to its sparkline (rows without a sparkline cell: nothing to do).
export function extendSparkline(row) {
  const cell = row.querySelector(":scope > td.spark");
  if (!cell) return;
  const t = Number(row.dataset.time);
  const price = parseFloat(row.dataset.price);
  if (!(t > 0) || !Number.isFinite(price)) return; // pending or rejected: no price to add
  let line = lines.get(cell);
  if (!line) {
    line = { points: recover(cell), first: cell.dataset.first || row.dataset.price, last: price };
    lines.set(cell, line);
  }
  const pts = line.points;
  const end = pts[pts.length - 1];
  if (end && t < end[0]) return; // older than what the line shows
  if (end && t === end[0]) end[1] = price; // a correction of the last point
  else pts.push([t, price]);
  line.last = price;
  thin(pts);
  draw(cell, row.dataset.symbol, line);
}
