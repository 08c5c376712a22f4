"""``regd project create [--proxy]``, ``regd registry add|list``, ``regd user
add|passwd``, ``regd member add``, ``regd robot create``: run as the command line runs
them, on a real data directory."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from regd.auth.passwords import verify_password, verify_secret
from tests.conftest import Run

ADMIN_PASSWORD = "Admin12345"  # what the regd fixture (conftest) sets


def rows(data_dir: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(data_dir / "regd.db") as db:
        return list(db.execute(sql, params))


def test_project_create_private_and_public(regd: Run, data_dir: Path) -> None:
    assert regd("project", "create", "demo")[0] == 0
    code, out, _ = regd("project", "create", "pub", "--public")

    assert code == 0 and out == "created public project pub\n"
    assert rows(data_dir, "SELECT name, public FROM projects ORDER BY name") == [
        ("demo", 0),
        ("library", 1),
        ("pub", 1),
    ]


def test_project_create_refuses_duplicates_and_bad_names(regd: Run) -> None:
    regd("project", "create", "demo")

    assert regd("project", "create", "demo")[1:] == ("", "regd: project demo already exists\n")
    code, _, err = regd("project", "create", "Bad_Name")
    assert code == 1 and "lower case" in err


def test_first_command_creates_admin_from_the_environment(regd: Run, data_dir: Path) -> None:
    regd("project", "create", "demo")

    ((hashed, sysadmin),) = rows(
        data_dir, "SELECT password_hash, sysadmin FROM users WHERE username = 'admin'"
    )
    assert sysadmin == 1
    assert verify_password(ADMIN_PASSWORD, str(hashed))


def test_user_add_prints_a_generated_password(regd: Run, data_dir: Path) -> None:
    code, out, _ = regd("user", "add", "alice")

    password = out.splitlines()[1].removeprefix("password: ")
    ((hashed,),) = rows(data_dir, "SELECT password_hash FROM users WHERE username = 'alice'")
    assert code == 0
    assert verify_password(password, str(hashed))


def test_user_add_reads_the_password_from_stdin_and_checks_the_rule(regd: Run, data_dir: Path) -> None:
    weak = regd("user", "add", "bob", "--password-stdin", stdin="weakpass\n")
    ok = regd("user", "add", "bob", "--password-stdin", "--admin", stdin="Passw0rd1\n")

    assert weak[0] == 1 and "uppercase" in weak[2]
    assert ok[:2] == (0, "created system administrator bob\n")
    ((hashed, sysadmin),) = rows(data_dir, "SELECT password_hash, sysadmin FROM users WHERE username = 'bob'")
    assert verify_password("Passw0rd1", str(hashed)) and sysadmin == 1


def test_user_passwd_resets_a_password(regd: Run, data_dir: Path) -> None:
    regd("user", "add", "alice")

    code, _, _ = regd("user", "passwd", "alice", "--password-stdin", stdin="Newpass12\n")
    missing = regd("user", "passwd", "ghost")

    ((hashed,),) = rows(data_dir, "SELECT password_hash FROM users WHERE username = 'alice'")
    assert code == 0 and verify_password("Newpass12", str(hashed))
    assert missing[0] == 1 and "ghost not found" in missing[2]


@pytest.mark.parametrize(
    ("role", "stored"), [("developer", 2), ("maintainer", 4), ("3", 3), ("limitedGuest", 5)]
)
def test_member_add_takes_role_names_and_ids(regd: Run, data_dir: Path, role: str, stored: int) -> None:
    regd("project", "create", "demo")
    regd("user", "add", "alice")

    code, out, _ = regd("member", "add", "demo", "alice", role)

    assert code == 0 and out.startswith("added alice to demo as ")
    query = "SELECT role FROM project_members m JOIN users u ON u.id = m.user_id WHERE u.username = 'alice'"
    assert rows(data_dir, query) == [(stored,)]


def test_member_add_refusals(regd: Run) -> None:
    regd("project", "create", "demo")
    regd("user", "add", "alice")

    assert "unknown role" in regd("member", "add", "demo", "alice", "owner")[2]
    assert "project nope not found" in regd("member", "add", "nope", "alice", "guest")[2]
    assert "user ghost not found" in regd("member", "add", "demo", "ghost", "guest")[2]
    regd("member", "add", "demo", "alice", "guest")
    assert "already a member" in regd("member", "add", "demo", "alice", "guest")[2]


def test_robot_create_prints_name_and_secret(regd: Run, data_dir: Path) -> None:
    regd("project", "create", "demo")

    code, out, _ = regd("robot", "create", "demo", "ci", "--push", "--days", "30")

    name, secret, expires = (line.split(": ", 1)[1] for line in out.splitlines())
    ((hashed, actions, expires_at),) = rows(data_dir, "SELECT secret_hash, actions, expires_at FROM robots")
    assert code == 0
    assert name == "robot$demo+ci"
    assert verify_secret(secret, str(hashed))
    assert actions == "pull,push"
    assert expires.endswith("Z") and int(str(expires_at)) > 0


def test_robot_create_defaults_to_pull_and_never_expires(regd: Run, data_dir: Path) -> None:
    regd("project", "create", "demo")

    out = regd("robot", "create", "demo", "puller")[1]

    assert "expires: never" in out
    assert rows(data_dir, "SELECT actions, expires_at FROM robots") == [("pull", -1)]
    assert "already exists" in regd("robot", "create", "demo", "puller")[2]


def test_cli_adds_a_registry_and_creates_a_proxy_project_of_it(regd: Run, data_dir: Path) -> None:
    code, out, err = regd(
        "registry", "add", "hub", "--type", "docker-hub", "--url", "https://hub.docker.com",
        "--username", "me", "--password-stdin", stdin="s3cret\n",
    )  # fmt: skip
    assert code == 0, err
    assert out == "added registry hub (id 1): docker-hub https://hub.docker.com\n"
    code, out, _ = regd("project", "create", "dockerhub", "--public", "--proxy", "hub")
    assert code == 0
    assert out == "created public proxy-cache project of hub (https://hub.docker.com) dockerhub\n"
    code, out, _ = regd("registry", "list")
    assert out == "1\thub\tdocker-hub\thttps://hub.docker.com\tme\tunknown\n"
    with sqlite3.connect(data_dir / "regd.db") as db:
        assert list(db.execute("SELECT registry_id FROM projects WHERE name = 'dockerhub'")) == [(1,)]
        assert list(db.execute("SELECT access_secret FROM registries")) == [("s3cret",)]
    assert (data_dir / "regd.db").stat().st_mode & 0o077 == 0
    code, _, err = regd("project", "create", "other", "--proxy", "nope")
    assert code == 1 and "registry nope not found" in err
    code, _, err = regd("registry", "add", "hub", "--url", "https://x.example")
    assert code == 1 and "already exists" in err
