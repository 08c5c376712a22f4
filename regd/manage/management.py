"""``Management``: the management services of one running app (or one CLI command)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from regd.auth.accounts import ADMIN, NO_AUTH_ADMIN, Account, Accounts, Kind
from regd.auth.roles import Role
from regd.auth.sessions import Sessions
from regd.config import Config
from regd.gc.service import GCService
from regd.manage.actor import Actor
from regd.manage.artifacts import ArtifactService
from regd.manage.gcruns import GCRunService
from regd.manage.members import MemberService
from regd.manage.projects import ProjectService
from regd.manage.registries import RegistryService
from regd.manage.repositories import RepositoryService
from regd.manage.robots import RobotService
from regd.manage.trust import TrustService
from regd.manage.users import UserService
from regd.metadata import projects
from regd.metadata.db import Database
from regd.registry import Registry
from regd.trust.service import ContentTrust


@dataclass(frozen=True)
class Management:
    db: Database
    accounts: Accounts
    projects: ProjectService
    members: MemberService
    users: UserService
    robots: RobotService
    repositories: RepositoryService
    artifacts: ArtifactService
    gc: GCRunService
    trust: TrustService
    registries: RegistryService

    @classmethod
    def build(
        cls,
        config: Config,
        db: Database,
        accounts: Accounts,
        sessions: Sessions,
        registry: Registry,
        gc: GCService,
        trust: ContentTrust,
    ) -> Management:
        project_service = ProjectService(db, config, gc.uploads)
        artifact_service = ArtifactService(db, registry)
        return cls(
            db=db,
            accounts=accounts,
            projects=project_service,
            members=MemberService(db),
            users=UserService(db, accounts, sessions),
            robots=RobotService(db),
            repositories=RepositoryService(db, registry, project_service),
            artifacts=artifact_service,
            gc=GCRunService(gc),
            trust=TrustService(db, trust, project_service, artifact_service),
            registries=RegistryService(db, config),
        )

    async def actor(self, account: Account) -> Actor:
        """``account`` with its project roles (one query, for users)."""
        if account.kind is not Kind.USER or not account.id:
            return Actor(account)
        roles = await projects.roles_of_user(self.db, account.id)
        return Actor(account, {p: Role(r) for p, r in roles.items() if r in Role._value2member_map_})

    async def operator(self) -> Actor:
        """Who acts for the CLI: a system administrator, as user ``admin`` (so what it
        creates is owned as what the first start creates), or without a user if none."""
        account = await self.accounts.account_named(ADMIN)
        if not account.authenticated:
            return Actor(NO_AUTH_ADMIN)
        return await self.actor(replace(account, is_admin=True))
