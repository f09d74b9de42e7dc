-- rackboot schema v1 (SQLite). Times are milliseconds since the Unix epoch.
-- All SQL text of the project lives under migrations/ and src/store/.

CREATE TABLE runs (
    id            TEXT PRIMARY KEY,
    system        TEXT NOT NULL,
    profile       TEXT NOT NULL,
    state         TEXT NOT NULL,
    -- JSON of the pure state machine's extra data (stage index, attempt, ...)
    data          TEXT NOT NULL DEFAULT '{}',
    reason        TEXT,
    requested_by  TEXT,
    overrides     TEXT NOT NULL DEFAULT '{}',
    retry_of      TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    finished_at   INTEGER
);
CREATE INDEX runs_system ON runs(system, created_at);
CREATE INDEX runs_active ON runs(finished_at) WHERE finished_at IS NULL;

CREATE TABLE run_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id     TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    at         INTEGER NOT NULL,
    from_state TEXT,
    to_state   TEXT NOT NULL,
    detail     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX run_events_run ON run_events(run_id, id);

CREATE TABLE stage_results (
    run_id      TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,          -- running | passed | failed | timed_out | interrupted
    exit_code   INTEGER,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    log_path    TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE artifacts (
    run_id  TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    path    TEXT NOT NULL,              -- relative to the run's artifacts dir
    size    INTEGER NOT NULL,
    sha256  TEXT NOT NULL,
    PRIMARY KEY (run_id, path)
);

CREATE TABLE leases (
    mac        TEXT PRIMARY KEY,
    ip         TEXT NOT NULL UNIQUE,
    hostname   TEXT,
    expires_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Per-system netboot switch: on = the next netboot gets the installer.
-- token: the capability in this run's install-done URL (scoped to run and MAC,
-- cleared when the run leaves netboot).
CREATE TABLE netboot (
    system     TEXT PRIMARY KEY,
    enabled    INTEGER NOT NULL,
    run_id     TEXT,
    token      TEXT,
    updated_at INTEGER NOT NULL
);
