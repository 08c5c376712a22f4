"""``TokenAuthorizer``: the Docker token flow in front of ``/v2/`` (Harbor's ``v2auth``).

- No ``Authorization`` header: 401 with ``WWW-Authenticate: Bearer realm=...,
  service=...[,scope=...]``, always, even for a public project (Harbor #11271: the
  client must learn the realm), and with no scope on ``/v2/`` itself.
- ``Bearer``: a token this regd signed, unexpired, for this service, whose account
  still exists, is enabled and has the credential the token was issued on (else 401:
  revoked). Each need must be in its ``access`` claim *and* still be held by the account
  on the project as it is now (a removed member, a robot that lost push, a project
  deleted and created again by someone else: 403/401). When the claim lacks a need the
  account holds (the client asked for a narrower token), 401 with
  ``error="insufficient_scope"`` sends it back for a new token, its challenge naming
  every scope the request needs (not only the missing ones: a client that asks for just
  those would lose the rest and loop). The lookups are cached until the next commit of
  any process (``metadata/generation.py``).
- ``wants`` (the source of a cross-repository mount) never refuse a request: granted
  ones (still held now) go into the principal, the rest are left out, and the handler
  falls back (a mount becomes a new upload session). A token lacking a want the account
  holds is sent back for one that has it, like a need.
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
from dataclasses import replace

from aiohttp import web

from regd.auth import Access, Principal
from regd.auth.accounts import Account, Accounts
from regd.auth.tokens import InvalidTokenError, TokenClaims
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


def _within(held: frozenset[str], claims: TokenClaims, repository: str) -> frozenset[str]:
    """The actions of ``held`` that a token's claims grant on ``repository``."""
    token = claims.access.get(("repository", repository), frozenset())
    return held if "*" in token else held & token


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

    async def authorize(
        self, request: web.Request, needs: list[Access], wants: list[Access] | None = None
    ) -> Principal:
        wants = wants or []
        header = request.headers.get("Authorization", "")
        scheme = header.partition(" ")[0].lower()
        if scheme == "bearer":
            return await self._bearer(header.partition(" ")[2].strip(), needs, wants)
        if scheme == "basic":
            credentials = basic_credentials(header)
            if credentials is None:
                raise self._unauthorized(needs, "malformed basic credentials", wants=wants)
            try:
                account = await self.accounts.authenticate(*credentials, request.remote or "")
            except RegistryError as e:
                if e.code is ErrorCode.UNAUTHORIZED:
                    e.headers["WWW-Authenticate"] = challenge(self.config, [*needs, *wants])
                raise
            return await self._check(account, needs, wants)
        raise self._unauthorized(needs, _unauthenticated(needs), wants=wants)

    async def _bearer(self, token: str, needs: list[Access], wants: list[Access]) -> Principal:
        try:
            claims = self.accounts.issuer.verify(token)
        except InvalidTokenError as e:
            log.debug("refused a bearer token: %s", e)
            raise self._unauthorized(needs, "invalid or expired token", wants=wants) from None
        account = await self.accounts.account_named(claims.subject)
        if account.name != claims.subject or account.mark != claims.mark:
            log.info("refused a token of %s: account removed, disabled or credential changed", claims.subject)
            raise self._unauthorized(needs, "token revoked: log in again", wants=wants)
        if not needs and not wants:  # /v2/ itself, or a caller that asks who this is (the GC API)
            return account.principal()
        missing = [need for need in needs if not claims.allows(need)]
        unheld = [want for want in wants if not claims.allows(want)]
        if missing or unheld:
            await self._check(account, missing)
            usable = [want for want in unheld if await self._holds(account, want)]
            if missing or usable:
                # The account may do it, the token just does not say so: ask for a new
                # one, naming every scope the request needs (token spec), not only the
                # missing ones, or the new token would lose what the old one held.
                held = [want for want in wants if want not in unheld or want in usable]
                raise self._unauthorized(needs, "insufficient scope", "insufficient_scope", held)
        # What the token says must still be held now, not only when it was issued.
        principal = await self._check(account, needs, [want for want in wants if want not in unheld])
        # And the request holds only what the token grants (content trust asks whether a
        # signer's token may push to the repository it pulls from).
        return replace(
            principal, granted={name: _within(held, claims, name) for name, held in principal.granted.items()}
        )

    async def _check(
        self, account: Account, needs: list[Access], wants: list[Access] | None = None
    ) -> Principal:
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
        for want in wants or []:
            if await self._holds(account, want):
                granted[want.name] = granted.get(want.name, frozenset()) | frozenset(want.actions)
        return account.principal(granted)

    async def _holds(self, account: Account, want: Access) -> bool:
        """Whether ``account`` may do all of ``want`` (a repository access); never raises."""
        held = await self.accounts.actions(account, want.name)
        return held is not None and ("*" in held or all(a in held for a in want.actions))

    def _refused(self, account: Account, needs: list[Access], message: str) -> RegistryError:
        if not account.authenticated:
            return self._unauthorized(needs, message)
        return RegistryError(ErrorCode.DENIED, message)

    def _unauthorized(
        self, needs: list[Access], message: str, error: str | None = None, wants: list[Access] | None = None
    ) -> RegistryError:
        return RegistryError(
            ErrorCode.UNAUTHORIZED,
            message,
            headers={"WWW-Authenticate": challenge(self.config, [*needs, *(wants or [])], error)},
        )
