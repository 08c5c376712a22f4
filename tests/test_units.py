"""Pure unit tests: digests, names, the upload state table, configuration, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from regd.config import ConfigError, load_config
from regd.digest import Digest
from regd.errors import ErrorCode, RegistryError
from regd.names import is_valid_name
from regd.storage.layout import Layout
from regd.uploads.state import (
    TERMINAL,
    TRANSITIONS,
    IllegalTransitionError,
    UploadEvent,
    UploadState,
    diagram,
    next_state,
)


def test_digest_parse_accepts_sha256_and_sha512() -> None:
    assert str(Digest.parse("sha256:" + "a" * 64)) == "sha256:" + "a" * 64
    assert Digest.parse("sha512:" + "0" * 128).algorithm == "sha512"


@pytest.mark.parametrize(
    "text",
    [
        "sha256:" + "A" * 64,
        "sha256:abc",
        "sha256:" + "a" * 65,
        "md5:" + "a" * 32,
        "sha256:../../" + "a" * 58,
        "sha256",
        ":abc",
        "sha256:" + "a" * 63 + "/",
    ],
)
def test_digest_parse_refuses_malformed(text: str) -> None:
    with pytest.raises(RegistryError) as info:
        Digest.parse(text)
    assert info.value.code is ErrorCode.DIGEST_INVALID


def test_layout_paths_stay_inside_the_data_directory(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    path = layout.blob(Digest.parse("sha256:" + "ab" * 32))
    assert path == tmp_path / "blobs" / "sha256" / "ab" / ("ab" * 32)
    with pytest.raises(ValueError):
        layout.upload_dir("../../etc")
    assert layout.digest_of_blob_path(path) == Digest.parse("sha256:" + "ab" * 32)
    assert layout.digest_of_blob_path(tmp_path / "blobs" / "sha256" / "zz" / ("ab" * 32)) is None


@pytest.mark.parametrize(
    "name,ok",
    [
        ("library/ubuntu", True),
        ("a/b/c", True),
        ("a.b_c__d-e/f", True),
        ("a--b/c", True),
        ("A/b", False),
        ("a/", False),
        ("/a", False),
        ("a//b", False),
        ("a/../b", False),
        ("a" * 256, False),
        ("a_/b", False),
    ],
)
def test_repository_name_grammar(name: str, ok: bool) -> None:
    assert is_valid_name(name) is ok


def test_every_upload_event_has_one_target_state() -> None:
    for event in UploadEvent:
        targets = {target for (_, ev), target in TRANSITIONS.items() if ev is event}
        assert len(targets) == 1, event


def test_terminal_states_have_no_way_out() -> None:
    for state in TERMINAL:
        for event in UploadEvent:
            with pytest.raises(IllegalTransitionError):
                next_state(state, event)


def test_illegal_transition_raises_clearly() -> None:
    with pytest.raises(IllegalTransitionError, match="upload in state committing cannot begin_write"):
        next_state(UploadState.COMMITTING, UploadEvent.BEGIN_WRITE)
    assert next_state(UploadState.ACTIVE, UploadEvent.BEGIN_WRITE) is UploadState.RECEIVING


def test_every_error_code_has_a_client_or_server_status() -> None:
    for code in ErrorCode:
        assert 400 <= code.status <= 599
    assert ErrorCode.RANGE_INVALID.status == 416
    assert ErrorCode.BLOB_UPLOAD_UNKNOWN.status == 404
    assert RegistryError(ErrorCode.SIZE_INVALID).envelope() == {
        "errors": [{"code": "SIZE_INVALID", "message": "provided length did not match content length"}]
    }


def test_config_defaults_serve_with_no_file() -> None:
    config = load_config(None, environ={})
    assert config.server.listen == "127.0.0.1:5000"
    assert config.storage.data_dir == "./regd-data"
    assert config.server.workers == "auto"  # one worker per CPU (tests/test_cpus.py)
    assert config.server.blob_send == "auto"  # mapped to loopback peers (tests/test_zero_copy.py)


def test_config_precedence_file_env_flags(tmp_path: Path) -> None:
    path = tmp_path / "regd.toml"
    path.write_text('[server]\nlisten = "127.0.0.1:6000"\nworkers = 2\n[gc]\ngrace_period = 60\n')
    config = load_config(path, environ={"REGD_SERVER_LISTEN": "127.0.0.1:7000", "REGD_GC_GRACE_PERIOD": "5"})
    assert config.server.listen == "127.0.0.1:7000"
    assert config.server.workers == 2
    assert config.gc.grace_period == 5.0
    config = load_config(
        path,
        environ={"REGD_SERVER_LISTEN": "127.0.0.1:7000"},
        overrides={"server": {"listen": "127.0.0.1:8000"}},
    )
    assert config.server.listen == "127.0.0.1:8000"


@pytest.mark.parametrize(
    "text,message",
    [
        ("[server]\nlisten = 5000\n", "[server] listen: expected str"),
        ("[server]\nlistn = 'x:1'\n", "unknown key 'listn' in [server]"),
        ("[nosuch]\na = 1\n", "unknown section [nosuch]"),
        ("[storage]\nfsync = 'yes'\n", "[storage] fsync: expected bool"),
        ("[server]\nworkers = 1.5\n", "[server] workers: expected int or 'auto'"),
        ("[server]\nworkers = 'all'\n", "[server] workers: expected int or 'auto'"),
        ("[server]\nworkers = 0\n", "[server] workers: must be at least 1"),
        ("[server]\nblob_send = 'splice'\n", "[server] blob_send: expected 'auto', 'sendfile' or 'mapped'"),
        ("[server\n", "invalid TOML"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "regd.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(path, environ={})


def test_config_env_of_wrong_type_is_refused() -> None:
    assert load_config(None, environ={"REGD_SERVER_WORKERS": "auto"}).server.workers == "auto"
    assert load_config(None, environ={"REGD_SERVER_WORKERS": "3"}).server.workers == 3
    with pytest.raises(ConfigError, match="environment: \\[server\\] workers: expected int or 'auto'"):
        load_config(None, environ={"REGD_SERVER_WORKERS": "many"})
    with pytest.raises(ConfigError, match="unknown key 'nope'"):
        load_config(None, environ={"REGD_SERVER_NOPE": "1"})


def test_readme_draws_the_upload_table_as_it_is() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert diagram() in readme


def test_out_of_space_is_recognised_in_os_errors_sqlite_errors_and_their_causes() -> None:
    import errno
    import sqlite3

    from regd.errors import ErrorCode, is_out_of_space

    full = sqlite3.connect(":memory:")
    try:
        full.execute("PRAGMA max_page_count = 2")
        full.execute("CREATE TABLE t (x BLOB)")
        with pytest.raises(sqlite3.OperationalError) as caught:
            full.execute("INSERT INTO t VALUES (zeroblob(100000))")
    finally:
        full.close()
    assert is_out_of_space(caught.value)  # SQLITE_FULL, as SQLite itself raised it
    assert is_out_of_space(OSError(errno.ENOSPC, "No space left on device"))
    assert is_out_of_space(OSError(errno.EDQUOT, "Disk quota exceeded"))
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("bookkeeping failed after the write") from None
    except RuntimeError as wrapped:
        assert not is_out_of_space(wrapped)  # "from None" hides the cause on purpose
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as e:
            raise RuntimeError("bookkeeping failed after the write") from e
    except RuntimeError as wrapped:
        assert is_out_of_space(wrapped)
    assert not is_out_of_space(OSError(errno.EIO, "I/O error"))
    assert not is_out_of_space(sqlite3.OperationalError("database is locked"))
    assert ErrorCode.INSUFFICIENT_STORAGE.status == 507
