// Keyboard shortcuts: / search, j/k rows, Enter open, a add, x remove (u undo), g w / g m, ? help.
//
// Rows are the live quote rows (watchlist, boards) and the top gainers / losers; the focused row
// is the selection (a real focus, tabindex -1, so :focus-visible shows it). Live updates merge
// into a row, the board re-sorts by moving rows and the movers and the watchlist (after an htmx
// add or remove) are rendered anew: whenever the element holding the focus leaves the page that
// way, focus goes back to the same symbol's row in the same table (or, when it is gone, the row
// now at its place). Adding and removing go through the watchlist's own forms and endpoint, so
// validation and the cross-site guard stay on the server.
//
// No shortcut fires while typing in a field, with Ctrl, Meta or Alt held, or while a dialog is
// open.

const ROWS = "table[data-live] tr.quote[id], table.movers-table tbody tr[data-symbol]";
const TYPING = "input, textarea, select, [contenteditable]:not([contenteditable='false'])";
const SEQUENCE_MS = 1500;
const UNDO_MS = 10000;
const GO = { w: "/", m: "/market" };

function rows() {
  return [...document.querySelectorAll(ROWS)];
}

function rowOf(el) {
  const row = el instanceof Element ? el.closest("tr[data-symbol]") : null;
  return row && row.matches(ROWS) ? row : null;
}

// Which table a row belongs to, stable across re-renders: the movers' id, the board's name,
// else the one live table of the page (watchlist, stock).
function tableKey(row) {
  const table = row.closest("table");
  return table.id || table.dataset.board || "live";
}

function focusRow(row, options = {}) {
  if (!row) return;
  if (!row.hasAttribute("tabindex")) row.tabIndex = -1;
  row.focus(options);
}

// The element of `row` that plays the part `inner` described (same cell, tag and link).
function standIn(row, inner) {
  const scope = inner.col ? row.querySelector(`:scope > [data-col="${CSS.escape(inner.col)}"]`) : row;
  if (!scope) return null;
  return [...scope.querySelectorAll(inner.tag)].find((el) => el.getAttribute("href") === inner.href) || null;
}

function typing(el) {
  return el instanceof Element && (el.closest(TYPING) !== null || el.isContentEditable);
}

function symbolHref(row) {
  const link = row.querySelector("th a[href]");
  return link ? link.href : `/stock/${encodeURIComponent(row.dataset.symbol)}`;
}

export class Keys {
  constructor({ toasts }) {
    this.toasts = toasts;
    this.pendingG = 0;
    this.focused = null; // { el, key, symbol, index } of the row holding the focus
    this.undo = null; // { symbol, at, toast } while a removal can be undone
    this.opener = null; // what had the focus before the shortcuts dialog opened
    this.dialog = document.getElementById("shortcuts");
  }

  install() {
    document.addEventListener("keydown", (event) => this.keydown(event));
    document.addEventListener("focusin", (event) => this.track(event.target));
    document.addEventListener("focusout", (event) => this.left(event));
    new MutationObserver((records) => this.restore(records)).observe(document.body, {
      childList: true,
      subtree: true,
    });
    for (const button of document.querySelectorAll("[data-shortcuts]")) {
      button.hidden = false;
      button.addEventListener("click", () => this.help());
    }
    if (this.dialog) {
      this.dialog.querySelector("[data-close]").addEventListener("click", () => this.dialog.close());
      this.dialog.addEventListener("close", () => {
        const back = this.opener;
        this.opener = null;
        if (back && back.isConnected && back !== document.body) back.focus({ preventScroll: true });
      });
    }
    return this;
  }

  // Remember where the focus is when it is in a row, to put it back after a re-render.
  track(target) {
    const row = rowOf(target);
    if (!row) {
      this.focused = null;
      return;
    }
    const key = tableKey(row);
    const index = rows().filter((r) => tableKey(r) === key).indexOf(row);
    // A link or button in the row: which one, to find its stand-in in a re-rendered row.
    const inner = target === row ? null : {
      col: target.closest("[data-col]")?.dataset.col,
      tag: target.tagName,
      href: target.getAttribute("href"),
    };
    this.focused = { el: target, key, symbol: row.dataset.symbol, index, inner };
  }

