//! Databases for the store's tests, one fresh database per test on either
//! backend:
//!
//! * SQLite: a file in a temporary directory;
//! * PostgreSQL: `CREATE DATABASE` on a throwaway server that the first test
//!   to ask starts, once per test process, with `scripts/pg-tmp.sh` (see
//!   there): `initdb -A trust` in a new directory under `/tmp`, the server on
//!   a free port of 127.0.0.1 with its socket in that directory, as `nobody`
//!   when the tests run as root (postgres refuses root). The script stops the
//!   server and removes the directory when its stdin, a pipe from this
//!   process, closes: when the test process ends, however it ends. Every
//!   wait is bounded.
//!
//! `RACKBOOT_TEST_PG_URL=postgres://user@host:port/db` uses an existing
//! server instead (the user needs CREATEDB; the per-test databases are left
//! behind, so use a throwaway server). The binaries are looked up in
//! `RACKBOOT_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`, else
//! `PATH`. When they are missing the Postgres variants of the tests print
//! why and pass, unless `CI` or `RACKBOOT_REQUIRE_TOOLS` is set: then they
//! fail. A server that is found but does not start always fails.

use super::Store;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// One test's database. Keeps its temporary directory (SQLite) alive.
pub(crate) struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// Open (and migrate) a store on this database.
    pub async fn open(&self) -> Store {
        Store::open(&self.url)
            .await
            .unwrap_or_else(|e| panic!("opening {}: {e}", super::redact_url(&self.url)))
    }
}

/// A fresh SQLite database (a file: several connections, like the daemon).
pub(crate) fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("rackboot.db").display());
    TestDb {
        url,
        _dir: Some(dir),
    }
}

/// A fresh, empty PostgreSQL database, or `None` (after saying why on
/// stderr) when PostgreSQL is not installed and not required.
pub(crate) async fn postgres(test: &str) -> Option<TestDb> {
    let admin = match server() {
        Server::Ready { admin_url, .. } => admin_url.clone(),
        Server::Missing(why) => {
            if required() {
                panic!(
                    "{test}: PostgreSQL is required (CI or RACKBOOT_REQUIRE_TOOLS is set) \
                     but {why} (Debian: apt-get install postgresql-15; \
                     scripts/install-deps.sh installs it)"
                );
            }
            eprintln!(
                "SKIP {test} on PostgreSQL: {why} (apt-get install postgresql-15, \
                 or set RACKBOOT_TEST_PG_URL)"
            );
            return None;
        }
        Server::Failed(why) => panic!("{test}: the test PostgreSQL did not start: {why}"),
    };
    Some(create_database(&admin).await)
}

fn required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("RACKBOOT_REQUIRE_TOOLS").is_some()
}

