"""The access policy, its settings, the login throttle and the `next` check: no server needed."""

from __future__ import annotations

import logging

import pytest

from app.access import ANONYMOUS, SESSION_COOKIE, AccessPolicy, Caller
from app.login import LoginThrottle, safe_next
from app.main import configure_logging
from app.settings import Settings, SettingsError

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdef"
OPERATOR = "operator-token-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def policy(tokens: dict[str, str] | None = None, **options: object) -> AccessPolicy:
    return AccessPolicy({"alice": ALICE} if tokens is None else tokens, **options)  # type: ignore[arg-type]


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


# Settings


def test_tokens_are_parsed_with_names_and_kept_secret() -> None:
    s = Settings.from_env({
        "ACCESS_TOKENS": f"alice:{ALICE}, {BOB} ,", "OPERATOR_TOKEN": OPERATOR,
        "SESSION_SECRET": "s" * 32, "SESSION_MAX_AGE": "3600",
    })  # fmt: skip
    assert [(t.name, t.token.reveal()) for t in s.access_tokens] == [
        ("alice", ALICE), ("token-2", BOB),
    ]  # fmt: skip
    assert s.operator_token.reveal() == OPERATOR and s.session_max_age == 3600
    shown = repr(s)
    assert ALICE not in shown and BOB not in shown and OPERATOR not in shown
    assert "s" * 32 not in shown


def test_access_control_is_off_by_default() -> None:
    s = Settings.from_env({})
    assert s.access_tokens == () and not s.operator_token and not s.session_secret
    assert not AccessPolicy.from_settings(s).enabled
    assert s.forwarded_allow_ips == "127.0.0.1,::1"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"ACCESS_TOKENS": "short-secret-1"}, "entry 1: the token has 14 characters"),
        ({"ACCESS_TOKENS": f"{ALICE},has space in it 0123456"}, "entry 2: a token may hold only"),
        ({"ACCESS_TOKENS": f"a:{ALICE},b:{ALICE}"}, "entry 2: the same token"),
        ({"ACCESS_TOKENS": f"a:{ALICE},a:{BOB}"}, "entry 2: the name 'a' is used twice"),
        ({"ACCESS_TOKENS": f"bad name!:{ALICE}"}, "entry 1: a name is"),
        ({"ACCESS_TOKENS": ","}, "expected comma-separated tokens"),
        ({"OPERATOR_TOKEN": "op"}, "OPERATOR_TOKEN: the token has 2 characters"),
        ({"ACCESS_TOKENS": ALICE, "OPERATOR_TOKEN": ALICE}, "a token of their own"),
        ({"SESSION_SECRET": "tiny-secret"}, "SESSION_SECRET: 11 characters; at least 32"),
        ({"SESSION_MAX_AGE": "5"}, "SESSION_MAX_AGE='5'"),
    ],
)
def test_bad_credentials_are_described_never_quoted(env: dict[str, str], expected: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    text = str(info.value)
    assert expected in text
    secrets = [v for k, v in env.items() if k != "SESSION_MAX_AGE"]
    for value in secrets:
        for part in value.replace(":", ",").split(","):
            if len(part.strip()) >= 8:
                assert part.strip() not in text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("*", "*"),
        (" 10.0.0.0/8 , 192.168.1.7,::1", "10.0.0.0/8,192.168.1.7,::1"),
        ("fd00::/8", "fd00::/8"),
    ],
)
def test_trusted_proxies(raw: str, expected: str) -> None:
    assert Settings.from_env({"FORWARDED_ALLOW_IPS": raw}).forwarded_allow_ips == expected


@pytest.mark.parametrize("raw", ["10.0.0.300", "127.0.0.1,*", "proxy.internal", "10.0.0.0/33"])
def test_a_mistyped_proxy_address_stops_the_start(raw: str) -> None:
    with pytest.raises(SettingsError, match="FORWARDED_ALLOW_IPS"):
        Settings.from_env({"FORWARDED_ALLOW_IPS": raw})


# Bearer tokens


def test_bearer_tokens_name_their_user() -> None:
    p = policy({"alice": ALICE, "bob": BOB})
    assert p.identify(bearer(ALICE), {}) == Caller("alice")
    assert p.identify({"authorization": f"bearer  {BOB} "}, {}) == Caller("bob")
    for wrong in (ALICE[:-1], ALICE + "x", "", "x" * 10_000):
        assert p.identify(bearer(wrong), {}) == ANONYMOUS
    assert p.identify({"authorization": f"Basic {ALICE}"}, {}) == ANONYMOUS
    assert p.identify({}, {}) == ANONYMOUS
    assert not p.admits(ANONYMOUS) and p.admits(Caller("alice"))


def test_operator_rules() -> None:
    both = policy(operator_token=OPERATOR)
    assert both.identify(bearer(OPERATOR), {}) == Caller(None, operator=True)
    assert both.operates(Caller(None, operator=True))
    assert not both.operates(Caller("alice"))  # users are not operators
    assert not both.admits(Caller(None, operator=True))  # nor operators users
    users_only = policy()
    assert users_only.operates(Caller("alice")) and not users_only.operates(ANONYMOUS)
    operator_only = policy({}, operator_token=OPERATOR)
    assert not operator_only.enabled and operator_only.admits(ANONYMOUS)
    assert not operator_only.operates(ANONYMOUS)
    assert operator_only.operates(operator_only.identify(bearer(OPERATOR), {}))
    off = policy({})
    assert off.admits(ANONYMOUS) and off.operates(ANONYMOUS)


# Sessions


