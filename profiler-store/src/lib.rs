//! Ember's **store** stage, between aggregation and query in the pipeline
//! sample → aggregate → symbolize → **store** → query → render/export: closed time windows
//! of [`Profile`]s go in, merged profiles, timelines and label values for a time range come
//! out. Everything about keeping profiles on disk lives here (schema, codec, caches,
//! retention); the crate knows nothing of sampling or HTTP.
//!
//! The agent calls [`Store::write_window`] each time it closes a window (every 10 s) and
//! [`Store::enforce_retention`] now and then; the HTTP API calls [`Store::query`],
//! [`Store::timeline`] and [`Store::label_values`]; `ember export` opens the same directory.
//!
//! # Engine: SQLite (bundled), WAL mode, `synchronous=NORMAL`
//!
//! SQLite gives us, in one file, what the store must guarantee: atomic transactions (each
//! window is one transaction, so a `kill -9` loses at most the window being written), crash
//! recovery on the next open, readers concurrent with the writer (WAL: `ember export` or the
//! API can read while the agent writes), an integrity-checked page format, and ad-hoc
//! inspection with the `sqlite3` shell. `rusqlite`'s `bundled` feature compiles SQLite in,
//! so nothing is needed on the host. redb would also do; SQLite was chosen for the
//! inspection tooling and its long record on crash safety.
//!
//! `synchronous=NORMAL` (the default, see [`Durability`]): in WAL mode a commit is in the
//! OS's hands when `COMMIT` returns, so it survives the process being killed; only a power
//! loss can drop the last commits, and it never corrupts the file. That trade saves an
//! `fsync` per window; [`Durability::Full`] restores it.
//!
//! # Schema (version 2, `PRAGMA application_id = 0x456d6272` "Embr")
//!
//! ```text
//! strings   (id, crc, data)  function names, files, modules, label names/values, build-ids
//! frames    (id, crc, data)  name/module/file as string ids, kind, inlined, line, location
//! stacks    (id, crc, data)  frame ids, root first
//! label_sets(id, crc, data)  (name, value) string-id pairs
//! windows   (id, start_ns, end_ns, frequency_hz, samples, raw_len, crc, payload, kind)
//! push_cursors (destination, window_id, end_ns, updated_ns)   the push outbox (`outbox.rs`)
//! ```
//!
//! The four dictionary tables deduplicate across windows: each distinct string, frame, stack
//! and label set is stored once, found again by the CRC-32 of its encoding (indexed) and a
//! byte comparison. A window's payload is its `(label set id, stack id, count)` entries,
//! sorted and delta-coded (`codec.rs`) then zstd-compressed, so a window costs a few bytes per
//! distinct stack. Ids use `AUTOINCREMENT`, so an id deleted by retention is never reused
//! and stale cache entries can never point at another row.
//!
//! A window has a kind ([`ProfileKind`], its profile's `meta.kind`): `0` CPU samples, `1`
//! microseconds off CPU. CPU and off-CPU windows of one period are two rows sharing the
//! dictionaries; every read takes the kind, and retention treats the rows alike (but never
//! merges two kinds into one window).
//!
//! Version 1 had no `kind`: its windows are CPU windows. The writer migrates a version-1
//! store when it opens it (one transaction adds the column, defaulting to CPU, and its
//! index, then stamps version 2); a reader of a version-1 store it may not migrate reads
//! every window as CPU.
//!
//! # Damage
//!
//! Every payload and dictionary row carries the CRC-32 of its stored bytes, checked on each
//! read; zstd and decoding errors and SQLite's own corruption errors are caught the same way.
//! A damaged window or row is skipped, logged once with `tracing::warn!` and counted in
//! [`StoreStats::corrupt_skipped`]; the rest of the answer is still returned. A database file
//! SQLite cannot read at all fails [`Store::open`] with [`StoreError::NotADatabase`], which
//! names the file and says to move it aside. Damage that would make writes fail is caught
//! before the first one: the writer refuses a file it could only read, a schema with a table
//! or index missing, and pages `PRAGMA quick_check` finds damaged
//! ([`StoreError::Damaged`], the same advice), the check bounded in time by
//! [`StoreConfig::integrity_check_budget`]. A damaged store is refused, never moved or
//! deleted by Ember: a person decides what to keep. See `open.rs` for the directory's lock
//! (one writer), the files' modes (`0700`, `0600`) and read-only opening.
//!
//! # Speed and memory
//!
//! A query lists the overlapping windows through an index on `start_ns` (bounded below by
//! the longest window, kept in memory), decodes only those payloads, and sums counts by
//! `(label set id, stack id)`: integer keys, no frame hashing. The label filter is evaluated
//! once per label set, not per sample. Only then are the surviving stacks, frames and
//! strings resolved, each distinct id once per query, through bounded two-generation caches
//! of decoded rows ([`StoreConfig::cache_entries`] per kind and generation), so the memory
//! held between queries is bounded whatever the store's size; the memory of one query is
//! that of its result. The writer keeps bounded caches of encoded row → id the same way, so a
//! steady workload writes a window with no dictionary lookups in SQLite.
//!
//! # Retention
//!
//! [`StoreConfig::max_bytes`] bounds the store's files (database, write-ahead log and its
//! index) and is enforced after every write: two `stat`s while under it; over it, a
//! checkpoint, then the oldest windows are deleted down to 90 % of it (a window's share of
//! the size is estimated as bytes / windows, since the shared dictionaries dominate; at
//! most a few delete-and-measure rounds per write). The write-ahead log is checkpointed
//! once it holds an eighth of the cap. [`Store::enforce_retention`], called now and then
//! and after a failed write, also deletes windows older than [`StoreConfig::retention`] and
//! merges windows older than [`Downsample::after`] into [`Downsample::resolution`] buckets.
//! Dictionary rows no window refers to any more are then swept (mark and sweep over the
//! remaining payloads) and free pages are returned to the file system
//! (`auto_vacuum=INCREMENTAL`). One writer process per directory (a lock enforces it);
//! readers in other processes are fine.
//!
//! A full disk fails a write with [`StoreError::DiskFull`] (nothing is written, the store
//! stays consistent); keeping the window for a retry is the caller's business.

mod cache;
mod codec;
mod config;
mod error;
mod open;
mod outbox;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use profiler_model::{
    Frame, FrameId, Labels, LabelsId, Location, Profile, ProfileKind, ProfileMeta,
};
use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};

use cache::GenCache;
use codec::{Entry, FrameRow, LocationRow};
pub use config::{Downsample, Durability, StoreConfig};
pub use error::StoreError;
pub use open::{Holder, LOCK_FILE_NAME};
pub use outbox::PushCursor;
pub use profiler_model::{LabelFilter, LabelFilterError};