  // The focused element (the row, or a link or button in it) left the page with a re-render:
  // focus the same symbol's row in the same table (the same link in it, if that was it), else
  // the row now at its place.
  restore(records) {
    const was = this.focused;
    if (!was) return;
    const active = document.activeElement;
    if (active && active !== document.body && active !== document.documentElement) return;
    if (!records.some((r) => [...r.removedNodes].some((n) => n === was.el || n.contains(was.el)))) return;
    if (was.el.isConnected) {
      was.el.focus({ preventScroll: true }); // moved, not replaced (a board re-sorting)
      return;
    }
    const same = rows().filter((r) => tableKey(r) === was.key);
    const row = same.find((r) => r.dataset.symbol === was.symbol) || same[Math.min(was.index, same.length - 1)];
    if (!row) {
      this.focused = null;
      return;
    }
    const inner = row.dataset.symbol === was.symbol && was.inner ? standIn(row, was.inner) : null;
    if (inner) inner.focus({ preventScroll: true });
    else focusRow(row, { preventScroll: true });
  }

  // Focus leaving for nothing (a click on the page's background) ends the selection; focus
  // leaving with its element (a re-render) does not: restore() brings it back first.
  left(event) {
    const was = this.focused;
    if (!was || event.target !== was.el) return;
    setTimeout(() => {
      const active = document.activeElement;
      if (this.focused === was && was.el.isConnected && (!active || active === document.body)) this.focused = null;
    }, 0);
  }

  keydown(event) {
    if (event.defaultPrevented || event.isComposing || event.ctrlKey || event.metaKey || event.altKey) return;
    if (document.querySelector("dialog[open]")) return; // a dialog has its own keys (Esc, Tab)
    if (typing(event.target)) {
      // Esc leaves the search field (keeping what was typed, for `a`).
      if (event.key === "Escape" && event.target.matches("#add-symbol, #lookup-symbol")) event.target.blur();
      return;
    }
    const key = event.key;
    if (this.pendingG && Date.now() - this.pendingG < SEQUENCE_MS) {
      this.pendingG = 0;
      if (GO[key]) {
        event.preventDefault();
        window.location.assign(GO[key]);
      }
      return;
    }
    this.pendingG = 0;
    const handled = this.handle(key, event.target);
    if (handled) event.preventDefault();
  }

  handle(key, target) {
    const row = rowOf(target);
    switch (key) {
      case "/":
        return this.search();
      case "j":
        return this.move(row, 1);
      case "k":
        return this.move(row, -1);
      case "Enter":
        if (!row || target !== row) return false; // links and buttons keep their own Enter
        window.location.assign(symbolHref(row));
        return true;
      case "a":
        this.add(row);
        return true;
      case "x":
        this.remove(row);
        return true;
      case "u":
        return this.undoRemoval();
      case "g":
        this.pendingG = Date.now();
        return true;
      case "?":
        this.help();
        return true;
      default:
        return false;
    }
  }

  search() {
    const field = document.getElementById("add-symbol") || document.getElementById("lookup-symbol");
    if (!field) return false;
    field.focus();
    field.select();
    return true;
  }

  move(row, step) {
    const all = rows();
    if (!all.length) return false;
    const at = row ? all.indexOf(row) : -1;
    const next = at < 0 ? (step > 0 ? 0 : all.length - 1) : Math.max(0, Math.min(all.length - 1, at + step));
    focusRow(all[next]);
    all[next].scrollIntoView({ block: "nearest" });
    return true;
  }

  // The focused row's symbol (unless it is a watchlist row: already there), else what the
  // search fields hold, else the stock page's own symbol.
  add(row) {
    const onList = row && row.closest("#watchlist");
    const typed = ["add-symbol", "lookup-symbol"]
      .map((id) => document.getElementById(id))
      .map((field) => (field ? field.value.trim() : ""))
      .find(Boolean);
    const page = document.querySelector(".watch-add input[name=symbol]");
    const symbol = (row && !onList && row.dataset.symbol) || typed || (page && page.value);
    if (!symbol) {
      this.toasts.show("Nothing to add: focus a row (j/k) or type a symbol (/), then press a.", "warn");
      return;
    }
    this.post(symbol);
  }

