-- The audit trail: every change through the API, the CLI (which goes
-- through the API's reload) or the UI, with the token's name, where it came
-- from, the answer's status and what changed (JSON, secrets never included).
CREATE TABLE audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    scope   TEXT NOT NULL,
    via     TEXT NOT NULL,
    remote  TEXT NOT NULL,
    action  TEXT NOT NULL,
    path    TEXT NOT NULL,
    target  TEXT NOT NULL,
    status  INTEGER NOT NULL,
    detail  TEXT NOT NULL
);
CREATE INDEX audit_target ON audit (target, id);
