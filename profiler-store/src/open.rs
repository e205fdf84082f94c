//! Opening a store: the data directory's lock, the files' permissions, the checks a
//! database must pass before the agent writes to it, and opening for reading only.
//!
//! - **One writer per directory.** The writer holds an exclusive `flock` on
//!   [`LOCK_FILE_NAME`] for as long as its [`Store`](crate::Store) lives, and writes its PID
//!   into it, so a second writer is refused with a message naming the first. The kernel
//!   drops the lock when the process dies, `kill -9` included, so there is no stale lock to
//!   clean up. Readers take no lock: SQLite's WAL lets them read beside the writer.
//! - **Private files.** A directory the store creates is `0700`, the database (and so its
//!   `-wal` and `-shm`, which SQLite creates with the database's mode) and the lock file
//!   are `0600`: the stacks of every process on the node are not for every local user.
//! - **Checked before writing.** The writer refuses a database it could only read (an
//!   immutable attribute, a read-only file), a schema with a table or index missing, and
//!   one SQLite's `PRAGMA quick_check` finds damaged; the check is stopped after
//!   [`StoreConfig::integrity_check_budget`](crate::StoreConfig::integrity_check_budget)
//!   so a large store still starts promptly (damage found later is skipped and counted).
//! - **Reading what may not be written.** [`Store::open_read_only`](crate::Store::open_read_only)
//!   opens the database read-only; where SQLite cannot even do that (a read-only mount or a
//!   directory the user may not write, where it cannot create the `-shm` index), it falls
//!   back to SQLite's `immutable` mode, which reads the database file alone.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read as _};
use std::os::unix::fs::{DirBuilderExt as _, FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::StoreError;

/// The lock file's name inside the data directory.
pub const LOCK_FILE_NAME: &str = "ember.lock";

/// Tables and indexes a store of schema version 1 must have.
const EXPECTED_OBJECTS: [&str; 9] = [
    "strings",
    "strings_crc",
    "frames",
    "frames_crc",
    "stacks",
    "stacks_crc",
    "label_sets",
    "label_sets_crc",
    "windows",
];
/// What version 2 (windows with a kind) adds to them.
const EXPECTED_OBJECTS_V2: [&str; 1] = ["windows_kind_start"];
/// At most this many problems of `quick_check` are reported.
const MAX_PROBLEMS: usize = 4;

/// The writer's hold on a data directory; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

/// Creates `dir` (and missing parents) `0700`; an existing directory is left as it is.
pub(crate) fn create_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StoreError::CreateDir {
            path: dir.to_owned(),
            source,
        })
}

/// Takes the exclusive lock of `dir`, or says who holds it.
pub(crate) fn lock_dir(dir: &Path) -> Result<DirLock, StoreError> {
    let path = dir.join(LOCK_FILE_NAME);
    let lock_err = |source| StoreError::Lock {
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(lock_err)?;
    match file.try_lock() {
        Ok(()) => {
            let pid = format!("{}\n", std::process::id());
            file.set_len(0)
                .and_then(|()| file.write_all_at(pid.as_bytes(), 0))
                .map_err(lock_err)?;
            Ok(DirLock { _file: file })
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            // The holder writes its PID right after locking: an empty file is a race.
            let pid = file
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| text.trim().parse().ok());
            Err(StoreError::InUse {
                dir: dir.to_owned(),
                holder: Holder(pid),
            })
        }
        Err(std::fs::TryLockError::Error(source)) => Err(lock_err(source)),
    }
}

/// Creates an empty database file `0600` if there is none (SQLite would create it with
/// the process's umask, `0644` by default, and its `-wal` and `-shm` take its mode).
pub(crate) fn create_private_file(path: &Path) -> Result<(), StoreError> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(StoreError::CreateFile {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Who holds a data directory's lock, as error messages say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holder(pub Option<u32>);

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(pid) => write!(f, "pid {pid}"),
            None => f.write_str("a process whose pid is not recorded yet"),
        }
    }
}

