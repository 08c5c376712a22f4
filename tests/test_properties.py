"""Property-based tests (Hypothesis) for what hostile or broken clients send: manifests,
names and references, ``Content-Range`` and ``Range``, token scopes, and the upload
state machine driven over HTTP against a model of what it must do.

Every parser either accepts its input or refuses it with its own error code: no other
exception, whatever the bytes."""

from __future__ import annotations

import asyncio
import hashlib
import string
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, initialize, invariant, rule

from regd.api.http import byte_range, content_range
from regd.app import create_app
from regd.auth.scopes import KNOWN_ACTIONS, MAX_SCOPES, RESOURCE_TYPES, parse_scopes
from regd.digest import Digest
from regd.errors import ErrorCode, RegistryError
from regd.manifests import parse
from regd.names import MAX_NAME_LENGTH, is_valid_name, is_valid_tag
from tests.conftest import make_config

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- manifests ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
digests = st.binary(max_size=8).map(_sha256)
descriptors = st.fixed_dictionaries(
    {"mediaType": st.sampled_from(["application/vnd.oci.image.layer.v1.tar", "x/y"]), "digest": digests,
     "size": st.integers(0, 2**40)},
    optional={"annotations": st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
              "artifactType": st.text(max_size=10)},
)
image_manifests = st.fixed_dictionaries(
    {"schemaVersion": st.just(2), "mediaType": st.just(OCI_MANIFEST), "config": descriptors,
     "layers": st.lists(descriptors, max_size=5)},
    optional={"annotations": st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
              "subject": descriptors, "artifactType": st.text(min_size=1, max_size=10)},
)
indexes = st.fixed_dictionaries(
    {"schemaVersion": st.just(2), "mediaType": st.just(OCI_INDEX),
     "manifests": st.lists(descriptors, max_size=5)}
)


def _parses_or_refuses(data: bytes, content_type: str | None) -> Any:
    try:
        return parse(data, content_type)
    except RegistryError as e:
        assert e.code is ErrorCode.MANIFEST_INVALID, e
        return None


@SETTINGS
@given(st.one_of(st.binary(max_size=300), json_values.map(orjson.dumps)),
       st.sampled_from([None, OCI_MANIFEST, OCI_INDEX, "application/json", "text/plain", ""]))
def test_any_bytes_parse_as_a_manifest_or_are_refused_as_manifest_invalid(
    data: bytes, content_type: str | None
) -> None:
    _parses_or_refuses(data, content_type)


@SETTINGS
@given(st.one_of(image_manifests, indexes))
def test_a_valid_manifest_parses_to_exactly_what_it_references(body: dict[str, Any]) -> None:
    data = orjson.dumps(body)

    manifest = parse(data, None)

    assert str(manifest.digest) == _sha256(data) and manifest.size == len(data)
    if body["mediaType"] == OCI_INDEX:
        assert [str(c.digest) for c in manifest.children] == [d["digest"] for d in body["manifests"]]
        assert manifest.blobs == []
    else:
        wanted = [body["config"], *body["layers"]]
        assert [(str(b.digest), b.size) for b in manifest.blobs] == [(d["digest"], d["size"]) for d in wanted]
        assert (manifest.subject is None) == ("subject" not in body)


@SETTINGS
@given(image_manifests, st.sampled_from(["config", "layers", "schemaVersion", "mediaType", "subject"]),
       json_values)
def test_a_manifest_with_one_field_replaced_by_junk_parses_or_is_manifest_invalid(
    body: dict[str, Any], key: str, junk: Any
) -> None:
    body[key] = junk
    manifest = _parses_or_refuses(orjson.dumps(body), None)
    if manifest is not None and key in ("config", "layers"):
        assert all(b.size >= 0 for b in manifest.blobs)


# -- names, tags, digests ---------------------------------------------------------------

components = st.from_regex(r"\A[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*\Z")
valid_names = st.lists(components, min_size=1, max_size=5).map("/".join).filter(lambda n: len(n) <= 255)


@SETTINGS
@given(valid_names)
def test_every_name_of_the_grammar_is_accepted(name: str) -> None:
    assert is_valid_name(name)


@SETTINGS
@given(st.text(max_size=300))
def test_an_accepted_name_can_never_leave_its_place(name: str) -> None:
    if is_valid_name(name):
        assert len(name) <= MAX_NAME_LENGTH
        assert ".." not in name.split("/") and not name.startswith("/") and not name.endswith("/")
        assert "//" not in name and name == name.lower() and name.isascii()
        assert all(c in string.ascii_lowercase + string.digits + "._-/" for c in name)


