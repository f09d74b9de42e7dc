//! The state store: a small facade with domain verbs over sqlx.
//! SQLite (WAL, embedded migrations) is the default. All SQL text of the
//! project lives here and in `migrations/`, so a Postgres module can sit
//! beside this one (sqlx's `Any` driver cannot decode SQLite booleans and has
//! no time types; see ARCHITECTURE.md).

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL {0:?} (this build supports sqlite:// only)")]
    Unsupported(String),
    #[error("cannot create data dir {0}: {1}")]
    Dir(String, std::io::Error),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

/// Leases per multi-row statement in [`Store::upsert_leases`] (5 bound
/// values each, well under SQLite's 32766-variable limit).
pub const LEASE_CHUNK: usize = 500;

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    /// How the file was opened (`None` for an in-memory store).
    opts: Option<SqliteConnectOptions>,
}

/// One event of the operator feed, as stored (`data` is JSON text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedRow {
    pub id: i64,
    pub at: i64,
    pub kind: String,
    pub system: Option<String>,
    pub run_id: Option<String>,
    pub data: String,
}

/// A webhook's delivery state (see `webhooks`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WebhookRow {
    pub name: String,
    /// The last event id the receiver acknowledged.
    pub delivered_through: i64,
    /// Failed attempts at the next event.
    pub attempts: i64,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<i64>,
    pub next_attempt_at: Option<i64>,
    /// Events delivered in all.
    pub delivered: i64,
}

