"""Access control on /v2 and the token service, over the real app and a real SQLite file:
challenges, Basic and Bearer, roles, robots, token escalation and forgery, lockout."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import jwt
import orjson
import pytest
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import rsa

from regd.api import observe
from regd.app import create_app
from regd.auth import Access
from regd.auth.tokens import TokenIssuer
from regd.config import ConfigError
from regd.errors import ErrorCode
from regd.services import SERVICES
from tests.auth_support import (
    ADMIN,
    ADMIN_PASSWORD,
    PASSWORD,
    ROLES,
    Starter,
    add_member,
    auth_config,
    basic,
    bearer,
    create_project,
    create_robot,
    create_user,
    push_image_as,
    setup_roles,
    token,
)
from tests.conftest import Client, assert_error, make_config, sha256

AiohttpClient = Callable[..., Awaitable[Client]]


def claims_of(token_text: str) -> dict[str, object]:
    claims: dict[str, object] = jwt.decode(token_text, options={"verify_signature": False})
    return claims


# -- challenges ----------------------------------------------------------------------


async def test_base_without_credentials_answers_401_with_a_challenge_without_scope(
    auth_client: Client,
) -> None:
    resp = await auth_client.get("/v2/")

    await assert_error(resp, 401, "UNAUTHORIZED")
    assert (
        resp.headers["WWW-Authenticate"]
        == 'Bearer realm="http://127.0.0.1:5000/service/token",service="regd"'
    )
    assert resp.headers["Docker-Distribution-Api-Version"] == "registry/2.0"


async def test_realm_comes_from_external_url_not_the_host_header(
    aiohttp_client: AiohttpClient, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGD_ADMIN_PASSWORD", ADMIN_PASSWORD)
    config = make_config(
        data_dir,
        auth={"enabled": True, "service": "reg"},
        server={"external_url": "https://reg.example.com/"},
    )
    client = await aiohttp_client(create_app(config))

    resp = await client.get("/v2/", headers={"Host": "evil.example.org"})

    assert (
        resp.headers["WWW-Authenticate"]
        == 'Bearer realm="https://reg.example.com/service/token",service="reg"'
    )


async def test_repository_request_challenge_names_the_scope(auth_client: Client) -> None:
    get = await auth_client.get("/v2/library/app/manifests/v1")
    post = await auth_client.post("/v2/library/app/blobs/uploads/")
    delete = await auth_client.delete("/v2/library/app/manifests/v1")

    assert get.headers["WWW-Authenticate"].endswith(',scope="repository:library/app:pull"')
    assert post.headers["WWW-Authenticate"].endswith(',scope="repository:library/app:pull,push"')
    assert delete.headers["WWW-Authenticate"].endswith(',scope="repository:library/app:delete"')


async def test_base_with_valid_basic_or_token_answers_200(auth_client: Client) -> None:
    assert (await auth_client.get("/v2/", headers=ADMIN)).status == 200
    assert (await auth_client.get("/v2/", headers=bearer(await token(auth_client, [], ADMIN)))).status == 200


async def test_base_with_wrong_password_answers_401(auth_client: Client) -> None:
    resp = await auth_client.get("/v2/", headers=basic("admin", "Wrong1234"))

    await assert_error(resp, 401, "UNAUTHORIZED")
    assert resp.headers["WWW-Authenticate"].startswith("Bearer realm=")


# -- the token service ---------------------------------------------------------------


async def test_token_answer_has_harbor_fields(auth_client: Client) -> None:
    resp = await auth_client.get(
        "/service/token",
        params={"account": "admin", "client_id": "docker", "offline_token": "true", "service": "regd"},
        headers=ADMIN,
    )

    assert resp.status == 200
    body = orjson.loads(await resp.read())
    assert set(body) == {"token", "access_token", "expires_in", "issued_at"}
    assert body["expires_in"] == 1800
    assert claims_of(body["token"])["sub"] == "admin"
    assert resp.headers["Cache-Control"] == "no-store"


async def test_token_expiration_is_configurable(auth_start: Starter) -> None:
    client = await auth_start(auth={"token_expiration": 5})

    resp = await client.get("/service/token", headers=ADMIN)

    assert orjson.loads(await resp.read())["expires_in"] == 300


async def test_token_for_an_unknown_service_is_400(auth_client: Client) -> None:
    resp = await auth_client.get("/service/token", params={"service": "harbor-registry"}, headers=ADMIN)

    await assert_error(resp, 400, "BAD_REQUEST")


async def test_anonymous_token_without_scope_is_401(auth_client: Client) -> None:
    await assert_error(await auth_client.get("/service/token"), 401, "UNAUTHORIZED")


async def test_wrong_password_and_unknown_user_get_the_same_answer(auth_client: Client) -> None:
    wrong = await auth_client.get("/service/token", headers=basic("admin", "Wrong1234"))
    unknown = await auth_client.get("/service/token", headers=basic("nobody", "Wrong1234"))

    assert (wrong.status, await wrong.read()) == (unknown.status, await unknown.read())
    await assert_error(wrong, 401, "UNAUTHORIZED")


async def test_token_carries_only_the_actions_the_account_holds(auth_client: Client) -> None:
    await setup_roles(auth_client)

    guest = await token(auth_client, ["repository:demo/app:pull,push,delete"], basic("gu"))
    outsider = await token(auth_client, ["repository:demo/app:pull,push"], basic("out"))
    missing = await token(auth_client, ["repository:nope/app:pull,push"], ADMIN)

    assert claims_of(guest)["access"] == [{"type": "repository", "name": "demo/app", "actions": ["pull"]}]
    assert claims_of(outsider)["access"] == [{"type": "repository", "name": "demo/app", "actions": []}]
    assert claims_of(missing)["access"] == [{"type": "repository", "name": "nope/app", "actions": []}]


async def test_catalog_scope_is_granted_to_admins_only(auth_client: Client) -> None:
    await create_user(auth_client, "alice")

    admin = await token(auth_client, ["registry:catalog:*"], ADMIN)
    alice = await token(auth_client, ["registry:catalog:*"], basic("alice"))

    assert claims_of(admin)["access"] == [{"type": "registry", "name": "catalog", "actions": ["*"]}]
    assert claims_of(alice)["access"] == [{"type": "registry", "name": "catalog", "actions": []}]
    assert (await auth_client.get("/v2/_catalog", headers=bearer(admin))).status == 200
    await assert_error(await auth_client.get("/v2/_catalog", headers=bearer(alice)), 403, "DENIED")


async def test_oauth2_post_form_returns_an_access_token(auth_client: Client) -> None:
    form = {
        "grant_type": "password",
        "username": "admin",
        "password": ADMIN_PASSWORD,
        "service": "regd",
        "scope": "repository:library/app:pull repository:library/other:pull",
        "client_id": "containerd-client",
        "access_type": "online",
    }

    resp = await auth_client.post("/service/token", data=form)

    assert resp.status == 200
    body = orjson.loads(await resp.read())
    access = claims_of(body["access_token"])["access"]
    assert [a["name"] for a in access] == ["library/app", "library/other"]  # type: ignore[index]


async def test_oauth2_post_with_wrong_password_is_401(auth_client: Client) -> None:
    form = {"grant_type": "password", "username": "admin", "password": "Wrong1234", "service": "regd"}

    await assert_error(await auth_client.post("/service/token", data=form), 401, "UNAUTHORIZED")


async def test_oauth2_refresh_token_grant_is_400(auth_client: Client) -> None:
    form = {"grant_type": "refresh_token", "refresh_token": "x", "service": "regd"}

    await assert_error(await auth_client.post("/service/token", data=form), 400, "BAD_REQUEST")


# -- public and private projects -----------------------------------------------------


async def test_anonymous_pulls_from_a_public_project_with_a_token(auth_client: Client) -> None:
    await push_image_as(auth_client, "library/app", "v1", ADMIN)
    anonymous = await token(auth_client, ["repository:library/app:pull"])

    resp = await auth_client.get("/v2/library/app/manifests/v1", headers=bearer(anonymous))

    assert resp.status == 200


async def test_anonymous_pull_from_a_private_project_is_401(auth_client: Client) -> None:
    await setup_roles(auth_client)
    anonymous = await token(auth_client, ["repository:demo/app:pull"])

    resp = await auth_client.get("/v2/demo/app/manifests/v1", headers=bearer(anonymous))

    body = await assert_error(resp, 401, "UNAUTHORIZED")
    assert "demo/app" in body["errors"][0]["message"]
    assert 'scope="repository:demo/app:pull"' in resp.headers["WWW-Authenticate"]


async def test_non_member_pull_from_a_private_project_is_denied(auth_client: Client) -> None:
    await setup_roles(auth_client)
    outsider = await token(auth_client, ["repository:demo/app:pull"], basic("out"))

    resp = await auth_client.get("/v2/demo/app/manifests/v1", headers=bearer(outsider))

    await assert_error(resp, 403, "DENIED")


@pytest.mark.parametrize(
    ("user", "pull", "push", "delete"),
    [
        ("pa", True, True, True),
        ("ma", True, True, True),
        ("dev", True, True, False),
        ("gu", True, False, False),
        ("lg", True, False, False),
        ("out", False, False, False),
    ],
)
async def test_each_role_pulls_pushes_and_deletes_as_harbor_allows(
    auth_client: Client, user: str, pull: bool, push: bool, delete: bool
) -> None:
    await setup_roles(auth_client)
    scopes = ["repository:demo/app:pull,push,delete"]
    granted = await token(auth_client, scopes, basic(user))

    pulled = await auth_client.get("/v2/demo/app/manifests/v1", headers=bearer(granted))
    pushed = await auth_client.post("/v2/demo/app/blobs/uploads/", headers=bearer(granted))
    deleted = await auth_client.delete("/v2/demo/app/manifests/v1", headers=bearer(granted))

    assert (pulled.status == 200, pushed.status == 202, deleted.status == 202) == (pull, push, delete)
    for resp, allowed in ((pulled, pull), (pushed, push), (deleted, delete)):
        if not allowed:
            await assert_error(resp, 403, "DENIED")


async def test_basic_credentials_sent_to_v2_directly_are_accepted(auth_client: Client) -> None:
    await setup_roles(auth_client)

    pulled = await auth_client.get("/v2/demo/app/manifests/v1", headers=basic("gu"))
    pushed = await auth_client.post("/v2/demo/app/blobs/uploads/", headers=basic("gu"))

    assert pulled.status == 200
    await assert_error(pushed, 403, "DENIED")


async def test_push_to_a_missing_project_names_the_project(auth_client: Client) -> None:
    granted = await token(auth_client, ["repository:nope/app:pull,push"], ADMIN)

    resp = await auth_client.post("/v2/nope/app/blobs/uploads/", headers=bearer(granted))

    body = await assert_error(resp, 403, "DENIED")
    assert body["errors"][0]["message"] == "project nope not found"


async def test_anonymous_push_to_a_missing_project_is_401_naming_the_project(auth_client: Client) -> None:
    anonymous = await token(auth_client, ["repository:nope/app:pull,push"])

    resp = await auth_client.post("/v2/nope/app/blobs/uploads/", headers=bearer(anonymous))

    body = await assert_error(resp, 401, "UNAUTHORIZED")
    assert body["errors"][0]["message"] == "project nope not found"


# -- token misuse --------------------------------------------------------------------


async def test_scope_escalation_yields_no_push_and_the_push_is_denied(auth_client: Client) -> None:
    await setup_roles(auth_client)
    granted = await token(auth_client, ["repository:demo/app:pull,push"], basic("gu"))

    resp = await auth_client.put(
        "/v2/demo/app/manifests/v2",
        data=b"{}",
        headers={**bearer(granted), "Content-Type": "application/json"},
    )

    await assert_error(resp, 403, "DENIED")


async def test_token_for_one_repository_is_refused_on_another(auth_client: Client) -> None:
    await setup_roles(auth_client)
    await create_project(auth_client, "secret")
    await push_image_as(auth_client, "secret/app", "v1", ADMIN)
    for_demo = await token(auth_client, ["repository:demo/app:pull"], basic("dev"))

    other = await auth_client.get("/v2/secret/app/manifests/v1", headers=bearer(for_demo))
    same_project = await auth_client.post("/v2/demo/other/blobs/uploads/", headers=bearer(for_demo))

    await assert_error(other, 403, "DENIED")
    # dev may push to demo/other, the token just does not say so: ask for a new one.
    await assert_error(same_project, 401, "UNAUTHORIZED")
    assert 'error="insufficient_scope"' in same_project.headers["WWW-Authenticate"]
    assert 'scope="repository:demo/other:pull,push"' in same_project.headers["WWW-Authenticate"]


async def test_expired_token_is_401(auth_client: Client) -> None:
    issuer = auth_client.app[SERVICES].accounts.issuer
    expired = issuer.issue("admin", [Access("repository", "library/app", ("pull",))], now=time.time() - 7200)

    resp = await auth_client.get("/v2/library/app/tags/list", headers=bearer(expired.token))

    await assert_error(resp, 401, "UNAUTHORIZED")


async def test_tampered_token_is_401(auth_client: Client) -> None:
    await create_user(auth_client, "alice")
    granted = await token(auth_client, ["repository:library/app:pull"], basic("alice"))
    header, payload, signature = granted.split(".")
    tampered = f"{header}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{signature}"

    resp = await auth_client.post("/v2/library/app/blobs/uploads/", headers=bearer(tampered))

    await assert_error(resp, 401, "UNAUTHORIZED")


async def test_token_signed_with_a_foreign_key_is_401(auth_client: Client) -> None:
    foreign = TokenIssuer(rsa.generate_private_key(65537, 2048), "regd-token-issuer", "regd", 600)
    forged = foreign.issue("admin", [Access("repository", "library/app", ("pull", "push"))])

    resp = await auth_client.post("/v2/library/app/blobs/uploads/", headers=bearer(forged.token))

    await assert_error(resp, 401, "UNAUTHORIZED")


async def test_hs256_token_with_the_public_key_as_secret_is_401(auth_client: Client) -> None:
    issuer = auth_client.app[SERVICES].accounts.issuer
    claims = claims_of(issuer.issue("admin", [Access("repository", "library/app", ("push",))]).token)
    forged = jwt.encode(claims, "x" * 64, algorithm="HS256")

    resp = await auth_client.post("/v2/library/app/blobs/uploads/", headers=bearer(forged))

    await assert_error(resp, 401, "UNAUTHORIZED")


# -- cross-repository mounts with partial rights (issue 12 item 1) -------------------


async def _secret_blob(auth_client: Client) -> str:
    """A blob in the private project ``secret`` (which dev, pa... are not members of)."""
    await create_project(auth_client, "secret")
    data = os.urandom(1500)
    resp = await auth_client.post(
        "/v2/secret/app/blobs/uploads/", params={"digest": sha256(data)}, data=data, headers=ADMIN
    )
    assert resp.status == 201, await resp.text()
    return sha256(data)


async def _mount(auth_client: Client, digest: str, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    params = {"mount": digest, "from": "secret/app"}
    return await auth_client.post("/v2/demo/app/blobs/uploads/", params=params, headers=headers)


async def test_mount_without_read_access_to_the_source_is_a_new_upload_session(auth_client: Client) -> None:
    """Push on the target, nothing on the source: 202 and an upload session (401 with a
    challenge for the source alone before, which lost push on the target: a loop), the
    same answer whether or not the source holds the blob."""
    await setup_roles(auth_client)
    present = await _secret_blob(auth_client)
    absent = sha256(b"never pushed anywhere")
    scopes = ["repository:demo/app:pull,push", "repository:secret/app:pull"]
    granted = await token(auth_client, scopes, basic("dev"))
    assert claims_of(granted)["access"] == [
        {"type": "repository", "name": "demo/app", "actions": ["pull", "push"]},
        {"type": "repository", "name": "secret/app", "actions": []},
    ]

    answers = []
    for digest in (present, absent):
        for headers in (bearer(granted), basic("dev")):
            resp = await _mount(auth_client, digest, headers)
            assert resp.status == 202, await resp.text()
            assert "WWW-Authenticate" not in resp.headers
            assert resp.headers["Location"].startswith("/v2/demo/app/blobs/uploads/")
            answers.append(sorted(k for k in resp.headers if k not in ("Date", "X-Request-ID")))
            status = await auth_client.get(resp.headers["Location"], headers=basic("dev"))
            assert status.status == 204, "a real upload session"
    assert all(a == answers[0] for a in answers), "the answer tells whether the blob exists"
    assert (await auth_client.head(f"/v2/demo/app/blobs/{present}", headers=basic("dev"))).status == 404


async def test_mount_with_a_token_lacking_the_source_scope_asks_for_every_scope(auth_client: Client) -> None:
    """The account may read the source, the token does not say so: 401 insufficient_scope
    naming every scope the request needs, and the token it then gets mounts (201)."""
    await setup_roles(auth_client)
    digest = await _secret_blob(auth_client)
    narrow = await token(auth_client, ["repository:demo/app:pull,push"], ADMIN)

    resp = await _mount(auth_client, digest, bearer(narrow))

    await assert_error(resp, 401, "UNAUTHORIZED")
    challenge = resp.headers["WWW-Authenticate"]
    assert 'scope="repository:demo/app:pull,push repository:secret/app:pull"' in challenge
    assert 'error="insufficient_scope"' in challenge
    wide = await token(auth_client, ["repository:demo/app:pull,push", "repository:secret/app:pull"], ADMIN)
    resp = await _mount(auth_client, digest, bearer(wide))
    assert resp.status == 201, await resp.text()
    assert resp.headers["Docker-Content-Digest"] == digest
    assert (await auth_client.head(f"/v2/demo/app/blobs/{digest}", headers=bearer(wide))).status == 200


async def test_mount_with_read_access_by_membership_mounts(auth_client: Client) -> None:
    await setup_roles(auth_client)
    digest = await _secret_blob(auth_client)
    await add_member(auth_client, "secret", "dev", ROLES["gu"])
    scopes = ["repository:demo/app:pull,push", "repository:secret/app:pull"]
    granted = await token(auth_client, scopes, basic("dev"))
    for headers in (bearer(granted), basic("dev")):
        resp = await _mount(auth_client, digest, headers)
        assert resp.status == 201, await resp.text()


async def test_anonymous_mount_is_challenged_for_every_scope(auth_client: Client) -> None:
    await setup_roles(auth_client)
    digest = await _secret_blob(auth_client)

    resp = await _mount(auth_client, digest, {})

    await assert_error(resp, 401, "UNAUTHORIZED")
    assert (
        'scope="repository:demo/app:pull,push repository:secret/app:pull"' in resp.headers["WWW-Authenticate"]
    )


# -- robot accounts ------------------------------------------------------------------


async def test_pull_robot_pulls_but_cannot_push(auth_client: Client) -> None:
    await setup_roles(auth_client)
    robot = await create_robot(auth_client, "demo", "puller", ["pull"])
    credentials = basic(robot["name"], robot["secret"])
    granted = await token(auth_client, ["repository:demo/app:pull,push"], credentials)

    assert robot["name"] == "robot$demo+puller"
    assert (await auth_client.get("/v2/demo/app/manifests/v1", headers=bearer(granted))).status == 200
    await assert_error(
        await auth_client.post("/v2/demo/app/blobs/uploads/", headers=bearer(granted)), 403, "DENIED"
    )


async def test_push_robot_pushes_only_into_its_own_project(auth_client: Client) -> None:
    await setup_roles(auth_client)
    await create_project(auth_client, "other")
    robot = await create_robot(auth_client, "demo", "pusher", ["push"])
    credentials = basic(robot["name"], robot["secret"])

    await push_image_as(auth_client, "demo/new", "v1", credentials)
    resp = await auth_client.post("/v2/other/app/blobs/uploads/", headers=credentials)

    await assert_error(resp, 403, "DENIED")


async def test_disabled_or_expired_robot_cannot_log_in(auth_client: Client) -> None:
    await setup_roles(auth_client)
    robot = await create_robot(auth_client, "demo", "ci", ["pull"])
    resp = await auth_client.put(f"/api/v2.0/robots/{robot['id']}", json={"disable": True}, headers=ADMIN)
    assert resp.status == 200

    disabled = await auth_client.get("/service/token", headers=basic(robot["name"], robot["secret"]))

    await assert_error(disabled, 401, "UNAUTHORIZED")


async def test_robot_with_a_duration_expires(auth_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    await setup_roles(auth_client)
    robot = await create_robot(auth_client, "demo", "ci", ["pull"], duration=1)
    assert robot["expires_at"] > time.time() + 86000
    later = time.time() + 2 * 86400
    monkeypatch.setattr(time, "time", lambda: later)

    resp = await auth_client.get("/service/token", headers=basic(robot["name"], robot["secret"]))

    await assert_error(resp, 401, "UNAUTHORIZED")


# -- brute force, first start, logs --------------------------------------------------


async def test_repeated_failures_lock_the_account_even_for_the_right_password(
    auth_start: Starter,
) -> None:
    client = await auth_start(auth={"max_failed_logins": 3, "lockout_seconds": 30})
    for _ in range(3):
        await assert_error(
            await client.get("/service/token", headers=basic("admin", "Wrong1234")), 401, "UNAUTHORIZED"
        )

    resp = await client.get("/service/token", headers=ADMIN)

    await assert_error(resp, 429, "TOOMANYREQUESTS")
    assert 0 < int(resp.headers["Retry-After"]) <= 30


async def test_first_start_generates_an_admin_password_file_readable_by_owner_only(
    aiohttp_client: AiohttpClient,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.delenv("REGD_ADMIN_PASSWORD", raising=False)
    caplog.set_level(logging.INFO)
    client = await aiohttp_client(create_app(auth_config(data_dir)))

    path = data_dir / "auth" / "admin.password"
    password = path.read_text().strip()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(data_dir / "auth" / "token.key").st_mode) == 0o600
    assert str(path) in caplog.text
    assert password not in caplog.text
    assert (await client.get("/v2/", headers=basic("admin", password))).status == 200
    library = await client.get("/api/v2.0/projects/library", headers={"X-Is-Resource-Name": "true"})
    assert orjson.loads(await library.read())["metadata"]["public"] == "true"


async def test_admin_password_from_the_environment_must_follow_the_rule(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGD_ADMIN_PASSWORD", "short")
    os.makedirs(data_dir)
    app = create_app(auth_config(data_dir))
    services = app[SERVICES]
    await services.db.open()
    try:
        with pytest.raises(ConfigError, match="REGD_ADMIN_PASSWORD"):
            await services.accounts.start()
    finally:
        await services.db.close()


async def test_no_password_secret_or_token_reaches_the_log(
    auth_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await create_user(auth_client, "alice")
    robot = await create_robot(auth_client, "library", "ci", ["pull"])
    granted = await token(auth_client, ["repository:library/app:pull"], basic("alice"))
    await auth_client.get("/service/token", headers=basic("alice", "Wrong9999"))
    await auth_client.get("/v2/library/app/tags/list", headers=bearer(granted + "x"))

    for secret in (PASSWORD, "Wrong9999", ADMIN_PASSWORD, robot["secret"], granted):
        assert secret not in caplog.text


async def test_auth_disabled_allows_everything(aiohttp_client: AiohttpClient, data_dir: Path) -> None:
    client = await aiohttp_client(create_app(make_config(data_dir)))

    assert (await client.get("/v2/")).status == 200
    await push_image_as(client, "anything/app", "v1", {})
    assert (await client.get("/api/v2.0/users")).status == 200
    assert (await client.post("/api/v2.0/projects", json={"project_name": "p"})).status == 201


async def test_refusal_messages_are_never_the_codes_default_text(auth_client: Client) -> None:
    """docker reads a default-text error as a bare code: it retries a push five times
    and prints a pull refusal as just "denied"."""
    await setup_roles(auth_client)
    guest = await token(auth_client, ["repository:demo/app:pull,push"], basic("gu"))

    anonymous = await assert_error(await auth_client.post("/v2/demo/app/blobs/uploads/"), 401, "UNAUTHORIZED")
    denied = await assert_error(
        await auth_client.post("/v2/demo/app/blobs/uploads/", headers=bearer(guest)), 403, "DENIED"
    )
    base = await assert_error(await auth_client.get("/v2/"), 401, "UNAUTHORIZED")

    assert anonymous["errors"][0]["message"] == "unauthorized to access repository: demo/app, action: push"
    assert (
        denied["errors"][0]["message"] == "requested access to the resource is denied: demo/app, action: push"
    )
    assert base["errors"][0]["message"] != ErrorCode.UNAUTHORIZED.default_message


async def test_auth_disabled_creates_no_key_and_no_admin(
    aiohttp_client: AiohttpClient, data_dir: Path
) -> None:
    client = await aiohttp_client(create_app(make_config(data_dir)))

    assert (await client.get("/service/token")).status == 404
    assert not (data_dir / "auth").exists()


async def test_access_log_names_the_account_never_its_secret(
    aiohttp_client: AiohttpClient,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("REGD_ADMIN_PASSWORD", ADMIN_PASSWORD)
    server = TestServer(create_app(auth_config(data_dir)))
    await server.start_server(**observe.runner_options())  # as `regd serve` logs requests
    client = await aiohttp_client(server)
    caplog.set_level(logging.INFO, logger="regd.access")
    await create_user(client, "alice")
    granted = await token(client, ["repository:library/app:pull"], basic("alice"))
    await client.get("/api/v2.0/users/current", headers=basic("alice"))
    await client.get("/v2/library/app/tags/list", headers=bearer(granted))

    users: list[str] = []
    deadline = time.monotonic() + 10  # aiohttp logs a request after its last byte is written
    while len(users) < 4:
        assert time.monotonic() < deadline, f"only {len(users)} access records: {users}"
        await asyncio.sleep(0.005)
        users = [getattr(r, "fields", {}).get("user") for r in caplog.records if r.name == "regd.access"]

    assert users == ["admin", "alice", "alice", "alice"]
    assert PASSWORD not in caplog.text and granted not in caplog.text
