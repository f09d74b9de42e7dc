-- The shared inventory (mirrors migrations/sqlite/0009_inventory.sql).
CREATE TABLE inventory_docs (
    path  TEXT PRIMARY KEY,
    body  TEXT NOT NULL
);
CREATE TABLE inventory_version (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    version     BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    updated_by  TEXT NOT NULL
);
