//! A run's serial console, captured: `console.log` in the run's directory,
//! one line per console line with the UTC time (ms) its first character
//! arrived, bounded in size (a marker line says where it was cut).
//!
//! [`ConsoleLines`] is the pure part (bytes and a clock reading in, text to
//! append out; table-tested); [`start`] is the task that opens the BMC's
//! console through `Power` (IPMI SOL), writes the file and reports what
//! happened to it (refused, ended, reopened) as timeline notes.

use crate::inventory::Bmc;
use crate::power::Power;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// The file name in the run directory.
pub const FILE: &str = "console.log";
/// A console line longer than this is cut into several.
const MAX_LINE: usize = 4096;
/// A partial line (a prompt) is written once the console is quiet this long.
pub const IDLE_FLUSH_MS: i64 = 1000;
/// How often a console that ended on its own is opened again in one run.
const REOPENS: u32 = 3;

/// `2024-05-01T12:00:00.123Z`.
pub fn timestamp(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&f).unwrap_or_default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    None,
    /// After ESC.
    Start,
    /// Inside a CSI sequence (ESC [ … final byte).
    Csi,
    /// After ESC and an intermediate byte (ESC ( B: a character set).
    Intermediate,
}

/// Console bytes → timestamped lines, bounded. Escape sequences (cursor
/// moves, colours) and control characters other than tab are dropped;
/// `\r` too (a line ends at `\n`).
#[derive(Debug)]
pub struct ConsoleLines {
    limit: u64,
    written: u64,
    line: Vec<u8>,
    /// When the current line's first character arrived.
    since: Option<i64>,
    /// When the last byte arrived.
    last: i64,
    esc: Esc,
    truncated: bool,
}

impl ConsoleLines {
    /// At most `limit` bytes are ever produced (the marker included).
    pub fn new(limit: u64) -> ConsoleLines {
        ConsoleLines {
            limit,
            written: 0,
            line: Vec::new(),
            since: None,
            last: 0,
            esc: Esc::None,
            truncated: false,
        }
    }

    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Bytes produced so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn emit(&mut self, at: i64, text: &[u8], out: &mut Vec<u8>) {
        if self.truncated {
            return;
        }
        let mut l = timestamp(at).into_bytes();
        l.push(b' ');
        l.extend_from_slice(String::from_utf8_lossy(text).as_bytes());
        l.push(b'\n');
        let marker = format!(
            "{} --- console log truncated at {} bytes ---\n",
            timestamp(at),
            self.limit
        );
        if self.written + (l.len() + marker.len()) as u64 > self.limit {
            self.truncated = true;
            if self.written + marker.len() as u64 <= self.limit {
                self.written += marker.len() as u64;
                out.extend_from_slice(marker.as_bytes());
            }
            return;
        }
        self.written += l.len() as u64;
        out.extend_from_slice(&l);
    }

    fn end_line(&mut self, out: &mut Vec<u8>) {
        let at = self.since.take().unwrap_or(self.last);
        let line = std::mem::take(&mut self.line);
        self.emit(at, &line, out);
    }

    /// Bytes the console printed, received at `now_ms`: the text to append.
    pub fn push(&mut self, bytes: &[u8], now_ms: i64) -> Vec<u8> {
        let mut out = Vec::new();
        self.last = now_ms;
        for &b in bytes {
            match (self.esc, b) {
                (Esc::Start, b'[') => self.esc = Esc::Csi,
                (Esc::Start, 0x20..=0x2f) | (Esc::Intermediate, 0x20..=0x2f) => {
                    self.esc = Esc::Intermediate
                }
                (Esc::Start, _) | (Esc::Intermediate, _) => self.esc = Esc::None,
                (Esc::Csi, 0x40..=0x7e) => self.esc = Esc::None,
                (Esc::Csi, _) => {}
                (Esc::None, 0x1b) => self.esc = Esc::Start,
                (Esc::None, b'\n') => {
                    self.since.get_or_insert(now_ms);
                    self.end_line(&mut out);
                }
                (Esc::None, b'\t') | (Esc::None, 0x20..=0x7e) | (Esc::None, 0x80..=0xff) => {
                    self.since.get_or_insert(now_ms);
                    self.line.push(b);
                    if self.line.len() >= MAX_LINE {
                        self.end_line(&mut out);
                    }
                }
                (Esc::None, _) => {}
            }
        }
        out
    }

