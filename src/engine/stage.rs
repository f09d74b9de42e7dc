//! Config and test stages: an operator command run on the daemon host with
//! the machine's facts in its environment, a timeout, its output saved per
//! stage, and the files it writes into its artifacts dir kept with the run.

use crate::store::{self, StageRow, Store};
use crate::workflow::StageOutcome;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

pub fn run_dir(data_dir: &Path, run_id: &str) -> PathBuf {
    data_dir.join("runs").join(run_id)
}

pub fn log_rel(seq: usize, name: &str) -> String {
    format!("stages/{seq:02}-{name}.log")
}

pub struct StageJob {
    pub run_id: String,
    pub seq: usize,
    pub name: String,
    pub kind: String,
    pub command: String,
    pub timeout: Duration,
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
}

/// Run one stage to completion (or timeout). Never panics; errors become
/// a failed outcome with the reason, also written to the stage log.
pub async fn run(store: &Store, job: StageJob) -> StageOutcome {
    let rel = log_rel(job.seq, &job.name);
    let log_path = job.dir.join(&rel);
    let started = store::now_ms();
    let mut row = StageRow {
        run_id: job.run_id.clone(),
        seq: job.seq as i64,
        name: job.name.clone(),
        kind: job.kind.clone(),
        status: "running".into(),
        exit_code: None,
        started_at: started,
        finished_at: None,
        log_path: rel.clone(),
    };
    let _ = store.upsert_stage(&row).await;
    let (outcome, code) = execute(&job, &log_path).await;
    row.status = match &outcome {
        StageOutcome::Passed => "passed",
        StageOutcome::Failed(_) => "failed",
        StageOutcome::TimedOut => "timed_out",
    }
    .into();
    row.exit_code = code;
    row.finished_at = Some(store::now_ms());
    if let Err(e) = store.upsert_stage(&row).await {
        tracing::error!(run = %job.run_id, error = %e, "cannot record stage result");
    }
    outcome
}

async fn execute(job: &StageJob, log_path: &Path) -> (StageOutcome, Option<i64>) {
    let art = job.dir.join("artifacts");
    if let Err(e) = std::fs::create_dir_all(log_path.parent().unwrap_or(&job.dir))
        .and_then(|_| std::fs::create_dir_all(&art))
    {
        return (
            StageOutcome::Failed(format!("cannot create run dir: {e}")),
            None,
        );
    }
    let log = match std::fs::File::create(log_path) {
        Ok(f) => f,
        Err(e) => {
            return (
                StageOutcome::Failed(format!("cannot create log: {e}")),
                None,
            )
        }
    };
    let err = match log.try_clone() {
        Ok(f) => f,
        Err(e) => {
            return (
                StageOutcome::Failed(format!("cannot create log: {e}")),
                None,
            )
        }
    };
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(&job.command)
        .current_dir(&job.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err))
        .process_group(0)
        .kill_on_drop(true)
        // The service manager's variables are the daemon's, not the stage's.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID");
    for (k, v) in &job.env {
        cmd.env(k, v);
    }
    tracing::info!(run = %job.run_id, stage = %job.name, "stage started");
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return (StageOutcome::Failed(format!("cannot start sh: {e}")), None),
    };
    let pid = child.id();
    match tokio::time::timeout(job.timeout, child.wait()).await {
        Ok(Ok(st)) if st.success() => (StageOutcome::Passed, Some(0)),
        Ok(Ok(st)) => {
            let code = st.code().map(i64::from);
            let why = match code {
                Some(c) => format!("exit code {c}"),
                None => "killed by a signal".to_string(),
            };
            (StageOutcome::Failed(why), code)
        }
        Ok(Err(e)) => (StageOutcome::Failed(format!("wait failed: {e}")), None),
        Err(_) => {
            // Kill the whole process group (ssh, ansible children...).
            if let Some(pid) = pid {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &format!("-{pid}")])
                    .status();
            }
            let _ = child.kill().await;
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(log_path) {
                let _ = writeln!(
                    f,
                    "\n[rackboot] stage timed out after {:?}: killed",
                    job.timeout
                );
            }
            (StageOutcome::TimedOut, None)
        }
    }
}