@SETTINGS
@given(st.text(max_size=200))
def test_an_accepted_tag_is_at_most_128_safe_characters(tag: str) -> None:
    if is_valid_tag(tag):
        assert 1 <= len(tag) <= 128 and tag[0] not in ".-" and tag.isascii()
        assert all(c in string.ascii_letters + string.digits + "._-" for c in tag)


@SETTINGS
@given(st.text(max_size=200))
def test_a_digest_parses_to_fixed_length_hex_or_is_digest_invalid(text: str) -> None:
    try:
        digest = Digest.parse(text)
    except RegistryError as e:
        assert e.code is ErrorCode.DIGEST_INVALID
        return
    assert digest.algorithm in ("sha256", "sha512")
    assert len(digest.hex) in (64, 128) and all(c in "0123456789abcdef" for c in digest.hex)
    assert str(digest) == text


@SETTINGS
@given(st.binary(max_size=64), st.sampled_from(["sha256", "sha512"]))
def test_a_digest_of_content_round_trips(data: bytes, algorithm: str) -> None:
    digest = Digest.of(data, algorithm)
    assert Digest.parse(str(digest)) == digest


# -- Content-Range and Range ---------------------------------------------------------------


def _headers(**headers: str) -> Any:
    return make_mocked_request("PATCH", "/", headers=headers)


@SETTINGS
@given(st.text(max_size=60))
def test_any_content_range_is_a_pair_or_range_invalid(value: str) -> None:
    assume("\r" not in value and "\n" not in value)
    try:
        parsed = content_range(_headers(**{"Content-Range": value}))
    except RegistryError as e:
        assert e.code is ErrorCode.RANGE_INVALID and e.status == 416
        return
    assert parsed is not None
    start, end = parsed
    assert 0 <= start and 0 <= end


@SETTINGS
@given(st.integers(0, 10**18), st.integers(0, 10**18), st.sampled_from(["", "bytes ", "bytes="]))
def test_a_well_formed_content_range_reads_back_its_numbers(start: int, end: int, prefix: str) -> None:
    assert content_range(_headers(**{"Content-Range": f"{prefix}{start}-{end}"})) == (start, end)


@SETTINGS
@given(st.one_of(st.none(), st.text(max_size=40),
                 st.builds(lambda a, b: f"bytes={a}-{b}", st.integers(0, 300) | st.just(""),
                           st.integers(0, 300) | st.just(""))),
       st.integers(0, 200))
def test_a_range_is_inside_the_blob_ignored_or_416(header: str | None, size: int) -> None:
    try:
        parsed = byte_range(header, size)
    except RegistryError as e:
        assert e.status == 416 and e.headers["Content-Range"] == f"bytes */{size}"
        return
    if parsed is not None:
        start, end = parsed
        assert 0 <= start <= end < size


# -- token scopes ----------------------------------------------------------------------

scope_parts = st.text(alphabet=string.ascii_letters + string.digits + ":/,*()_.-", max_size=30)


def _model_scopes(values: list[str]) -> dict[tuple[str, str], set[str]]:
    merged: dict[tuple[str, str], set[str]] = {}
    for value in values:
        for scope in value.split():
            kind, _, rest = scope.partition(":")
            name, sep, actions = rest.rpartition(":")
            if not kind or not name or not sep or ":" not in scope:
                continue
            kind = kind.split("(", 1)[0]
            if kind in RESOURCE_TYPES:
                merged.setdefault((kind, name), set()).update(a for a in actions.split(",") if a)
    return merged


@SETTINGS
@given(st.lists(st.lists(scope_parts, max_size=4).map(" ".join), max_size=6))
def test_scopes_merge_per_resource_keep_only_known_actions_or_refuse_a_flood(values: list[str]) -> None:
    count = sum(len(v.split()) for v in values)
    try:
        accesses = parse_scopes(values)
    except RegistryError as e:
        assert count > MAX_SCOPES and e.code is ErrorCode.BAD_REQUEST
        return
    assert count <= MAX_SCOPES
    keys = [(a.type, a.name) for a in accesses]
    assert len(keys) == len(set(keys))
    model = _model_scopes(values)
    assert set(keys) == set(model)
    for access in accesses:
        assert access.type in RESOURCE_TYPES
        wanted = [a for a in KNOWN_ACTIONS if a in model[(access.type, access.name)]]
        assert list(access.actions) == wanted


def test_a_scope_flood_is_refused_with_400() -> None:
    with pytest.raises(RegistryError) as refused:
        parse_scopes(["repository:a/b:pull"] * (MAX_SCOPES + 1))
    assert refused.value.status == 400


# -- the upload state machine, over HTTP, against a model --------------------------------


