"""``TokenAuthorizer``: the Docker token flow in front of ``/v2/`` (Harbor's ``v2auth``).

- No ``Authorization`` header: 401 with ``WWW-Authenticate: Bearer realm=...,
  service=...[,scope=...]``, always, even for a public project (Harbor #11271: the
  client must learn the realm), and with no scope on ``/v2/`` itself.
- ``Bearer``: a token this regd signed, unexpired, for this service. Each need must be
  in its ``access`` claim. When it is not, the account is looked up as it stands now:
  if it may do it after all (the client asked for a narrower token), 401 with
  ``error="insufficient_scope"`` sends it back for a new token; if not, it is refused.
- ``Basic``: checked like a login (throttled), then the account's actions decide.
- Refusals: anonymous callers get 401 ``UNAUTHORIZED`` with the challenge (log in);
  authenticated ones get 403 ``DENIED`` (docker prints "denied: ..." and does not
  retry). Messages always add the repository and action: docker reads an error whose
  message is exactly the code's default as a bare code, and then retries a push five
  times and prints a pull refusal as just "denied".
- A repository whose project does not exist is refused with the message ``project <p>
  not found``, which docker prints (never Harbor's NOT_FOUND there: a code docker does
  not know makes it retry the push, Harbor #20544).
"""

from __future__ import annotations

import base64
import binascii
import logging

from aiohttp import web

from regd.auth import Access, Principal
from regd.auth.accounts import Account, Accounts
from regd.auth.tokens import InvalidTokenError
from regd.config import Config
from regd.errors import ErrorCode, RegistryError
from regd.names import project_of

log = logging.getLogger("regd.auth")


def challenge(config: Config, needs: list[Access], error: str | None = None) -> str:
    value = f'Bearer realm="{config.token_realm}",service="{config.auth.service}"'
    if needs:
        value += f',scope="{" ".join(n.scope() for n in needs)}"'
    if error:
        value += f',error="{error}"'
    return value


def basic_credentials(header: str) -> tuple[str, str] | None:
    """(username, password) of an ``Authorization: Basic`` value, or None if malformed."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None


def _unauthenticated(needs: list[Access]) -> str:
    # Never the code's default text: docker turns an error whose message is the default
    # into a bare code, which it then retries on push and prints without context.
    if not needs or needs[0].type != "repository":
        return "unauthorized: authentication required"
    return f"unauthorized to access repository: {needs[0].name}, action: {needs[0].actions[-1]}"


class TokenAuthorizer:
    def __init__(self, accounts: Accounts, config: Config) -> None:
        self.accounts = accounts
        self.config = config

    async def authorize(self, request: web.Request, needs: list[Access]) -> Principal:
        header = request.headers.get("Authorization", "")
        scheme = header.partition(" ")[0].lower()
        if scheme == "bearer":
            return await self._bearer(header.partition(" ")[2].strip(), needs)
        if scheme == "basic":
            credentials = basic_credentials(header)
            if credentials is None:
                raise self._unauthorized(needs, "malformed basic credentials")
            try:
                account = await self.accounts.authenticate(*credentials, request.remote or "")
            except RegistryError as e:
                if e.code is ErrorCode.UNAUTHORIZED:
                    e.headers["WWW-Authenticate"] = challenge(self.config, needs)
                raise
            return await self._check(account, needs)
        raise self._unauthorized(needs, _unauthenticated(needs))

    async def _bearer(self, token: str, needs: list[Access]) -> Principal:
        try:
            claims = self.accounts.issuer.verify(token)
        except InvalidTokenError as e:
            log.debug("refused a bearer token: %s", e)
            raise self._unauthorized(needs, "invalid or expired token") from None
        if not needs:  # /v2/ itself, or a caller that asks who this is (the GC API)
            return (await self.accounts.account_named(claims.subject)).principal()
        missing = [need for need in needs if not claims.allows(need)]
        if not missing:
            granted = {
                need.name: frozenset(need.actions) | claims.access.get((need.type, need.name), frozenset())
                for need in needs
            }
            return Principal(claims.subject, False, granted)
        account = await self.accounts.account_named(claims.subject)
        await self._check(account, missing)
        # The account may do it, the token just does not say so: ask for a new one.
        raise self._unauthorized(missing, "insufficient scope", "insufficient_scope")

    async def _check(self, account: Account, needs: list[Access]) -> Principal:
        granted: dict[str, frozenset[str]] = {}
        for need in needs:
            if need.type == "registry":
                if not account.is_admin:
                    raise self._refused(account, needs, "only system administrators may list the catalog")
                continue
            held = await self.accounts.actions(account, need.name)
            if held is None:
                raise self._refused(account, needs, f"project {project_of(need.name)} not found")
            lacking = [a for a in need.actions if a not in held and "*" not in held]
            if lacking:
                what = f"{need.name}, action: {lacking[0]}"
                if account.authenticated:
                    raise self._refused(account, needs, f"requested access to the resource is denied: {what}")
                raise self._refused(account, needs, f"unauthorized to access repository: {what}")
            granted[need.name] = frozenset(need.actions) | held
        return account.principal(granted)

    def _refused(self, account: Account, needs: list[Access], message: str) -> RegistryError:
        if not account.authenticated:
            return self._unauthorized(needs, message)
        return RegistryError(ErrorCode.DENIED, message)

    def _unauthorized(self, needs: list[Access], message: str, error: str | None = None) -> RegistryError:
        return RegistryError(
            ErrorCode.UNAUTHORIZED,
            message,
            headers={"WWW-Authenticate": challenge(self.config, needs, error)},
        )
