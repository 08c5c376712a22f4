"""The versioned schema. ``MIGRATIONS[i]`` takes a database from version i to i + 1;
``PRAGMA user_version`` records where a database stands. Migrations only ever append.

The tables and the edges a garbage collector walks:

    repositories --< repository_blobs >-- blobs        (a blob is linked to a repository)
    repositories --< manifests >-- blobs               (a manifest's own bytes are a blob)
    manifests --< manifest_blobs  (config and layer digests a manifest references)
    manifests --< manifest_children (child manifest digests an index references)
    manifests.subject             (the digest a referrer points at)
    repositories --< tags >-- manifests
    uploads                       (sessions in progress, so that they survive a restart)

Access control (migration 2): users --< project_members >-- projects --< robots.
Garbage collection (migration 3): gc_runs (history, log, stop flag), gc_schedule (one row).
Artifact details (migration 4): manifests.extra_attrs (what Harbor shows of an image's
config, JSON; NULL until known), manifest_children.descriptor (an index entry's platform,
annotations and urls, JSON), tags.pulled_at (manifests.pulled_at and
repositories.pull_count are from migration 1).
Upload sessions by account (migration 5): uploads.account, for the session caps.
Login throttle (migration 6): login_failures, login_trusted, shared by every worker.
Harbor's artifact list by push time (migration 7): the index manifests_pushed.
Upload writers (migration 8): uploads.writer_pid, the process writing or committing a session (so the
supervisor can release the sessions of a worker that died).
Scrub (migration 9): blobs.xxh3, blobs.quarantined_at / quarantine_reason, scrub_runs (history).
Content trust (migration 10): projects --< trust_anchors (keys and certificates that
signatures must verify against).
Proxy cache (migration 11): registries (upstream endpoints) --<
projects.registry_id.
Web interface (migration 12): web_sessions (browser sessions, by the hash of
their cookie).
Upload checksums (migration 13): uploads.checksums, the digests of a session's bytes at
its recorded size, so that any worker process commits it without reading it back.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    """
    CREATE TABLE repositories (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        project TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        pull_count INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX repositories_project ON repositories(project, name);

    CREATE TABLE blobs (
        digest TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        created_at REAL NOT NULL,
        last_seen REAL NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE repository_blobs (
        repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        digest TEXT NOT NULL REFERENCES blobs(digest) ON DELETE CASCADE,
        PRIMARY KEY (repository_id, digest)
    ) WITHOUT ROWID;
    CREATE INDEX repository_blobs_digest ON repository_blobs(digest);

    CREATE TABLE manifests (
        id INTEGER PRIMARY KEY,
        repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        digest TEXT NOT NULL REFERENCES blobs(digest),
        media_type TEXT NOT NULL,
        size INTEGER NOT NULL,
        artifact_type TEXT,
        subject TEXT,
        annotations TEXT,
        pushed_at REAL NOT NULL,
        pulled_at REAL,
        UNIQUE (repository_id, digest)
    );
    CREATE INDEX manifests_digest ON manifests(digest);
    CREATE INDEX manifests_subject ON manifests(repository_id, subject) WHERE subject IS NOT NULL;

    CREATE TABLE manifest_blobs (
        manifest_id INTEGER NOT NULL REFERENCES manifests(id) ON DELETE CASCADE,
        digest TEXT NOT NULL,
        media_type TEXT NOT NULL,
        size INTEGER NOT NULL,
        is_foreign INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (manifest_id, digest)
    ) WITHOUT ROWID;
    CREATE INDEX manifest_blobs_digest ON manifest_blobs(digest);

    CREATE TABLE manifest_children (
        parent_id INTEGER NOT NULL REFERENCES manifests(id) ON DELETE CASCADE,
        child_digest TEXT NOT NULL,
        PRIMARY KEY (parent_id, child_digest)
    ) WITHOUT ROWID;
    CREATE INDEX manifest_children_child ON manifest_children(child_digest);

    CREATE TABLE tags (
        repository_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        manifest_id INTEGER NOT NULL REFERENCES manifests(id) ON DELETE CASCADE,
        updated_at REAL NOT NULL,
        PRIMARY KEY (repository_id, name)
    ) WITHOUT ROWID;
    CREATE INDEX tags_manifest ON tags(manifest_id);

    CREATE TABLE uploads (
        id TEXT PRIMARY KEY,
        repository TEXT NOT NULL,
        state TEXT NOT NULL,
        size INTEGER NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # Users, projects, members and robot accounts (Harbor's project model, issue 3).
    # projects.name is the first component of repository names; repositories keep
    # their ``project`` text column, so a project can be created after its repositories.
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        email TEXT NOT NULL DEFAULT '',
        realname TEXT NOT NULL DEFAULT '',
        comment TEXT NOT NULL DEFAULT '',
        password_hash TEXT NOT NULL,
        sysadmin INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );

    CREATE TABLE projects (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        owner_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
        public INTEGER NOT NULL DEFAULT 0,
        metadata TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );

    CREATE TABLE project_members (
        id INTEGER PRIMARY KEY,
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        role INTEGER NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        UNIQUE (project_id, user_id)
    );
    CREATE INDEX project_members_user ON project_members(user_id);

    CREATE TABLE robots (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        description TEXT NOT NULL DEFAULT '',
        secret_hash TEXT NOT NULL,
        actions TEXT NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0,
        duration INTEGER NOT NULL DEFAULT -1,
        expires_at INTEGER NOT NULL DEFAULT -1,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX robots_project ON robots(project_id);
    """,
    # Garbage collection history and schedule (Harbor's /system/gc, issue 4). A run's
    # log and counters are written while it runs, so another process can follow it;
    # stop_requested is how a stop reaches a collection running in another process.
    """
    CREATE TABLE gc_runs (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        schedule_type TEXT NOT NULL,
        parameters TEXT NOT NULL,
        status TEXT NOT NULL,
        stop_requested INTEGER NOT NULL DEFAULT 0,
        manifests_purged INTEGER NOT NULL DEFAULT 0,
        blobs_purged INTEGER NOT NULL DEFAULT 0,
        bytes_freed INTEGER NOT NULL DEFAULT 0,
        log TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );

    CREATE TABLE gc_schedule (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        type TEXT NOT NULL,
        cron TEXT NOT NULL,
        parameters TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
    # Harbor's artifact details (issue 12 item 4): extra_attrs is written at manifest PUT
    # (or, for manifests pushed before, the first time the API lists them); the pull
    # columns by regd/pulls.py in batches.
    """
    ALTER TABLE manifests ADD COLUMN extra_attrs TEXT;
    ALTER TABLE manifest_children ADD COLUMN descriptor TEXT;
    ALTER TABLE tags ADD COLUMN pulled_at REAL;
    """,
    # Upload sessions name the account that opened them, so that open sessions can be
    # capped per account and per repository (issue 15 item 9).
    """
    ALTER TABLE uploads ADD COLUMN account TEXT NOT NULL DEFAULT '';
    CREATE INDEX uploads_repository ON uploads(repository);
    CREATE INDEX uploads_account ON uploads(account);
    """,
    # The login throttle's failure counts and locks, and the addresses each account
    # logged in from, shared by every worker process and kept across restarts.
    """
    CREATE TABLE login_failures (
        key TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        last_failure REAL NOT NULL,
        locked_until REAL NOT NULL,
        lockouts INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX login_failures_last ON login_failures(last_failure);

    CREATE TABLE login_trusted (
        username TEXT NOT NULL,
        address TEXT NOT NULL,
        until REAL NOT NULL,
        PRIMARY KEY (username, address)
    ) WITHOUT ROWID;
    CREATE INDEX login_trusted_until ON login_trusted(until);
    """,
    # Harbor's artifact list, newest push first, pages through an index instead of
    # sorting every manifest of the repository for each page (issue 13).
    """
    CREATE INDEX manifests_pushed ON manifests(repository_id, pushed_at DESC, id DESC);
    """,
    # The process that holds a session in RECEIVING or COMMITTING (NULL otherwise): when
    # a worker dies, the supervisor returns exactly its sessions to ACTIVE (issue 14).
    """
    ALTER TABLE uploads ADD COLUMN writer_pid INTEGER;
    """,
    # Scrub (issue 14): each blob's xxh3-128 recorded at commit (NULL for blobs stored
    # before; the first scrub records it after checking sha256), blobs found damaged or
    # missing (quarantined: answered as unknown until a push repairs them), and the
    # history of scrubs.
    """
    ALTER TABLE blobs ADD COLUMN xxh3 TEXT;
    ALTER TABLE blobs ADD COLUMN quarantined_at REAL;
    ALTER TABLE blobs ADD COLUMN quarantine_reason TEXT;
    CREATE INDEX blobs_quarantined ON blobs(quarantined_at) WHERE quarantined_at IS NOT NULL;

    CREATE TABLE scrub_runs (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        checked INTEGER NOT NULL DEFAULT 0,
        bytes_read INTEGER NOT NULL DEFAULT 0,
        damaged INTEGER NOT NULL DEFAULT 0,
        missing INTEGER NOT NULL DEFAULT 0,
        unknown_files INTEGER NOT NULL DEFAULT 0,
        checksums_recorded INTEGER NOT NULL DEFAULT 0,
        started_at REAL NOT NULL,
        finished_at REAL
    );
    """,
    # Content trust (issue 10): per-project trust anchors that signatures verify against.
    """
    CREATE TABLE trust_anchors (
        id INTEGER PRIMARY KEY,
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        pem TEXT NOT NULL,
        created_at REAL NOT NULL,
        UNIQUE (project_id, name)
    );
    """,
    # Proxy-cache projects (issue 11): upstream registry endpoints (Harbor's
    # /registries); a project with a registry_id mirrors that endpoint. A proxy
    # project's manifests.pulled_at drives the removal of artifacts nobody pulls.
    """
    CREATE TABLE registries (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        url TEXT NOT NULL,
        credential_type TEXT NOT NULL DEFAULT '',
        access_key TEXT NOT NULL DEFAULT '',
        access_secret TEXT NOT NULL DEFAULT '',
        insecure INTEGER NOT NULL DEFAULT 0,
        description TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT 'unknown',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    ALTER TABLE projects ADD COLUMN registry_id INTEGER REFERENCES registries(id);
    CREATE INDEX projects_registry ON projects(registry_id) WHERE registry_id IS NOT NULL;
    """,
    # Web interface (issue 9): browser sessions, stored by the SHA-256 of their cookie so
    # that every worker process knows them and a copy of the database opens none.
    """
    CREATE TABLE web_sessions (
        id TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        created_at REAL NOT NULL,
        last_seen REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX web_sessions_user ON web_sessions(user_id);
    """,
    # The sha256 and xxh3-128 of a session's bytes when a write ends with the running
    # hash covering all of them, as "<size>:<sha256>:<xxh3>" (NULL otherwise): a commit
    # in another worker process than the write's (each has its own running hashes)
    # checks the digest without reading the file back (issue 13).
    """
    ALTER TABLE uploads ADD COLUMN checksums TEXT;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
