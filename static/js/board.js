// Market board: sortable columns (header buttons, aria-sort) and live top gainers / losers.

const MOVERS = 5;

function numeric(row, key) {
  const value = parseFloat(row.dataset[key]);
  return Number.isFinite(value) ? value : null;
}

function compare(key, direction) {
  const sign = direction === "ascending" ? 1 : -1;
  return (a, b) => {
    if (key === "symbol") return sign * a.dataset.symbol.localeCompare(b.dataset.symbol);
    const x = numeric(a, key);
    const y = numeric(b, key);
    if (x === null || y === null) return (x === null) - (y === null); // blanks always last
    return sign * (x - y);
  };
}

export class SortableTable {
  constructor(table) {
    this.table = table;
    this.key = null;
    this.direction = null;
    for (const button of table.querySelectorAll("thead button[data-sort]")) {
      button.addEventListener("click", () => this.sortBy(button.dataset.sort));
    }
  }

  sortBy(key) {
    if (this.key === key) {
      this.direction = this.direction === "ascending" ? "descending" : "ascending";
    } else {
      this.key = key;
      this.direction = key === "symbol" ? "ascending" : "descending";
    }
    for (const th of this.table.querySelectorAll("thead th[aria-sort]")) {
      const button = th.querySelector("button[data-sort]");
      th.setAttribute("aria-sort", button.dataset.sort === key ? this.direction : "none");
    }
    this.apply();
  }

  // Called after every live batch, so a sorted board stays sorted as prices move.
  apply() {
    if (!this.key) return;
    const body = this.table.tBodies[0];
    const rows = [...body.rows];
    const sorted = [...rows].sort(compare(this.key, this.direction));
    if (sorted.some((row, i) => row !== rows[i])) body.append(...sorted);
  }
}

function moverRow(row) {
  const tr = document.createElement("tr");
  tr.className = row.classList.contains("up") ? "up" : "down";
  tr.dataset.symbol = row.dataset.symbol;
  const th = document.createElement("th");
  th.scope = "row";
  th.append(row.querySelector('[data-col="symbol"] a').cloneNode(true));
  // The price's source tag and age go with it (markAges keeps the age current).
  for (const el of row.querySelectorAll('[data-col="symbol"] .src, [data-col="symbol"] .age')) {
    th.append(" ", el.cloneNode(true));
  }
  const price = document.createElement("td");
  price.className = "num";
  price.textContent = row.querySelector('[data-col="price"]').lastChild.textContent;
  const pct = document.createElement("td");
  pct.className = "num pct";
  pct.textContent = row.querySelector('[data-col="pct"]').textContent;
  tr.append(th, price, pct);
  return tr;
}

function fill(table, rows, empty) {
  const body = table.tBodies[0];
  const next = rows.map(moverRow);
  if (!next.length) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = 3;
    td.textContent = empty;
    tr.append(td);
    next.push(tr);
  }
  body.replaceChildren(...next);
}

// Movers rank like with like: the equities board's rows only (indices have their own board).
export function rerankMovers(rows) {
  const gainers = document.getElementById("gainers");
  const losers = document.getElementById("losers");
  if (!gainers || !losers) return;
  const equity = (row) => row.closest('table[data-board="equities"]') !== null;
  const priced = rows.filter((row) => equity(row) && numeric(row, "pct") !== null);
  const ranked = priced.sort((a, b) => numeric(b, "pct") - numeric(a, "pct"));
  fill(gainers, ranked.filter((r) => numeric(r, "pct") > 0).slice(0, MOVERS), "No gainers");
  fill(losers, ranked.filter((r) => numeric(r, "pct") < 0).reverse().slice(0, MOVERS), "No losers");
}