  // Through the dashboard's own add form (htmx swaps the list, the message says what happened),
  // elsewhere the same endpoint as htmx posts it, its message shown as a toast.
  // `at`: the place on the list to put it (an undo), else the end.
  async post(symbol, at = null) {
    const form = document.querySelector("#watchlist form.add");
    if (form) {
      form.querySelector("#add-symbol").value = symbol;
      const place = form.querySelector("input[name=at]");
      if (place) place.value = at === null ? "" : String(at);
      form.requestSubmit(); // htmx reads the fields now: a later add by hand goes at the end
      if (place) place.value = "";
      return;
    }
    let text = `Could not add ${symbol}: the server did not answer.`;
    let ok = false;
    try {
      const response = await fetch("/watchlist", {
        method: "POST",
        headers: { "HX-Request": "true", "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ symbol }),
      });
      const html = new DOMParser().parseFromString(await response.text(), "text/html");
      const message = html.getElementById("watchlist-message");
      if (response.ok && message && message.textContent.trim()) {
        text = message.textContent.trim();
        ok = !message.classList.contains("error");
      } else if (!response.ok) {
        text = `Could not add ${symbol} (HTTP ${response.status}).`;
      }
    } catch {
      // network failure: the default text says so
    }
    this.toasts.show(text, ok ? "ok" : "error");
    const watch = document.querySelector(".watch-add");
    if (ok && watch && watch.querySelector("input[name=symbol]").value === symbol) {
      const done = document.createElement("p");
      done.className = "watch-state";
      const link = document.createElement("a");
      link.href = "/";
      link.textContent = "✓ On your watchlist";
      done.append(link);
      watch.replaceWith(done);
    }
  }

  // The focused watchlist row, through its own remove form (htmx), with an undo toast.
  remove(row) {
    const form = row && row.closest("#watchlist") ? row.querySelector("td.actions form") : null;
    if (!form) {
      this.toasts.show("Nothing to remove: focus a watchlist row (j/k), then press x.", "warn");
      return;
    }
    const symbol = row.dataset.symbol;
    // Its place on the list (the rows are in the list's order), for the undo.
    const at = [...row.parentElement.querySelectorAll("tr.quote")].indexOf(row);
    // A row swapped in a moment ago may not be wired by htmx yet: wire it now, or the submit
    // would be a plain form post (a page load, which takes the undo toast with it).
    if (window.htmx) window.htmx.process(form);
    form.requestSubmit();
    this.offerUndo(symbol, at);
  }

  offerUndo(symbol, at) {
    if (this.undo) this.undo.toast.remove();
    const toast = document.createElement("div");
    toast.className = "toast toast-info toast-undo";
    const text = document.createElement("span");
    text.textContent = `Removed ${symbol}. `;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "undo";
    button.textContent = "Undo";
    button.setAttribute("aria-keyshortcuts", "u");
    button.title = "Put it back (u)";
    button.addEventListener("click", () => this.undoRemoval());
    toast.append(text, button);
    document.getElementById("toasts").append(toast);
    const undo = { symbol, at, toast };
    this.undo = undo;
    setTimeout(() => {
      toast.remove();
      if (this.undo === undo) this.undo = null;
    }, UNDO_MS);
  }

  undoRemoval() {
    const undo = this.undo;
    if (!undo) return false;
    this.undo = null;
    undo.toast.remove();
    this.post(undo.symbol, undo.at);
    return true;
  }

  help() {
    if (!this.dialog || this.dialog.open) return;
    this.opener = document.activeElement;
    this.dialog.showModal(); // modal: focus moves in, Tab stays in, Esc closes, focus comes back
  }
}

export function installKeys(options) {
  return new Keys(options).install();
}