/// The database file's name inside the data directory.
pub const DB_FILE_NAME: &str = "ember-store.sqlite3";
const APPLICATION_ID: i64 = 0x456d_6272;
const SCHEMA_VERSION: i64 = 2;
/// The schema before windows had a kind (all CPU), migrated by the writer.
const SCHEMA_VERSION_CPU_ONLY: i64 = 1;
const ZSTD_LEVEL: i32 = 3;
/// No window payload decompresses to more than this; a larger `raw_len` is damage.
const MAX_RAW_PAYLOAD: usize = 1 << 30;
/// Rounds of delete-sweep-measure one size retention runs at most.
const SIZE_ROUNDS: usize = 4;
/// How long a reader or writer waits for the other's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE strings (id INTEGER PRIMARY KEY AUTOINCREMENT, crc INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX strings_crc ON strings (crc);
CREATE TABLE frames (id INTEGER PRIMARY KEY AUTOINCREMENT, crc INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX frames_crc ON frames (crc);
CREATE TABLE stacks (id INTEGER PRIMARY KEY AUTOINCREMENT, crc INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX stacks_crc ON stacks (crc);
CREATE TABLE label_sets (id INTEGER PRIMARY KEY AUTOINCREMENT, crc INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX label_sets_crc ON label_sets (crc);
CREATE TABLE windows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    frequency_hz INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    raw_len INTEGER NOT NULL,
    crc INTEGER NOT NULL,
    payload BLOB NOT NULL,
    kind INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX windows_start ON windows (start_ns);
CREATE INDEX windows_kind_start ON windows (kind, start_ns);
";

/// Version 1 → 2: windows get a kind, and those stored are CPU windows.
const MIGRATE_TO_KINDS: &str = "
ALTER TABLE windows ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;
CREATE INDEX windows_kind_start ON windows (kind, start_ns);
";

/// A kind as the `kind` column stores it.
fn kind_code(kind: ProfileKind) -> i64 {
    match kind {
        ProfileKind::Cpu => 0,
        ProfileKind::OffCpu => 1,
    }
}

/// The kind a `kind` column value stands for; `None` for a value no Ember writes.
fn kind_of_code(code: i64) -> Option<ProfileKind> {
    match code {
        0 => Some(ProfileKind::Cpu),
        1 => Some(ProfileKind::OffCpu),
        _ => None,
    }
}

/// The id of a stored window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WindowId(pub i64);

impl fmt::Display for WindowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "window {}", self.0)
    }
}

/// A closed time window's profile, as the agent hands it to the store.
#[derive(Clone, Debug)]
pub struct Window {
    /// Start, nanoseconds since the Unix epoch (inclusive).
    pub start_unix_ns: u64,
    /// End, nanoseconds since the Unix epoch (exclusive).
    pub end_unix_ns: u64,
    /// The samples of the window. Its `meta.frequency_hz` and `meta.kind` are stored;
    /// start and duration come from the window.
    pub profile: Profile,
}

/// What [`Store::query`] returns: windows of one kind overlapping `[from, to)` whose
/// samples' labels match `filter`.
#[derive(Clone, Debug, Default)]
pub struct Query {
    /// Which windows: CPU (the default) or off-CPU.
    pub kind: ProfileKind,
    /// Start of the range, nanoseconds since the Unix epoch (inclusive).
    pub from_unix_ns: u64,
    /// End of the range, nanoseconds since the Unix epoch (exclusive).
    pub to_unix_ns: u64,
    /// Which samples to keep.
    pub filter: LabelFilter,
}

impl Query {
    /// All samples of CPU windows overlapping `[from, to)`.
    #[must_use]
    pub fn new(from_unix_ns: u64, to_unix_ns: u64) -> Self {
        Query {
            kind: ProfileKind::Cpu,
            from_unix_ns,
            to_unix_ns,
            filter: LabelFilter::all(),
        }
    }

    /// Sets the label filter.
    #[must_use]
    pub fn with_filter(mut self, filter: LabelFilter) -> Self {
        self.filter = filter;
        self
    }

    /// Sets the kind of windows read.
    #[must_use]
    pub fn with_kind(mut self, kind: ProfileKind) -> Self {
        self.kind = kind;
        self
    }
}

/// One window of a [`Store::timeline`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowSummary {
    /// The window.
    pub id: WindowId,
    /// Its start, nanoseconds since the Unix epoch.
    pub start_unix_ns: u64,
    /// Its end, nanoseconds since the Unix epoch.
    pub end_unix_ns: u64,
    /// Its samples that pass the filter (microseconds for an off-CPU window).
    pub samples: u64,
    /// What its counts measure.
    pub kind: ProfileKind,
}

/// What one [`Store::enforce_retention`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionReport {
    /// Windows deleted for being older than the retention.
    pub deleted_by_age: u64,
    /// Windows deleted, oldest first, to fit the size bound.
    pub deleted_by_size: u64,
    /// Windows merged into coarser ones.
    pub merged_windows: u64,
    /// Coarser windows those became.
    pub merged_into: u64,
    /// Dictionary rows (strings, frames, stacks, label sets) no window used any more.
    pub rows_swept: u64,
    /// Bytes of pages in use afterwards.
    pub live_bytes: u64,
}

/// Counters and sizes of an open store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Windows stored.
    pub windows: u64,
    /// Size of the database file and its write-ahead log.
    pub bytes_on_disk: u64,
    /// Bytes of database pages in use (what [`StoreConfig::max_bytes`] bounds).
    pub live_bytes: u64,
    /// Distinct damaged windows or rows found (and skipped) since the store was opened.
    pub corrupt_skipped: u64,
    /// Windows written since the store was opened.
    pub windows_written: u64,
    /// Distinct strings stored.
    pub strings: u64,
    /// Distinct frames stored.
    pub frames: u64,
    /// Distinct stacks stored.
    pub stacks: u64,
    /// Distinct label sets stored.
    pub label_sets: u64,
    /// Decoded rows held in the read caches.
    pub cached_rows: u64,
}

/// The dictionary tables, and windows, as named in logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Strings,
    Frames,
    Stacks,
    LabelSets,
    Window,
}

impl Kind {
    const DICTIONARIES: [Kind; 4] = [Kind::Strings, Kind::Frames, Kind::Stacks, Kind::LabelSets];

    fn table(self) -> &'static str {
        match self {
            Kind::Strings => "strings",
            Kind::Frames => "frames",
            Kind::Stacks => "stacks",
            Kind::LabelSets => "label_sets",
            Kind::Window => "windows",
        }
    }

    // Windows are never read or written through the dictionary statements below; their
    // arms only keep the matches exhaustive.
    fn select_by_id(self) -> &'static str {
        match self {
            Kind::Strings => "SELECT crc, data FROM strings WHERE id = ?1",
            Kind::Frames => "SELECT crc, data FROM frames WHERE id = ?1",
            Kind::Stacks => "SELECT crc, data FROM stacks WHERE id = ?1",
            Kind::LabelSets | Kind::Window => "SELECT crc, data FROM label_sets WHERE id = ?1",
        }
    }

    fn select_by_crc(self) -> &'static str {
        match self {
            Kind::Strings => "SELECT id, data FROM strings WHERE crc = ?1",
            Kind::Frames => "SELECT id, data FROM frames WHERE crc = ?1",
            Kind::Stacks => "SELECT id, data FROM stacks WHERE crc = ?1",
            Kind::LabelSets | Kind::Window => "SELECT id, data FROM label_sets WHERE crc = ?1",
        }
    }

    fn insert(self) -> &'static str {
        match self {
            Kind::Strings => "INSERT INTO strings (crc, data) VALUES (?1, ?2)",
            Kind::Frames => "INSERT INTO frames (crc, data) VALUES (?1, ?2)",
            Kind::Stacks => "INSERT INTO stacks (crc, data) VALUES (?1, ?2)",
            Kind::LabelSets | Kind::Window => "INSERT INTO label_sets (crc, data) VALUES (?1, ?2)",
        }
    }
}

/// Writer-side caches: encoded row → id, per dictionary.
struct Interners {
    strings: GenCache<Vec<u8>, i64>,
    frames: GenCache<Vec<u8>, i64>,
    stacks: GenCache<Vec<u8>, i64>,
    label_sets: GenCache<Vec<u8>, i64>,
}

impl Interners {
    fn new(capacity: usize) -> Self {
        Interners {
            strings: GenCache::new(capacity),
            frames: GenCache::new(capacity),
            stacks: GenCache::new(capacity),
            label_sets: GenCache::new(capacity),
        }
    }

    fn clear(&mut self) {
        self.strings.clear();
        self.frames.clear();
        self.stacks.clear();
        self.label_sets.clear();
    }
}

/// Reader-side caches: id → decoded row.
struct Decoded {
    strings: GenCache<i64, Arc<[u8]>>,
    frames: GenCache<i64, Frame>,
    stacks: GenCache<i64, Arc<[i64]>>,
    label_sets: GenCache<i64, Arc<Labels>>,
}

