//! The state store: a small facade with domain verbs over sqlx, on one of
//! two backends chosen once by the database URL:
//!
//! * SQLite (`sqlite://PATH`, WAL, the embedded default for one daemon);
//! * PostgreSQL (`postgres://…` or `postgresql://…`, shared by several
//!   daemons).
//!
//! All SQL text of the project lives here and in `migrations/{sqlite,postgres}/`.
//! Each verb is written once: `with_pool!` compiles its body once per
//! backend (sqlx infers the database from the executor), and the SQL text is
//! the dialect both engines read (`$N` placeholders, `ON CONFLICT`,
//! `RETURNING`, aliased subqueries). The few places where they differ say so
//! in place. sqlx's `Any` driver is not used: it cannot decode SQLite
//! booleans and has no time types (see ARCHITECTURE.md).
//!
//! Concurrency. SQLite has one writer at a time; on Postgres several
//! connections (and daemons) write at once, so what SQLite got from its
//! write lock is explicit here:
//! * one active run per system: a partial unique index (migration 6, both
//!   backends); [`Store::create_run`] reports the loser as
//!   [`StoreError::ActiveRun`];
//! * run transitions are compare-and-set (`WHERE state = $from`): under
//!   Postgres' READ COMMITTED the second writer re-reads the row and matches
//!   nothing;
//! * feed ids are visible in id order (SSE and webhook cursors never skip an
//!   event): an identity value is taken at insert but a transaction may
//!   commit after a later one, so on Postgres appends take a transaction-scoped
//!   `EXCLUSIVE` lock on `feed` (readers are not blocked);
//! * a lease batch is applied as one unit, in order: on Postgres the batch
//!   holds an `EXCLUSIVE` lock on `leases` (two batches moving one address
//!   would otherwise deadlock or fail on the unique `ip`).
//!
//! Only transaction-scoped locks are taken, so a PgBouncer in transaction
//! mode in front of Postgres is fine.

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL {0:?} (this build supports sqlite:// and postgres:// only)")]
    Unsupported(String),
    #[error("cannot create data dir {0}: {1}")]
    Dir(String, std::io::Error),
    /// [`Store::create_run`] for a system that already has an unfinished run.
    #[error("{system} already has an active run {run}")]
    ActiveRun { system: String, run: String },
    /// [`Store::write_inventory`] expected another version of the shared
    /// inventory (another writer was first).
    #[error("the shared inventory changed meanwhile (expected {expected}, found {found}); read it again")]
    InventoryChanged { expected: String, found: String },
    /// No shared inventory was ever written.
    #[error("the database holds no inventory yet (run `rackboot import DIR`, or start a daemon once to seed it from its files)")]
    NoInventory,
    /// Only the Postgres backend can do this.
    #[error("{0} needs the PostgreSQL backend")]
    PostgresOnly(&'static str),
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
/// values each: well under SQLite's 32766 and Postgres' 65535 parameters).
pub const LEASE_CHUNK: usize = 500;

/// A database URL fit for logs and error messages: the password, if any,
/// is replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (auth, tail) = rest.split_at(auth_end);
    match auth.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Which engine a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    db: Db,
}

#[derive(Clone)]
enum Db {
    Sqlite {
        pool: SqlitePool,
        /// How the file was opened (`None` for an in-memory store).
        opts: Option<Box<SqliteConnectOptions>>,
    },
    Pg(PgPool),
}

/// Runs `$body` with `$pool` bound to the store's pool and `$kind` to its
/// [`Backend`]. The body is written once and compiled once per backend: the
/// sqlx calls in it are generic, the database is inferred from the executor.
macro_rules! with_pool {
    ($store:expr, |$pool:ident, $kind:ident| $body:expr) => {
        match &$store.db {
            Db::Sqlite { pool: $pool, .. } => {
                #[allow(unused_variables)]
                let $kind = Backend::Sqlite;
                $body
            }
            Db::Pg($pool) => {
                #[allow(unused_variables)]
                let $kind = Backend::Postgres;
                $body
            }
        }
    };
    ($store:expr, |$pool:ident| $body:expr) => {
        with_pool!($store, |$pool, _kind| $body)
    };
}

/// Postgres only (SQLite has one writer anyway): taken first in a feed
/// append so ids become visible in id order. See the module doc.
const PG_LOCK_FEED: &str = "LOCK TABLE feed IN EXCLUSIVE MODE";
/// Postgres only: taken first in a lease batch. See the module doc.
const PG_LOCK_LEASES: &str = "LOCK TABLE leases IN EXCLUSIVE MODE";

/// One event of the operator feed, as stored (`data` is JSON text).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FeedRow {
    pub id: i64,
    pub at: i64,
    pub kind: String,
    pub system: Option<String>,
    pub run_id: Option<String>,
    pub data: String,
}

/// A webhook's delivery state (see `webhooks`).
#[derive(Debug, Clone, PartialEq, Eq, Default, sqlx::FromRow)]
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

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
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
    /// The boot domain whose daemons may claim the run.
    pub domain: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EventRow {
    pub at: i64,
    pub from_state: Option<String>,
    pub to_state: String,
    pub detail: String,
    /// The daemon id that wrote a transition under its lease (None: written
    /// unfenced, or before migration 0012).
    pub writer: Option<String>,
    pub lease: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
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

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ArtifactRow {
    pub path: String,
    pub size: i64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LeaseRow {
    pub mac: String,
    pub ip: String,
    pub hostname: Option<String>,
    pub expires_at: i64,
}

/// A MAC seen on DHCP that is not in the inventory (`discovered` table).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DiscoveredRow {
    pub mac: String,
    pub arch: Option<String>,
    pub vendor_class: Option<String>,
    pub ipxe: bool,
    /// Seen on the proxyDHCP port 4011 or by a proxyDHCP daemon.
    pub proxy: bool,
    pub relay: Option<String>,
    pub interface: Option<String>,
    pub hostname: Option<String>,
    pub first_seen: i64,
    pub last_seen: i64,
    pub count: i64,
}

/// A system's last facts report (`facts` table; `data` is checked JSON).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FactsRow {
    pub system: String,
    pub at: i64,
    pub run_id: Option<String>,
    pub data: String,
}

/// The shared inventory's version row (`inventory_version`).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InventoryHead {
    pub version: i64,
    pub updated_at: i64,
    pub updated_by: String,
}

/// The version a [`Store::write_inventory`] expects to replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InventoryExpect {
    /// Whatever is there (an import replaces it).
    Any,
    /// No inventory yet (the first daemon seeding it from its files).
    Absent,
    /// Exactly this version (an edit made on that version).
    Version(i64),
}

/// A run's lease: the daemon id owning it and the token of its claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub token: i64,
}

/// The database's clock in ms since the epoch, as SQL (lease expiry is
/// judged by one clock, the database's, whatever the daemons' clocks say).
fn db_now(kind: Backend) -> &'static str {
    match kind {
        Backend::Postgres => "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT",
        Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
    }
}

