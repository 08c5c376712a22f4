"""``regd trust add|list|remove``: a project's trust anchors from the command line, on a
real data directory, and the daemon's pull check honouring what the command stored."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Run
from tests.trust_support import ca, ec_key, pem, public_pem


def test_trust_add_list_remove(regd: Run, tmp_path: Path) -> None:
    key_file = tmp_path / "cosign.pub"
    key_file.write_text(public_pem(ec_key()))
    root = ca("Release Root")
    assert regd("project", "create", "demo")[0] == 0

    code, out, err = regd("trust", "add", "demo", "release", str(key_file), "--kind", "cosign-key")
    assert (code, err) == (0, "")
    assert out == "added cosign-key trust anchor release to demo: ECDSA P-256 public key\n"
    code, out, _ = regd("trust", "add", "demo", "root", "-", "--kind", "x509-ca", stdin=pem(root.certificate))
    assert code == 0 and "CN=Release Root" in out

    code, out, _ = regd("trust", "list", "demo")
    lines = [line.split("\t") for line in out.splitlines()]
    assert code == 0 and [(line[0], line[1]) for line in lines] == [
        ("release", "cosign-key"),
        ("root", "x509-ca"),
    ]
    assert all(len(line[2]) == 64 for line in lines)

    assert regd("trust", "remove", "demo", "release") == (0, "removed trust anchor release from demo\n", "")
    assert [line.split("\t")[0] for line in regd("trust", "list", "demo")[1].splitlines()] == ["root"]


def test_trust_commands_refuse_bad_input(regd: Run, tmp_path: Path) -> None:
    regd("project", "create", "demo")
    key_file = tmp_path / "cosign.pub"
    key_file.write_text(public_pem(ec_key()))
    assert (
        regd("trust", "add", "nope", "k", str(key_file), "--kind", "cosign-key")[2]
        == "regd: project nope not found\n"
    )
    code, _, err = regd("trust", "add", "demo", "k", str(key_file), "--kind", "x509-ca")
    assert code == 1 and "x509-ca: pem is not a PEM certificate" in err
    code, _, err = regd("trust", "add", "demo", "k", str(tmp_path / "missing.pem"), "--kind", "cosign-key")
    assert code == 1 and "cannot read" in err
    assert regd("trust", "add", "demo", "k", str(key_file), "--kind", "cosign-key")[0] == 0
    code, _, err = regd("trust", "add", "demo", "k", str(key_file), "--kind", "cosign-key")
    assert code == 1 and "already has a trust anchor named k" in err
    code, _, err = regd("trust", "remove", "demo", "other")
    assert code == 1 and "trust anchor other not found in demo" in err