impl Decoded {
    fn new(capacity: usize) -> Self {
        Decoded {
            strings: GenCache::new(capacity),
            frames: GenCache::new(capacity),
            stacks: GenCache::new(capacity),
            label_sets: GenCache::new(capacity),
        }
    }

    fn clear(&mut self) {
        self.strings.clear();
        self.frames.clear();
        self.stacks.clear();
        self.label_sets.clear();
    }

    fn len(&self) -> usize {
        self.strings.len() + self.frames.len() + self.stacks.len() + self.label_sets.len()
    }
}

/// A window's row without its payload.
#[derive(Clone, Copy, Debug)]
struct WindowRow {
    id: i64,
    start_ns: u64,
    end_ns: u64,
    samples: u64,
    kind: ProfileKind,
}

/// The embedded profile store of one data directory. See the [module docs](self).
pub struct Store {
    conn: Connection,
    path: PathBuf,
    config: StoreConfig,
    interners: Interners,
    decoded: RefCell<Decoded>,
    corrupt: RefCell<HashSet<(Kind, i64)>>,
    windows_written: u64,
    /// The longest window stored, which bounds how far before a range's start an
    /// overlapping window can begin.
    max_window_ns: i64,
    /// The SQL of a window's kind: `kind`, or `0` (CPU) in a version-1 store read without
    /// migrating it.
    kind_column: &'static str,
    /// The writer's lock on the data directory (`None` for readers).
    _lock: Option<open::DirLock>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn sql_err<'a>(
    path: &'a Path,
    op: &'static str,
) -> impl FnOnce(rusqlite::Error) -> StoreError + 'a {
    move |source| {
        if source.sqlite_error_code() == Some(ErrorCode::DiskFull) {
            StoreError::DiskFull {
                path: path.to_owned(),
                op,
            }
        } else {
            StoreError::Sqlite {
                path: path.to_owned(),
                op,
                source,
            }
        }
    }
}

/// Whether an SQLite error means the data read is damaged (rather than, say, locked).
fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    ) || matches!(
        e,
        rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
    )
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn crc(data: &[u8]) -> i64 {
    i64::from(crc32fast::hash(data))
}

impl Store {
    /// Opens the store in `dir` for writing, creating the directory (`0700`) and an empty
    /// database (`0600`) if absent. The returned store holds the directory's lock until it
    /// is dropped; the database is checked first (see the [module docs](self#damage)).
    ///
    /// # Errors
    /// [`StoreError::InUse`] if another process writes to `dir` (naming its PID),
    /// [`StoreError::ReadOnly`] if the database cannot be written, [`StoreError::Damaged`]
    /// or [`StoreError::NotADatabase`] if it is damaged (move it aside),
    /// [`StoreError::ForeignDatabase`] if it is another program's database,
    /// [`StoreError::SchemaVersion`] if a newer Ember wrote it, and I/O errors.
    pub fn open(dir: &Path, config: StoreConfig) -> Result<Store, StoreError> {
        open::create_dir(dir)?;
        let lock = open::lock_dir(dir)?;
        let path = dir.join(DB_FILE_NAME);
        open::create_private_file(&path)?;
        let conn = Connection::open(&path).map_err(|e| open::classify(&path, "open", e))?;
        open::check_writable(&conn, &path)?;
        let mut store = Store::init(conn, path, config, Some(lock))?;
        store.apply_size_pragmas()?;
        Ok(store)
    }

    /// Opens the store in `dir` for reading only: nothing is created, locked or written, so
    /// it works on a read-only mount and for a user who may read but not write the
    /// directory (then in SQLite's `immutable` mode, which does not see windows still in
    /// the write-ahead log of a running agent; a warning says so).
    ///
    /// # Errors
    /// As [`Store::open`], and SQLite's error if the file is missing or unreadable.
    pub fn open_read_only(dir: &Path, config: StoreConfig) -> Result<Store, StoreError> {
        let path = dir.join(DB_FILE_NAME);
        let (conn, _immutable) = open::open_read_only(&path)?;
        Store::init(conn, path, config, None)
    }

