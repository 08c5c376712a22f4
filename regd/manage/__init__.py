"""Management services: the rules of projects, members, users, robot accounts,
repositories and artifacts, descriptions, garbage collection runs and content trust,
with their permission checks, written once for every front end (the Harbor API under
``/api/v2.0``, the ``regd`` CLI, the web pages).

Conventions (follow them when adding a module here):

- One module per concept (``projects``, ``members``, ``users``, ``robots``,
  ``repositories``, ``artifacts``, ``gcruns``, ``descriptions``, ``trust``), each with one
  service class ``<Concept>Service`` built by ``Management.build`` and reached as
  ``services.manage.<concept>`` (``regd.services.Services.manage``).
- Every public method takes the ``Actor`` first (who acts, with their project roles,
  from ``Management.actor(account)``; the CLI acts as ``Management.operator()``) and
  checks permissions itself (``actor.require(project, Permission.X)``,
  ``actor.require_admin()``), even when the front end checked before: a front end may
  check early to order its errors, never instead. Finders that only resolve names
  (``ProjectService.find``, ``RepositoryService.find``) check nothing and say so.
- Methods take and return typed values (rows from ``regd.metadata``, small frozen
  dataclasses), never requests, JSON bodies or HTML; input syntax (JSON, forms, argv)
  is the front end's. Lists take a ``Page`` and return a ``Listing`` (total + items).
- Failures are ``RegistryError`` with a code from ``regd.errors`` (NOT_FOUND, CONFLICT,
  BAD_REQUEST, FORBIDDEN/UNAUTHORIZED via ``actor.refusal``...); each front end shows
  them its own way (the JSON envelope, a line on stderr, a message in the page).
- Only these services (and ``regd.registry``, ``regd.gc``, ``regd.auth`` below them) call
  the queries of ``regd.metadata``; front ends only name its row types
  (``Project``, ``RepositoryView``, ``User``...) to translate them.
- A new concept: a module here, a field on ``Management`` built in ``Management.build``,
  and its tests through a front end (the API or the pages) and, where it has its own
  rules, directly.
"""

from __future__ import annotations

from regd.manage.actor import Actor, ProjectAccess
from regd.manage.management import Management
from regd.manage.paging import Listing, Page

__all__ = ["Actor", "Listing", "Management", "Page", "ProjectAccess"]