/// Refuses a database the writer could only read: SQLite silently opens a file it may
/// not write (an immutable attribute, a read-only mode or mount) read-only.
pub(crate) fn check_writable(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
        return Err(StoreError::ReadOnly {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// Refuses a store with a table or index of its schema `version` missing.
pub(crate) fn check_schema(conn: &Connection, path: &Path, version: i64) -> Result<(), StoreError> {
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(|source| classify(path, "read schema", source))?;
    let v2: &[&str] = if version >= 2 {
        &EXPECTED_OBJECTS_V2
    } else {
        &[]
    };
    let missing: Vec<&str> = EXPECTED_OBJECTS
        .into_iter()
        .chain(v2.iter().copied())
        .filter(|want| !names.iter().any(|n| n == want))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(StoreError::Damaged {
        path: path.to_owned(),
        problem: format!("its schema lacks `{}`", missing.join("`, `")),
    })
}

/// Runs `PRAGMA quick_check`, stopped after `budget`: damage found is an error, a check
/// that ran out of time is logged and the store opens.
pub(crate) fn quick_check(
    conn: &Connection,
    path: &Path,
    budget: Duration,
) -> Result<(), StoreError> {
    let deadline = Instant::now() + budget;
    conn.progress_handler(1000, Some(move || Instant::now() >= deadline));
    let rows: Result<Vec<String>, rusqlite::Error> = conn
        .prepare(&format!("PRAGMA quick_check({MAX_PROBLEMS})"))
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect());
    conn.progress_handler(0, None::<fn() -> bool>);
    match rows {
        Ok(rows) if rows.len() == 1 && rows[0] == "ok" => Ok(()),
        Ok(rows) => Err(StoreError::Damaged {
            path: path.to_owned(),
            problem: format!("SQLite's integrity check says: {}", rows.join("; ")),
        }),
        Err(e) if e.sqlite_error_code() == Some(ErrorCode::OperationInterrupted) => {
            tracing::warn!(
                path = %path.display(),
                ?budget,
                "the store's integrity check did not finish in time; opening it anyway \
                 (damaged rows found later are skipped and counted)"
            );
            Ok(())
        }
        Err(source) => Err(classify(path, "check integrity", source)),
    }
}

/// Damage as [`StoreError::NotADatabase`], anything else as [`StoreError::Sqlite`].
pub(crate) fn classify(path: &Path, op: &'static str, source: rusqlite::Error) -> StoreError {
    if crate::is_damage(&source) {
        StoreError::NotADatabase {
            path: path.to_owned(),
            source,
        }
    } else {
        crate::sql_err(path, op)(source)
    }
}

/// Opens `path` for reading only; where SQLite cannot (it cannot create the `-shm` index
/// on a read-only mount or in a directory the user may not write), opens it `immutable`.
/// Returns the connection and whether it is immutable.
pub(crate) fn open_read_only(path: &Path) -> Result<(Connection, bool), StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    // WAL mode opens the `-shm` index at the first read, not at open: probe with one.
    let probe = |conn: Connection| -> Result<Connection, rusqlite::Error> {
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        })?;
        Ok(conn)
    };
    match Connection::open_with_flags(path, flags).and_then(probe) {
        Ok(conn) => Ok((conn, false)),
        Err(e)
            if matches!(
                e.sqlite_error_code(),
                Some(ErrorCode::CannotOpen | ErrorCode::ReadOnly)
            ) =>
        {
            let uri = format!("file:{}?immutable=1", uri_path(path));
            let conn = Connection::open_with_flags(&uri, flags)
                .and_then(probe)
                .map_err(|source| classify(path, "open read-only", source))?;
            let wal = wal_path(path);
            if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
                tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "the store can only be read as an immutable file: windows still in its \
                     write-ahead log (a running or killed agent's last minutes) are not seen"
                );
            } else {
                tracing::debug!(path = %path.display(), error = %e, "reading the store as immutable");
            }
            Ok((conn, true))
        }
        Err(source) => Err(classify(path, "open read-only", source)),
    }
}

/// The write-ahead log beside a database file.
pub(crate) fn wal_path(path: &Path) -> PathBuf {
    let mut wal = path.to_owned().into_os_string();
    wal.push("-wal");
    PathBuf::from(wal)
}

/// The shared-memory index beside a database file.
pub(crate) fn shm_path(path: &Path) -> PathBuf {
    let mut shm = path.to_owned().into_os_string();
    shm.push("-shm");
    PathBuf::from(shm)
}

/// `path` percent-encoded for an SQLite `file:` URI.
fn uri_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt as _;
    let mut out = String::new();
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_paths_escape_what_a_uri_would_read_as_syntax() {
        assert_eq!(
            uri_path(Path::new("/var/lib/ember/a b?c#d%e")),
            "/var/lib/ember/a%20b%3Fc%23d%25e"
        );
    }
}