    /// A store in memory, gone when dropped: the same schema and code as on disk, for tests
    /// of the stages around the store (the HTTP API's tests use it as their backend).
    ///
    /// # Errors
    /// SQLite errors (out of memory).
    pub fn open_in_memory(config: StoreConfig) -> Result<Store, StoreError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|e| open::classify(&path, "open", e))?;
        Store::init(conn, path, config, None)
    }

    /// Stamps a new database or checks an existing one, and builds the store.
    fn init(
        mut conn: Connection,
        path: PathBuf,
        config: StoreConfig,
        lock: Option<open::DirLock>,
    ) -> Result<Store, StoreError> {
        let writer = lock.is_some();
        let in_memory = path.as_os_str() == ":memory:";
        let classify = |op| {
            let path = path.clone();
            move |source: rusqlite::Error| open::classify(&path, op, source)
        };
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(classify("set busy timeout"))?;
        let app_id: i64 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(classify("read application id"))?;
        let objects: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(classify("read schema"))?;
        let new = app_id == 0 && objects == 0;
        if new && (writer || in_memory) {
            // A new database: auto_vacuum must be chosen before the first table exists.
            conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL")
                .map_err(classify("set auto_vacuum"))?;
        } else if app_id != APPLICATION_ID {
            return Err(StoreError::ForeignDatabase {
                path,
                application_id: app_id,
            });
        }
        if writer {
            let mode: String = conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                .map_err(classify("enable WAL"))?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(path = %path.display(), mode, "the store database is not in WAL mode");
            }
            let sync = match config.durability {
                Durability::Normal => "PRAGMA synchronous = NORMAL",
                Durability::Full => "PRAGMA synchronous = FULL",
            };
            conn.execute_batch(sync)
                .map_err(classify("set synchronous"))?;
        }
        if new {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(classify("begin schema creation"))?;
            tx.execute_batch(SCHEMA)
                .map_err(classify("create schema"))?;
            tx.execute_batch(&format!(
                "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};"
            ))
            .map_err(classify("stamp schema"))?;
            tx.commit().map_err(classify("commit schema"))?;
        } else {
            let version: i64 = conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(classify("read schema version"))?;
            if version != SCHEMA_VERSION && version != SCHEMA_VERSION_CPU_ONLY {
                return Err(StoreError::SchemaVersion {
                    path,
                    found: version,
                    expected: SCHEMA_VERSION,
                });
            }
            if writer {
                // Checked as the version it is, before the migration touches it.
                open::check_schema(&conn, &path, version)?;
                open::quick_check(&conn, &path, config.integrity_check_budget)?;
                if version == SCHEMA_VERSION_CPU_ONLY {
                    let tx = conn
                        .transaction_with_behavior(TransactionBehavior::Immediate)
                        .map_err(classify("begin schema migration"))?;
                    tx.execute_batch(MIGRATE_TO_KINDS)
                        .map_err(classify("add window kinds"))?;
                    tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION};"))
                        .map_err(classify("stamp schema"))?;
                    tx.commit().map_err(classify("commit schema migration"))?;
                    tracing::info!(path = %path.display(), "store migrated to schema version 2 (windows have a kind)");
                }
            } else {
                open::check_schema(&conn, &path, version)?;
            }
        }
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(classify("read schema version"))?;
        let kind_column = if version == SCHEMA_VERSION_CPU_ONLY {
            "0"
        } else {
            "kind"
        };
        let max_window_ns: i64 = conn
            .query_row(
                "SELECT coalesce(max(end_ns - start_ns), 0) FROM windows",
                [],
                |r| r.get(0),
            )
            .map_err(classify("read window lengths"))?;
        Ok(Store {
            conn,
            path,
            interners: Interners::new(config.cache_entries),
            decoded: RefCell::new(Decoded::new(config.cache_entries)),
            config,
            corrupt: RefCell::new(HashSet::new()),
            windows_written: 0,
            max_window_ns,
            kind_column,
            _lock: lock,
        })
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The configuration this store was opened with (the API opens more reading
    /// connections with it).
    #[must_use]
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Writes `window` in one transaction and returns its id. Once this returns, the window
    /// survives the process being killed.
    ///
    /// # Errors
    /// [`StoreError::InvalidWindow`] if the window ends before it starts or its times do not
    /// fit 63 bits; SQLite errors. Nothing is written on error.
    pub fn write_window(&mut self, window: &Window) -> Result<WindowId, StoreError> {
        let invalid = |reason| StoreError::InvalidWindow {
            start_unix_ns: window.start_unix_ns,
            end_unix_ns: window.end_unix_ns,
            reason,
        };
        if window.end_unix_ns < window.start_unix_ns {
            return Err(invalid("ends before it starts"));
        }
        if i64::try_from(window.end_unix_ns).is_err() {
            return Err(invalid("timestamps past the year 2262 are not supported"));
        }
        let result = self.write_window_tx(window);
        match result {
            Ok(id) => {
                self.windows_written += 1;
                let len = to_i64(window.end_unix_ns - window.start_unix_ns);
                self.max_window_ns = self.max_window_ns.max(len);
                // The window is committed whatever happens here; a cap that cannot be
                // enforced now is tried again after the next write.
                if let Err(e) = self.enforce_size() {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot keep the store under its size cap");
                }
                Ok(WindowId(id))
            }
            Err(e) => {
                // The transaction rolled back: ids cached during it may not exist.
                self.interners.clear();
                Err(e)
            }
        }
    }

    fn write_window_tx(&mut self, window: &Window) -> Result<i64, StoreError> {
        let Store {
            conn,
            path,
            interners,
            ..
        } = self;
        let path: &Path = path;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err(path, "begin window transaction"))?;
        let p = &window.profile;
        let mut buf = Vec::new();
        let mut frame_ids = Vec::with_capacity(p.frames().len());
        for f in p.frames() {
            frame_ids.push(intern_frame(&tx, path, interners, f, &mut buf)?);
        }
        let mut label_ids: HashMap<&Labels, i64> = HashMap::with_capacity(p.label_sets().len());
        for l in p.label_sets() {
            let mut pairs = Vec::new();
            for (k, v) in l.iter() {
                let k = intern(
                    &tx,
                    path,
                    &mut interners.strings,
                    Kind::Strings,
                    k.as_bytes(),
                )?;
                let v = intern(
                    &tx,
                    path,
                    &mut interners.strings,
                    Kind::Strings,
                    v.as_bytes(),
                )?;
                pairs.push((k, v));
            }
            buf.clear();
            codec::encode_pairs(&pairs, &mut buf);
            let id = intern(&tx, path, &mut interners.label_sets, Kind::LabelSets, &buf)?;
            label_ids.insert(l, id);
        }
        let mut entries = Vec::with_capacity(p.stack_count());
        let mut ids = Vec::new();
        for s in p.stacks() {
            ids.clear();
            ids.extend(s.frames.iter().map(|&f| frame_ids[f as usize]));
            buf.clear();
            codec::encode_ids(&ids, &mut buf);
            let stack = intern(&tx, path, &mut interners.stacks, Kind::Stacks, &buf)?;
            let labels = *label_ids
                .get(s.labels)
                .expect("every stack's labels are among the profile's label sets");
            entries.push(Entry {
                labels,
                stack,
                count: s.count,
            });
        }
        let id = insert_window(
            &tx,
            path,
            window.start_unix_ns,
            window.end_unix_ns,
            window.profile.meta.frequency_hz,
            window.profile.meta.kind,
            entries,
        )?;
        tx.commit().map_err(sql_err(path, "commit window"))?;
        Ok(id)
    }

    /// The merged profile of the windows overlapping `[from, to)`, keeping the samples whose
    /// labels match the filter. Damaged windows and rows are skipped (and counted).
    ///
    /// # Errors
    /// SQLite errors other than damage, such as the database being locked for too long.
    pub fn query(&self, q: &Query) -> Result<Profile, StoreError> {
        let rows = self.list_windows(q.kind, q.from_unix_ns, q.to_unix_ns)?;
        let mut sums: HashMap<(i64, i64), u64> = HashMap::new();
        let mut keep: HashMap<i64, bool> = HashMap::new();
        let mut meta = MetaAcc::new(q.kind);
        for w in rows {
            let Some((frequency_hz, entries)) = self.load_entries(w.id)? else {
                continue;
            };
            meta.add(&w, frequency_hz);
            for e in entries {
                if self.label_matches(&mut keep, e.labels, &q.filter)? {
                    *sums.entry((e.labels, e.stack)).or_insert(0) += e.count;
                }
            }
        }
        self.build_profile(meta.finish(), sums)
    }

    /// One stored window, or `None` if there is no such window or it is damaged.
    ///
    /// # Errors
    /// SQLite errors other than damage.
    pub fn window(&self, id: WindowId) -> Result<Option<Window>, StoreError> {
        let sql = format!(
            "SELECT start_ns, end_ns, samples, {} FROM windows WHERE id = ?1",
            self.kind_column
        );
        let row = self.conn.prepare_cached(&sql).and_then(|mut s| {
            s.query_row(params![id.0], |r| {
                Ok((
                    to_u64(r.get(0)?),
                    to_u64(r.get(1)?),
                    to_u64(r.get(2)?),
                    r.get::<_, i64>(3)?,
                ))
            })
            .optional()
        });
        let row = match row {
            Ok(Some((start_ns, end_ns, samples, code))) => {
                let Some(kind) = kind_of_code(code) else {
                    self.report(Kind::Window, id.0, &format!("unknown kind {code}"));
                    return Ok(None);
                };
                WindowRow {
                    id: id.0,
                    start_ns,
                    end_ns,
                    samples,
                    kind,
                }
            }
            Ok(None) => return Ok(None),
            Err(e) if is_damage(&e) => {
                self.report(Kind::Window, id.0, &e);
                return Ok(None);
            }
            Err(e) => return Err(sql_err(&self.path, "read window")(e)),
        };
        let Some((frequency_hz, entries)) = self.load_entries(id.0)? else {
            return Ok(None);
        };
        let mut meta = MetaAcc::new(row.kind);
        meta.add(&row, frequency_hz);
        let mut sums = HashMap::with_capacity(entries.len());
        for e in entries {
            *sums.entry((e.labels, e.stack)).or_insert(0) += e.count;
        }
        Ok(Some(Window {
            start_unix_ns: row.start_ns,
            end_unix_ns: row.end_ns,
            profile: self.build_profile(meta.finish(), sums)?,
        }))
    }

    /// Per window of `q.kind` overlapping `[q.from, q.to)`, oldest first: its times and its
    /// samples that pass `q.filter`. With the empty filter, the stored sample totals are
    /// used and no payload is decoded.
    ///
    /// # Errors
    /// SQLite errors other than damage.
    pub fn timeline(&self, q: &Query) -> Result<Vec<WindowSummary>, StoreError> {
        let filter = &q.filter;
        let rows = self.list_windows(q.kind, q.from_unix_ns, q.to_unix_ns)?;
        let mut out = Vec::with_capacity(rows.len());
        let mut keep = HashMap::new();
        for w in rows {
            let samples = if filter.is_all() {
                w.samples
            } else {
                let Some((_, entries)) = self.load_entries(w.id)? else {
                    continue;
                };
                let mut n = 0;
                for e in entries {
                    if self.label_matches(&mut keep, e.labels, filter)? {
                        n += e.count;
                    }
                }
                n
            };
            out.push(WindowSummary {
                id: WindowId(w.id),
                start_unix_ns: w.start_ns,
                end_unix_ns: w.end_ns,
                samples,
                kind: w.kind,
            });
        }
        Ok(out)
    }

    /// For the windows of `kind` overlapping `[from, to)`: label name → value → samples
    /// (microseconds for off-CPU windows).
    ///
    /// # Errors
    /// SQLite errors other than damage.
    pub fn label_values(
        &self,
        kind: ProfileKind,
        from_unix_ns: u64,
        to_unix_ns: u64,
    ) -> Result<BTreeMap<String, BTreeMap<String, u64>>, StoreError> {
        let mut per_set: HashMap<i64, u64> = HashMap::new();
        for w in self.list_windows(kind, from_unix_ns, to_unix_ns)? {
            if let Some((_, entries)) = self.load_entries(w.id)? {
                for e in entries {
                    *per_set.entry(e.labels).or_insert(0) += e.count;
                }
            }
        }
        let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for (id, n) in per_set {
            if let Some(labels) = self.labels(id)? {
                for (k, v) in labels.iter() {
                    *out.entry(k.to_owned())
                        .or_default()
                        .entry(v.to_owned())
                        .or_insert(0) += n;
                }
            }
        }
        Ok(out)
    }

    /// The kinds of window stored, in [`ProfileKind::ALL`]'s order (through the kind
    /// index: one probe per kind).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn kinds(&self) -> Result<Vec<ProfileKind>, StoreError> {
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM windows WHERE {} = ?1)",
            self.kind_column
        );
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(sql_err(&self.path, "prepare kind listing"))?;
        let mut out = Vec::new();
        for kind in ProfileKind::ALL {
            let present: bool = stmt
                .query_row(params![kind_code(kind)], |r| r.get(0))
                .map_err(sql_err(&self.path, "list window kinds"))?;
            if present {
                out.push(kind);
            }
        }
        Ok(out)
    }

    /// Applies retention as of `now_unix_ns`: checkpoints the write-ahead log, deletes
    /// windows past the retention, merges old windows into coarser ones, enforces
    /// [`StoreConfig::max_bytes`] (as every write does), sweeps unused dictionary rows and
    /// returns free pages. Call it now and then, and after a failed write: on a full disk it
    /// is what makes room.
    ///
    /// # Errors
    /// SQLite errors. Each step is its own transaction, so an error leaves a consistent
    /// store behind.
    pub fn enforce_retention(&mut self, now_unix_ns: u64) -> Result<RetentionReport, StoreError> {
        let mut report = RetentionReport::default();
        let path = self.path.clone();
        // Deletes need room in the write-ahead log: empty it first. On a full disk the
        // checkpoint itself can fail (the database cannot grow to take the log's pages);
        // the deletes are tried all the same.
        match self.checkpoint() {
            Err(e) if e.is_disk_full() => {
                tracing::debug!(error = %e, "checkpoint before retention");
            }
            other => other?,
        }
        let cutoff =
            to_i64(now_unix_ns.saturating_sub(
                u64::try_from(self.config.retention.as_nanos()).unwrap_or(u64::MAX),
            ));
        report.deleted_by_age =
            self.conn
                .execute("DELETE FROM windows WHERE end_ns <= ?1", params![cutoff])
                .map_err(sql_err(&path, "delete expired windows"))? as u64;
        if let Some(ds) = self.config.downsample {
            let (merged, into) = self.downsample(now_unix_ns, ds)?;
            report.merged_windows = merged;
            report.merged_into = into;
        }
        let mut changed = report.deleted_by_age > 0 || report.merged_windows > 0;
        if changed {
            report.rows_swept += self.sweep()?;
        }
        let (deleted, swept) = self.enforce_size()?;
        report.deleted_by_size = deleted;
        report.rows_swept += swept;
        changed |= deleted > 0;
        if changed {
            self.vacuum()?;
        }
        report.live_bytes = self.live_bytes()?;
        if changed {
            self.max_window_ns = self
                .conn
                .query_row(
                    "SELECT coalesce(max(end_ns - start_ns), 0) FROM windows",
                    [],
                    |r| r.get(0),
                )
                .map_err(sql_err(&path, "read window lengths"))?;
            tracing::debug!(?report, "store retention applied");
        }
        Ok(report)
    }

    /// Sizes and counters; a count SQLite cannot give is reported as 0 (with a warning).
    #[must_use]
    pub fn stats(&self) -> StoreStats {
        let count = |table: &str| -> u64 {
            let sql = format!("SELECT count(*) FROM {table}");
            match self.conn.query_row(&sql, [], |r| r.get::<_, i64>(0)) {
                Ok(n) => to_u64(n),
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), table, error = %e, "cannot count store rows");
                    0
                }
            }
        };
        StoreStats {
            windows: count(Kind::Window.table()),
            bytes_on_disk: self.disk_bytes(),
            live_bytes: self.live_bytes().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot read the store's page counts");
                0
            }),
            corrupt_skipped: self.corrupt.borrow().len() as u64,
            windows_written: self.windows_written,
            strings: count(Kind::Strings.table()),
            frames: count(Kind::Frames.table()),
            stacks: count(Kind::Stacks.table()),
            label_sets: count(Kind::LabelSets.table()),
            cached_rows: self.decoded.borrow().len() as u64,
        }
    }

    // ---- reading -------------------------------------------------------------------------

    /// Windows of `kind` overlapping `[from, to)`, oldest first.
    fn list_windows(
        &self,
        kind: ProfileKind,
        from: u64,
        to: u64,
    ) -> Result<Vec<WindowRow>, StoreError> {
        let (from, to) = (to_i64(from), to_i64(to));
        let sql = format!(
            "SELECT id, start_ns, end_ns, samples FROM windows \
             WHERE {} = ?4 AND start_ns >= ?1 AND start_ns < ?2 AND end_ns > ?3 \
             ORDER BY start_ns, id",
            self.kind_column
        );
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(sql_err(&self.path, "prepare window listing"))?;
        let rows = stmt
            .query_map(
                params![
                    from.saturating_sub(self.max_window_ns),
                    to,
                    from,
                    kind_code(kind)
                ],
                |r| {
                    Ok(WindowRow {
                        id: r.get(0)?,
                        start_ns: to_u64(r.get(1)?),
                        end_ns: to_u64(r.get(2)?),
                        samples: to_u64(r.get(3)?),
                        kind,
                    })
                },
            )
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(sql_err(&self.path, "list windows"))?;
        Ok(rows)
    }

    /// A window's frequency and entries, or `None` (reported) if it is damaged.
    fn load_entries(&self, id: i64) -> Result<Option<(u32, Vec<Entry>)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT frequency_hz, raw_len, crc, payload FROM windows WHERE id = ?1")
            .map_err(sql_err(&self.path, "prepare window read"))?;
        let decoded = stmt.query_row(params![id], |r| {
            let frequency_hz: i64 = r.get(0)?;
            let raw_len: i64 = r.get(1)?;
            let stored_crc: i64 = r.get(2)?;
            let payload = r.get_ref(3)?.as_blob()?;
            Ok(decode_payload(frequency_hz, raw_len, stored_crc, payload))
        });
        match decoded {
            Ok(Ok(v)) => Ok(Some(v)),
            Ok(Err(why)) => {
                self.report(Kind::Window, id, &why);
                Ok(None)
            }
            // Deleted between listing and reading (by another process's retention).
            Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
            Err(e) if is_damage(&e) => {
                self.report(Kind::Window, id, &e);
                Ok(None)
            }
            Err(e) => Err(sql_err(&self.path, "read window")(e)),
        }
    }

    /// A dictionary row's bytes after checking its CRC, or `None` (reported) if it is
    /// missing or damaged.
    fn dict_row(&self, kind: Kind, id: i64) -> Result<Option<Vec<u8>>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(kind.select_by_id())
            .map_err(sql_err(&self.path, "prepare dictionary read"))?;
        let row = stmt
            .query_row(params![id], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .optional();
        match row {
            Ok(Some((stored, data))) if stored == crc(&data) => Ok(Some(data)),
            Ok(Some(_)) => {
                self.report(kind, id, &"checksum mismatch");
                Ok(None)
            }
            Ok(None) => {
                self.report(kind, id, &"referenced row is missing");
                Ok(None)
            }
            Err(e) if is_damage(&e) => {
                self.report(kind, id, &e);
                Ok(None)
            }
            Err(e) => Err(sql_err(&self.path, "read dictionary row")(e)),
        }
    }

    fn string(&self, id: i64) -> Result<Option<Arc<[u8]>>, StoreError> {
        if let Some(s) = self.decoded.borrow_mut().strings.get(&id) {
            return Ok(Some(s));
        }
        let Some(data) = self.dict_row(Kind::Strings, id)? else {
            return Ok(None);
        };
        let s: Arc<[u8]> = data.into();
        self.decoded.borrow_mut().strings.insert(id, s.clone());
        Ok(Some(s))
    }

    fn frame_row(&self, id: i64) -> Result<Option<FrameRow>, StoreError> {
        let Some(data) = self.dict_row(Kind::Frames, id)? else {
            return Ok(None);
        };
        match FrameRow::decode(&data) {
            Ok(row) => Ok(Some(row)),
            Err(why) => {
                self.report(Kind::Frames, id, &why);
                Ok(None)
            }
        }
    }

    fn frame(&self, id: i64) -> Result<Option<Frame>, StoreError> {
        if let Some(f) = self.decoded.borrow_mut().frames.get(&id) {
            return Ok(Some(f));
        }
        let Some(row) = self.frame_row(id)? else {
            return Ok(None);
        };
        // Resolve the strings first: `into_frame` takes an infallible lookup.
        let mut strings = HashMap::new();
        let string_ids = [row.name]
            .into_iter()
            .chain(row.module)
            .chain(row.file)
            .chain(match row.location {
                LocationRow::File { build_id, .. } => build_id,
                _ => None,
            });
        for sid in string_ids {
            if let Some(s) = self.string(sid)? {
                strings.insert(sid, s);
            }
        }
        match row.into_frame(|sid| strings.get(&sid).cloned()) {
            Ok(frame) => {
                self.decoded.borrow_mut().frames.insert(id, frame.clone());
                Ok(Some(frame))
            }
            Err(why) => {
                self.report(Kind::Frames, id, &why);
                Ok(None)
            }
        }
    }

    fn stack(&self, id: i64) -> Result<Option<Arc<[i64]>>, StoreError> {
        if let Some(s) = self.decoded.borrow_mut().stacks.get(&id) {
            return Ok(Some(s));
        }
        let Some(data) = self.dict_row(Kind::Stacks, id)? else {
            return Ok(None);
        };
        match codec::decode_ids(&data) {
            Ok(ids) => {
                let ids: Arc<[i64]> = ids.into();
                self.decoded.borrow_mut().stacks.insert(id, ids.clone());
                Ok(Some(ids))
            }
            Err(why) => {
                self.report(Kind::Stacks, id, &why);
                Ok(None)
            }
        }
    }

    fn labels(&self, id: i64) -> Result<Option<Arc<Labels>>, StoreError> {
        if let Some(l) = self.decoded.borrow_mut().label_sets.get(&id) {
            return Ok(Some(l));
        }
        let Some(data) = self.dict_row(Kind::LabelSets, id)? else {
            return Ok(None);
        };
        let pairs = match codec::decode_pairs(&data) {
            Ok(p) => p,
            Err(why) => {
                self.report(Kind::LabelSets, id, &why);
                return Ok(None);
            }
        };
        let mut labels = Labels::new();
        for (k, v) in pairs {
            let (Some(k), Some(v)) = (self.string(k)?, self.string(v)?) else {
                self.report(Kind::LabelSets, id, &"refers to a damaged string");
                return Ok(None);
            };
            let (Ok(k), Ok(v)) = (std::str::from_utf8(&k), std::str::from_utf8(&v)) else {
                self.report(Kind::LabelSets, id, &"label is not UTF-8");
                return Ok(None);
            };
            labels.set(k, v);
        }
        let labels = Arc::new(labels);
        self.decoded
            .borrow_mut()
            .label_sets
            .insert(id, labels.clone());
        Ok(Some(labels))
    }

    /// Whether label set `id` passes `filter`, memoized per query in `keep`; a damaged label
    /// set passes no filter.
    fn label_matches(
        &self,
        keep: &mut HashMap<i64, bool>,
        id: i64,
        filter: &LabelFilter,
    ) -> Result<bool, StoreError> {
        if filter.is_all() {
            return Ok(true);
        }
        if let Some(&k) = keep.get(&id) {
            return Ok(k);
        }
        let k = self.labels(id)?.is_some_and(|l| filter.matches(&l));
        keep.insert(id, k);
        Ok(k)
    }

    /// Resolves summed `(label set, stack)` counts into a profile, interning each stored
    /// frame and label set once by id.
    fn build_profile(
        &self,
        meta: ProfileMeta,
        sums: HashMap<(i64, i64), u64>,
    ) -> Result<Profile, StoreError> {
        let mut p = Profile::new(meta);
        let mut frames: HashMap<i64, Option<FrameId>> = HashMap::new();
        let mut label_sets: HashMap<i64, Option<LabelsId>> = HashMap::new();
        let mut ids = Vec::new();
        'stacks: for ((l, s), count) in sums {
            let lid = match label_sets.get(&l) {
                Some(&lid) => lid,
                None => {
                    let lid = self.labels(l)?.map(|labels| p.intern_labels(&labels));
                    label_sets.insert(l, lid);
                    lid
                }
            };
            let (Some(lid), Some(stack)) = (lid, self.stack(s)?) else {
                continue;
            };
            ids.clear();
            for &f in stack.iter() {
                let fid = match frames.get(&f) {
                    Some(&fid) => fid,
                    None => {
                        let fid = self.frame(f)?.map(|frame| p.intern_frame(&frame));
                        frames.insert(f, fid);
                        fid
                    }
                };
                let Some(fid) = fid else {
                    continue 'stacks;
                };
                ids.push(fid);
            }
            p.add_ids(lid, ids.as_slice().into(), count);
        }
        Ok(p)
    }

    /// Logs and counts a damaged window or row, once per row.
    fn report(&self, kind: Kind, id: i64, why: &dyn fmt::Display) {
        if self.corrupt.borrow_mut().insert((kind, id)) {
            tracing::warn!(
                path = %self.path.display(),
                table = kind.table(),
                id,
                error = %why,
                "skipping a damaged row of the profile store"
            );
        }
    }

    // ---- retention -----------------------------------------------------------------------

    fn live_bytes(&self) -> Result<u64, StoreError> {
        let q = |sql: &str| -> Result<u64, StoreError> {
            self.conn
                .query_row(sql, [], |r| r.get::<_, i64>(0))
                .map(to_u64)
                .map_err(sql_err(&self.path, "read page counts"))
        };
        let pages = q("PRAGMA page_count")?;
        let free = q("PRAGMA freelist_count")?;
        Ok(pages.saturating_sub(free) * q("PRAGMA page_size")?)
    }

    fn window_count(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT count(*) FROM windows", [], |r| r.get::<_, i64>(0))
            .map(to_u64)
            .map_err(sql_err(&self.path, "count windows"))
    }

    /// Deletes the `n` oldest windows; returns how many were deleted.
    fn delete_oldest(&mut self, n: u64) -> Result<u64, StoreError> {
        self.conn
            .execute(
                "DELETE FROM windows WHERE id IN \
                 (SELECT id FROM windows ORDER BY start_ns, id LIMIT ?1)",
                params![to_i64(n)],
            )
            .map(|n| n as u64)
            .map_err(sql_err(&self.path, "delete the oldest windows"))
    }

    /// Merges windows that ended before `now - after` and are shorter than the resolution
    /// into one window per resolution bucket. Returns (windows merged, windows made).
    fn downsample(&mut self, now_unix_ns: u64, ds: Downsample) -> Result<(u64, u64), StoreError> {
        let res = i64::try_from(ds.resolution.as_nanos()).unwrap_or(i64::MAX);
        if res <= 0 {
            return Ok((0, 0));
        }
        let cutoff = to_i64(
            now_unix_ns.saturating_sub(u64::try_from(ds.after.as_nanos()).unwrap_or(u64::MAX)),
        );
        let path = self.path.clone();
        let sql = format!(
            "SELECT id, start_ns, end_ns, {} FROM windows WHERE end_ns <= ?1 AND end_ns - start_ns < ?2 ORDER BY start_ns, id",
            self.kind_column
        );
        let candidates: Vec<(i64, i64, i64, i64)> = self
            .conn
            .prepare(&sql)
            .and_then(|mut s| {
                s.query_map(params![cutoff, res], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect()
            })
            .map_err(sql_err(&path, "list windows to merge"))?;
        // Buckets per kind: CPU samples and microseconds off CPU never share a window.
        // (kind code, bucket) → its windows' (id, start, end).
        type Buckets = BTreeMap<(i64, i64), Vec<(i64, i64, i64)>>;
        let mut buckets = Buckets::new();
        for (id, start, end, code) in candidates {
            let bucket = start.div_euclid(res);
            // A window that crosses a bucket boundary is left as it is.
            if kind_of_code(code).is_some() && end <= (bucket + 1).saturating_mul(res) {
                buckets
                    .entry((code, bucket))
                    .or_default()
                    .push((id, start, end));
            }
        }
        let (mut merged, mut made) = (0, 0);
        for ((code, _), windows) in buckets.into_iter().filter(|(_, w)| w.len() > 1) {
            let kind = kind_of_code(code).unwrap_or_default();
            let mut sums: BTreeMap<(i64, i64), u64> = BTreeMap::new();
            let mut inputs = Vec::new();
            let (mut start, mut end, mut frequency_hz) = (i64::MAX, i64::MIN, 0);
            for (id, s, e) in windows {
                // A damaged window is left alone (and stays reported).
                let Some((f, entries)) = self.load_entries(id)? else {
                    continue;
                };
                for en in entries {
                    *sums.entry((en.labels, en.stack)).or_insert(0) += en.count;
                }
                inputs.push(id);
                (start, end) = (start.min(s), end.max(e));
                if frequency_hz == 0 {
                    frequency_hz = f;
                }
            }
            if inputs.len() < 2 {
                continue;
            }
            let entries = sums
                .into_iter()
                .map(|((labels, stack), count)| Entry {
                    labels,
                    stack,
                    count,
                })
                .collect();
            let tx = self
                .conn
                .transaction()
                .map_err(sql_err(&path, "begin window merge"))?;
            insert_window(
                &tx,
                &path,
                to_u64(start),
                to_u64(end),
                frequency_hz,
                kind,
                entries,
            )?;
            for id in &inputs {
                tx.execute("DELETE FROM windows WHERE id = ?1", params![id])
                    .map_err(sql_err(&path, "delete merged window"))?;
            }
            tx.commit().map_err(sql_err(&path, "commit window merge"))?;
            merged += inputs.len() as u64;
            made += 1;
        }
        Ok((merged, made))
    }

    /// Deletes dictionary rows no remaining window uses (mark and sweep); returns how many.
    ///
    /// Marking decodes every remaining payload, so it costs about a full-range query; it
    /// runs only when retention deleted or merged windows.
    fn sweep(&mut self) -> Result<u64, StoreError> {
        let path = self.path.clone();
        let ids: Vec<i64> = self
            .conn
            .prepare("SELECT id FROM windows")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(sql_err(&path, "list windows"))?;
        let mut live_stacks = HashSet::new();
        let mut live_sets = HashSet::new();
        for id in ids {
            if let Some((_, entries)) = self.load_entries(id)? {
                for e in entries {
                    live_stacks.insert(e.stack);
                    live_sets.insert(e.labels);
                }
            }
        }
        let mut live_frames = HashSet::new();
        for &s in &live_stacks {
            if let Some(frames) = self.stack(s)? {
                live_frames.extend(frames.iter().copied());
            }
        }
        let mut live_strings = HashSet::new();
        for &f in &live_frames {
            if let Some(row) = self.frame_row(f)? {
                live_strings.extend([row.name].into_iter().chain(row.module).chain(row.file));
                if let LocationRow::File {
                    build_id: Some(b), ..
                } = row.location
                {
                    live_strings.insert(b);
                }
            }
        }
        for &l in &live_sets {
            if let Some(data) = self.dict_row(Kind::LabelSets, l)?
                && let Ok(pairs) = codec::decode_pairs(&data)
            {
                live_strings.extend(pairs.into_iter().flat_map(|(k, v)| [k, v]));
            }
        }
        let tx = self
            .conn
            .transaction()
            .map_err(sql_err(&path, "begin sweep"))?;
        let mut swept = 0;
        for kind in Kind::DICTIONARIES {
            let live = match kind {
                Kind::Strings => &live_strings,
                Kind::Frames => &live_frames,
                Kind::Stacks => &live_stacks,
                Kind::LabelSets | Kind::Window => &live_sets,
            };
            let all: Vec<i64> = tx
                .prepare(&format!("SELECT id FROM {}", kind.table()))
                .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                .map_err(sql_err(&path, "list dictionary rows"))?;
            let delete = format!("DELETE FROM {} WHERE id = ?1", kind.table());
            for id in all.into_iter().filter(|id| !live.contains(id)) {
                tx.execute(&delete, params![id])
                    .map_err(sql_err(&path, "delete unused dictionary row"))?;
                swept += 1;
            }
        }
        tx.commit().map_err(sql_err(&path, "commit sweep"))?;
        self.interners.clear();
        self.decoded.borrow_mut().clear();
        Ok(swept)
    }

    /// Runs a statement that may return rows (most pragmas do) and drops them.
    fn pragma(&self, sql: &str) -> Result<(), rusqlite::Error> {
        let mut stmt = self.conn.prepare(sql)?;
        let mut rows = stmt.query([])?;
        while rows.next()?.is_some() {}
        Ok(())
    }

    /// Returns free pages to the file system and truncates the write-ahead log.
    fn vacuum(&mut self) -> Result<(), StoreError> {
        self.pragma("PRAGMA incremental_vacuum")
            .map_err(sql_err(&self.path, "incremental vacuum"))?;
        self.checkpoint()
    }

    /// Copies the write-ahead log into the database and truncates it to zero bytes.
    fn checkpoint(&mut self) -> Result<(), StoreError> {
        if self.is_in_memory() {
            return Ok(());
        }
        self.pragma("PRAGMA wal_checkpoint(TRUNCATE)")
            .map_err(sql_err(&self.path, "checkpoint"))
    }

    fn is_in_memory(&self) -> bool {
        self.path.as_os_str() == ":memory:"
    }

    /// What [`StoreConfig::max_bytes`] covers: the database file, its write-ahead log and
    /// its shared-memory index (two `stat`s and a third for the index).
    fn disk_bytes(&self) -> u64 {
        let len = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        len(&self.path) + len(&open::wal_path(&self.path)) + len(&open::shm_path(&self.path))
    }

    /// Bounds the write-ahead log by the cap: SQLite checkpoints it once it holds an eighth
    /// of [`StoreConfig::max_bytes`] (at most its default of 1,000 pages) and truncates it
    /// back to that size afterwards, so a small cap is not overrun by the log alone.
    fn apply_size_pragmas(&mut self) -> Result<(), StoreError> {
        let page: i64 = self
            .conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(sql_err(&self.path, "read page size"))?;
        let page = to_u64(page).max(512);
        let wal_bytes = (self.config.max_bytes / 8).clamp(16 * page, 1000 * page);
        self.pragma(&format!("PRAGMA wal_autocheckpoint = {}", wal_bytes / page))
            .and_then(|()| self.pragma(&format!("PRAGMA journal_size_limit = {wal_bytes}")))
            .map_err(sql_err(&self.path, "bound the write-ahead log"))
    }

    /// Keeps the store's files under [`StoreConfig::max_bytes`]; returns the windows deleted
    /// and the dictionary rows swept.
    ///
    /// Under the cap this costs the `stat`s of [`Store::disk_bytes`], so it runs after
    /// every write. Over it, the write-ahead log is checkpointed and truncated; if that is
    /// not enough, the oldest windows are deleted until the files are under 90 % of the cap,
    /// so the expensive part (the sweep decodes every payload) runs once per tenth of the
    /// cap written, not once per window. Dictionary rows dominate the size and are shared,
    /// so a window's share is estimated as bytes / windows; each round deletes the windows
    /// whose share covers the excess, sweeps the rows they alone used and measures again.
    /// Deleted rows can leave pages partly empty, so the rounds are bounded; the next write
    /// goes on. The newest window is never deleted.
    fn enforce_size(&mut self) -> Result<(u64, u64), StoreError> {
        let max = self.config.max_bytes;
        if self.is_in_memory() || self.disk_bytes() <= max {
            return Ok((0, 0));
        }
        self.checkpoint()?;
        if self.disk_bytes() <= max {
            return Ok((0, 0));
        }
        let target = max - max / 10;
        let (mut deleted, mut swept) = (0, 0);
        for _ in 0..SIZE_ROUNDS {
            let disk = self.disk_bytes();
            if disk <= target {
                break;
            }
            let windows = self.window_count()?;
            if windows <= 1 {
                break;
            }
            let excess = u128::from(disk - target);
            let n = (excess * u128::from(windows)).div_ceil(u128::from(disk));
            let n = u64::try_from(n).unwrap_or(u64::MAX).clamp(1, windows - 1);
            deleted += self.delete_oldest(n)?;
            swept += self.sweep()?;
            self.vacuum()?;
        }
        if deleted > 0 {
            tracing::debug!(
                deleted,
                swept,
                bytes = self.disk_bytes(),
                max,
                "store size cap enforced"
            );
        }
        Ok((deleted, swept))
    }
}

