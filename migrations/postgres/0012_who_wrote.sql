-- Who wrote what (mirrors migrations/sqlite/0012_who_wrote.sql).
ALTER TABLE run_events ADD COLUMN writer TEXT;
ALTER TABLE run_events ADD COLUMN lease BIGINT;
ALTER TABLE daemons ADD COLUMN fenced_at BIGINT;
ALTER TABLE daemons ADD COLUMN fenced_by TEXT;
CREATE TABLE bmc_leases (
    address TEXT PRIMARY KEY,
    holder  TEXT NOT NULL,
    until   BIGINT NOT NULL
);
