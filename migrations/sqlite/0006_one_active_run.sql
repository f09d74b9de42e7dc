-- One unfinished run per system, enforced by the database (until now only by
-- the engine's in-memory map, which one daemon alone cannot extend to several
-- connections or daemons). `finished_at IS NULL` is what `active_runs` reads
-- as active. Mirrored by migrations/postgres/0006_one_active_run.sql.
--
-- The engine has always refused a second active run, so no database should
-- hold two; should one (a hand edit), the older runs of a system are closed
-- as failed, with an event, rather than the migration failing the start-up.
INSERT INTO run_events (run_id, at, from_state, to_state, detail)
SELECT r.id, r.updated_at, r.state, 'failed', 'superseded by a newer active run (migration 6)'
FROM runs r
WHERE r.finished_at IS NULL AND EXISTS (
    SELECT 1 FROM runs n WHERE n.system = r.system AND n.finished_at IS NULL
      AND (n.created_at > r.created_at OR (n.created_at = r.created_at AND n.id > r.id)));
UPDATE runs SET state = 'failed', finished_at = updated_at,
       reason = 'superseded by a newer active run (migration 6)'
WHERE finished_at IS NULL AND EXISTS (
    SELECT 1 FROM runs n WHERE n.system = runs.system AND n.finished_at IS NULL
      AND (n.created_at > runs.created_at OR (n.created_at = runs.created_at AND n.id > runs.id)));
CREATE UNIQUE INDEX runs_one_active ON runs(system) WHERE finished_at IS NULL;
