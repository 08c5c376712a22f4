"""Issue 15, findings 2, 3 and 6, against a real ``regd serve``: parallel password
guesses, locking other people out, and floods of bad logins that used to stall blob
serving. Clients bound to 127.0.0.2... stand for other machines."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.regd_process import RegdProcess
from tests.security_support import ADMIN, PASSWORD, Api, basic, bearer, session_from, start_regd

MAX_FAILED = 5


@pytest.fixture
def regd(tmp_path: Path) -> Iterator[RegdProcess]:
    process = start_regd(tmp_path, auth={"max_failed_logins": MAX_FAILED, "lockout_seconds": 600})
    yield process
    process.close()


@pytest.fixture(params=[1, 2], ids=["1 worker", "2 workers"])
def regd_workers(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[RegdProcess, int]]:
    workers: int = request.param
    process = start_regd(
        tmp_path,
        auth={"max_failed_logins": MAX_FAILED, "lockout_seconds": 600},
        server={"workers": workers},
    )
    yield process, workers
    process.close()


async def _login(http: aiohttp.ClientSession, regd: RegdProcess, user: str, password: str) -> int:
    url = f"http://127.0.0.1:{regd.port}/service/token"
    async with http.get(url, headers=basic(user, password), params={"service": "regd"}) as resp:
        await resp.read()
        return resp.status


async def test_parallel_guesses_are_counted_before_the_password_is_checked(
    regd_workers: tuple[RegdProcess, int],
) -> None:
    """Within one process the count is exact; attempts in flight are counted per worker
    (failures and locks are shared in SQLite), so N workers check at most N times the
    limit of parallel guesses (README, "Security")."""
    regd, workers = regd_workers
    async with session_from() as http:
        await Api(http, regd).user("alice")
    async with session_from("127.0.0.2", limit=60) as attacker:
        guesses = [_login(attacker, regd, "alice", f"Wrong{i}pass") for i in range(60)]
        statuses = Counter(await asyncio.gather(*guesses))

        assert set(statuses) == {401, 429}
        assert MAX_FAILED <= statuses[401] <= MAX_FAILED * workers, statuses
        if workers == 1:
            assert statuses == {401: MAX_FAILED, 429: 60 - MAX_FAILED}
        # The attacker's address is locked out of alice, even with her password...
        assert await _login(attacker, regd, "alice", PASSWORD) == 429
    # ...but alice, elsewhere, is not (finding 3).
    async with session_from("127.0.0.3") as owner:
        assert await _login(owner, regd, "alice", PASSWORD) == 200


async def test_robots_are_never_locked_out(regd: RegdProcess) -> None:
    async with session_from() as http:
        robot = await Api(http, regd).robot("library", "puller", ["pull"])
    async with session_from("127.0.0.4") as attacker:
        statuses = Counter(
            await asyncio.gather(*(_login(attacker, regd, robot["name"], f"Guess{i}x") for i in range(40)))
        )
        assert statuses == {401: 40}
        assert await _login(attacker, regd, robot["name"], robot["secret"]) == 200
    async with session_from("127.0.0.5") as cluster:
        assert await _login(cluster, regd, robot["name"], robot["secret"]) == 200


async def test_a_guess_spread_over_many_addresses_spares_the_owners_own(tmp_path: Path) -> None:
    regd = start_regd(tmp_path, auth={"max_failed_logins": 1, "lockout_seconds": 600})
    try:
        async with session_from("127.0.0.6") as owner:
            await Api(owner, regd).user("carol")
            assert await _login(owner, regd, "carol", PASSWORD) == 200
        for i in range(20):  # one failure from each of 20 addresses: the account-wide limit
            async with session_from(f"127.0.1.{i + 1}") as attacker:
                assert await _login(attacker, regd, "carol", "Wrong1234") == 401
        async with session_from("127.0.2.1") as stranger:
            assert await _login(stranger, regd, "carol", PASSWORD) == 429
        async with session_from("127.0.0.6") as owner:
            assert await _login(owner, regd, "carol", PASSWORD) == 200
    finally:
        regd.close()


async def test_a_flood_of_bad_logins_is_bounded_and_blobs_keep_flowing(regd: RegdProcess) -> None:
    async with session_from() as http:
        api = Api(http, regd)
        _, (config_digest, _) = await api.push_image("library/app", "v1", ADMIN)
        pull = bearer(await api.token(["repository:library/app:pull"], {}))  # anonymous

        async def flood(address: str) -> list[int]:
            async with session_from(address, limit=20) as attacker:
                logins = [_login(attacker, regd, f"nobody{i}", "Wrong1234") for i in range(20)]
                return list(await asyncio.gather(*logins))

        async def pulls() -> list[int]:
            statuses = []
            for _ in range(20):
                status, _, _ = await api.call("GET", f"/v2/library/app/blobs/{config_digest}", pull)
                statuses.append(status)
            return statuses

        floods = [flood(f"127.0.3.{i + 1}") for i in range(20)]  # 400 anonymous bad logins
        *flooded, pulled = await asyncio.gather(*floods, pulls())

    statuses = Counter(s for batch in flooded for s in batch)
    assert set(statuses) <= {401, 429, 503}, statuses
    assert statuses[503] > 0  # refused without hashing: the pool's queue was full
    assert pulled == [200] * 20


async def test_failures_count_in_every_worker_process(tmp_path: Path) -> None:
    regd = start_regd(tmp_path, server={"workers": 2}, auth={"max_failed_logins": 3, "lockout_seconds": 600})
    try:
        async with session_from() as http:  # a fresh connection per request: either worker
            await Api(http, regd).user("dave")
            for _ in range(3):
                assert await _login(http, regd, "dave", "Wrong1234") == 401
            # Locked in both workers, whichever of them counted which failure.
            assert {await _login(http, regd, "dave", PASSWORD) for _ in range(8)} == {429}
    finally:
        regd.close()
