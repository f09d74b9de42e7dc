-- The shared inventory (issue 16): systems.toml, profiles/*.toml and the
-- templates as documents, keyed by their path in a config dir
-- (`systems.toml`, `profiles/NAME.toml`, `kickstarts/REL`). One version row
-- counts whole-inventory changes: daemons poll it (NOTIFY is only a hint)
-- and writers compare-and-set it. Mirrored by
-- migrations/postgres/0009_inventory.sql.
CREATE TABLE inventory_docs (
    path  TEXT PRIMARY KEY,
    body  TEXT NOT NULL
);
CREATE TABLE inventory_version (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    version     INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    updated_by  TEXT NOT NULL
);
