//! Results of a finished run, written into its directory: `junit.xml` (one
//! testcase per phase and per stage, with durations), `timeline.txt`, and the
//! artifacts index in the store (path, size, sha256).

use crate::store::{ArtifactRow, EventRow, RunRow, StageRow, Store, StoreError};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::path::Path;

/// One timeline line per stored event: seconds since the run was created.
pub fn timeline(run: &RunRow, events: &[EventRow]) -> Vec<(f64, String, String)> {
    events
        .iter()
        .map(|e| {
            (
                (e.at - run.created_at) as f64 / 1000.0,
                e.to_state.clone(),
                e.detail.clone(),
            )
        })
        .collect()
}

pub fn timeline_text(run: &RunRow, events: &[EventRow]) -> String {
    let mut s = format!(
        "run {} system {} profile {}\n",
        run.id, run.system, run.profile
    );
    for (t, state, detail) in timeline(run, events) {
        let _ = writeln!(s, "  +{t:7.1}s  {state:<10} {detail}");
    }
    s
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' && c != '\r' => o.push('?'),
            c => o.push(c),
        }
    }
    o
}

fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut i = text.len() - max;
    while !text.is_char_boundary(i) {
        i += 1;
    }
    &text[i..]
}

/// Build the JUnit XML of a run (pure, given its rows and stage logs).
pub fn junit_xml(
    run: &RunRow,
    events: &[EventRow],
    stages: &[StageRow],
    logs: &[String],
) -> String {
    let mut cases = String::new();
    let (mut tests, mut failures) = (0, 0);
    let suite = format!("rackboot.{}", run.system);
    // Phases: the time from entering one phase to entering the next.
    for w in events.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        if a.to_state.starts_with("stage:") || a.to_state == b.to_state {
            continue;
        }
        tests += 1;
        let secs = (b.at - a.at) as f64 / 1000.0;
        let _ = write!(
            cases,
            "    <testcase classname=\"{suite}.phases\" name=\"{}\" time=\"{secs:.3}\">",
            esc(&a.to_state)
        );
        if matches!(b.to_state.as_str(), "failed" | "timed_out" | "cancelled")
            && !a.to_state.starts_with("stage:")
        {
            failures += 1;
            let _ = write!(
                cases,
                "<failure message=\"{}\" type=\"{}\"/>",
                esc(&b.detail),
                esc(&b.to_state)
            );
        }
        cases.push_str("</testcase>\n");
    }
    for (i, st) in stages.iter().enumerate() {
        tests += 1;
        let secs = (st.finished_at.unwrap_or(st.started_at) - st.started_at) as f64 / 1000.0;
        let _ = write!(
            cases,
            "    <testcase classname=\"{suite}.{}\" name=\"{}\" time=\"{secs:.3}\">",
            esc(&st.kind),
            esc(&st.name)
        );
        if st.status != "passed" {
            failures += 1;
            let code = st
                .exit_code
                .map(|c| format!(" (exit {c})"))
                .unwrap_or_default();
            let _ = write!(
                cases,
                "<failure message=\"stage {} {}{code}\" type=\"{}\"/>",
                esc(&st.name),
                esc(&st.status),
                esc(&st.status)
            );
        }
        if let Some(log) = logs.get(i) {
            let _ = write!(
                cases,
                "<system-out>{}</system-out>",
                esc(tail(log, 64 * 1024))
            );
        }
        cases.push_str("</testcase>\n");
    }
    let total = (run.finished_at.unwrap_or(run.updated_at) - run.created_at) as f64 / 1000.0;
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n  <testsuite name=\"{suite}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" time=\"{total:.3}\">\n    <properties><property name=\"run\" value=\"{}\"/><property name=\"profile\" value=\"{}\"/><property name=\"outcome\" value=\"{}\"/></properties>\n{cases}  </testsuite>\n</testsuites>\n",
        esc(&run.id),
        esc(&run.profile),
        esc(&run.state)
    )
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.is_file() {
            out.push(p);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("run {0} not found")]
    NotFound(String),
}

/// Write junit.xml and timeline.txt, and index the artifacts.
pub async fn write_results(store: &Store, id: &str, dir: &Path) -> Result<(), ResultsError> {
    let run = store
        .get_run(id)
        .await?
        .ok_or_else(|| ResultsError::NotFound(id.to_string()))?;
    let events = store.run_events(id).await?;
    let stages = store.stages(id).await?;
    std::fs::create_dir_all(dir)?;
    let logs: Vec<String> = stages
        .iter()
        .map(|s| std::fs::read_to_string(dir.join(&s.log_path)).unwrap_or_default())
        .collect();
    // Whole files only (a temp file renamed over): the API may serve them
    // while they are written.
    let put = |name: &str, text: String| -> std::io::Result<()> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, dir.join(name))
    };
    put("junit.xml", junit_xml(&run, &events, &stages, &logs))?;
    put("timeline.txt", timeline_text(&run, &events))?;
    let art = dir.join("artifacts");
    let mut files = Vec::new();
    walk(&art, &mut files);
    for f in files {
        let bytes = std::fs::read(&f)?;
        let rel = f
            .strip_prefix(&art)
            .unwrap_or(&f)
            .to_string_lossy()
            .to_string();
        let sha = Sha256::digest(&bytes);
        store
            .add_artifact(
                id,
                &ArtifactRow {
                    path: rel,
                    size: bytes.len() as i64,
                    sha256: sha.iter().map(|b| format!("{b:02x}")).collect(),
                },
            )
            .await?;
    }
    Ok(())
}
