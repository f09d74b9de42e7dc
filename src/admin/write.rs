//! The edit lock and durable atomic writes.

use super::*;

// Locking and writing

/// The exclusive edit lock; released on drop.
pub struct EditLock {
    _file: File,
}

/// Take the config dir's edit lock, waiting for another editor to finish.
pub fn lock(dir: &Path) -> Result<EditLock, AdminError> {
    let p = dir.join(LOCK_FILE);
    let f = match OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
    {
        Ok(f) => f,
        // Another user's lock file (root's CLI made it, the daemon edits, or
        // the reverse): flock works on a read-only descriptor too.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => OpenOptions::new()
            .read(true)
            .open(&p)
            .map_err(|e| io_err("cannot open the lock file", &p, e))?,
        Err(e) => return Err(io_err("cannot open the lock file", &p, e)),
    };
    f.lock()
        .map_err(|e| io_err("cannot lock the lock file", &p, e))?;
    Ok(EditLock { _file: f })
}

/// Replace `path` with `text` atomically: a temp file in the same dir, written
/// and fsynced, renamed over the old file, then the dir fsynced. Readers see
/// the old file or the new one, never a mix; the old file's mode is kept.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    write_atomic_with(path, text, true)
}

pub(super) fn write_atomic_with(path: &Path, text: &str, durable: bool) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o644);
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        if durable {
            f.sync_all()?;
        }
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if durable {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

pub(super) fn remove_durably(path: &Path) -> std::io::Result<()> {
    std::fs::remove_file(path)?;
    if let Some(d) = path.parent() {
        File::open(d)?.sync_all()?;
    }
    Ok(())
}
