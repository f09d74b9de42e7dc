-- The last hardware facts a discovered machine reported (`dhcp.inspect_discovered`:
-- a MAC outside the inventory netboots the inspection image and POSTs to
-- /facts/{mac} with its MAC's token), one row per MAC, as checked JSON
-- (`facts::check`). Written only for a MAC the `discovered` table holds; goes
-- with it (dismissed, adopted: the facts move to the new system's `facts`
-- row, or pruned by `dhcp.discovered_max`). Mirrored by
-- migrations/postgres/0010_discovered_facts.sql.
CREATE TABLE discovered_facts (
    mac   TEXT PRIMARY KEY,
    at    INTEGER NOT NULL,
    data  TEXT NOT NULL
);
