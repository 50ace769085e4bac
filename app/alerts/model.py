"""A price alert: what a trader asked for, its arming state, and the hysteresis rule.

Three kinds, one rule. `above X` fires when the price reaches X or more, `below X` when it
reaches X or less, and `move ±N %` is turned, when it is set, into one of those two with
X = (the price then) × (1 ± N/100): the price it was set at is kept (`base`) for display only.

Hysteresis: an alert is `armed` or `fired`. An armed alert fires at the first published price at
or beyond its level and becomes `fired`; it is armed again only once the price has come back by
the re-arm band (`ALERT_REARM_PERCENT`, default 0.5 % of the level): for an `up` alert, a price
at or below X × (1 − band), for a `down` alert at or above X × (1 + band). So a price hovering
around X fires once, and each real crossing after a real retreat fires once more.

Encoding: JSON via orjson, every price a decimal string (never a float), so what Redis stores is
exactly what was typed and compared.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import orjson

NOTE_MAX = 140
# A level more than this factor away from the last price is a typo, not a plan.
MAX_FACTOR = Decimal(10)
MAX_PRICE = Decimal("1000000000")
MAX_MOVE_PCT = Decimal(50)
KINDS = ("above", "below", "move")


class State(enum.StrEnum):
    ARMED = "armed"
    FIRED = "fired"


class InvalidAlert(ValueError):
    """The trader's input, refused: the message says why and is shown as it is."""


@dataclass(frozen=True, slots=True)
class Alert:
    id: str
    owner: str  # an identity (app.alerts.identity): "anon:..." or "user:..."
    symbol: str
    kind: str  # above | below | move
    level: Decimal  # the price at which it fires
    up: bool  # fires upwards (price >= level) or downwards (price <= level)
    note: str = ""
    pct: Decimal | None = None  # move alerts: the signed percentage asked for
    base: Decimal | None = None  # move alerts: the price when it was set
    created_at: int = 0  # ms
    state: State = State.ARMED
    fired: int = 0  # how many times it fired
    fired_at: int = 0  # ms, the last firing
    fired_price: Decimal | None = None

    def condition(self) -> str:
        """How the page names the condition: `above 150.00`, `−3 % from 100.00 (at 97.00)`."""
        if self.kind == "move" and self.pct is not None and self.base is not None:
            sign = "+" if self.pct > 0 else "−"
            return f"moves {sign}{abs(self.pct)} % from {self.base} (at {self.level})"
        return f"{'above' if self.up else 'below'} {self.level}"

    def crossed(self, price: Decimal) -> bool:
        return price >= self.level if self.up else price <= self.level

    def rearms_at(self, band_pct: Decimal) -> Decimal:
        factor = band_pct / 100
        return self.level * (1 - factor) if self.up else self.level * (1 + factor)

    def step(self, price: Decimal, band_pct: Decimal, now_ms: int) -> Alert | None:
        """The alert after seeing `price`: fired, re-armed, or None when nothing changes."""
        if self.state is State.ARMED:
            if self.crossed(price):
                return replace(
                    self, state=State.FIRED, fired=self.fired + 1, fired_at=now_ms,
                    fired_price=price,
                )  # fmt: skip
            return None
        back = self.rearms_at(band_pct)
        if (price <= back) if self.up else (price >= back):
            return replace(self, state=State.ARMED)
        return None

    def encode(self) -> bytes:
        return orjson.dumps({
            "id": self.id, "owner": self.owner, "symbol": self.symbol, "kind": self.kind,
            "level": str(self.level), "up": self.up, "note": self.note,
            "pct": None if self.pct is None else str(self.pct),
            "base": None if self.base is None else str(self.base),
            "created_at": self.created_at, "state": self.state.value, "fired": self.fired,
            "fired_at": self.fired_at,
            "fired_price": None if self.fired_price is None else str(self.fired_price),
        })  # fmt: skip


def decode_alert(data: bytes | str) -> Alert:
    """The alert `encode` wrote; ValueError for anything else."""
    try:
        return _decode(orjson.loads(data))
    except (KeyError, TypeError, AttributeError, ArithmeticError) as exc:
        raise ValueError(f"not an encoded alert: {exc!r}") from None