enum Server {
    Ready {
        admin_url: String,
        /// Write end of the guardian's stdin: closed when this process ends.
        _guardian: Option<Mutex<std::process::ChildStdin>>,
    },
    Missing(String),
    Failed(String),
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        if let Ok(url) = std::env::var("RACKBOOT_TEST_PG_URL") {
            return Server::Ready {
                admin_url: url,
                _guardian: None,
            };
        }
        match find_bin() {
            Err(why) => Server::Missing(why),
            Ok(bin) => match start(&bin) {
                Ok(s) => s,
                Err(why) => Server::Failed(why),
            },
        }
    })
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`.
fn find_bin() -> Result<PathBuf, String> {
    let has_all = |d: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| d.join(b).is_file())
    };
    if let Some(d) = std::env::var_os("RACKBOOT_PG_BIN") {
        let d = PathBuf::from(d);
        return if has_all(&d) {
            Ok(d)
        } else {
            Err(format!(
                "RACKBOOT_PG_BIN={} lacks initdb, pg_ctl or postgres",
                d.display()
            ))
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let d = e.path().join("bin");
            has_all(&d).then_some((v, d))
        })
        .collect();
    versions.sort();
    if let Some((_, d)) = versions.pop() {
        return Ok(d);
    }
    for d in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        // pg_ctl finds postgres beside its real path (Debian links it).
        let d = std::fs::canonicalize(d.join("pg_ctl"))
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
        if let Some(d) = d.filter(|d| has_all(d)) {
            return Ok(d);
        }
    }
    Err(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) in \
         /usr/lib/postgresql/*/bin or PATH"
            .into(),
    )
}

/// `nobody`'s uid and gid when running as root (postgres refuses root).
fn run_as() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let ids = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 || f[0] != "nobody" {
            return None;
        }
        Some((f[2].parse().ok()?, f[3].parse().ok()?))
    });
    Some(ids.unwrap_or((65534, 65534)))
}

/// A PostgreSQL server of one test's own (not shared with the other tests
/// of the process), for tests that stop and start it. Gone with the value.
#[allow(dead_code)] // used by tests/it only
pub(crate) struct OwnPostgres {
    /// A fresh database on it.
    pub db: TestDb,
    bin: PathBuf,
    base: PathBuf,
    user: Option<(u32, u32)>,
    _guardian: std::process::ChildStdin,
}

/// A server of the test's own, or `None` as [`postgres`] says.
#[allow(dead_code)]
pub(crate) async fn own_postgres(test: &str) -> Option<OwnPostgres> {
    let bin = match find_bin() {
        Ok(bin) => bin,
        Err(why) if !required() => {
            eprintln!("SKIP {test} on PostgreSQL: {why}");
            return None;
        }
        Err(why) => panic!("{test}: PostgreSQL is required but {why}"),
    };
    let b = bin.clone();
    let (admin, guardian, base, user) = tokio::task::spawn_blocking(move || spawn(&b))
        .await
        .expect("pg-tmp.sh start")
        .unwrap_or_else(|why| panic!("{test}: its own PostgreSQL did not start: {why}"));
    Some(OwnPostgres {
        db: create_database(&admin).await,
        bin,
        base,
        user,
        _guardian: guardian,
    })
}

#[allow(dead_code)]
impl OwnPostgres {
    fn pg_ctl(&self, args: &[&str]) {
        let mut c = Command::new(self.bin.join("pg_ctl"));
        c.arg("-D").arg(self.base.join("data")).args(args);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = self.user {
            c.uid(uid).gid(gid);
        }
        let st = c.status().expect("pg_ctl");
        assert!(st.success(), "pg_ctl {args:?}: {st}");
    }

    /// `pg_ctl stop -m immediate`: the server dies at once, as in a crash.
    pub fn stop_immediate(&self) {
        self.pg_ctl(&["stop", "-m", "immediate", "-w", "-t", "30"]);
    }

    /// Start it again with the options it first had (crash recovery runs).
    pub fn start(&self) {
        let opts = std::fs::read_to_string(self.base.join("pg_ctl.opts")).expect("pg_ctl.opts");
        let log = self.base.join("postgres.log");
        let log = log.to_str().expect("utf-8 path");
        self.pg_ctl(&["-l", log, "-w", "-t", "60", "-o", &opts, "start"]);
    }
}

/// Start `scripts/pg-tmp.sh` (as `user`) and wait, bounded, for its one line.
fn start(bin: &Path) -> Result<Server, String> {
    let (admin_url, stdin, _, _) = spawn(bin)?;
    Ok(Server::Ready {
        admin_url,
        _guardian: Some(Mutex::new(stdin)),
    })
}

type Spawned = (
    String,
    std::process::ChildStdin,
    PathBuf,
    Option<(u32, u32)>,
);

/// Start `scripts/pg-tmp.sh` (as `user`): its admin URL, the pipe that
/// keeps it alive, its base directory and user.
fn spawn(bin: &Path) -> Result<Spawned, String> {
    const SCRIPT: &str = include_str!("../../scripts/pg-tmp.sh");
    let user = run_as();
    let base = tempfile::Builder::new()
        .prefix("rackboot-pg-")
        .tempdir_in("/tmp")
        .map_err(|e| format!("temporary directory: {e}"))?
        .keep();
    if let Some((uid, gid)) = user {
        if let Err(e) = std::os::unix::fs::chown(&base, Some(uid), Some(gid)) {
            let _ = std::fs::remove_dir_all(&base);
            return Err(format!("chown {}: {e}", base.display()));
        }
    }
    // Three free ports at once (held together, so distinct): a port can be
    // taken between this probe and postgres' bind, the script tries the next.
    let probes: Vec<std::net::TcpListener> = (0..3)
        .filter_map(|_| std::net::TcpListener::bind("127.0.0.1:0").ok())
        .collect();
    let ports: Vec<String> = probes
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .map(|a| a.port().to_string())
        .collect();
    drop(probes);
    let mut c = Command::new("/bin/sh");
    c.args(["-c", SCRIPT, "pg-tmp.sh"])
        .arg(bin)
        .arg(&base)
        .args(&ports)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // Its own process group: a ^C on the tests does not cut its clean-up.
        .process_group(0);
    if let Some((uid, gid)) = user {
        // std also drops the supplementary groups (setgroups) before exec.
        c.uid(uid).gid(gid);
    }
    let mut child = c.spawn().map_err(|e| {
        let _ = std::fs::remove_dir_all(&base);
        format!("scripts/pg-tmp.sh: {e}")
    })?;
    let stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        let _ = tx.send(line);
    });
    // initdb and a start on a busy 2-core machine take seconds; a minute
    // per port for pg_ctl -w at most.
    let line = rx
        .recv_timeout(Duration::from_secs(300))
        .map_err(|_| "scripts/pg-tmp.sh printed nothing in 300 s".to_string())?;
    // Dropping `stdin` on a failure below makes the script clean up.
    match line.trim().split_once(' ') {
        Some(("ready", url)) => Ok((url.to_string(), stdin, base, user)),
        _ if line.trim().is_empty() => Err("scripts/pg-tmp.sh ended without a word".into()),
        _ => Err(line.trim().to_string()),
    }
}

/// `CREATE DATABASE` with a name unique to this process and call; returns
/// its URL.
async fn create_database(admin: &str) -> TestDb {
    use sqlx::Connection;
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "rb_{}_{}_{}",
        std::process::id(),
        super::now_ms() % 1_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    );
    let mut conn =
        tokio::time::timeout(Duration::from_secs(30), sqlx::PgConnection::connect(admin))
            .await
            .expect("connecting to the test PostgreSQL: timed out")
            .unwrap_or_else(|e| panic!("connecting to the test PostgreSQL: {e}"));
    // Names are ours (no quoting needed); CREATE DATABASE takes no parameters.
    let q = format!("CREATE DATABASE {name}");
    sqlx::query(sqlx::AssertSqlSafe(q))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    let _ = conn.close().await;
    let (prefix, _) = admin
        .rsplit_once('/')
        .expect("RACKBOOT_TEST_PG_URL ends in /DATABASE");
    TestDb {
        url: format!("{prefix}/{name}"),
        _dir: None,
    }
}
