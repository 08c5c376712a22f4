"""Pure unit tests of access control: token claims, the role table, passwords, scopes,
the login throttle."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from regd.auth import Access
from regd.auth.passwords import (
    generate_secret,
    hash_password,
    hash_secret,
    password_problem,
    verify_password,
    verify_secret,
)
from regd.auth.roles import PERMISSIONS, Permission, Role, may, registry_actions
from regd.auth.scopes import parse_scope, parse_scopes
from regd.auth.throttle import LoginThrottle, address_key
from regd.auth.tokens import InvalidTokenError, TokenIssuer, libtrust_kid
from regd.metadata.db import Database

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def issuer(key: rsa.RSAPrivateKey = KEY, expiration: int = 1800) -> TokenIssuer:
    return TokenIssuer(key, "regd-token-issuer", "regd", expiration)


# -- tokens ------------------------------------------------------------------------


def test_token_claims_follow_harbor() -> None:
    issued = issuer().issue("alice", [Access("repository", "demo/app", ("pull", "push"))], now=1_000_000)

    header = jwt.get_unverified_header(issued.token)
    claims = jwt.decode(issued.token, options={"verify_signature": False})
    assert header["alg"] == "RS256"
    assert header["kid"] == libtrust_kid(KEY.public_key())
    assert claims["iss"] == "regd-token-issuer"
    assert claims["sub"] == "alice"
    assert claims["aud"] == ["regd"]
    assert claims["iat"] == 1_000_000
    assert claims["exp"] == 1_000_000 + 1800
    assert claims["nbf"] <= claims["iat"]
    assert claims["jti"]
    assert claims["access"] == [{"type": "repository", "name": "demo/app", "actions": ["pull", "push"]}]
    assert issued.expires_in == 1800
    assert issued.issued_at == "1970-01-12T13:46:40Z"


def test_token_body_has_token_and_access_token() -> None:
    body = issuer().issue("", []).body()

    assert body["token"] == body["access_token"]
    assert set(body) == {"token", "access_token", "expires_in", "issued_at"}


def test_libtrust_kid_is_twelve_groups_of_four() -> None:
    groups = libtrust_kid(KEY.public_key()).split(":")

    assert len(groups) == 12
    assert all(len(g) == 4 for g in groups)


def test_verify_returns_granted_actions() -> None:
    token = issuer().issue("alice", [Access("repository", "demo/app", ("pull",))]).token

    claims = issuer().verify(token)

    assert claims.subject == "alice"
    assert claims.allows(Access("repository", "demo/app", ("pull",)))
    assert not claims.allows(Access("repository", "demo/app", ("pull", "push")))


def test_token_for_one_repository_does_not_allow_another() -> None:
    claims = issuer().verify(issuer().issue("alice", [Access("repository", "demo/a", ("pull",))]).token)

    assert not claims.allows(Access("repository", "demo/b", ("pull",)))


def test_expired_token_is_refused() -> None:
    token = issuer(expiration=60).issue("alice", [], now=time.time() - 3600).token

    with pytest.raises(InvalidTokenError):
        issuer().verify(token)


def test_tampered_token_is_refused() -> None:
    token = issuer().issue("alice", [Access("repository", "demo/app", ("pull",))]).token
    header, _, signature = token.split(".")
    claims = {**jwt.decode(token, options={"verify_signature": False}), "sub": "admin"}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")

    with pytest.raises(InvalidTokenError):
        issuer().verify(f"{header}.{payload}.{signature}")


def test_token_signed_by_a_foreign_key_is_refused() -> None:
    token = issuer(OTHER_KEY).issue("admin", [Access("repository", "demo/app", ("push",))]).token

    with pytest.raises(InvalidTokenError):
        issuer().verify(token)


def test_token_for_another_service_is_refused() -> None:
    token = TokenIssuer(KEY, "regd-token-issuer", "elsewhere", 60).issue("alice", []).token

    with pytest.raises(InvalidTokenError):
        issuer().verify(token)


def test_alg_none_token_is_refused() -> None:
    claims = jwt.decode(issuer().issue("admin", []).token, options={"verify_signature": False})
    token = jwt.encode(claims, None, algorithm="none")

    with pytest.raises(InvalidTokenError):
        issuer().verify(token)


# -- roles -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "actions"),
    [
        (Role.PROJECT_ADMIN, {"pull", "push", "delete", "*"}),
        (Role.MAINTAINER, {"pull", "push", "delete"}),
        (Role.DEVELOPER, {"pull", "push"}),
        (Role.GUEST, {"pull"}),
        (Role.LIMITED_GUEST, {"pull"}),
        (None, set()),
    ],
)
def test_registry_actions_of_each_role_in_a_private_project(role: Role | None, actions: set[str]) -> None:
    assert registry_actions(role, public=False) == actions


def test_public_project_grants_pull_to_everyone() -> None:
    assert registry_actions(None, public=True) == {"pull"}
    assert registry_actions(Role.DEVELOPER, public=True) == {"pull", "push"}


def test_only_project_admins_manage_members() -> None:
    assert PERMISSIONS[Permission.MEMBER_MANAGE] == {Role.PROJECT_ADMIN}
    assert not may(Role.MAINTAINER, False, Permission.MEMBER_MANAGE)


def test_developers_may_describe_repositories_but_not_delete_them() -> None:
    assert may(Role.DEVELOPER, False, Permission.REPOSITORY_UPDATE)
    assert not may(Role.DEVELOPER, False, Permission.REPOSITORY_DELETE)
    assert may(Role.MAINTAINER, False, Permission.REPOSITORY_DELETE)


def test_public_project_may_be_read_by_anyone_but_not_changed() -> None:
    assert may(None, True, Permission.REPOSITORY_READ)
    assert not may(None, True, Permission.REPOSITORY_UPDATE)
    assert not may(None, False, Permission.PROJECT_READ)


def test_roles_parse_from_id_and_harbor_name() -> None:
    assert Role.parse(4) is Role.MAINTAINER
    assert Role.parse("limitedGuest") is Role.LIMITED_GUEST
    assert Role.parse("developer") is Role.DEVELOPER
    assert Role.parse(9) is None
    assert Role.parse(True) is None


# -- passwords ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "ok"),
    [
        ("Passw0rd1", True),
        ("Pa0" + "x" * 125, True),
        ("Pa0" + "x" * 126, False),  # 129 characters
        ("Passw0r", False),  # 7 characters
        ("password1", False),  # no upper case
        ("PASSWORD1", False),  # no lower case
        ("Password", False),  # no digit
    ],
)
def test_password_rule(password: str, ok: bool) -> None:
    assert (password_problem(password) is None) is ok


def test_password_hash_is_salted_scrypt_and_verifies() -> None:
    first, second = hash_password("Passw0rd1"), hash_password("Passw0rd1")

    assert first.startswith("scrypt$") and first != second
    assert "Passw0rd1" not in first
    assert verify_password("Passw0rd1", first)
    assert not verify_password("Passw0rd2", first)
    assert not verify_password("Passw0rd1", "garbage")


def test_generated_secrets_follow_the_rule_and_verify() -> None:
    secret = generate_secret()

    assert password_problem(secret) is None
    assert verify_secret(secret, hash_secret(secret))
    assert not verify_secret(secret + "x", hash_secret(secret))


# -- scopes ------------------------------------------------------------------------


def test_scopes_merge_repeated_and_space_separated_values() -> None:
    parsed = parse_scopes(
        ["repository:a/b:pull", "repository:a/b:push repository:c/d:pull", "registry:catalog:*"]
    )

    assert parsed == [
        Access("repository", "a/b", ("pull", "push")),
        Access("repository", "c/d", ("pull",)),
        Access("registry", "catalog", ("*",)),
    ]


def test_scope_drops_resource_class_and_keeps_colons_in_the_name() -> None:
    assert parse_scope("repository(plugin):a/b:pull") == Access("repository", "a/b", ("pull",))
    assert parse_scope("repository:host:5000/a:pull,push") == Access(
        "repository", "host:5000/a", ("pull", "push")
    )
    assert parse_scope("garbage") is None


# -- throttle ----------------------------------------------------------------------


async def _try(throttle: LoginThrottle, user: str, address: str, now: float, outcome: bool | None) -> float:
    """One attempt: what ``begin`` answers; if admitted, settled with ``outcome``."""
    attempt = throttle.attempt(user, address)
    wait = await throttle.begin(attempt, now)
    if wait == 0:
        await throttle.finish(attempt, now, outcome)
    return wait


async def _fail(throttle: LoginThrottle, user: str, address: str, now: float) -> float:
    return await _try(throttle, user, address, now, False)


async def _wait(throttle: LoginThrottle, user: str, address: str, now: float) -> float:
    """What one more attempt would be told (settled as unchecked: it counts for nothing)."""
    return await _try(throttle, user, address, now, None)


async def test_throttle_locks_one_address_out_of_one_account_after_max_failures_and_doubles(
    db: Database,
) -> None:
    throttle = LoginThrottle(db, max_failures=3, lockout=10)
    for _ in range(3):
        assert await _fail(throttle, "a", "10.0.0.1", now=100) == 0

    assert await _wait(throttle, "a", "10.0.0.1", now=100) == 10
    assert await _wait(throttle, "b", "10.0.0.1", now=100) == 0  # another account
    assert await _wait(throttle, "a", "10.0.0.2", now=100) == 0  # another address

    for _ in range(3):
        await _fail(throttle, "a", "10.0.0.1", now=111)
    assert await _wait(throttle, "a", "10.0.0.1", now=111) == 20


async def test_throttle_state_is_shared_by_every_process_on_the_database(db: Database) -> None:
    one, other = LoginThrottle(db, 2, 10), LoginThrottle(db, 2, 10)  # two workers
    await _fail(one, "a", "10.0.0.1", now=100)
    await _fail(other, "a", "10.0.0.1", now=100)

    assert await _wait(one, "a", "10.0.0.1", now=100) == 10


async def test_throttle_counts_attempts_in_flight_before_their_outcome(db: Database) -> None:
    throttle = LoginThrottle(db, max_failures=5, lockout=10)
    attempts = [throttle.attempt("a", "10.0.0.1") for _ in range(60)]

    waits = await asyncio.gather(*(throttle.begin(a, now=100) for a in attempts))
    admitted = [a for a, wait in zip(attempts, waits, strict=True) if wait == 0]

    assert len(admitted) == 5
    for attempt in admitted:
        await throttle.finish(attempt, 100, False)
    assert await _wait(throttle, "a", "10.0.0.1", now=100) == 10


async def test_throttle_allows_an_address_four_times_as_many_failures(db: Database) -> None:
    throttle = LoginThrottle(db, max_failures=2, lockout=10)
    for i in range(7):
        await _fail(throttle, f"user{i}", "10.0.0.1", now=100)
    assert await _wait(throttle, "other", "10.0.0.1", now=100) == 0

    await _fail(throttle, "user7", "10.0.0.1", now=100)

    assert await _wait(throttle, "other", "10.0.0.1", now=100) == 10


async def test_throttle_locks_an_account_guessed_from_many_addresses_except_where_its_owner_logs_in(
    db: Database,
) -> None:
    throttle = LoginThrottle(db, max_failures=1, lockout=10)
    owner = throttle.attempt("a", "192.0.2.1")
    assert await throttle.begin(owner, now=50) == 0
    await throttle.finish(owner, 50, True)
    for i in range(20):
        await _fail(throttle, "a", f"10.0.1.{i}", now=100)

    assert await _wait(throttle, "a", "10.0.2.1", now=100) == 10
    assert await _wait(throttle, "a", "192.0.2.1", now=100) == 0


async def test_throttle_success_clears_the_count_of_its_address(db: Database) -> None:
    throttle = LoginThrottle(db, max_failures=2, lockout=10)
    await _fail(throttle, "a", "10.0.0.1", now=100)
    ok = throttle.attempt("a", "10.0.0.1")
    assert await throttle.begin(ok, now=100) == 0
    await throttle.finish(ok, 100, True)
    await _fail(throttle, "a", "10.0.0.1", now=100)

    assert await _wait(throttle, "a", "10.0.0.1", now=100) == 0


def test_throttle_counts_ipv6_by_its_64() -> None:
    assert address_key("2001:db8:1:2:3:4:5:6") == address_key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert address_key("::ffff:10.0.0.1") == "10.0.0.1"


def test_a_verified_token_is_served_from_the_cache_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = issuer(expiration=60)
    token = tokens.issue("alice", [Access("repository", "demo/app", ("pull",))]).token
    first = tokens.verify(token)
    calls: list[str] = []
    monkeypatch.setattr("regd.auth.tokens.jwt.decode", lambda *a, **k: calls.append("decode"))
    assert tokens.verify(token) is first  # no second signature check
    assert calls == []

    # past exp + leeway the cached entry is dropped and the signature checked again
    def expired(*args: object, **kwargs: object) -> None:
        calls.append("decode")
        raise jwt.ExpiredSignatureError("expired")

    later = time.time() + 3600
    monkeypatch.setattr("regd.auth.tokens.jwt.decode", expired)
    monkeypatch.setattr("regd.auth.tokens.time.time", lambda: later)
    with pytest.raises(InvalidTokenError):
        tokens.verify(token)
    assert calls == ["decode"]


def test_a_tampered_token_never_matches_a_cached_one() -> None:
    tokens = issuer()
    token = tokens.issue("alice", [Access("repository", "demo/app", ("pull",))]).token
    tokens.verify(token)
    head, payload, signature = token.split(".")
    forged = ".".join([head, payload, signature[:-4] + ("AAAA" if signature[-4:] != "AAAA" else "BBBB")])
    with pytest.raises(InvalidTokenError):
        tokens.verify(forged)