/// A daemon id in the registry (`daemons` table): one per start of a node.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DaemonRow {
    pub id: String,
    pub node: String,
    /// Comma-separated boot domains.
    pub domains: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
    pub fenced: bool,
    pub fenced_at: Option<i64>,
    /// The daemon id that fenced it (itself for a clean stop, its node's
    /// next id for a restart, a peer for a takeover).
    pub fenced_by: Option<String>,
    /// Unfinished runs it owns.
    pub runs: i64,
}

/// The Postgres channel a shared-inventory write notifies (payload: the new
/// version). A hint only: daemons poll the version anyway.
pub const INVENTORY_CHANNEL: &str = "rackboot_inventory";

/// A discovered MAC's last facts report (`discovered_facts` table; `data`
/// is checked JSON).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DiscoveredFactsRow {
    pub mac: String,
    pub at: i64,
    pub data: String,
}

/// What [`Store::upsert_discovered`] did: MACs pruned by the cap, and the
/// MACs of the batch the table did not hold before (first sightings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredWrite {
    pub pruned: u64,
    pub new: Vec<String>,
}

/// Rows per multi-row statement in [`Store::upsert_discovered`] (11 values each).
pub const DISCOVERED_CHUNK: usize = 400;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
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

/// An audit row as stored (`detail` is JSON text, `status` an integer).
#[derive(sqlx::FromRow)]
struct AuditRow {
    id: i64,
    at: i64,
    actor: String,
    scope: String,
    via: String,
    remote: String,
    action: String,
    path: String,
    target: String,
    status: i64,
    detail: String,
}

impl From<AuditRow> for crate::api::AuditEntry {
    fn from(r: AuditRow) -> Self {
        crate::api::AuditEntry {
            id: r.id,
            at: r.at,
            actor: r.actor,
            scope: r.scope,
            via: r.via,
            remote: r.remote,
            action: r.action,
            path: r.path,
            target: r.target,
            status: r.status as u16,
            detail: serde_json::from_str(&r.detail).unwrap_or(serde_json::Value::Null),
        }
    }
}

const RUN_COLS: &str = "id, system, profile, state, data, reason, requested_by, overrides, retry_of, created_at, updated_at, finished_at";

/// Connections per Postgres pool (one daemon).
const PG_POOL_SIZE: u32 = 8;

impl Store {
    /// Open (creating if needed) and migrate: `sqlite://PATH` or
    /// `postgres://…` / `postgresql://…` (the database must exist).
    pub async fn open(url: &str) -> Result<Store> {
        if url.starts_with("sqlite:") {
            Self::open_sqlite(url).await
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::open_postgres(url).await
        } else {
            Err(StoreError::Unsupported(redact_url(url)))
        }
    }