def test_a_session_names_its_token_until_it_expires() -> None:
    clock = Clock()
    p = policy({"alice": ALICE, "bob": BOB}, session_max_age=600, clock=clock)
    cookie = p.issue_session(BOB)
    assert BOB not in cookie
    assert p.identify({}, {SESSION_COOKIE: cookie}) == Caller("bob")
    clock.now += 599
    assert p.session_user(cookie) == "bob"
    clock.now += 1
    assert p.session_user(cookie) is None


def test_a_forged_or_mangled_session_is_refused() -> None:
    p = policy()
    cookie = p.issue_session(ALICE)
    version, fingerprint, expires, signature = cookie.split(".")
    later = str(int(expires) + 10)
    for bad in (
        f"{version}.{fingerprint}.{later}.{signature}",  # a longer life
        # Its first character changed: the last may carry only padding bits of the base64.
        f"{version}.{fingerprint}.{expires}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}",
        f"v2.{fingerprint}.{expires}.{signature}",
        f"{version}.{fingerprint}.{expires}",
        "", ".", "...", cookie + "." + signature, "x" * 600,
    ):  # fmt: skip
        assert p.session_user(bad) is None, bad


def test_replicas_with_the_same_settings_accept_each_others_sessions() -> None:
    env = {"ACCESS_TOKENS": f"alice:{ALICE},bob:{BOB}"}
    one = AccessPolicy.from_settings(Settings.from_env(env))
    two = AccessPolicy.from_settings(Settings.from_env(env))
    assert two.session_user(one.issue_session(ALICE)) == "alice"
    with_secret = {**env, "SESSION_SECRET": "k" * 40}
    three = AccessPolicy.from_settings(Settings.from_env(with_secret))
    four = AccessPolicy.from_settings(Settings.from_env(with_secret))
    assert four.session_user(three.issue_session(BOB)) == "bob"
    assert one.session_user(three.issue_session(BOB)) is None  # another key


def test_removing_a_token_ends_its_sessions() -> None:
    secret = "k" * 40
    before = policy({"alice": ALICE, "bob": BOB}, session_secret=secret)
    after = policy({"alice": ALICE}, session_secret=secret)
    assert after.session_user(before.issue_session(ALICE)) == "alice"
    assert after.session_user(before.issue_session(BOB)) is None
    derived = policy({"alice": ALICE})  # no SESSION_SECRET: any change of tokens ends them all
    assert derived.session_user(before.issue_session(ALICE)) is None


def test_a_lowered_max_age_shortens_sessions_already_issued() -> None:
    clock = Clock()
    long = policy(session_max_age=86400, clock=clock, session_secret="k" * 40)
    short = policy(session_max_age=3600, clock=clock, session_secret="k" * 40)
    assert short.session_user(long.issue_session(ALICE)) is None
    assert short.session_user(short.issue_session(ALICE)) == "alice"


# Login throttle and the `next` parameter


def test_login_attempts_are_limited_per_address_and_refill() -> None:
    clock = Clock()
    throttle = LoginThrottle(per_minute=10, burst=3, clock=clock)
    assert [throttle.take("1.2.3.4") for _ in range(3)] == [0, 0, 0]
    wait = throttle.take("1.2.3.4")
    assert 5 < wait <= 6  # one attempt per 6 s
    assert throttle.take("5.6.7.8") == 0  # others are not affected
    clock.now += 6
    assert throttle.take("1.2.3.4") == 0
    assert throttle.take("1.2.3.4") > 0


def test_only_failed_attempts_count() -> None:
    throttle = LoginThrottle(per_minute=10, burst=3, clock=Clock())
    for _ in range(20):  # a whole office behind one address signs in
        assert throttle.take("10.0.0.1") == 0
        throttle.refund("10.0.0.1")
    assert [throttle.take("10.0.0.1") for _ in range(4)][-1] > 0


def test_the_throttle_remembers_a_bounded_number_of_addresses() -> None:
    throttle = LoginThrottle(max_addresses=100)
    for n in range(1000):
        throttle.take(f"10.0.{n // 256}.{n % 256}")
    assert len(throttle) == 100


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/market", "/market"),
        ("/stock/TCS?range=1d", "/stock/TCS?range=1d"),
        (None, "/"),
        ("", "/"),
        ("market", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("/\t/evil.example", "/"),
        ("https://evil.example/", "/"),
        ("/login", "/"),
        ("/logout", "/"),
        ("/" + "a" * 3000, "/"),
    ],
)
def test_next_is_a_local_path_only(raw: str | None, expected: str) -> None:
    assert safe_next(raw) == expected


def test_debug_logs_of_handshake_headers_mask_credentials(caplog: pytest.LogCaptureFixture) -> None:
    """The websockets library logs each handshake header to uvicorn's logger at debug level."""
    server_log = logging.getLogger("uvicorn.error")
    saved = list(server_log.filters)
    try:
        configure_logging("debug")
        with caplog.at_level(logging.DEBUG, logger="uvicorn.error"):
            server_log.debug("< %s: %s", "authorization", f"Bearer {ALICE}")
            server_log.debug("< %s: %s", "Cookie", f"{SESSION_COOKIE}=v1.abc.1.sig")
            server_log.debug("< %s: %s", "user-agent", "Python/3.11 websockets/17.4")
        assert [r.getMessage() for r in caplog.records] == [
            "< authorization: [hidden]",
            "< Cookie: [hidden]",
            "< user-agent: Python/3.11 websockets/17.4",
        ]
    finally:
        server_log.filters[:] = saved