/// Interns a model frame's strings and the frame itself; returns the frame row id.
fn intern_frame(
    conn: &Connection,
    path: &Path,
    interners: &mut Interners,
    f: &Frame,
    buf: &mut Vec<u8>,
) -> Result<i64, StoreError> {
    let mut s = |bytes: &[u8]| intern(conn, path, &mut interners.strings, Kind::Strings, bytes);
    let name = s(f.name.as_bytes())?;
    let module = f.module.as_deref().map(|m| s(m.as_bytes())).transpose()?;
    let file = f.file.as_deref().map(|m| s(m.as_bytes())).transpose()?;
    let location = match &f.location {
        Location::Unknown => LocationRow::Unknown,
        Location::Kernel { addr } => LocationRow::Kernel { addr: *addr },
        Location::Virtual { addr } => LocationRow::Virtual { addr: *addr },
        Location::File { build_id, offset } => LocationRow::File {
            build_id: build_id.as_deref().map(&mut s).transpose()?,
            offset: *offset,
        },
    };
    let row = FrameRow {
        name,
        kind: f.kind,
        inlined: f.inlined,
        module,
        file,
        line: f.line,
        location,
    };
    buf.clear();
    row.encode(buf);
    intern(conn, path, &mut interners.frames, Kind::Frames, buf)
}

