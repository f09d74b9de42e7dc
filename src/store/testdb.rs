//! Databases for the store's tests, one fresh database per test on either
//! backend:
//!
//! * SQLite: a file in a temporary directory;
//! * PostgreSQL: `CREATE DATABASE` on a throwaway server that the first test
//!   to ask starts (once per test process):
//!   - `initdb -A trust` in a new directory under `/tmp`, then `pg_ctl start`
//!     on a free port of 127.0.0.1 with the socket in that directory (no
//!     fsync: a test server), every wait bounded;
//!   - as `nobody` when the tests run as root (postgres refuses root);
//!   - stopped (`pg_ctl stop -m fast`, else `-m immediate`) and its directory
//!     removed by a small guardian process that waits for the test process to
//!     end (end of file on a pipe, so a killed test process is cleaned up too).
//!
//! `RACKBOOT_TEST_PG_URL=postgres://user@host:port/db` uses an existing
//! server instead (the user needs CREATEDB; the per-test databases are left
//! behind, so use a throwaway server). The binaries are looked up in
//! `RACKBOOT_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`, else
//! `PATH`. When they are missing the Postgres variants of the tests print
//! why and pass, unless `CI` or `RACKBOOT_REQUIRE_TOOLS` is set: then they
//! fail. A server that is found but does not start always fails.

use super::Store;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

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

fn command(bin: &Path, prog: &str, user: Option<(u32, u32)>) -> Command {
    let mut c = Command::new(bin.join(prog));
    c.env("LC_ALL", "C").env("LANG", "C").stdin(Stdio::null());
    if let Some((uid, gid)) = user {
        // std also drops the supplementary groups (setgroups) before exec.
        c.uid(uid).gid(gid);
    }
    c
}

/// Run to completion within `limit`; output goes to `log`. Killed past it.
fn run_bounded(mut c: Command, log: &Path, limit: Duration) -> Result<(), String> {
    let what = format!("{c:?}");
    let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut child = c
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(st) if st.success() => return Ok(()),
            Some(st) => {
                let out = std::fs::read_to_string(log).unwrap_or_default();
                return Err(format!("{what}: {st}: {}", out.trim()));
            }
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what}: no answer in {limit:?}"));
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn start(bin: &Path) -> Result<Server, String> {
    let user = run_as();
    let base = tempfile::Builder::new()
        .prefix("rackboot-pg-")
        .tempdir_in("/tmp")
        .map_err(|e| format!("temporary directory: {e}"))?
        .keep();
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&base, Some(uid), Some(gid))
            .map_err(|e| format!("chown {}: {e}", base.display()))?;
    }
    let data = base.join("data");
    let fail = |why: String| {
        let _ = std::fs::remove_dir_all(&base);
        Err(why)
    };
    let mut initdb = command(bin, "initdb", user);
    initdb
        .arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", "rackboot", "-E", "UTF8", "--no-sync"])
        .arg("--no-instructions");
    if let Err(why) = run_bounded(initdb, &base.join("initdb.log"), Duration::from_secs(120)) {
        return fail(why);
    }
    // A free port can be taken between the probe and postgres' bind: retry.
    let mut last = String::new();
    for _ in 0..3 {
        let port = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
            Ok(a) => a.port(),
            Err(e) => return fail(format!("probing a free port: {e}")),
        };
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c shared_buffers=32MB",
            base.display()
        );
        let mut pg_ctl = command(bin, "pg_ctl", user);
        pg_ctl
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(base.join("postgres.log"))
            .args(["-w", "-t", "60", "-o", &opts, "start"]);
        match run_bounded(pg_ctl, &base.join("pg_ctl.log"), Duration::from_secs(90)) {
            Ok(()) => {
                let guardian = match guard(bin, &base, user) {
                    Ok(g) => g,
                    Err(why) => {
                        stop_now(bin, &base, user);
                        return fail(why);
                    }
                };
                return Ok(Server::Ready {
                    admin_url: format!("postgres://rackboot@127.0.0.1:{port}/postgres"),
                    _guardian: Some(Mutex::new(guardian)),
                });
            }
            Err(why) => {
                let log = std::fs::read_to_string(base.join("postgres.log")).unwrap_or_default();
                last = format!("{why}\n{}", log.trim());
            }
        }
    }
    fail(last)
}

/// A process (as the server's user, in its own process group so a ^C on the
/// tests does not reach it) that stops the server and removes its directory
/// once its stdin closes: when this test process exits, however it exits.
fn guard(
    bin: &Path,
    base: &Path,
    user: Option<(u32, u32)>,
) -> Result<std::process::ChildStdin, String> {
    const SCRIPT: &str = r#"cat >/dev/null
"$1/pg_ctl" -D "$2/data" stop -m fast -w -t 20 >/dev/null 2>&1 ||
  "$1/pg_ctl" -D "$2/data" stop -m immediate -w -t 10 >/dev/null 2>&1
rm -rf "$2""#;
    let mut c = Command::new("/bin/sh");
    c.args(["-c", SCRIPT, "pg-guardian"])
        .arg(bin)
        .arg(base)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    if let Some((uid, gid)) = user {
        c.uid(uid).gid(gid);
    }
    let mut child = c.spawn().map_err(|e| format!("guardian: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    // Nothing is ever written; a failed write would mean the guardian died.
    stdin.flush().map_err(|e| format!("guardian: {e}"))?;
    Ok(stdin)
}

fn stop_now(bin: &Path, base: &Path, user: Option<(u32, u32)>) {
    let mut c = command(bin, "pg_ctl", user);
    c.arg("-D")
        .arg(base.join("data"))
        .args(["stop", "-m", "immediate", "-w", "-t", "10"]);
    let _ = run_bounded(c, &base.join("stop.log"), Duration::from_secs(20));
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
