-- Run ownership and the daemon registry (mirrors migrations/sqlite/0011_claims.sql).
ALTER TABLE runs ADD COLUMN owner TEXT;
ALTER TABLE runs ADD COLUMN lease BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN domain TEXT NOT NULL DEFAULT 'default';
CREATE INDEX runs_unowned ON runs (domain, created_at)
    WHERE finished_at IS NULL AND owner IS NULL;
CREATE INDEX runs_owner ON runs (owner) WHERE finished_at IS NULL;
CREATE TABLE daemons (
    id            TEXT PRIMARY KEY,
    node          TEXT NOT NULL,
    domains       TEXT NOT NULL,
    started_at    BIGINT NOT NULL,
    heartbeat_at  BIGINT NOT NULL,
    fenced        BOOLEAN NOT NULL DEFAULT FALSE
);