/// The id of the dictionary row holding `data`, inserting it if new.
fn intern(
    conn: &Connection,
    path: &Path,
    cache: &mut GenCache<Vec<u8>, i64>,
    kind: Kind,
    data: &[u8],
) -> Result<i64, StoreError> {
    if let Some(id) = cache.get(data) {
        return Ok(id);
    }
    let sum = crc(data);
    let found = conn
        .prepare_cached(kind.select_by_crc())
        .and_then(|mut s| {
            let mut rows = s.query(params![sum])?;
            while let Some(r) = rows.next()? {
                if r.get_ref(1)?.as_blob()? == data {
                    return Ok(Some(r.get::<_, i64>(0)?));
                }
            }
            Ok(None)
        })
        .map_err(sql_err(path, "look up dictionary row"))?;
    let id = match found {
        Some(id) => id,
        None => {
            conn.prepare_cached(kind.insert())
                .and_then(|mut s| s.execute(params![sum, data]))
                .map_err(sql_err(path, "insert dictionary row"))?;
            conn.last_insert_rowid()
        }
    };
    cache.insert(data.to_vec(), id);
    Ok(id)
}

/// Sorts, encodes, compresses and inserts a window's entries; returns the window id.
fn insert_window(
    conn: &Connection,
    path: &Path,
    start_unix_ns: u64,
    end_unix_ns: u64,
    frequency_hz: u32,
    kind: ProfileKind,
    mut entries: Vec<Entry>,
) -> Result<i64, StoreError> {
    entries.sort_unstable();
    // Two model stacks can map to one row only if the model held duplicates; merge anyway.
    entries.dedup_by(|b, a| {
        let same = a.labels == b.labels && a.stack == b.stack;
        if same {
            a.count += b.count;
        }
        same
    });
    let samples: u64 = entries.iter().map(|e| e.count).sum();
    let raw = codec::encode_entries(&entries);
    let payload =
        zstd::bulk::compress(&raw, ZSTD_LEVEL).map_err(|source| StoreError::Compress {
            start_unix_ns,
            end_unix_ns,
            source,
        })?;
    conn.prepare_cached(
        "INSERT INTO windows (start_ns, end_ns, frequency_hz, samples, raw_len, crc, payload, kind) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut s| {
        s.execute(params![
            to_i64(start_unix_ns),
            to_i64(end_unix_ns),
            i64::from(frequency_hz),
            to_i64(samples),
            to_i64(raw.len() as u64),
            crc(&payload),
            payload,
            kind_code(kind)
        ])
    })
    .map_err(sql_err(path, "insert window"))?;
    Ok(conn.last_insert_rowid())
}

