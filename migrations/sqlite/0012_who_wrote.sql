-- Who wrote what, for audits and the HA drill (issue 16): each run event
-- written under a lease records the daemon id and the lease token; a fenced
-- daemon id records when it was fenced and by whom. Mirrored by
-- migrations/postgres/0012_who_wrote.sql.
ALTER TABLE run_events ADD COLUMN writer TEXT;
ALTER TABLE run_events ADD COLUMN lease INTEGER;
ALTER TABLE daemons ADD COLUMN fenced_at INTEGER;
ALTER TABLE daemons ADD COLUMN fenced_by TEXT;
-- One daemon at a time per BMC address (blade chassis share one BMC between
-- machines of different daemons): held for one command, free once it
-- expires or its holder is fenced.
CREATE TABLE bmc_leases (
    address TEXT PRIMARY KEY,
    holder  TEXT NOT NULL,
    until   INTEGER NOT NULL
);
