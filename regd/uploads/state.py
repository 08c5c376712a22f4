"""The chunked-upload state machine: every state and every legal transition.

Rules (OCI Distribution Spec v1.1, "Pushing a blob in chunks"; Docker Registry V2):

1. ``POST /v2/<name>/blobs/uploads/`` creates a session in ACTIVE with size 0.
2. Only an ACTIVE session accepts bytes. ``begin_write`` moves it to RECEIVING while one
   request streams into it; a second writer finds it RECEIVING and is refused. The
   transition is a conditional UPDATE in SQLite, so it also holds across processes.
3. A chunk must start where the session ends (``Content-Range`` start == size) or it is
   refused with 416 RANGE_INVALID; a streamed PATCH without ``Content-Range`` appends.
4. ``end_write`` returns RECEIVING to ACTIVE with the new size, also when the client
   disconnected mid-body: the bytes that reached the disk stay, and the client resumes
   from the ``Range`` that ``GET`` on the session reports.
5. ``PUT ?digest=`` moves ACTIVE to COMMITTING, then to COMPLETED (the blob is stored
   and the session is gone) or FAILED (the digest did not match: nothing is stored and
   the session is gone).
6. ``DELETE`` cancels an ACTIVE session (CANCELLED); the janitor expires ACTIVE sessions
   older than ``[uploads] expire_after`` (EXPIRED). Terminal sessions are deleted with
   their data; a request for one answers 404 BLOB_UPLOAD_UNKNOWN.
7. After a restart, RECEIVING and COMMITTING sessions are ACTIVE again (``recover``):
   the data file is cut back to the recorded size and the hash is recomputed from disk
   at commit time.

Any other transition raises ``IllegalTransitionError``.
"""

from __future__ import annotations

import enum


class UploadState(enum.Enum):
    ACTIVE = "active"
    RECEIVING = "receiving"
    COMMITTING = "committing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class UploadEvent(enum.Enum):
    BEGIN_WRITE = "begin_write"
    END_WRITE = "end_write"
    COMMIT = "commit"
    COMMITTED = "committed"
    REJECT = "reject"
    CANCEL = "cancel"
    EXPIRE = "expire"
    RECOVER = "recover"


S, E = UploadState, UploadEvent

TRANSITIONS: dict[tuple[UploadState, UploadEvent], UploadState] = {
    (S.ACTIVE, E.BEGIN_WRITE): S.RECEIVING,
    (S.RECEIVING, E.END_WRITE): S.ACTIVE,
    (S.ACTIVE, E.COMMIT): S.COMMITTING,
    (S.COMMITTING, E.COMMITTED): S.COMPLETED,
    (S.COMMITTING, E.REJECT): S.FAILED,
    (S.ACTIVE, E.CANCEL): S.CANCELLED,
    (S.ACTIVE, E.EXPIRE): S.EXPIRED,
    (S.RECEIVING, E.EXPIRE): S.EXPIRED,
    (S.RECEIVING, E.RECOVER): S.ACTIVE,
    (S.COMMITTING, E.RECOVER): S.ACTIVE,
}

TERMINAL = frozenset({S.COMPLETED, S.FAILED, S.CANCELLED, S.EXPIRED})


class IllegalTransitionError(Exception):
    def __init__(self, state: UploadState, event: UploadEvent) -> None:
        self.state = state
        self.event = event
        super().__init__(f"upload in state {state.value} cannot {event.value}")


def next_state(state: UploadState, event: UploadEvent) -> UploadState:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransitionError(state, event) from None


def sources(event: UploadEvent) -> list[UploadState]:
    """The states from which ``event`` is legal (for conditional UPDATEs)."""
    return [state for (state, ev) in TRANSITIONS if ev is event]


def diagram() -> str:
    """The table as the README draws it, one transition a line; a test checks the README
    holds exactly this, so the docs' picture cannot drift from the code."""
    width = max(len(state.value) for state, _ in TRANSITIONS)
    return "\n".join(
        f"{state.value:<{width}} --{event.value}--> {target.value}"
        for (state, event), target in TRANSITIONS.items()
    )
