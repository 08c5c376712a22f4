"""Access control for the e2e tests: a regd with auth on (its default), and the
management API driven over HTTP with Basic credentials, as an administrator's script
would."""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from tests.prerequisites import regd_only

from .daemons import RegistryServer, ServerFactory, Target

ADMIN_PASSWORD = "E2eAdmin123"
PASSWORD = "E2ePassw0rd"
# Roles by Harbor id: 1 project admin, 2 developer, 3 guest, 4 maintainer, 5 limited guest.
DEVELOPER = 2
GUEST = 3


@dataclass(frozen=True)
class Robot:
    name: str
    secret: str


class Api:
    """``/api/v2.0`` of one server, as ``admin``."""

    def __init__(self, server: RegistryServer) -> None:
        self.base = f"{server.url}/api/v2.0"
        self.auth = "Basic " + base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.base}{path}", data=data, method=method)
        request.add_header("Authorization", self.auth)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            raw, status = error.read(), error.code
        return status, json.loads(raw) if raw.strip().startswith((b"{", b"[")) else raw

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = self.call(method, path, body)
        assert status in (200, 201), f"{method} {path}: {status} {answer!r}"
        return answer

    def user(self, name: str) -> None:
        self.ok("POST", "/users", {"username": name, "password": PASSWORD})

    def project(self, name: str, public: bool = False) -> None:
        self.ok("POST", "/projects", {"project_name": name, "metadata": {"public": str(public).lower()}})

    def member(self, project: str, user: str, role: int) -> None:
        self.ok("POST", f"/projects/{project}/members", {"role_id": role, "member_user": {"username": user}})

    def wait_for_pull_count(self, project: str, repository: str, at_least: int, timeout: float = 30) -> int:
        """The repository's ``pull_count`` once it reaches ``at_least`` (regd writes pulls
        in batches), or as it stands after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            count = int(self.ok("GET", f"/projects/{project}/repositories/{repository}")["pull_count"])
            if count >= at_least or time.monotonic() > deadline:
                return count
            time.sleep(0.1)

    def robot(self, project: str, name: str, actions: list[str]) -> Robot:
        access = [{"resource": "repository", "action": a} for a in actions]
        body = {
            "name": name,
            "level": "project",
            "duration": -1,
            "permissions": [{"kind": "project", "namespace": project, "access": access}],
        }
        created = self.ok("POST", "/robots", body)
        return Robot(created["name"], created["secret"])


def assert_refused(result: subprocess.CompletedProcess[str]) -> None:
    """A client's command failed because the registry wanted credentials it lacked."""
    __tracebackhide__ = True
    error = result.stderr.lower()
    assert result.returncode != 0, result.stdout
    assert "unauthorized" in error or "authentication required" in error, result.stderr


def start_secured(
    regd_server: ServerFactory, target: Target, env: dict[str, str] | None = None
) -> RegistryServer:
    if target is not Target.REGD:
        regd_only("regd's own access control (projects, users, robots)")
    return regd_server(
        env={"REGD_AUTH_ENABLED": "true", "REGD_ADMIN_PASSWORD": ADMIN_PASSWORD, **(env or {})}
    )
