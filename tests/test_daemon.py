"""SIGHUP: which settings a reload applies, and a reload seen from outside."""

from __future__ import annotations

import signal
import urllib.request
from pathlib import Path

import orjson

from regd.daemon import merge_reloadable
from tests.conftest import make_config
from tests.regd_process import RegdProcess


def test_reload_applies_run_time_settings_and_defers_the_rest(tmp_path: Path) -> None:
    old = make_config(tmp_path / "a", server={"log_level": "info", "tls_cert": "a.crt", "tls_key": "a.key"})
    new = make_config(
        tmp_path / "b",
        server={"log_level": "debug", "tls_cert": "b.crt", "tls_key": "b.key", "listen": "0.0.0.0:6000"},
        uploads={"expire_after": 60.0},
    )

    merged, applied, deferred = merge_reloadable(old, new)

    assert merged.server.log_level == "debug"
    assert merged.server.tls_cert == "b.crt" and merged.server.tls_key == "b.key"
    assert merged.uploads.expire_after == 60.0
    assert merged.server.listen == old.server.listen  # needs a restart
    assert merged.data_dir == old.data_dir
    assert "[server] log_level" in applied and "[uploads] expire_after" in applied
    assert set(deferred) == {"[server] listen", "[storage] data_dir"}


def test_turning_tls_on_waits_for_a_restart(tmp_path: Path) -> None:
    old = make_config(tmp_path)
    new = make_config(tmp_path, server={"tls_cert": "c.crt", "tls_key": "c.key"})

    merged, applied, deferred = merge_reloadable(old, new)

    assert merged.server.tls_cert == "" and not applied
    assert set(deferred) == {"[server] tls_cert", "[server] tls_key"}


def test_sighup_switches_the_log_format_of_a_running_regd(tmp_path: Path) -> None:
    regd = RegdProcess(tmp_path, {"server": {"log_format": "text"}})
    try:
        regd.start()
        regd.write_config({"server": {"log_format": "json", "listen": "127.0.0.1:1"}})
        regd.notify.messages.clear()
        regd.send(signal.SIGHUP)
        regd.notify.wait_for("READY=1", 10)

        with urllib.request.urlopen(f"http://127.0.0.1:{regd.port}/v2/", timeout=5) as resp:
            assert resp.status == 200
        assert regd.stop() == 0
    finally:
        regd.close()

    log = regd.log()
    assert "changed but applied only at the next start: [server] listen" in log
    json_lines = [orjson.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert [line["path"] for line in json_lines if line["logger"] == "regd.access"] == ["/v2/"]