/// Checks and decodes a window payload.
fn decode_payload(
    frequency_hz: i64,
    raw_len: i64,
    stored_crc: i64,
    payload: &[u8],
) -> Result<(u32, Vec<Entry>), String> {
    if stored_crc != crc(payload) {
        return Err("payload checksum mismatch".to_owned());
    }
    let raw_len = usize::try_from(raw_len)
        .ok()
        .filter(|&n| n <= MAX_RAW_PAYLOAD)
        .ok_or("payload length out of range")?;
    let raw = zstd::bulk::decompress(payload, raw_len).map_err(|e| format!("zstd: {e}"))?;
    if raw.len() != raw_len {
        return Err("payload length differs from the recorded one".to_owned());
    }
    let entries = codec::decode_entries(&raw).map_err(|e| format!("payload: {e}"))?;
    let frequency_hz = u32::try_from(frequency_hz).map_err(|_| "frequency out of range")?;
    Ok((frequency_hz, entries))
}

/// Widens a query's metadata over the windows it read.
struct MetaAcc {
    start: Option<u64>,
    end: u64,
    frequency_hz: u32,
    kind: ProfileKind,
}

impl MetaAcc {
    fn new(kind: ProfileKind) -> Self {
        MetaAcc {
            start: None,
            end: 0,
            frequency_hz: 0,
            kind,
        }
    }

    fn add(&mut self, w: &WindowRow, frequency_hz: u32) {
        self.start = Some(self.start.map_or(w.start_ns, |s| s.min(w.start_ns)));
        self.end = self.end.max(w.end_ns);
        if self.frequency_hz == 0 {
            self.frequency_hz = frequency_hz;
        }
    }

    fn finish(self) -> ProfileMeta {
        let start = self.start.unwrap_or(0);
        ProfileMeta {
            start_unix_ns: start,
            duration_ns: self.end.saturating_sub(start),
            frequency_hz: self.frequency_hz,
            kind: self.kind,
        }
    }
}