class UploadMachine(RuleBasedStateMachine):
    """Sessions opened, written in chunks (in order or not), streamed, checked, committed
    with the right or a wrong digest, cancelled: every answer is what the model says."""

    sessions = Bundle("sessions")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.model: dict[str, bytes] = {}  # location -> bytes the session holds
        self.gone: set[str] = set()
        self.stored: dict[str, bytes] = {}

    @initialize()
    def open_app(self) -> None:
        import tempfile

        self.tmp = tempfile.TemporaryDirectory()
        app = create_app(make_config(Path(self.tmp.name) / "data"))
        self.client: TestClient[Any, Any] = TestClient(TestServer(app), loop=self.loop)
        self.loop.run_until_complete(self.client.start_server())

    def teardown(self) -> None:
        if hasattr(self, "client"):
            self.loop.run_until_complete(self.client.close())
            self.tmp.cleanup()
        self.loop.close()

    def _call(self, method: str, url: str, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
        async def go() -> tuple[int, dict[str, str], bytes]:
            resp = await self.client.request(method, url, **kwargs)
            return resp.status, dict(resp.headers), await resp.read()

        return self.loop.run_until_complete(go())

    def _code(self, body: bytes) -> str:
        return str(orjson.loads(body)["errors"][0]["code"])

    @rule(target=sessions)
    def start(self) -> str:
        status, headers, body = self._call("POST", "/v2/library/prop/blobs/uploads/")
        assert status == 202, body
        assert headers["Range"] == "0-0"
        self.model[headers["Location"]] = b""
        return headers["Location"]

    @rule(location=sessions, data=st.binary(min_size=1, max_size=3000), offset=st.integers(-2, 2))
    def patch_chunk(self, location: str, data: bytes, offset: int) -> None:
        held = self.model.get(location)
        start = (len(held) if held is not None else 0) + offset
        assume(start >= 0)
        end = start + len(data) - 1
        status, headers, body = self._call("PATCH", location, data=data,
                                           headers={"Content-Range": f"{start}-{end}"})
        if held is None:
            assert status == 404 and self._code(body) == "BLOB_UPLOAD_UNKNOWN"
        elif offset != 0:
            assert status == 416 and self._code(body) == "RANGE_INVALID"
            assert headers["Range"] == (f"0-{len(held) - 1}" if held else "0-0")
        else:
            assert status == 202, body
            self.model[location] = held + data
            assert headers["Range"] == f"0-{len(held) + len(data) - 1}"

    @rule(location=sessions, data=st.binary(min_size=1, max_size=3000))
    def patch_stream(self, location: str, data: bytes) -> None:
        held = self.model.get(location)
        status, _, body = self._call("PATCH", location, data=data)
        if held is None:
            assert status == 404
        else:
            assert status == 202, body
            self.model[location] = held + data

    @rule(location=sessions)
    def status(self, location: str) -> None:
        held = self.model.get(location)
        status, headers, _ = self._call("GET", location)
        if held is None:
            assert status == 404
        else:
            assert status == 204 and headers["Range"] == (f"0-{len(held) - 1}" if held else "0-0")

    @rule(location=consumes(sessions), right=st.booleans())
    def commit(self, location: str, right: bool) -> None:
        held = self.model.pop(location, None)
        digest = _sha256(held or b"") if right else _sha256(b"something else entirely")
        status, _, body = self._call("PUT", location, params={"digest": digest})
        if held is None:
            assert status == 404
            return
        if right or held == b"something else entirely":
            assert status == 201, body
            self.stored[digest] = held
        else:
            assert status == 400 and self._code(body) == "DIGEST_INVALID"
        self.gone.add(location)

    @rule(location=consumes(sessions))
    def cancel(self, location: str) -> None:
        held = self.model.pop(location, None)
        status, _, _ = self._call("DELETE", location)
        assert status == (404 if held is None else 204)
        self.gone.add(location)

    @invariant()
    def finished_sessions_are_unknown_and_stored_blobs_intact(self) -> None:
        if not hasattr(self, "client"):
            return
        for location in list(self.gone)[-2:]:
            status, _, body = self._call("GET", location)
            assert status == 404 and self._code(body) == "BLOB_UPLOAD_UNKNOWN"
        for digest, data in list(self.stored.items())[-2:]:
            status, _, body = self._call("GET", f"/v2/library/prop/blobs/{digest}")
            assert status == 200 and body == data


TestUploadStateMachine = UploadMachine.TestCase
TestUploadStateMachine.settings = settings(
    max_examples=25, stateful_step_count=20, deadline=None, suppress_health_check=list(HealthCheck)
)