/// A feed event to store; the store gives it its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFeed {
    pub at: i64,
    pub kind: String,
    pub system: Option<String>,
    pub run_id: Option<String>,
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub id: String,
    pub system: String,
    pub profile: String,
    pub state: String,
    pub data: String,
    pub reason: Option<String>,
    pub requested_by: Option<String>,
    pub overrides: String,
    pub retry_of: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun<'a> {
    pub id: &'a str,
    pub system: &'a str,
    pub profile: &'a str,
    pub state: &'a str,
    pub data: &'a str,
    pub requested_by: Option<&'a str>,
    pub overrides: &'a str,
    pub retry_of: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub at: i64,
    pub from_state: Option<String>,
    pub to_state: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageRow {
    pub run_id: String,
    pub seq: i64,
    pub name: String,
    pub kind: String,
    pub status: String,
    pub exit_code: Option<i64>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub log_path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRow {
    pub path: String,
    pub size: i64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    pub mac: String,
    pub ip: String,
    pub hostname: Option<String>,
    pub expires_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetbootRow {
    pub system: String,
    pub enabled: bool,
    pub run_id: Option<String>,
    pub token: Option<String>,
    /// Stays on across install-done callbacks (diskless, live images).
    pub persistent: bool,
}

/// Filter for listing runs.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub system: Option<String>,
    pub state: Option<String>,
    pub active_only: bool,
    pub limit: Option<i64>,
}

fn run_from_row(r: &sqlx::sqlite::SqliteRow) -> RunRow {
    RunRow {
        id: r.get("id"),
        system: r.get("system"),
        profile: r.get("profile"),
        state: r.get("state"),
        data: r.get("data"),
        reason: r.get("reason"),
        requested_by: r.get("requested_by"),
        overrides: r.get("overrides"),
        retry_of: r.get("retry_of"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
        finished_at: r.get("finished_at"),
    }
}

const RUN_COLS: &str = "id, system, profile, state, data, reason, requested_by, overrides, retry_of, created_at, updated_at, finished_at";

impl Store {
    /// Open (creating if needed) and migrate.
    pub async fn open(url: &str) -> Result<Store> {
        if !url.starts_with("sqlite:") {
            return Err(StoreError::Unsupported(url.to_string()));
        }
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        if let Some(parent) = opts.get_filename().parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| StoreError::Dir(parent.display().to_string(), e))?;
            }
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.clone())
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(Store {
            pool,
            opts: Some(opts),
        })
    }

    /// A second handle on the same database for writes that must be durable
    /// when they return (DHCP lease commits before their ACK): one connection
    /// with `synchronous=FULL`, so every commit fsyncs the WAL. The main pool
    /// keeps `synchronous=NORMAL`. An in-memory store returns itself.
    pub async fn durable(&self) -> Result<Store> {
        let Some(opts) = &self.opts else {
            return Ok(self.clone());
        };
        let opts = opts.clone().synchronous(SqliteSynchronous::Full);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone())
            .await?;
        Ok(Store {
            pool,
            opts: Some(opts),
        })
    }

    /// An in-memory store (one connection: each `:memory:` connection is its own DB).
    pub async fn memory() -> Result<Store> {
        let opts = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(Store { pool, opts: None })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Applied migration versions (for `rackboot check` and tests).
    pub async fn schema_versions(&self) -> Result<Vec<i64>> {
        let rows = sqlx::query("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| r.get::<i64, _>(0)).collect())
    }

    // ---- runs ----

    /// Store a new run and its first event in one transaction.
    pub async fn create_run(&self, r: &NewRun<'_>, at: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO runs (id, system, profile, state, data, requested_by, overrides, retry_of, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
        )
        .bind(r.id)
        .bind(r.system)
        .bind(r.profile)
        .bind(r.state)
        .bind(r.data)
        .bind(r.requested_by)
        .bind(r.overrides)
        .bind(r.retry_of)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO run_events (run_id, at, from_state, to_state, detail) VALUES (?1, ?2, NULL, ?3, 'created')")
            .bind(r.id)
            .bind(at)
            .bind(r.state)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Compare-and-set transition: succeeds only if the run is still in `from`.
    /// Records the event in the same transaction. Returns false on a stale writer.
    #[allow(clippy::too_many_arguments)]
    pub async fn transition(
        &self,
        id: &str,
        from: &str,
        to: &str,
        data: &str,
        reason: Option<&str>,
        terminal: bool,
        detail: &str,
        at: i64,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let res = sqlx::query(
            "UPDATE runs SET state = ?1, data = ?2, reason = COALESCE(?3, reason), updated_at = ?4,
                    finished_at = CASE WHEN ?5 THEN ?4 ELSE finished_at END
             WHERE id = ?6 AND state = ?7",
        )
        .bind(to)
        .bind(data)
        .bind(reason)
        .bind(at)
        .bind(terminal)
        .bind(id)
        .bind(from)
        .execute(&mut *tx)
        .await?;
        if res.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO run_events (run_id, at, from_state, to_state, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(id)
        .bind(at)
        .bind(from)
        .bind(to)
        .bind(detail)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn get_run(&self, id: &str) -> Result<Option<RunRow>> {
        let q = format!("SELECT {RUN_COLS} FROM runs WHERE id = ?1");
        let row = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(run_from_row))
    }

    pub async fn list_runs(&self, f: &RunFilter) -> Result<Vec<RunRow>> {
        let q = format!(
            "SELECT {RUN_COLS} FROM runs
             WHERE (?1 IS NULL OR system = ?1) AND (?2 IS NULL OR state = ?2)
               AND (NOT ?3 OR finished_at IS NULL)
             ORDER BY created_at DESC, id DESC LIMIT ?4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(&f.system)
            .bind(&f.state)
            .bind(f.active_only)
            .bind(f.limit.unwrap_or(100))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(run_from_row).collect())
    }

    /// The last `per_system` finished runs of every system, newest first
    /// within a system: `(system, run id, state)` (the web UI's streaks).
    pub async fn recent_results(&self, per_system: u32) -> Result<Vec<(String, String, String)>> {
        let rows = sqlx::query(
            "SELECT system, id, state FROM (
               SELECT system, id, state, created_at,
                      ROW_NUMBER() OVER (PARTITION BY system ORDER BY created_at DESC, id DESC) AS rn
               FROM runs WHERE finished_at IS NOT NULL)
             WHERE rn <= ?1 ORDER BY system, created_at DESC, id DESC",
        )
        .bind(i64::from(per_system))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get("system"), r.get("id"), r.get("state")))
            .collect())
    }

    /// The last `limit` runs that failed or timed out, newest first.
    pub async fn recent_failures(&self, limit: u32) -> Result<Vec<RunRow>> {
        let q = format!(
            "SELECT {RUN_COLS} FROM runs WHERE state IN ('failed', 'timed_out')
             ORDER BY finished_at DESC, id DESC LIMIT ?1"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(run_from_row).collect())
    }

    /// Runs that have not finished (resumed at start-up), oldest first.
    pub async fn active_runs(&self) -> Result<Vec<RunRow>> {
        let q = format!(
            "SELECT {RUN_COLS} FROM runs WHERE finished_at IS NULL ORDER BY created_at, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(q))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(run_from_row).collect())
    }

    pub async fn append_event(
        &self,
        run_id: &str,
        at: i64,
        state: &str,
        detail: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO run_events (run_id, at, from_state, to_state, detail) VALUES (?1, ?2, ?3, ?3, ?4)",
        )
        .bind(run_id)
        .bind(at)
        .bind(state)
        .bind(detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn run_events(&self, run_id: &str) -> Result<Vec<EventRow>> {
        let rows = sqlx::query(
            "SELECT at, from_state, to_state, detail FROM run_events WHERE run_id = ?1 ORDER BY id",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| EventRow {
                at: r.get("at"),
                from_state: r.get("from_state"),
                to_state: r.get("to_state"),
                detail: r.get("detail"),
            })
            .collect())
    }

    // ---- the operator feed ----

    /// Store feed events in one transaction; returns their ids, in order.
    pub async fn append_feed(&self, events: &[NewFeed]) -> Result<Vec<i64>> {
        let mut tx = self.pool.begin().await?;
        let mut ids = Vec::with_capacity(events.len());
        for e in events {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO feed (at, kind, system, run_id, data) VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
            )
            .bind(e.at)
            .bind(&e.kind)
            .bind(&e.system)
            .bind(&e.run_id)
            .bind(&e.data)
            .fetch_one(&mut *tx)
            .await?;
            ids.push(id);
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Feed events after `after` (exclusive), oldest first, at most `limit`.
    pub async fn feed_since(&self, after: i64, limit: u32) -> Result<Vec<FeedRow>> {
        let rows = sqlx::query(
            "SELECT id, at, kind, system, run_id, data FROM feed WHERE id > ?1 ORDER BY id LIMIT ?2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(feed_from_row).collect())
    }

    /// A system's feed events before `before` (exclusive; `None`: the
    /// newest), newest first, at most `limit`.
    pub async fn feed_of_system(
        &self,
        system: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<FeedRow>> {
        let rows = sqlx::query(
            "SELECT id, at, kind, system, run_id, data FROM feed \
             WHERE system = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
        )
        .bind(system)
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(feed_from_row).collect())
    }

    /// The newest feed id (0 when empty).
    pub async fn feed_head(&self) -> Result<i64> {
        let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM feed")
            .fetch_one(&self.pool)
            .await?;
        Ok(id.unwrap_or(0))
    }

    /// Drop feed events older than `older_than` (ms), and all but the newest
    /// `keep_per_system` events of each system. Returns how many went.
    pub async fn prune_feed(&self, older_than: i64, keep_per_system: u32) -> Result<u64> {
        let mut n = sqlx::query("DELETE FROM feed WHERE at < ?1")
            .bind(older_than)
            .execute(&self.pool)
            .await?
            .rows_affected();
        n += sqlx::query(
            "DELETE FROM feed WHERE system IS NOT NULL AND id IN ( \
               SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY system ORDER BY id DESC) AS rn \
                               FROM feed WHERE system IS NOT NULL) WHERE rn > ?1)",
        )
        .bind(i64::from(keep_per_system))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n)
    }

    pub async fn webhook_state(&self, name: &str) -> Result<Option<WebhookRow>> {
        let r = sqlx::query(
            "SELECT name, delivered_through, attempts, last_error, last_attempt_at, \
             next_attempt_at, delivered FROM webhook_state WHERE name = ?1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(r.map(|r| WebhookRow {
            name: r.get("name"),
            delivered_through: r.get("delivered_through"),
            attempts: r.get("attempts"),
            last_error: r.get("last_error"),
            last_attempt_at: r.get("last_attempt_at"),
            next_attempt_at: r.get("next_attempt_at"),
            delivered: r.get("delivered"),
        }))
    }

    pub async fn save_webhook_state(&self, w: &WebhookRow, at: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO webhook_state (name, delivered_through, attempts, last_error, \
             last_attempt_at, next_attempt_at, delivered, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT(name) DO UPDATE SET delivered_through = ?2, attempts = ?3, \
             last_error = ?4, last_attempt_at = ?5, next_attempt_at = ?6, delivered = ?7, \
             updated_at = ?8",
        )
        .bind(&w.name)
        .bind(w.delivered_through)
        .bind(w.attempts)
        .bind(&w.last_error)
        .bind(w.last_attempt_at)
        .bind(w.next_attempt_at)
        .bind(w.delivered)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // ---- audit trail ----

    /// Append one entry (its `id` is ignored); returns the new id.
    pub async fn append_audit(&self, e: &crate::api::AuditEntry) -> Result<i64> {
        let r = sqlx::query(
            "INSERT INTO audit (at, actor, scope, via, remote, action, path, target, status, detail) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .bind(e.at)
        .bind(&e.actor)
        .bind(&e.scope)
        .bind(&e.via)
        .bind(&e.remote)
        .bind(&e.action)
        .bind(&e.path)
        .bind(&e.target)
        .bind(e.status as i64)
        .bind(e.detail.to_string())
        .execute(&self.pool)
        .await?;
        Ok(r.last_insert_rowid())
    }

    /// Newest first: at most `limit` entries with an id below `before`
    /// (0: from the newest), only those about `target` when given.
    pub async fn audit(
        &self,
        before: i64,
        limit: u32,
        target: Option<&str>,
    ) -> Result<Vec<crate::api::AuditEntry>> {
        let before = if before <= 0 { i64::MAX } else { before };
        let rows = sqlx::query(
            "SELECT id, at, actor, scope, via, remote, action, path, target, status, detail \
             FROM audit WHERE id < ?1 AND (?2 IS NULL OR target = ?2) ORDER BY id DESC LIMIT ?3",
        )
        .bind(before)
        .bind(target)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| crate::api::AuditEntry {
                id: r.get("id"),
                at: r.get("at"),
                actor: r.get("actor"),
                scope: r.get("scope"),
                via: r.get("via"),
                remote: r.get("remote"),
                action: r.get("action"),
                path: r.get("path"),
                target: r.get("target"),
                status: r.get::<i64, _>("status") as u16,
                detail: serde_json::from_str(r.get::<&str, _>("detail"))
                    .unwrap_or(serde_json::Value::Null),
            })
            .collect())
    }

    // ---- stages and artifacts ----

    pub async fn upsert_stage(&self, s: &StageRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO stage_results (run_id, seq, name, kind, status, exit_code, started_at, finished_at, log_path)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (run_id, seq) DO UPDATE SET status = excluded.status, exit_code = excluded.exit_code,
                started_at = excluded.started_at, finished_at = excluded.finished_at, log_path = excluded.log_path",
        )
        .bind(&s.run_id)
        .bind(s.seq)
        .bind(&s.name)
        .bind(&s.kind)
        .bind(&s.status)
        .bind(s.exit_code)
        .bind(s.started_at)
        .bind(s.finished_at)
        .bind(&s.log_path)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn stages(&self, run_id: &str) -> Result<Vec<StageRow>> {
        let rows = sqlx::query(
            "SELECT run_id, seq, name, kind, status, exit_code, started_at, finished_at, log_path
             FROM stage_results WHERE run_id = ?1 ORDER BY seq",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| StageRow {
                run_id: r.get("run_id"),
                seq: r.get("seq"),
                name: r.get("name"),
                kind: r.get("kind"),
                status: r.get("status"),
                exit_code: r.get("exit_code"),
                started_at: r.get("started_at"),
                finished_at: r.get("finished_at"),
                log_path: r.get("log_path"),
            })
            .collect())
    }

    pub async fn add_artifact(&self, run_id: &str, a: &ArtifactRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO artifacts (run_id, path, size, sha256) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (run_id, path) DO UPDATE SET size = excluded.size, sha256 = excluded.sha256",
        )
        .bind(run_id)
        .bind(&a.path)
        .bind(a.size)
        .bind(&a.sha256)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn artifacts(&self, run_id: &str) -> Result<Vec<ArtifactRow>> {
        let rows =
            sqlx::query("SELECT path, size, sha256 FROM artifacts WHERE run_id = ?1 ORDER BY path")
                .bind(run_id)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .iter()
            .map(|r| ArtifactRow {
                path: r.get("path"),
                size: r.get("size"),
                sha256: r.get("sha256"),
            })
            .collect())
    }

    // ---- DHCP leases ----

    /// Persist a batch of leases in one transaction (group commit). In
    /// order, as if one by one: an IP moving to another MAC takes it from its
    /// old holder. Written as a few multi-row statements (chunks of
    /// [`LEASE_CHUNK`]): per-statement overhead, not SQLite, is what limits a
    /// DHCP server's commit rate.
    pub async fn upsert_leases(&self, leases: &[LeaseRow], at: i64) -> Result<()> {
        match self.upsert_leases_bulk(leases, at).await {
            Ok(()) => Ok(()),
            // Only when the batch itself hands one IP to two MACs in an order
            // the bulk form cannot express; the row-by-row form can.
            Err(StoreError::Db(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                self.upsert_leases_rows(leases, at).await
            }
            Err(e) => Err(e),
        }
    }

    async fn upsert_leases_bulk(&self, leases: &[LeaseRow], at: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for chunk in leases.chunks(LEASE_CHUNK) {
            let pairs = vec!["(?, ?)"; chunk.len()].join(", ");
            let q = format!(
                "DELETE FROM leases WHERE rowid IN (SELECT l.rowid FROM leases l
                   JOIN (VALUES {pairs}) v ON l.ip = v.column1 AND l.mac <> v.column2)"
            );
            let mut del = sqlx::query(sqlx::AssertSqlSafe(q));
            for l in chunk {
                del = del.bind(&l.ip).bind(&l.mac);
            }
            del.execute(&mut *tx).await?;
            let rows = vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", ");
            let q = format!(
                "INSERT INTO leases (mac, ip, hostname, expires_at, updated_at) VALUES {rows}
                 ON CONFLICT (mac) DO UPDATE SET ip = excluded.ip, hostname = excluded.hostname,
                    expires_at = excluded.expires_at, updated_at = excluded.updated_at"
            );
            let mut ins = sqlx::query(sqlx::AssertSqlSafe(q));
            for l in chunk {
                ins = ins
                    .bind(&l.mac)
                    .bind(&l.ip)
                    .bind(&l.hostname)
                    .bind(l.expires_at)
                    .bind(at);
            }
            ins.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn upsert_leases_rows(&self, leases: &[LeaseRow], at: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for l in leases {
            // An IP moving to another MAC: the old holder's row goes.
            sqlx::query("DELETE FROM leases WHERE ip = ?1 AND mac <> ?2")
                .bind(&l.ip)
                .bind(&l.mac)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO leases (mac, ip, hostname, expires_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (mac) DO UPDATE SET ip = excluded.ip, hostname = excluded.hostname,
                    expires_at = excluded.expires_at, updated_at = excluded.updated_at",
            )
            .bind(&l.mac)
            .bind(&l.ip)
            .bind(&l.hostname)
            .bind(l.expires_at)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_lease(&self, mac: &str) -> Result<()> {
        sqlx::query("DELETE FROM leases WHERE mac = ?1")
            .bind(mac)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn leases(&self) -> Result<Vec<LeaseRow>> {
        let rows = sqlx::query("SELECT mac, ip, hostname, expires_at FROM leases ORDER BY ip")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| LeaseRow {
                mac: r.get("mac"),
                ip: r.get("ip"),
                hostname: r.get("hostname"),
                expires_at: r.get("expires_at"),
            })
            .collect())
    }

    // ---- netboot switch ----

    pub async fn set_netboot(
        &self,
        system: &str,
        enabled: bool,
        run_id: Option<&str>,
        token: Option<&str>,
        persistent: bool,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO netboot (system, enabled, run_id, token, updated_at, persistent) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (system) DO UPDATE SET enabled = excluded.enabled, run_id = excluded.run_id,
                token = excluded.token, updated_at = excluded.updated_at, persistent = excluded.persistent",
        )
        .bind(system)
        .bind(enabled)
        .bind(run_id)
        .bind(token)
        .bind(now_ms())
        .bind(persistent)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn netboot(&self) -> Result<Vec<NetbootRow>> {
        let rows = sqlx::query(
            "SELECT system, enabled, run_id, token, persistent FROM netboot ORDER BY system",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| NetbootRow {
                system: r.get("system"),
                enabled: r.get("enabled"),
                run_id: r.get("run_id"),
                token: r.get("token"),
                persistent: r.get("persistent"),
            })
            .collect())
    }
}

fn feed_from_row(r: &sqlx::sqlite::SqliteRow) -> FeedRow {
    FeedRow {
        id: r.get("id"),
        at: r.get("at"),
        kind: r.get("kind"),
        system: r.get("system"),
        run_id: r.get("run_id"),
        data: r.get("data"),
    }
}

#[cfg(test)]
mod tests;
