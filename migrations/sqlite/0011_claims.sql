-- Several daemons on one database (issue 16): each run is owned by the
-- daemon that claimed it (`owner`, a daemon id) under a lease token
-- (`lease`, +1 per claim) that fences every write; `domain` says which
-- daemons may claim it. `daemons` is the registry of daemon ids with their
-- heartbeats; a fenced id owns nothing. Mirrored by
-- migrations/postgres/0011_claims.sql.
ALTER TABLE runs ADD COLUMN owner TEXT;
ALTER TABLE runs ADD COLUMN lease INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN domain TEXT NOT NULL DEFAULT 'default';
CREATE INDEX runs_unowned ON runs (domain, created_at)
    WHERE finished_at IS NULL AND owner IS NULL;
CREATE INDEX runs_owner ON runs (owner) WHERE finished_at IS NULL;
CREATE TABLE daemons (
    id            TEXT PRIMARY KEY,
    node          TEXT NOT NULL,
    domains       TEXT NOT NULL,
    started_at    INTEGER NOT NULL,
    heartbeat_at  INTEGER NOT NULL,
    fenced        BOOLEAN NOT NULL DEFAULT FALSE
);
