-- The last hardware facts a machine reported (`POST /facts/{mac}`), one row
-- per system, as checked JSON (`facts::check`). Mirrored by
-- migrations/postgres/0008_facts.sql.
CREATE TABLE facts (
    system  TEXT PRIMARY KEY,
    at      INTEGER NOT NULL,
    run_id  TEXT,
    data    TEXT NOT NULL
);