def _decode(raw: dict[str, Any]) -> Alert:

    def dec(name: str) -> Decimal | None:
        value = raw.get(name)
        return None if value is None else Decimal(value)

    return Alert(
        id=raw["id"], owner=raw["owner"], symbol=raw["symbol"], kind=raw["kind"],
        level=Decimal(raw["level"]), up=bool(raw["up"]), note=raw.get("note", ""),
        pct=dec("pct"), base=dec("base"), created_at=int(raw.get("created_at", 0)),
        state=State(raw.get("state", "armed")), fired=int(raw.get("fired", 0)),
        fired_at=int(raw.get("fired_at", 0)), fired_price=dec("fired_price"),
    )  # fmt: skip


def _tidy(value: Decimal, like: Decimal) -> Decimal:
    """`value` with as many decimals as `like` has (at least 2, at most 6)."""
    places = min(max(len(str(like).partition(".")[2]), 2), 6)
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def new_id() -> str:
    return secrets.token_hex(8)


def parse_decimal(raw: str, what: str) -> Decimal:
    text = raw.strip().replace(",", "").replace("−", "-")
    if not text:
        raise InvalidAlert(f"Enter {what}.")
    if len(text) > 24:
        raise InvalidAlert(f"“{text[:24]}…” is not a number.")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InvalidAlert(f"“{text}” is not a number.") from None
    if not value.is_finite():
        raise InvalidAlert(f"“{text}” is not a number.")
    return value


def clean_note(raw: str) -> str:
    note = "".join(c for c in raw if c.isprintable()).strip()
    if len(note) > NOTE_MAX:
        raise InvalidAlert(f"The note is {len(note)} characters long: at most {NOTE_MAX}.")
    return note


def build(
    *,
    owner: str,
    symbol: str,
    kind: str,
    value: str,
    note: str,
    last: Decimal | None,
    now_ms: int,
) -> Alert:
    """A new armed alert from a form, or InvalidAlert saying what is wrong. `last` is the
    symbol's last published price (None: never priced; a move alert then cannot be set)."""
    if kind not in KINDS:
        raise InvalidAlert("Choose when to alert: above a price, below a price, or a move in %.")
    text = clean_note(note)
    if kind == "move":
        typed = parse_decimal(value, "the move in %")
        # Checked after rounding to 0.01 (what is stored), the direction from the sign typed.
        pct = typed.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP).normalize()
        if pct == 0 or abs(pct) > MAX_MOVE_PCT:
            raise InvalidAlert(
                f"A move must be between −{MAX_MOVE_PCT} % and +{MAX_MOVE_PCT} %, and not 0 "
                "(moves are in steps of 0.01 %)."
            )
        if last is None:
            raise InvalidAlert(f"{symbol} has no price yet, so a move cannot be measured from it.")
        up = typed > 0
        level = _tidy(last * (1 + pct / 100), last)
        if last >= level if up else last <= level:
            sign = "+" if up else "−"
            raise InvalidAlert(
                f"A move of {sign}{abs(pct)} % from {symbol}'s last price ({last}) rounds to "
                f"{level}, which it has already reached: choose a larger move."
            )
        return Alert(
            new_id(), owner, symbol, kind, level, up, text, pct, last, now_ms,
        )  # fmt: skip
    level = parse_decimal(value, "a price")
    if level <= 0:
        raise InvalidAlert(f"A price must be more than 0 (you entered {level}).")
    if level > MAX_PRICE or level != level.quantize(Decimal("0.000001")):
        raise InvalidAlert(f"{level} is not a plausible price.")
    if last is not None and not last / MAX_FACTOR <= level <= last * MAX_FACTOR:
        raise InvalidAlert(
            f"{level} is more than {MAX_FACTOR}× away from {symbol}'s last price ({last}): "
            "check the number."
        )
    up = kind == "above"
    if last is not None and (last >= level if up else last <= level):
        side = "at or above" if up else "at or below"
        raise InvalidAlert(
            f"{symbol} is already {side} {level} (last price {last}): "
            f"an alert {kind} {level} would fire at once."
        )
    return Alert(new_id(), owner, symbol, kind, level, up, text, created_at=now_ms)