    async fn open_sqlite(url: &str) -> Result<Store> {
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
            db: Db::Sqlite {
                pool,
                opts: Some(Box::new(opts)),
            },
        })
    }

    async fn open_postgres(url: &str) -> Result<Store> {
        let opts = PgConnectOptions::from_str(url)?.application_name("rackboot");
        let pool = PgPoolOptions::new()
            .max_connections(PG_POOL_SIZE)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts)
            .await?;
        // Several daemons starting at once: sqlx's Postgres migrator holds
        // an advisory lock while it applies migrations.
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(Store { db: Db::Pg(pool) })
    }

    /// Which engine this store runs on.
    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite { .. } => Backend::Sqlite,
            Db::Pg(_) => Backend::Postgres,
        }
    }

    /// A second handle on the same database for writes that must be durable
    /// when they return (DHCP lease commits before their ACK). SQLite: one
    /// connection with `synchronous=FULL`, so every commit fsyncs the WAL (the
    /// main pool keeps `synchronous=NORMAL`). Postgres commits are durable
    /// already (`synchronous_commit` on): the store itself. An in-memory
    /// store returns itself.
    pub async fn durable(&self) -> Result<Store> {
        let Db::Sqlite {
            opts: Some(opts), ..
        } = &self.db
        else {
            return Ok(self.clone());
        };
        let opts = (**opts).clone().synchronous(SqliteSynchronous::Full);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone())
            .await?;
        Ok(Store {
            db: Db::Sqlite {
                pool,
                opts: Some(Box::new(opts)),
            },
        })
    }

    /// An in-memory SQLite store (one connection: each `:memory:` connection
    /// is its own DB).
    pub async fn memory() -> Result<Store> {
        let opts = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(Store {
            db: Db::Sqlite { pool, opts: None },
        })
    }

    pub async fn close(&self) {
        with_pool!(self, |pool| pool.close().await)
    }

    /// Applied migration versions (for `rackboot check` and tests).
    pub async fn schema_versions(&self) -> Result<Vec<i64>> {
        const Q: &str = "SELECT version FROM _sqlx_migrations ORDER BY version";
        Ok(with_pool!(self, |pool| sqlx::query_scalar(Q)
            .fetch_all(pool)
            .await?))
    }

    // ---- runs ----

    /// Store a new run and its first event in one transaction. A system has
    /// at most one unfinished run: a second one is
    /// [`StoreError::ActiveRun`], whichever daemon or connection asks.
    pub async fn create_run(&self, r: &NewRun<'_>, at: i64) -> Result<()> {
        // An async block, so that `?` ends up in `res`, not out of the verb.
        let res: Result<()> = with_pool!(self, |pool| {
            async {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO runs (id, system, profile, state, data, requested_by, overrides, retry_of, created_at, updated_at, domain)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)",
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
            .bind(r.domain)
            .execute(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO run_events (run_id, at, from_state, to_state, detail) VALUES ($1, $2, NULL, $3, 'created')")
                .bind(r.id)
                .bind(at)
                .bind(r.state)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        }
        .await
        });
        match res {
            Err(StoreError::Db(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                // The index `runs_one_active`, or a duplicate id.
                match self.active_run_of(r.system).await? {
                    Some(run) if run != r.id => Err(StoreError::ActiveRun {
                        system: r.system.to_string(),
                        run,
                    }),
                    _ => Err(StoreError::Db(sqlx::Error::Database(e))),
                }
            }
            other => other,
        }
    }

    /// The id of a system's unfinished run, if it has one.
    async fn active_run_of(&self, system: &str) -> Result<Option<String>> {
        const Q: &str = "SELECT id FROM runs WHERE system = $1 AND finished_at IS NULL";
        Ok(with_pool!(self, |pool| sqlx::query_scalar(Q)
            .bind(system)
            .fetch_optional(pool)
            .await?))
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
        self.transition_fenced(id, from, to, data, reason, terminal, detail, at, None)
            .await
    }

    /// [`Self::transition`] fenced by a lease: it also needs the run to be
    /// owned by `lease.owner` under `lease.token` (a daemon that lost the
    /// run, fenced or taken over, writes nothing: false).
    #[allow(clippy::too_many_arguments)]
    pub async fn transition_fenced(
        &self,
        id: &str,
        from: &str,
        to: &str,
        data: &str,
        reason: Option<&str>,
        terminal: bool,
        detail: &str,
        at: i64,
        lease: Option<&Lease>,
    ) -> Result<bool> {
        with_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let res = sqlx::query(
                "UPDATE runs SET state = $1, data = $2, reason = COALESCE($3, reason), updated_at = $4,
                        finished_at = CASE WHEN $5 THEN $4 ELSE finished_at END
                 WHERE id = $6 AND state = $7
                   AND ($8 IS NULL OR (owner = $8 AND lease = $9))",
            )
            .bind(to)
            .bind(data)
            .bind(reason)
            .bind(at)
            .bind(terminal)
            .bind(id)
            .bind(from)
            .bind(lease.map(|l| l.owner.as_str()))
            .bind(lease.map_or(0, |l| l.token))
            .execute(&mut *tx)
            .await?;
            if res.rows_affected() != 1 {
                tx.rollback().await?;
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO run_events (run_id, at, from_state, to_state, detail, writer, lease)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(id)
            .bind(at)
            .bind(from)
            .bind(to)
            .bind(detail)
            .bind(lease.map(|l| l.owner.as_str()))
            .bind(lease.map(|l| l.token))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    pub async fn get_run(&self, id: &str) -> Result<Option<RunRow>> {
        let q = format!("SELECT {RUN_COLS} FROM runs WHERE id = $1");
        Ok(with_pool!(self, |pool| sqlx::query_as(
            sqlx::AssertSqlSafe(q)
        )
        .bind(id)
        .fetch_optional(pool)
        .await?))
    }

    pub async fn list_runs(&self, f: &RunFilter) -> Result<Vec<RunRow>> {
        let q = format!(
            "SELECT {RUN_COLS} FROM runs
             WHERE ($1 IS NULL OR system = $1) AND ($2 IS NULL OR state = $2)
               AND (NOT $3 OR finished_at IS NULL)
             ORDER BY created_at DESC, id DESC LIMIT $4"
        );
        Ok(with_pool!(self, |pool| sqlx::query_as(
            sqlx::AssertSqlSafe(q)
        )
        .bind(&f.system)
        .bind(&f.state)
        .bind(f.active_only)
        .bind(f.limit.unwrap_or(100))
        .fetch_all(pool)
        .await?))
    }

    /// The last `per_system` finished runs of every system, newest first
    /// within a system: `(system, run id, state)` (the web UI's streaks).
    pub async fn recent_results(&self, per_system: u32) -> Result<Vec<(String, String, String)>> {
        const Q: &str = "SELECT system, id, state FROM (
               SELECT system, id, state, created_at,
                      ROW_NUMBER() OVER (PARTITION BY system ORDER BY created_at DESC, id DESC) AS rn
               FROM runs WHERE finished_at IS NOT NULL) AS t
             WHERE rn <= $1 ORDER BY system, created_at DESC, id DESC";
        Ok(with_pool!(self, |pool| sqlx::query_as(Q)
            .bind(i64::from(per_system))
            .fetch_all(pool)
            .await?))
    }

    /// The last `limit` runs that failed or timed out, newest first.
    pub async fn recent_failures(&self, limit: u32) -> Result<Vec<RunRow>> {
        let q = format!(
            "SELECT {RUN_COLS} FROM runs WHERE state IN ('failed', 'timed_out')
             ORDER BY finished_at DESC, id DESC LIMIT $1"
        );
        Ok(with_pool!(self, |pool| sqlx::query_as(
            sqlx::AssertSqlSafe(q)
        )
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?))
    }

    /// Runs that have not finished (resumed at start-up), oldest first.
    pub async fn active_runs(&self) -> Result<Vec<RunRow>> {
        let q = format!(
            "SELECT {RUN_COLS} FROM runs WHERE finished_at IS NULL ORDER BY created_at, id"
        );
        Ok(with_pool!(self, |pool| sqlx::query_as(
            sqlx::AssertSqlSafe(q)
        )
        .fetch_all(pool)
        .await?))
    }

    pub async fn append_event(
        &self,
        run_id: &str,
        at: i64,
        state: &str,
        detail: &str,
    ) -> Result<()> {
        const Q: &str = "INSERT INTO run_events (run_id, at, from_state, to_state, detail) VALUES ($1, $2, $3, $3, $4)";
        with_pool!(self, |pool| {
            sqlx::query(Q)
                .bind(run_id)
                .bind(at)
                .bind(state)
                .bind(detail)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    pub async fn run_events(&self, run_id: &str) -> Result<Vec<EventRow>> {
        const Q: &str =
            "SELECT at, from_state, to_state, detail, writer, lease FROM run_events WHERE run_id = $1 ORDER BY id";
        Ok(with_pool!(self, |pool| sqlx::query_as(Q)
            .bind(run_id)
            .fetch_all(pool)
            .await?))
    }

    // ---- the operator feed ----

    /// Store feed events in one transaction; returns their ids, in order.
    /// Ids become visible in id order on both backends (see the module doc).
    pub async fn append_feed(&self, events: &[NewFeed]) -> Result<Vec<i64>> {
        with_pool!(self, |pool, kind| {
            let mut tx = pool.begin().await?;
            if kind == Backend::Postgres {
                sqlx::query(PG_LOCK_FEED).execute(&mut *tx).await?;
            }
            let mut ids = Vec::with_capacity(events.len());
            for e in events {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO feed (at, kind, system, run_id, data) VALUES ($1, $2, $3, $4, $5) RETURNING id",
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
        })
    }

    /// Feed events after `after` (exclusive), oldest first, at most `limit`.
    pub async fn feed_since(&self, after: i64, limit: u32) -> Result<Vec<FeedRow>> {
        const Q: &str = "SELECT id, at, kind, system, run_id, data FROM feed WHERE id > $1 ORDER BY id LIMIT $2";
        Ok(with_pool!(self, |pool| sqlx::query_as(Q)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?))
    }

    /// A system's feed events before `before` (exclusive; `None`: the
    /// newest), newest first, at most `limit`.
    pub async fn feed_of_system(
        &self,
        system: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<FeedRow>> {
        const Q: &str = "SELECT id, at, kind, system, run_id, data FROM feed \
             WHERE system = $1 AND id < $2 ORDER BY id DESC LIMIT $3";
        Ok(with_pool!(self, |pool| sqlx::query_as(Q)
            .bind(system)
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?))
    }

    /// The newest feed id (0 when empty).
    pub async fn feed_head(&self) -> Result<i64> {
        const Q: &str = "SELECT MAX(id) FROM feed";
        let id: Option<i64> =
            with_pool!(self, |pool| sqlx::query_scalar(Q).fetch_one(pool).await?);
        Ok(id.unwrap_or(0))
    }

    /// Drop feed events older than `older_than` (ms), and all but the newest
    /// `keep_per_system` events of each system. Returns how many went.
    pub async fn prune_feed(&self, older_than: i64, keep_per_system: u32) -> Result<u64> {
        const BY_AGE: &str = "DELETE FROM feed WHERE at < $1";
        const BY_CAP: &str = "DELETE FROM feed WHERE system IS NOT NULL AND id IN ( \
               SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY system ORDER BY id DESC) AS rn \
                               FROM feed WHERE system IS NOT NULL) AS t WHERE rn > $1)";
        with_pool!(self, |pool| {
            let mut n = sqlx::query(BY_AGE)
                .bind(older_than)
                .execute(pool)
                .await?
                .rows_affected();
            n += sqlx::query(BY_CAP)
                .bind(i64::from(keep_per_system))
                .execute(pool)
                .await?
                .rows_affected();
            Ok(n)
        })
    }

    pub async fn webhook_state(&self, name: &str) -> Result<Option<WebhookRow>> {
        const Q: &str = "SELECT name, delivered_through, attempts, last_error, last_attempt_at, \
             next_attempt_at, delivered FROM webhook_state WHERE name = $1";
        Ok(with_pool!(self, |pool| sqlx::query_as(Q)
            .bind(name)
            .fetch_optional(pool)
            .await?))
    }

    pub async fn save_webhook_state(&self, w: &WebhookRow, at: i64) -> Result<()> {
        const Q: &str =
            "INSERT INTO webhook_state (name, delivered_through, attempts, last_error, \
             last_attempt_at, next_attempt_at, delivered, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT(name) DO UPDATE SET delivered_through = $2, attempts = $3, \
             last_error = $4, last_attempt_at = $5, next_attempt_at = $6, delivered = $7, \
             updated_at = $8";
        with_pool!(self, |pool| {
            sqlx::query(Q)
                .bind(&w.name)
                .bind(w.delivered_through)
                .bind(w.attempts)
                .bind(&w.last_error)
                .bind(w.last_attempt_at)
                .bind(w.next_attempt_at)
                .bind(w.delivered)
                .bind(at)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    // ---- audit trail ----

    /// Append one entry (its `id` is ignored); returns the new id.
    pub async fn append_audit(&self, e: &crate::api::AuditEntry) -> Result<i64> {
        const Q: &str = "INSERT INTO audit (at, actor, scope, via, remote, action, path, target, status, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id";
        let detail = e.detail.to_string();
        Ok(with_pool!(self, |pool| sqlx::query_scalar(Q)
            .bind(e.at)
            .bind(&e.actor)
            .bind(&e.scope)
            .bind(&e.via)
            .bind(&e.remote)
            .bind(&e.action)
            .bind(&e.path)
            .bind(&e.target)
            .bind(i64::from(e.status))
            .bind(&detail)
            .fetch_one(pool)
            .await?))
    }

    /// Newest first: at most `limit` entries with an id below `before`
    /// (0: from the newest), only those about `target` when given.
    pub async fn audit(
        &self,
        before: i64,
        limit: u32,
        target: Option<&str>,
    ) -> Result<Vec<crate::api::AuditEntry>> {
        const Q: &str =
            "SELECT id, at, actor, scope, via, remote, action, path, target, status, detail \
             FROM audit WHERE id < $1 AND ($2 IS NULL OR target = $2) ORDER BY id DESC LIMIT $3";
        let before = if before <= 0 { i64::MAX } else { before };
        let rows: Vec<AuditRow> = with_pool!(self, |pool| sqlx::query_as(Q)
            .bind(before)
            .bind(target)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?);
        Ok(rows.into_iter().map(Into::into).collect())
    }

    // ---- stages and artifacts ----

    pub async fn upsert_stage(&self, s: &StageRow) -> Result<()> {
        const Q: &str = "INSERT INTO stage_results (run_id, seq, name, kind, status, exit_code, started_at, finished_at, log_path)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (run_id, seq) DO UPDATE SET status = excluded.status, exit_code = excluded.exit_code,
                started_at = excluded.started_at, finished_at = excluded.finished_at, log_path = excluded.log_path";
        with_pool!(self, |pool| {
            sqlx::query(Q)
                .bind(&s.run_id)
                .bind(s.seq)
                .bind(&s.name)
                .bind(&s.kind)
                .bind(&s.status)
                .bind(s.exit_code)
                .bind(s.started_at)
                .bind(s.finished_at)
                .bind(&s.log_path)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    pub async fn stages(&self, run_id: &str) -> Result<Vec<StageRow>> {
        const Q: &str =
            "SELECT run_id, seq, name, kind, status, exit_code, started_at, finished_at, log_path
             FROM stage_results WHERE run_id = $1 ORDER BY seq";
        Ok(with_pool!(self, |pool| sqlx::query_as(Q)
            .bind(run_id)
            .fetch_all(pool)
            .await?))
    }

    pub async fn add_artifact(&self, run_id: &str, a: &ArtifactRow) -> Result<()> {
        const Q: &str = "INSERT INTO artifacts (run_id, path, size, sha256) VALUES ($1, $2, $3, $4)
             ON CONFLICT (run_id, path) DO UPDATE SET size = excluded.size, sha256 = excluded.sha256";
        with_pool!(self, |pool| {
            sqlx::query(Q)
                .bind(run_id)
                .bind(&a.path)
                .bind(a.size)
                .bind(&a.sha256)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    pub async fn artifacts(&self, run_id: &str) -> Result<Vec<ArtifactRow>> {
        const Q: &str = "SELECT path, size, sha256 FROM artifacts WHERE run_id = $1 ORDER BY path";
        Ok(with_pool!(self, |pool| sqlx::query_as(Q)
            .bind(run_id)
            .fetch_all(pool)
            .await?))
    }

    // ---- DHCP leases ----

    /// Persist a batch of leases in one transaction (group commit). In
    /// order, as if one by one: an IP moving to another MAC takes it from its
    /// old holder. Written as a few multi-row statements (chunks of
    /// [`LEASE_CHUNK`]): per-statement overhead, not the database, is what
    /// limits a DHCP server's commit rate. Concurrent batches (several
    /// connections or daemons) apply one after the other.
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
        // A MAC given twice keeps its last lease, at the place of its last
        // occurrence: what SQLite's multi-row upsert did row by row, and
        // Postgres refuses to update one row twice in a statement. The old
        // holders of every address in the batch, the intermediate ones
        // included, still go (the DELETE sees the whole batch).
        let mut last = std::collections::HashMap::with_capacity(leases.len());
        for (i, l) in leases.iter().enumerate() {
            last.insert(l.mac.as_str(), i);
        }
        with_pool!(self, |pool, kind| {
            let mut tx = pool.begin().await?;
            if kind == Backend::Postgres {
                sqlx::query(PG_LOCK_LEASES).execute(&mut *tx).await?;
            }
            for (c, chunk) in leases.chunks(LEASE_CHUNK).enumerate() {
                let q = format!(
                    "WITH v(ip, mac) AS (VALUES {})
                     DELETE FROM leases WHERE ip IN (
                       SELECT l.ip FROM leases l JOIN v ON l.ip = v.ip AND l.mac <> v.mac)",
                    placeholders(chunk.len(), 2)
                );
                let mut del = sqlx::query(sqlx::AssertSqlSafe(q));
                for l in chunk {
                    del = del.bind(&l.ip).bind(&l.mac);
                }
                del.execute(&mut *tx).await?;
                let base = c * LEASE_CHUNK;
                let rows: Vec<&LeaseRow> = chunk
                    .iter()
                    .enumerate()
                    .filter(|(i, l)| last[l.mac.as_str()] == base + i)
                    .map(|(_, l)| l)
                    .collect();
                if rows.is_empty() {
                    continue;
                }
                let q = format!(
                    "INSERT INTO leases (mac, ip, hostname, expires_at, updated_at) VALUES {}
                     ON CONFLICT (mac) DO UPDATE SET ip = excluded.ip, hostname = excluded.hostname,
                        expires_at = excluded.expires_at, updated_at = excluded.updated_at",
                    placeholders(rows.len(), 5)
                );
                let mut ins = sqlx::query(sqlx::AssertSqlSafe(q));
                for l in rows {
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
        })
    }

    async fn upsert_leases_rows(&self, leases: &[LeaseRow], at: i64) -> Result<()> {
        with_pool!(self, |pool, kind| {
            let mut tx = pool.begin().await?;
            if kind == Backend::Postgres {
                sqlx::query(PG_LOCK_LEASES).execute(&mut *tx).await?;
            }
            for l in leases {
                // An IP moving to another MAC: the old holder's row goes.
                sqlx::query("DELETE FROM leases WHERE ip = $1 AND mac <> $2")
                    .bind(&l.ip)
                    .bind(&l.mac)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO leases (mac, ip, hostname, expires_at, updated_at) VALUES ($1, $2, $3, $4, $5)
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
        })
    }

    pub async fn delete_lease(&self, mac: &str) -> Result<()> {
        const Q: &str = "DELETE FROM leases WHERE mac = $1";
        with_pool!(self, |pool| {
            sqlx::query(Q).bind(mac).execute(pool).await?;
        });
        Ok(())
    }

    pub async fn leases(&self) -> Result<Vec<LeaseRow>> {
        const Q: &str = "SELECT mac, ip, hostname, expires_at FROM leases ORDER BY ip";
        Ok(with_pool!(self, |pool| sqlx::query_as(Q)
            .fetch_all(pool)
            .await?))
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
        const Q: &str = "INSERT INTO netboot (system, enabled, run_id, token, updated_at, persistent) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (system) DO UPDATE SET enabled = excluded.enabled, run_id = excluded.run_id,
                token = excluded.token, updated_at = excluded.updated_at, persistent = excluded.persistent";
        with_pool!(self, |pool| {
            sqlx::query(Q)
                .bind(system)
                .bind(enabled)
                .bind(run_id)
                .bind(token)
                .bind(now_ms())
                .bind(persistent)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    pub async fn netboot(&self) -> Result<Vec<NetbootRow>> {
        const Q: &str =
            "SELECT system, enabled, run_id, token, persistent FROM netboot ORDER BY system";
        Ok(with_pool!(self, |pool| sqlx::query_as(Q)
            .fetch_all(pool)
            .await?))
    }

    /// The switches that are on (what the boot table holds; polled each
    /// claim tick with several daemons).
    pub async fn netboot_on(&self) -> Result<Vec<NetbootRow>> {
        const Q: &str = "SELECT system, enabled, run_id, token, persistent FROM netboot
             WHERE enabled ORDER BY system";
        Ok(with_pool!(self, |pool| sqlx::query_as(Q)
            .fetch_all(pool)
            .await?))
    }

    // ---- discovery ----

    /// Merges a batch of sightings (one row per MAC, as aggregated by
    /// `discovery::Discovery`): counts add up, first/last seen widen, the
    /// newest non-empty details win. Then keeps only the `cap` most recently
    /// seen MACs; says how many were pruned and which MACs were new. Rows are written in MAC order
    /// so two daemons' batches cannot deadlock on each other.
    pub async fn upsert_discovered(
        &self,
        rows: &[DiscoveredRow],
        cap: u32,
    ) -> Result<DiscoveredWrite> {
        let mut rows: Vec<&DiscoveredRow> = rows.iter().collect();
        rows.sort_by(|a, b| a.mac.cmp(&b.mac));
        rows.dedup_by(|a, b| a.mac == b.mac);
        with_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let mut new = Vec::new();
            for chunk in rows.chunks(DISCOVERED_CHUNK) {
                // Which of these the table did not hold yet (first sightings).
                let q = format!(
                    "SELECT mac FROM discovered WHERE mac IN (VALUES {})",
                    placeholders(chunk.len(), 1)
                );
                let mut sel = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(q));
                for r in chunk {
                    sel = sel.bind(&r.mac);
                }
                let known: std::collections::HashSet<String> =
                    sel.fetch_all(&mut *tx).await?.into_iter().collect();
                new.extend(
                    chunk
                        .iter()
                        .filter(|r| !known.contains(&r.mac))
                        .map(|r| r.mac.clone()),
                );
                let q = format!(
                    "INSERT INTO discovered (mac, arch, vendor_class, ipxe, proxy, relay, interface,
                        hostname, first_seen, last_seen, count) VALUES {}
                     ON CONFLICT (mac) DO UPDATE SET
                        arch = COALESCE(excluded.arch, discovered.arch),
                        vendor_class = COALESCE(excluded.vendor_class, discovered.vendor_class),
                        ipxe = excluded.ipxe, proxy = excluded.proxy,
                        relay = COALESCE(excluded.relay, discovered.relay),
                        interface = COALESCE(excluded.interface, discovered.interface),
                        hostname = COALESCE(excluded.hostname, discovered.hostname),
                        first_seen = CASE WHEN excluded.first_seen < discovered.first_seen
                            THEN excluded.first_seen ELSE discovered.first_seen END,
                        last_seen = CASE WHEN excluded.last_seen > discovered.last_seen
                            THEN excluded.last_seen ELSE discovered.last_seen END,
                        count = discovered.count + excluded.count",
                    placeholders(chunk.len(), 11)
                );
                let mut ins = sqlx::query(sqlx::AssertSqlSafe(q));
                for r in chunk {
                    ins = ins
                        .bind(&r.mac)
                        .bind(&r.arch)
                        .bind(&r.vendor_class)
                        .bind(r.ipxe)
                        .bind(r.proxy)
                        .bind(&r.relay)
                        .bind(&r.interface)
                        .bind(&r.hostname)
                        .bind(r.first_seen)
                        .bind(r.last_seen)
                        .bind(r.count);
                }
                ins.execute(&mut *tx).await?;
            }
            // The least recently seen beyond the cap go (LIMIT before
            // OFFSET: SQLite needs a LIMIT, Postgres takes any bigint).
            let pruned = sqlx::query(
                "DELETE FROM discovered WHERE mac IN (
                   SELECT d.mac FROM discovered d ORDER BY d.last_seen DESC, d.mac
                   LIMIT $1 OFFSET $2)",
            )
            .bind(i64::MAX)
            .bind(i64::from(cap))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if pruned > 0 {
                // Their facts go with them.
                sqlx::query(
                    "DELETE FROM discovered_facts WHERE mac NOT IN (SELECT d.mac FROM discovered d)",
                )
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(DiscoveredWrite { pruned, new })
        })
    }

    /// The discovered MACs, most recently seen first.
    pub async fn discovered(&self, limit: u32) -> Result<Vec<DiscoveredRow>> {
        const Q: &str = "SELECT mac, arch, vendor_class, ipxe, proxy, relay, interface, hostname,
                first_seen, last_seen, count FROM discovered ORDER BY last_seen DESC, mac LIMIT $1";
        Ok(with_pool!(self, |pool| sqlx::query_as(Q)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?))
    }

    pub async fn discovered_one(&self, mac: &str) -> Result<Option<DiscoveredRow>> {
        const Q: &str = "SELECT mac, arch, vendor_class, ipxe, proxy, relay, interface, hostname,
                first_seen, last_seen, count FROM discovered WHERE mac = $1";
        Ok(with_pool!(self, |pool| sqlx::query_as(Q)
            .bind(mac)
            .fetch_optional(pool)
            .await?))
    }

    /// Forgets a discovered MAC (adopted into the inventory, or dismissed),
    /// its facts too. `true` if it was there.
    pub async fn remove_discovered(&self, mac: &str) -> Result<bool> {
        Ok(self.take_discovered(mac).await?.0)
    }

    /// Forgets a discovered MAC and hands back its facts (what an adoption
    /// carries over to the new system), in one transaction. `.0`: the MAC
    /// was recorded.
    pub async fn take_discovered(&self, mac: &str) -> Result<(bool, Option<DiscoveredFactsRow>)> {
        with_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let facts: Option<DiscoveredFactsRow> = sqlx::query_as(
                "DELETE FROM discovered_facts WHERE mac = $1 RETURNING mac, at, data",
            )
            .bind(mac)
            .fetch_optional(&mut *tx)
            .await?;
            let was = sqlx::query("DELETE FROM discovered WHERE mac = $1")
                .bind(mac)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
            tx.commit().await?;
            Ok((was, facts))
        })
    }

    /// Replaces a discovered MAC's facts with a newer report, only while the
    /// `discovered` table holds the MAC (so the table stays bounded by
    /// `dhcp.discovered_max`). `false`: the MAC is not recorded (yet: the
    /// flusher writes sightings once a second).
    pub async fn put_discovered_facts(&self, mac: &str, at: i64, data: &str) -> Result<bool> {
        const Q: &str = "INSERT INTO discovered_facts (mac, at, data)
             SELECT d.mac, $2, $3 FROM discovered d WHERE d.mac = $1
             ON CONFLICT (mac) DO UPDATE SET at = excluded.at, data = excluded.data";
        Ok(with_pool!(self, |pool| sqlx::query(Q)
            .bind(mac)
            .bind(at)
            .bind(data)
            .execute(pool)
            .await?
            .rows_affected())
            > 0)
    }

    pub async fn discovered_facts(&self, mac: &str) -> Result<Option<DiscoveredFactsRow>> {
        const Q: &str = "SELECT mac, at, data FROM discovered_facts WHERE mac = $1";
        Ok(with_pool!(self, |pool| sqlx::query_as(Q)
            .bind(mac)
            .fetch_optional(pool)
            .await?))
    }

    /// Every discovered MAC's facts (at most `dhcp.discovered_max` rows).
    pub async fn all_discovered_facts(&self) -> Result<Vec<DiscoveredFactsRow>> {
        const Q: &str = "SELECT mac, at, data FROM discovered_facts ORDER BY mac";
        Ok(with_pool!(self, |pool| sqlx::query_as(Q)
            .fetch_all(pool)
            .await?))
    }

    // ---- daemons, claims and leases ----

    /// Register a daemon id (at start) and fence the earlier ids of the same
    /// node (a restart): their unfinished runs are released at once, for this
    /// id to claim. Returns how many runs were released.
    pub async fn register_daemon(&self, id: &str, node: &str, domains: &[String]) -> Result<u64> {
        with_pool!(self, |pool, kind| {
            let now = db_now(kind);
            let mut tx = pool.begin().await?;
            let q = format!(
                "INSERT INTO daemons (id, node, domains, started_at, heartbeat_at, fenced)
                 VALUES ($1, $2, $3, {now}, {now}, FALSE)"
            );
            sqlx::query(sqlx::AssertSqlSafe(q))
                .bind(id)
                .bind(node)
                .bind(domains.join(","))
                .execute(&mut *tx)
                .await?;
            let q = format!(
                "UPDATE daemons SET fenced = TRUE, fenced_at = {now}, fenced_by = $2
                 WHERE node = $1 AND id <> $2 AND NOT fenced RETURNING id"
            );
            let old: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(q))
                .bind(node)
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
            let mut released = 0;
            for o in &old {
                released += sqlx::query(
                    "UPDATE runs SET owner = NULL WHERE owner = $1 AND finished_at IS NULL",
                )
                .bind(o)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            // Ids fenced long ago are history: keep the registry small.
            sqlx::query("DELETE FROM daemons WHERE fenced AND heartbeat_at < $1")
                .bind(now_ms() - 7 * 24 * 3600 * 1000)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(released)
        })
    }

    /// A daemon's heartbeat: false when it has been fenced (it owns nothing
    /// any more and must register again).
    pub async fn heartbeat(&self, id: &str) -> Result<bool> {
        with_pool!(self, |pool, kind| {
            let q = format!(
                "UPDATE daemons SET heartbeat_at = {} WHERE id = $1 AND NOT fenced",
                db_now(kind)
            );
            Ok(sqlx::query(sqlx::AssertSqlSafe(q))
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
                == 1)
        })
    }

    /// A clean stop: the daemon's id is fenced and its unfinished runs are
    /// released for a peer (or its own restart) to claim at once.
    pub async fn retire_daemon(&self, id: &str) -> Result<u64> {
        with_pool!(self, |pool, kind| {
            let mut tx = pool.begin().await?;
            let q = format!(
                "UPDATE daemons SET fenced = TRUE, fenced_at = {}, fenced_by = $1
                 WHERE id = $1 AND NOT fenced",
                db_now(kind)
            );
            sqlx::query(sqlx::AssertSqlSafe(q))
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let n = sqlx::query(
                "UPDATE runs SET owner = NULL WHERE owner = $1 AND finished_at IS NULL",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            Ok(n)
        })
    }

    /// Fence the daemons sharing a domain with `domains` whose heartbeat is
    /// older than `ttl_ms` (by the database's clock) and release their
    /// unfinished runs, each in one transaction. `me` must itself be
    /// registered and not fenced. Returns the ids fenced.
    pub async fn fence_silent(
        &self,
        me: &str,
        domains: &[String],
        ttl_ms: i64,
    ) -> Result<Vec<String>> {
        with_pool!(self, |pool, kind| {
            let now = db_now(kind);
            let q = format!(
                "SELECT id, domains FROM daemons
                 WHERE NOT fenced AND id <> $1 AND heartbeat_at < {now} - $2
                   AND EXISTS (SELECT 1 FROM daemons m WHERE m.id = $1 AND NOT m.fenced)"
            );
            let cands: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(q))
                .bind(me)
                .bind(ttl_ms)
                .fetch_all(pool)
                .await?;
            let mut fenced = Vec::new();
            for (id, doms) in cands {
                if !doms.split(',').any(|d| domains.iter().any(|m| m == d)) {
                    continue;
                }
                let mut tx = pool.begin().await?;
                let q = format!(
                    "UPDATE daemons SET fenced = TRUE, fenced_at = {now}, fenced_by = $3
                     WHERE id = $1 AND NOT fenced AND heartbeat_at < {now} - $2"
                );
                let n = sqlx::query(sqlx::AssertSqlSafe(q))
                    .bind(&id)
                    .bind(ttl_ms)
                    .bind(me)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n == 1 {
                    sqlx::query(
                        "UPDATE runs SET owner = NULL WHERE owner = $1 AND finished_at IS NULL",
                    )
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                    fenced.push(id);
                }
                tx.commit().await?;
            }
            Ok(fenced)
        })
    }

    /// How many other daemons, not fenced, share a domain with `domains`
    /// and heartbeat within `ttl_ms` (by the database's clock): the peers
    /// that would take this daemon's runs over if it went silent.
    pub async fn live_peers(&self, me: &str, domains: &[String], ttl_ms: i64) -> Result<usize> {
        with_pool!(self, |pool, kind| {
            let q = format!(
                "SELECT domains FROM daemons
                 WHERE NOT fenced AND id <> $1 AND heartbeat_at >= {} - $2",
                db_now(kind)
            );
            let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(q))
                .bind(me)
                .bind(ttl_ms)
                .fetch_all(pool)
                .await?;
            Ok(rows
                .iter()
                .filter(|(doms,)| doms.split(',').any(|d| domains.iter().any(|m| m == d)))
                .count())
        })
    }

    /// Claim up to `limit` unowned unfinished runs of `domains` for `me`
    /// (oldest first; on Postgres rows another daemon is claiming are
    /// skipped, `FOR UPDATE SKIP LOCKED`), each under a new lease token.
    /// Nothing when `me` is fenced. Returns (run id, lease token).
    pub async fn claim_runs(
        &self,
        me: &str,
        domains: &[String],
        limit: u32,
    ) -> Result<Vec<(String, i64)>> {
        if domains.is_empty() {
            return Ok(Vec::new());
        }
        with_pool!(self, |pool, kind| {
            let skip = if kind == Backend::Postgres {
                "FOR UPDATE SKIP LOCKED"
            } else {
                ""
            };
            let doms: Vec<String> = (0..domains.len())
                .map(|i| format!("(${})", i + 3))
                .collect();
            let q = format!(
                "UPDATE runs SET owner = $1, lease = lease + 1
                 WHERE id IN (SELECT id FROM runs
                     WHERE finished_at IS NULL AND owner IS NULL AND domain IN (VALUES {})
                     ORDER BY created_at, id LIMIT $2 {skip})
                   AND EXISTS (SELECT 1 FROM daemons WHERE id = $1 AND NOT fenced)
                 RETURNING id, lease",
                doms.join(", ")
            );
            let mut qq = sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(q))
                .bind(me)
                .bind(i64::from(limit));
            for d in domains {
                qq = qq.bind(d);
            }
            let mut got = qq.fetch_all(pool).await?;
            got.sort();
            Ok(got)
        })
    }

    /// Claim one unowned run (the daemon that just created it).
    pub async fn claim_run(&self, id: &str, me: &str) -> Result<Option<i64>> {
        const Q: &str = "UPDATE runs SET owner = $1, lease = lease + 1
             WHERE id = $2 AND owner IS NULL AND finished_at IS NULL
               AND EXISTS (SELECT 1 FROM daemons WHERE id = $1 AND NOT fenced)
             RETURNING lease";
        Ok(with_pool!(self, |pool| sqlx::query_scalar(Q)
            .bind(me)
            .bind(id)
            .fetch_optional(pool)
            .await?))
    }

    /// The systems of `domains` whose unfinished run another daemon owns.
    pub async fn peer_runs(&self, me: &str, domains: &[String]) -> Result<Vec<String>> {
        if domains.is_empty() {
            return Ok(Vec::new());
        }
        let doms: Vec<String> = (0..domains.len())
            .map(|i| format!("(${})", i + 2))
            .collect();
        let q = format!(
            "SELECT system FROM runs WHERE finished_at IS NULL AND owner IS NOT NULL
               AND owner <> $1 AND domain IN (VALUES {}) ORDER BY system",
            doms.join(", ")
        );
        with_pool!(self, |pool| {
            let mut qq = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(q)).bind(me);
            for d in domains {
                qq = qq.bind(d);
            }
            Ok(qq.fetch_all(pool).await?)
        })
    }

    /// Who owns a run, under which lease token.
    pub async fn run_owner(&self, id: &str) -> Result<Option<(Option<String>, i64)>> {
        const Q: &str = "SELECT owner, lease FROM runs WHERE id = $1";
        Ok(with_pool!(self, |pool| sqlx::query_as(Q)
            .bind(id)
            .fetch_optional(pool)
            .await?))
    }

    /// Take the BMC at `address` for `holder` (a daemon id) for at most
    /// `ttl_ms`: free when nobody holds it, the holder's time is up, or the
    /// holder is fenced; also when `holder` holds it already. Ok(None) when
    /// taken, Ok(Some(other holder)) when busy.
    pub async fn acquire_bmc(
        &self,
        address: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<Option<String>> {
        with_pool!(self, |pool, kind| {
            let now = db_now(kind);
            let q = format!(
                "INSERT INTO bmc_leases (address, holder, until) VALUES ($1, $2, {now} + $3)
                 ON CONFLICT (address) DO UPDATE SET holder = excluded.holder, until = excluded.until
                 WHERE bmc_leases.until < {now} OR bmc_leases.holder = excluded.holder
                    OR bmc_leases.holder IN (SELECT id FROM daemons WHERE fenced)"
            );
            let n = sqlx::query(sqlx::AssertSqlSafe(q))
                .bind(address)
                .bind(holder)
                .bind(ttl_ms)
                .execute(pool)
                .await?
                .rows_affected();
            if n == 1 {
                return Ok(None);
            }
            let other: Option<String> =
                sqlx::query_scalar("SELECT holder FROM bmc_leases WHERE address = $1")
                    .bind(address)
                    .fetch_optional(pool)
                    .await?;
            Ok(Some(other.unwrap_or_default()))
        })
    }

    /// Give the BMC at `address` back (only `holder`'s own lease goes).
    pub async fn release_bmc(&self, address: &str, holder: &str) -> Result<()> {
        const Q: &str = "DELETE FROM bmc_leases WHERE address = $1 AND holder = $2";
        with_pool!(self, |pool| {
            sqlx::query(Q)
                .bind(address)
                .bind(holder)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The registered daemon ids, oldest first.
    pub async fn daemons(&self) -> Result<Vec<DaemonRow>> {
        const Q: &str = "SELECT id, node, domains, started_at, heartbeat_at, fenced, fenced_at, fenced_by,
                    (SELECT COUNT(*) FROM runs WHERE owner = daemons.id AND finished_at IS NULL) AS runs
             FROM daemons ORDER BY started_at, id";
        Ok(with_pool!(self, |pool| sqlx::query_as(Q)
            .fetch_all(pool)
            .await?))
    }

    // ---- shared inventory ----

    /// The shared inventory's version, or None when none was ever written.
    pub async fn inventory_head(&self) -> Result<Option<InventoryHead>> {
        const Q: &str =
            "SELECT version, updated_at, updated_by FROM inventory_version WHERE id = 1";
        Ok(with_pool!(self, |pool| sqlx::query_as(Q)
            .fetch_optional(pool)
            .await?))
    }

    /// The whole shared inventory: its version and every document (path,
    /// body) sorted by path, read by one statement (one snapshot on either
    /// engine, so version and documents always match). None when none was
    /// ever written.
    pub async fn inventory(&self) -> Result<Option<(InventoryHead, Vec<(String, String)>)>> {
        const Q: &str = "SELECT v.version, v.updated_at, v.updated_by, d.path, d.body
             FROM inventory_version v LEFT JOIN inventory_docs d ON 1 = 1
             WHERE v.id = 1 ORDER BY d.path";
        type Row = (i64, i64, String, Option<String>, Option<String>);
        let rows: Vec<Row> = with_pool!(self, |pool| sqlx::query_as(Q).fetch_all(pool).await?);
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let head = InventoryHead {
            version: first.0,
            updated_at: first.1,
            updated_by: first.2.clone(),
        };
        let docs = rows
            .into_iter()
            .filter_map(|(_, _, _, p, b)| Some((p?, b?)))
            .collect();
        Ok(Some((head, docs)))
    }

    /// Write the shared inventory in one transaction and return its new
    /// version: `replace_all` first removes every document (an import);
    /// each `(path, Some(body))` is stored, each `(path, None)` removed.
    /// The version moves by one only when it is what `expect` says, else
    /// nothing changes and the answer is [`StoreError::InventoryChanged`].
    /// On Postgres the commit notifies [`INVENTORY_CHANNEL`].
    pub async fn write_inventory(
        &self,
        docs: &[(String, Option<String>)],
        replace_all: bool,
        expect: InventoryExpect,
        by: &str,
        at: i64,
    ) -> Result<i64> {
        with_pool!(self, |pool, kind| {
            let mut tx = pool.begin().await?;
            // The version row first: it is the write lock (a second writer
            // waits here, then finds the version moved).
            let moved = match expect {
                InventoryExpect::Any => sqlx::query(
                    "INSERT INTO inventory_version (id, version, updated_at, updated_by)
                     VALUES (1, 1, $1, $2)
                     ON CONFLICT (id) DO UPDATE SET version = inventory_version.version + 1,
                        updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                )
                .bind(at)
                .bind(by)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
                InventoryExpect::Absent => sqlx::query(
                    "INSERT INTO inventory_version (id, version, updated_at, updated_by)
                     VALUES (1, 1, $1, $2) ON CONFLICT (id) DO NOTHING",
                )
                .bind(at)
                .bind(by)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
                InventoryExpect::Version(v) => sqlx::query(
                    "UPDATE inventory_version SET version = version + 1, updated_at = $1,
                        updated_by = $2 WHERE id = 1 AND version = $3",
                )
                .bind(at)
                .bind(by)
                .bind(v)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
            };
            let now: Option<i64> =
                sqlx::query_scalar("SELECT version FROM inventory_version WHERE id = 1")
                    .fetch_optional(&mut *tx)
                    .await?;
            if moved == 0 {
                tx.rollback().await?;
                return Err(StoreError::InventoryChanged {
                    expected: match expect {
                        InventoryExpect::Version(v) => format!("version {v}"),
                        _ => "no inventory".into(),
                    },
                    found: now.map_or("none".into(), |v| format!("version {v}")),
                });
            }
            let version = now.unwrap_or(1);
            if replace_all {
                sqlx::query("DELETE FROM inventory_docs")
                    .execute(&mut *tx)
                    .await?;
            }
            for (path, body) in docs {
                match body {
                    Some(b) => {
                        sqlx::query(
                            "INSERT INTO inventory_docs (path, body) VALUES ($1, $2)
                             ON CONFLICT (path) DO UPDATE SET body = excluded.body",
                        )
                        .bind(path)
                        .bind(b)
                        .execute(&mut *tx)
                        .await?;
                    }
                    None => {
                        sqlx::query("DELETE FROM inventory_docs WHERE path = $1")
                            .bind(path)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
            if kind == Backend::Postgres {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(INVENTORY_CHANNEL)
                    .bind(version.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(version)
        })
    }

    /// A connection listening on a Postgres NOTIFY channel (a hint that
    /// something changed; callers poll anyway).
    pub async fn listen(&self, channel: &str) -> Result<sqlx::postgres::PgListener> {
        let Db::Pg(pool) = &self.db else {
            return Err(StoreError::PostgresOnly("LISTEN"));
        };
        let mut l = sqlx::postgres::PgListener::connect_with(pool).await?;
        l.listen(channel).await?;
        Ok(l)
    }

    // ---- facts ----

    /// Replaces the system's facts with a newer report.
    pub async fn put_facts(&self, f: &FactsRow) -> Result<()> {
        const Q: &str = "INSERT INTO facts (system, at, run_id, data) VALUES ($1, $2, $3, $4)
             ON CONFLICT (system) DO UPDATE SET at = excluded.at, run_id = excluded.run_id,
                data = excluded.data";
        with_pool!(self, |pool| {
            sqlx::query(Q)
                .bind(&f.system)
                .bind(f.at)
                .bind(&f.run_id)
                .bind(&f.data)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    pub async fn all_facts(&self) -> Result<Vec<FactsRow>> {
        const Q: &str = "SELECT system, at, run_id, data FROM facts ORDER BY system";
        Ok(with_pool!(self, |pool| sqlx::query_as(Q)
            .fetch_all(pool)
            .await?))
    }

    pub async fn facts(&self, system: &str) -> Result<Option<FactsRow>> {
        const Q: &str = "SELECT system, at, run_id, data FROM facts WHERE system = $1";
        Ok(with_pool!(self, |pool| sqlx::query_as(Q)
            .bind(system)
            .fetch_optional(pool)
            .await?))
    }
}

/// `($1, $2), ($3, $4), …`: `rows` tuples of `width` numbered placeholders
/// (the form both SQLite and Postgres read).
fn placeholders(rows: usize, width: usize) -> String {
    let mut s = String::with_capacity(rows * width * 6);
    for r in 0..rows {
        if r > 0 {
            s.push_str(", ");
        }
        s.push('(');
        for c in 0..width {
            if c > 0 {
                s.push_str(", ");
            }
            s.push('$');
            s.push_str(&(r * width + c + 1).to_string());
        }
        s.push(')');
    }
    s
}

#[cfg(test)]
pub(crate) mod testdb;

#[cfg(test)]
mod tests;
