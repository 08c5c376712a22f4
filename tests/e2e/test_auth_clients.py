"""containerd's ``ctr`` (how a Kubernetes node pulls with an ``imagePullSecret``) and
skopeo (``--creds``) against regd with access control on: a robot account's credentials
pull a private image, and a push robot's push with ``ctr images push --user``; without
credentials, or with a pull-only robot pushing, they are refused. ctr asks the token
service with the OAuth2 POST form first."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from .accounts import DEVELOPER, PASSWORD, Api, start_secured
from .daemons import Dockerd, RegistryServer, ServerFactory, Target
from .images import CTR_PUSH, import_into_ctr, make_image
from .tools import run

pytestmark = pytest.mark.e2e

Ctr = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def secured(regd_server: ServerFactory, target: Target) -> RegistryServer:
    return start_secured(regd_server, target)


@pytest.fixture(scope="module")
def api(secured: RegistryServer) -> Api:
    api = Api(secured)
    api.project("private")
    api.user("dev")
    api.member("private", "dev", DEVELOPER)
    return api


@pytest.fixture(scope="module")
def private_image(dockerd: Dockerd, skopeo: str, secured: RegistryServer, api: Api) -> str:
    """private/app:v1, copied by skopeo from dockerd with the developer's credentials."""
    source = "regd-e2e/auth-source:v1"
    make_image(dockerd, source, layers=2)
    reference = f"{secured.host}/private/app:v1"
    run(
        [
            skopeo,
            "copy",
            "--src-daemon-host",
            dockerd.host,
            "--dest-tls-verify=false",
            "--dest-creds",
            f"dev:{PASSWORD}",
            f"docker-daemon:{source}",
            f"docker://{reference}",
        ]
    )
    return reference


@pytest.fixture
def ctr_namespace(ctr: str, dockerd: Dockerd) -> Ctr:
    namespace = f"regd-e2e-auth-{uuid.uuid4().hex[:8]}"

    def in_namespace(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [ctr, "--address", str(dockerd.containerd_socket), "--namespace", namespace, *args]
        return run(command, timeout=180, check=check)

    return in_namespace


def test_ctr_pulls_a_private_image_with_robot_credentials(
    api: Api, private_image: str, ctr_namespace: Ctr
) -> None:
    robot = api.robot("private", "k8s-puller", ["pull"])

    ctr_namespace(
        "images",
        "pull",
        "--plain-http",
        "--snapshotter",
        "native",
        "--user",
        f"{robot.name}:{robot.secret}",
        private_image,
    )

    assert private_image in ctr_namespace("images", "ls", "--quiet").stdout.split()


def test_ctr_pushes_with_robot_credentials_and_not_without(
    api: Api, secured: RegistryServer, dockerd: Dockerd, ctr_namespace: Ctr, tmp_path: Path
) -> None:
    robot = api.robot("private", "k8s-pusher", ["pull", "push"])
    image = "regd-e2e/ctr-auth-push:v1"
    make_image(dockerd, image, layers=2)
    destination = f"{secured.host}/private/ctr-pushed:v1"
    ctr_namespace("images", "tag", import_into_ctr(dockerd, ctr_namespace, image, tmp_path), destination)

    anonymous = ctr_namespace(*CTR_PUSH, destination, check=False)
    ctr_namespace(*CTR_PUSH, "--user", f"{robot.name}:{robot.secret}", destination)
    artifacts = api.ok("GET", "/projects/private/repositories/ctr-pushed/artifacts")

    assert anonymous.returncode != 0
    assert "401 Unauthorized" in anonymous.stderr, anonymous.stderr
    assert [a["tags"][0]["name"] for a in artifacts] == ["v1"]


def test_ctr_without_credentials_is_refused(private_image: str, ctr_namespace: Ctr) -> None:
    result = ctr_namespace("images", "pull", "--plain-http", private_image, check=False)

    assert result.returncode != 0
    assert "401 Unauthorized" in result.stderr, result.stderr


def test_ctr_with_a_wrong_secret_is_refused(api: Api, private_image: str, ctr_namespace: Ctr) -> None:
    robot = api.robot("private", "wrong", ["pull"])

    result = ctr_namespace(
        "images", "pull", "--plain-http", "--user", f"{robot.name}:Wrong12345", private_image, check=False
    )

    assert result.returncode != 0
    assert "401 Unauthorized" in result.stderr, result.stderr


def test_skopeo_inspects_with_robot_creds_and_is_refused_without(
    skopeo: str, api: Api, private_image: str
) -> None:
    robot = api.robot("private", "inspector", ["pull"])
    remote = f"docker://{private_image}"

    with_creds = run(
        [skopeo, "inspect", "--tls-verify=false", "--creds", f"{robot.name}:{robot.secret}", remote]
    )
    without = run([skopeo, "inspect", "--tls-verify=false", "--no-creds", remote], check=False)

    assert '"Digest": "sha256:' in with_creds.stdout
    assert without.returncode != 0
    assert "unauthorized to access repository: private/app, action: pull" in without.stderr, without.stderr


def test_skopeo_push_with_a_pull_only_robot_is_denied(
    skopeo: str, api: Api, secured: RegistryServer, private_image: str
) -> None:
    robot = api.robot("private", "readonly", ["pull"])
    creds = f"{robot.name}:{robot.secret}"

    result = run(
        [
            skopeo,
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--src-creds",
            creds,
            "--dest-creds",
            creds,
            f"docker://{private_image}",
            f"docker://{secured.host}/private/copy:v1",
        ],
        check=False,
    )

    assert result.returncode != 0
    assert "requested access to the resource is denied: private/copy, action: push" in result.stderr, (
        result.stderr
    )