    /// The line in progress, if the console has been quiet `idle_ms` since
    /// its last byte (a login prompt waits for no newline).
    pub fn flush_idle(&mut self, now_ms: i64, idle_ms: i64) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.line.is_empty() && now_ms - self.last >= idle_ms {
            self.end_line(&mut out);
        }
        out
    }

    /// A line of our own (`--- text ---`), after the line in progress.
    pub fn note(&mut self, now_ms: i64, text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.line.is_empty() {
            self.end_line(&mut out);
        }
        self.emit(now_ms, format!("--- {text} ---").as_bytes(), &mut out);
        out
    }
}

/// The last `n` lines of a console log (for the diagnosis).
pub fn tail_lines(text: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

/// The console log of a run (in its run directory).
pub fn path(run_dir: &Path) -> PathBuf {
    run_dir.join(FILE)
}

/// A capture in progress; dropping it (or [`Capture::stop`]) ends it.
#[derive(Debug)]
pub struct Capture {
    stop: Option<oneshot::Sender<()>>,
}

impl Capture {
    pub fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn open_log(file: &Path, run: &str) -> Option<tokio::fs::File> {
    if let Some(dir) = file.parent() {
        let _ = tokio::fs::create_dir_all(dir).await;
    }
    match tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .await
    {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(run, error = %e, "console log: cannot open");
            None
        }
    }
}

async fn append(f: &mut Option<tokio::fs::File>, bytes: &[u8], run: &str) {
    if bytes.is_empty() {
        return;
    }
    if let Some(file) = f {
        if let Err(e) = file.write_all(bytes).await {
            tracing::warn!(run, error = %e, "console log: write failed; capture continues unwritten");
            *f = None;
        }
    }
}

/// Start capturing `bmc`'s console into `file` (at most `limit` bytes).
/// `note` is told, in words, what happened to the console (timeline).
pub fn start(
    power: Arc<Power>,
    bmc: Bmc,
    file: PathBuf,
    limit: u64,
    run: String,
    shutdown: CancellationToken,
    note: impl Fn(String) + Send + 'static,
) -> Capture {
    let (stop, mut stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let now = crate::store::now_ms;
        // Opened with the console: a refused console leaves no file.
        let mut f: Option<tokio::fs::File> = None;
        // A run resumed after a restart appends: the bound is the file's.
        let already = tokio::fs::metadata(&file).await.map_or(0, |m| m.len());
        let mut lines = ConsoleLines::new(limit.saturating_sub(already));
        let mut opened = 0u32;
        let ending = 'outer: loop {
            let mut s = match power.console(&bmc).await {
                Ok(s) => s,
                Err(e) if opened == 0 => {
                    tracing::info!(run, bmc = %bmc.address, error = %e, "console: BMC refused SOL");
                    note(format!("console: BMC refused SOL: {e}"));
                    break "BMC refused SOL".to_string();
                }
                Err(e) => {
                    note(format!("console: could not reopen SOL: {e}"));
                    break format!("could not reopen SOL: {e}");
                }
            };
            opened += 1;
            if opened == 1 {
                f = open_log(&file, &run).await;
                tracing::info!(run, bmc = %bmc.address, "console: capturing Serial over LAN");
                note("console: capturing the serial console (IPMI SOL) in console.log".into());
            }
            let b = lines.note(now(), &format!("serial console open (BMC {})", bmc.address));
            append(&mut f, &b, &run).await;
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tokio::select! {
                    _ = &mut stopped => {
                        let _ = s.close().await;
                        break 'outer "run ended".to_string();
                    }
                    _ = shutdown.cancelled() => {
                        let _ = s.close().await;
                        break 'outer "daemon stopping".to_string();
                    }
                    chunk = s.output.recv() => match chunk {
                        Some(bytes) => {
                            let b = lines.push(&bytes, now());
                            append(&mut f, &b, &run).await;
                        }
                        None => {
                            let why = match s.close().await {
                                Ok(()) => "the console ended".to_string(),
                                Err(e) => e.to_string(),
                            };
                            tracing::info!(run, bmc = %bmc.address, why, "console: SOL ended");
                            let b = lines.note(now(), &format!("serial console lost: {why}"));
                            append(&mut f, &b, &run).await;
                            if opened > REOPENS {
                                note(format!("console: SOL lost ({why}); not reopened"));
                                break 'outer why;
                            }
                            tokio::select! {
                                _ = &mut stopped => break 'outer "run ended".to_string(),
                                _ = shutdown.cancelled() => break 'outer "daemon stopping".to_string(),
                                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                            }
                            continue 'outer;
                        }
                    },
                    _ = tick.tick() => {
                        let b = lines.flush_idle(now(), IDLE_FLUSH_MS);
                        append(&mut f, &b, &run).await;
                    }
                }
            }
        };
        let b = lines.note(now(), &format!("console capture ended: {ending}"));
        append(&mut f, &b, &run).await;
        if let Some(mut f) = f {
            let _ = f.flush().await;
        }
    });
    Capture { stop: Some(stop) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000; // 2023-11-14T22:13:20.000Z

    #[test]
    fn timestamps_are_utc_ms() {
        assert_eq!(timestamp(T0), "2023-11-14T22:13:20.000Z");
        assert_eq!(timestamp(T0 + 1234), "2023-11-14T22:13:21.234Z");
    }

    /// Table: chunks (with their arrival time) → the log text.
    #[test]
    fn lines_and_stamps() {
        type Chunks<'a> = Vec<(i64, &'a [u8])>;
        let cases: Vec<(&str, Chunks, &str)> = vec![
            (
                "a line split across chunks keeps its first byte's time",
                vec![(T0, b"Boo"), (T0 + 5, b"ting\r\n")],
                "2023-11-14T22:13:20.000Z Booting\n",
            ),
            (
                "two lines in one chunk",
                vec![(T0, b"a\r\nb\n")],
                "2023-11-14T22:13:20.000Z a\n2023-11-14T22:13:20.000Z b\n",
            ),
            (
                "escape sequences and controls dropped, tab and UTF-8 kept",
                vec![(T0, b"\x1b[2J\x1b[1;1H\x1b(Bgrub\x07>\tok \xc3\xa9\n")],
                "2023-11-14T22:13:20.000Z grub>\tok \u{e9}\n",
            ),
            ("a partial line waits", vec![(T0, b"login: ")], ""),
            (
                "empty lines stay",
                vec![(T0, b"\n")],
                "2023-11-14T22:13:20.000Z \n",
            ),
        ];
        for (what, chunks, want) in cases {
            let mut c = ConsoleLines::new(1 << 20);
            let mut got = Vec::new();
            for (at, b) in chunks {
                got.extend(c.push(b, at));
            }
            assert_eq!(String::from_utf8_lossy(&got), want, "{what}");
        }
    }

    #[test]
    fn idle_prompt_is_flushed_and_notes_end_the_line() {
        let mut c = ConsoleLines::new(1 << 20);
        assert!(c.push(b"login: ", T0).is_empty());
        assert!(c.flush_idle(T0 + 999, 1000).is_empty());
        assert_eq!(
            String::from_utf8_lossy(&c.flush_idle(T0 + 1000, 1000)),
            "2023-11-14T22:13:20.000Z login: \n"
        );
        c.push(b"abc", T0 + 2000);
        assert_eq!(
            String::from_utf8_lossy(&c.note(T0 + 3000, "x")),
            "2023-11-14T22:13:22.000Z abc\n2023-11-14T22:13:23.000Z --- x ---\n"
        );
    }

    #[test]
    fn bounded_with_one_marker() {
        let limit = 200;
        let mut c = ConsoleLines::new(limit);
        let mut all = Vec::new();
        for i in 0..50 {
            all.extend(c.push(format!("line {i}\n").as_bytes(), T0));
        }
        all.extend(c.note(T0, "later"));
        let text = String::from_utf8_lossy(&all);
        assert!(all.len() as u64 <= limit, "{}", all.len());
        assert_eq!(c.written(), all.len() as u64);
        assert!(c.truncated());
        assert!(
            text.ends_with("--- console log truncated at 200 bytes ---\n"),
            "{text}"
        );
        assert_eq!(text.matches("truncated").count(), 1);
        assert!(text.starts_with("2023-11-14T22:13:20.000Z line 0\n"));
    }

    #[test]
    fn long_lines_are_cut() {
        let mut c = ConsoleLines::new(1 << 20);
        let out = c.push(&vec![b'x'; MAX_LINE + 10], T0);
        assert_eq!(String::from_utf8_lossy(&out).lines().count(), 1);
        let out = c.push(b"\n", T0);
        assert!(String::from_utf8_lossy(&out).ends_with(&format!(" {}\n", "x".repeat(10))));
    }

    #[test]
    fn tail() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), vec!["b", "c"]);
        assert_eq!(tail_lines("a\n", 5), vec!["a"]);
        assert!(tail_lines("", 3).is_empty());
    }
}
