//! The store's errors.

use std::path::PathBuf;

/// What can go wrong opening, writing or reading a store.
///
/// Damaged rows found while reading are not errors: they are skipped, logged and counted
/// (see [`StoreStats::corrupt_skipped`](super::StoreStats::corrupt_skipped)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The data directory could not be created.
    #[error("cannot create the store directory `{path}`")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The database file could not be created.
    #[error("cannot create the store database `{path}`")]
    CreateFile {
        /// The database file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The data directory's lock file could not be opened or locked.
    #[error("cannot lock the store directory with `{path}`")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another process writes to this data directory.
    #[error(
        "the store directory `{dir}` is in use by another Ember agent ({holder}); stop it, or \
         give this one another `--data-dir`"
    )]
    InUse {
        /// The data directory.
        dir: PathBuf,
        /// Who holds the lock.
        holder: crate::open::Holder,
    },
    /// The database can be read but not written.
    #[error(
        "`{path}` cannot be written (a read-only file or file system, or an immutable \
         attribute: see `lsattr`); make it writable or point `--data-dir` elsewhere"
    )]
    ReadOnly {
        /// The database file.
        path: PathBuf,
    },
    /// The database opens, but its schema or pages are damaged.
    #[error(
        "`{path}` is a damaged Ember store ({problem}); move it aside (or delete it) and Ember \
         will start a new, empty store"
    )]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// What the check found.
        problem: String,
    },
    /// A write failed because the file system is full.
    #[error(
        "store database `{path}`: {op} failed: disk full (SQLite's SQLITE_FULL); free space \
         or lower `--store-max-size`"
    )]
    DiskFull {
        /// The database file.
        path: PathBuf,
        /// What the store was doing.
        op: &'static str,
    },
    /// The database file exists but is not a usable SQLite database.
    #[error(
        "`{path}` is not a readable Ember store database: move it aside (or delete it) \
         and Ember will start a new, empty store; SQLite says"
    )]
    NotADatabase {
        /// The database file.
        path: PathBuf,
        /// SQLite's diagnosis.
        #[source]
        source: rusqlite::Error,
    },
    /// The file is an SQLite database, but not one Ember wrote.
    #[error(
        "`{path}` is an SQLite database but not an Ember store (application id {application_id:#x}); \
         point `--data-dir` elsewhere or move the file aside"
    )]
    ForeignDatabase {
        /// The database file.
        path: PathBuf,
        /// The file's `PRAGMA application_id`.
        application_id: i64,
    },
    /// The store was written by a newer (or unknown) schema.
    #[error("`{path}` has store schema version {found}, this build reads version {expected}")]
    SchemaVersion {
        /// The database file.
        path: PathBuf,
        /// The file's version.
        found: i64,
        /// The version this build writes and reads.
        expected: i64,
    },
    /// An SQLite call failed.
    #[error("store database `{path}`: {op} failed")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What the store was doing.
        op: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A window to write is not valid.
    #[error("window {start_unix_ns}..{end_unix_ns}: {reason}")]
    InvalidWindow {
        /// The window's start.
        start_unix_ns: u64,
        /// The window's end.
        end_unix_ns: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// Compressing a window payload failed.
    #[error("window {start_unix_ns}..{end_unix_ns}: cannot compress the payload")]
    Compress {
        /// The window's start.
        start_unix_ns: u64,
        /// The window's end.
        end_unix_ns: u64,
        /// zstd's error.
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// Whether the error is the file system being full: retrying after space is freed
    /// (or retention ran) can succeed.
    #[must_use]
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::DiskFull { .. })
    }
}
