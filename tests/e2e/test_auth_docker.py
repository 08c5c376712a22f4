"""docker login, push and pull against regd with access control on (Harbor's "Pulling
and Pushing Images in the Docker Client"): public and private projects, roles, a
project that does not exist, robot accounts, logout. Each refusal is checked by what
docker prints."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from .accounts import ADMIN_PASSWORD, DEVELOPER, GUEST, PASSWORD, Api, Robot, start_secured
from .daemons import Dockerd, RegistryServer, ServerFactory, Target
from .images import image_id, make_image, push, remove_local
from .tools import run

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def secured(regd_server: ServerFactory, target: Target) -> RegistryServer:
    return start_secured(regd_server, target)


@pytest.fixture(scope="module")
def api(secured: RegistryServer) -> Api:
    api = Api(secured)
    api.project("demo")  # private
    for user in ("dev", "guest", "outsider"):
        api.user(user)
    api.member("demo", "dev", DEVELOPER)
    api.member("demo", "guest", GUEST)
    return api


def login(
    dockerd: Dockerd, server: RegistryServer, user: str, password: str
) -> subprocess.CompletedProcess[str]:
    return run(
        [dockerd.cli, "login", "--username", user, "--password-stdin", server.host],
        env=dockerd.env,
        input=password.encode(),
        check=False,
        timeout=60,
    )


def logout(dockerd: Dockerd, server: RegistryServer) -> None:
    dockerd.docker("logout", server.host)


def attempt(dockerd: Dockerd, *args: str) -> subprocess.CompletedProcess[str]:
    """A docker command expected to fail, bounded so that an endless retry fails the test."""
    return dockerd.docker(*args, check=False, timeout=90)


@pytest.fixture
def logged_out(dockerd: Dockerd, secured: RegistryServer) -> Iterator[None]:
    logout(dockerd, secured)
    yield
    logout(dockerd, secured)


@pytest.fixture(scope="module")
def private_image(dockerd: Dockerd, secured: RegistryServer, api: Api) -> str:
    """demo/app:v1, pushed by the developer."""
    reference = f"{secured.host}/demo/app:v1"
    make_image(dockerd, reference, layers=2)
    assert login(dockerd, secured, "dev", PASSWORD).returncode == 0
    try:
        push(dockerd, reference)
    finally:
        logout(dockerd, secured)
    remove_local(dockerd, reference)
    return reference


def test_login_succeeds_for_a_valid_user_and_logout_works(
    dockerd: Dockerd, secured: RegistryServer, api: Api, logged_out: None
) -> None:
    result = login(dockerd, secured, "dev", PASSWORD)
    logged_out_result = dockerd.docker("logout", secured.host)

    assert result.returncode == 0, result.stderr
    assert "Login Succeeded" in result.stdout
    assert f"Removing login credentials for {secured.host}" in logged_out_result.stdout


def test_login_with_a_wrong_password_fails_clearly(
    dockerd: Dockerd, secured: RegistryServer, api: Api, logged_out: None
) -> None:
    result = login(dockerd, secured, "dev", "Wrong12345")

    assert result.returncode != 0
    assert "Login Succeeded" not in result.stdout
    assert "invalid username or password" in result.stderr


def test_admin_pushes_to_library_and_anyone_pulls_it(
    dockerd: Dockerd, secured: RegistryServer, api: Api, logged_out: None
) -> None:
    reference = f"{secured.host}/library/hello:v1"
    built = make_image(dockerd, reference, layers=2)
    assert login(dockerd, secured, "admin", ADMIN_PASSWORD).returncode == 0
    push(dockerd, reference)
    logout(dockerd, secured)
    remove_local(dockerd, reference)

    dockerd.docker("pull", reference)  # anonymous

    assert image_id(dockerd, reference) == built


def test_member_pulls_from_a_private_project(
    dockerd: Dockerd, secured: RegistryServer, private_image: str, logged_out: None
) -> None:
    assert login(dockerd, secured, "guest", PASSWORD).returncode == 0

    dockerd.docker("pull", private_image)

    remove_local(dockerd, private_image)


def test_anonymous_pull_of_a_private_image_is_refused(
    dockerd: Dockerd, secured: RegistryServer, private_image: str, logged_out: None
) -> None:
    result = attempt(dockerd, "pull", private_image)

    assert result.returncode != 0
    assert "unauthorized to access repository: demo/app, action: pull" in result.stderr, result.stderr


def test_non_member_pull_of_a_private_image_is_refused(
    dockerd: Dockerd, secured: RegistryServer, private_image: str, logged_out: None
) -> None:
    assert login(dockerd, secured, "outsider", PASSWORD).returncode == 0

    result = attempt(dockerd, "pull", private_image)

    assert result.returncode != 0
    assert "pull access denied for" in result.stderr, result.stderr
    assert "denied: requested access to the resource is denied: demo/app, action: pull" in result.stderr


def test_guest_push_is_refused(dockerd: Dockerd, secured: RegistryServer, api: Api, logged_out: None) -> None:
    reference = f"{secured.host}/demo/guest:v1"
    make_image(dockerd, reference, layers=1)
    assert login(dockerd, secured, "guest", PASSWORD).returncode == 0

    result = attempt(dockerd, "push", reference)

    assert result.returncode != 0
    assert "denied: requested access to the resource is denied: demo/guest, action: push" in result.stderr, (
        result.stderr
    )
    assert "Retrying" not in result.stdout


def test_push_to_a_missing_project_names_it_and_does_not_retry(
    dockerd: Dockerd, secured: RegistryServer, api: Api, logged_out: None
) -> None:
    reference = f"{secured.host}/nope/app:v1"
    make_image(dockerd, reference, layers=1)
    assert login(dockerd, secured, "dev", PASSWORD).returncode == 0

    result = attempt(dockerd, "push", reference)

    assert result.returncode != 0
    assert "project nope not found" in result.stderr, result.stderr
    assert "Retrying" not in result.stdout


def test_robot_account_logs_in_and_pulls(
    dockerd: Dockerd, secured: RegistryServer, api: Api, private_image: str, logged_out: None
) -> None:
    robot: Robot = api.robot("demo", "puller", ["pull"])
    result = login(dockerd, secured, robot.name, robot.secret)
    assert result.returncode == 0, result.stderr

    dockerd.docker("pull", private_image)

    remove_local(dockerd, private_image)


def test_layers_from_a_project_the_pusher_cannot_read_are_uploaded_and_a_reader_mounts_them(
    dockerd: Dockerd, secured: RegistryServer, api: Api, logged_out: None
) -> None:
    """docker offers to mount layers from the repository it pushed them to before, asking
    for a token that includes pull on it. For a user who may not read that one, regd
    answers with an upload session (issue 12 item 1) and docker uploads the layers; a user
    who may read it gets them mounted. (docker also uploads after a refused mount, so this
    guards the client's path; tests/test_auth_registry.py pins the answers themselves.)"""
    api.project("elsewhere")
    api.member("elsewhere", "outsider", DEVELOPER)
    api.member("elsewhere", "dev", DEVELOPER)
    first = f"{secured.host}/demo/layers:v1"
    make_image(dockerd, first, layers=2)
    assert login(dockerd, secured, "dev", PASSWORD).returncode == 0
    push(dockerd, first)
    logout(dockerd, secured)

    theirs = f"{secured.host}/elsewhere/theirs:v1"
    dockerd.docker("tag", first, theirs)
    assert login(dockerd, secured, "outsider", PASSWORD).returncode == 0
    uploaded = push(dockerd, theirs)
    logout(dockerd, secured)
    mine = f"{secured.host}/elsewhere/mine:v1"
    dockerd.docker("tag", first, mine)
    assert login(dockerd, secured, "dev", PASSWORD).returncode == 0
    mounted = push(dockerd, mine)
    logout(dockerd, secured)

    assert uploaded.count("Pushed") == 2, uploaded.layers
    assert all(status.startswith("Mounted from ") for status in mounted.layers.values()), mounted.layers
    assert len(mounted.layers) == 2
    for reference in (first, theirs, mine):
        remove_local(dockerd, reference)
    assert login(dockerd, secured, "outsider", PASSWORD).returncode == 0
    dockerd.docker("pull", theirs)
