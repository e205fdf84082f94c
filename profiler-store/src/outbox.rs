//! The store as a push outbox: a cursor per destination, and closed windows listed in the
//! order they were written.
//!
//! The push stage (`profiler-push`) sends every closed window to each destination once, in
//! order. What "sent" means survives a `kill -9`: each destination has a row in
//! `push_cursors` naming the last window it took, updated in its own transaction after
//! the destination acknowledged the window. Window ids come from `AUTOINCREMENT`, so they
//! only grow and are never reused: "the windows after the cursor" is `id > cursor`, oldest
//! write first.
//!
//! ```text
//! push_cursors (destination TEXT PRIMARY KEY, window_id, end_ns, updated_ns, off_cpu_end_ns)
//! ```
//!
//! The table is additive: it is created (if absent) only when a store is opened as an
//! outbox, so an agent that pushes nowhere keeps the schema (and page layout) it had; the
//! schema version stays 1, and a store without the table reads as "no cursor".
//! Windows merged by downsampling get new ids but old times; a destination skips a window
//! ending at or before its cursor's end ([`PushCursor::covers`]), so merged windows it has
//! already taken are not sent twice. The end is kept per kind of window (`end_ns` for CPU
//! windows, `off_cpu_end_ns` for off-CPU ones): the CPU and off-CPU windows of one period
//! end at the same instant and are written one after the other, so a single end would
//! make a destination that took the CPU window skip its off-CPU twin. `off_cpu_end_ns`
//! was added with off-CPU windows; a cursor table without it gains it (default 0) when the
//! outbox is opened.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use profiler_model::ProfileKind;

use crate::{Store, StoreConfig, StoreError, WindowId, WindowSummary, sql_err, to_i64, to_u64};

/// Creates the cursor table of an existing database.
pub(crate) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS push_cursors (
    destination TEXT PRIMARY KEY NOT NULL,
    window_id INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL,
    off_cpu_end_ns INTEGER NOT NULL DEFAULT 0
)";

/// Gives a cursor table made before off-CPU windows its off-CPU end.
const ADD_OFF_CPU_END: &str =
    "ALTER TABLE push_cursors ADD COLUMN off_cpu_end_ns INTEGER NOT NULL DEFAULT 0";

/// Where one destination is in the outbox: the last window it took.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PushCursor {
    /// The last window the destination acknowledged (or skipped for good).
    pub window_id: WindowId,
    /// The latest end of the CPU windows it took, nanoseconds since the Unix epoch.
    pub end_unix_ns: u64,
    /// The latest end of the off-CPU windows it took (0 before the first).
    pub off_cpu_end_unix_ns: u64,
}

impl PushCursor {
    /// Whether `window` is behind this cursor: written before it, or ending no later than
    /// the latest window of its kind taken (a downsampled merge of windows already sent).
    #[must_use]
    pub fn covers(&self, window: &WindowSummary) -> bool {
        window.id <= self.window_id || window.end_unix_ns <= self.end_of(window.kind)
    }

    /// The latest end of the windows of `kind` taken.
    #[must_use]
    pub fn end_of(&self, kind: ProfileKind) -> u64 {
        match kind {
            ProfileKind::Cpu => self.end_unix_ns,
            ProfileKind::OffCpu => self.off_cpu_end_unix_ns,
        }
    }

    /// The cursor once `window` (and everything written before it) is taken.
    #[must_use]
    pub fn past(&self, window: &WindowSummary) -> PushCursor {
        let mut next = PushCursor {
            window_id: window.id.max(self.window_id),
            ..*self
        };
        let end = match window.kind {
            ProfileKind::Cpu => &mut next.end_unix_ns,
            ProfileKind::OffCpu => &mut next.off_cpu_end_unix_ns,
        };
        *end = (*end).max(window.end_unix_ns);
        next
    }
}

impl Store {
    /// Opens the store in `dir` as a push outbox: reading windows and writing cursors, from
    /// a connection of its own beside the agent's writer (which holds the directory's lock;
    /// SQLite serializes the two connections' short transactions). Nothing is created but
    /// the cursor table.
    ///
    /// # Errors
    /// As [`Store::open_read_only`]; SQLite's error if the database cannot be written.
    pub fn open_outbox(dir: &Path, config: StoreConfig) -> Result<Store, StoreError> {
        let path = dir.join(crate::DB_FILE_NAME);
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| crate::open::classify(&path, "open as outbox", e))?;
        let store = Store::init(conn, path, config, None)?;
        store.create_cursor_table()?;
        Ok(store)
    }

    /// Creates `push_cursors` if absent, and gives an older one its off-CPU end.
    pub(crate) fn create_cursor_table(&self) -> Result<(), StoreError> {
        self.conn
            .execute_batch(SCHEMA)
            .map_err(sql_err(&self.path, "create push cursor table"))?;
        let has_off_cpu_end: bool = self
            .conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info('push_cursors') WHERE name = 'off_cpu_end_ns'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(sql_err(&self.path, "read push cursor table"))?;
        if !has_off_cpu_end {
            self.conn
                .execute_batch(ADD_OFF_CPU_END)
                .map_err(sql_err(&self.path, "add the off-CPU end to push cursors"))?;
        }
        Ok(())
    }

    /// A window summary row: `id, start_ns, end_ns, samples, kind`.
    fn summary_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<WindowSummary> {
        Ok(WindowSummary {
            id: WindowId(r.get(0)?),
            start_unix_ns: to_u64(r.get(1)?),
            end_unix_ns: to_u64(r.get(2)?),
            samples: to_u64(r.get(3)?),
            // A kind no Ember writes is listed as CPU; reading the window reports it as
            // damaged, so the push skips it.
            kind: crate::kind_of_code(r.get(4)?).unwrap_or_default(),
        })
    }

    /// Up to `limit` windows written after `after` (all windows with `None`), in the order
    /// they were written. Samples are the stored totals; no payload is decoded.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn windows_after(
        &self,
        after: Option<WindowId>,
        limit: usize,
    ) -> Result<Vec<WindowSummary>, StoreError> {
        let after = after.map_or(0, |w| w.0);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT id, start_ns, end_ns, samples, {} FROM windows WHERE id > ?1 ORDER BY id LIMIT ?2",
            self.kind_column
        );
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(sql_err(&self.path, "prepare outbox listing"))?;
        stmt.query_map(params![after, limit], Store::summary_row)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(sql_err(&self.path, "list outbox windows"))
    }

    /// The window written last, `None` in an empty store.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn last_window(&self) -> Result<Option<WindowSummary>, StoreError> {
        let sql = format!(
            "SELECT id, start_ns, end_ns, samples, {} FROM windows ORDER BY id DESC LIMIT 1",
            self.kind_column
        );
        self.conn
            .query_row(&sql, [], Store::summary_row)
            .optional()
            .map_err(sql_err(&self.path, "read last window"))
    }

    /// How many windows were written after `after` (all windows with `None`).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn windows_after_count(&self, after: Option<WindowId>) -> Result<u64, StoreError> {
        let after = after.map_or(0, |w| w.0);
        self.conn
            .query_row(
                "SELECT count(*) FROM windows WHERE id > ?1",
                params![after],
                |r| r.get::<_, i64>(0),
            )
            .map(to_u64)
            .map_err(sql_err(&self.path, "count outbox windows"))
    }

    /// The cursor of `destination`, `None` if it never took a window (or the store has no
    /// cursor table yet).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn push_cursor(&self, destination: &str) -> Result<Option<PushCursor>, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT window_id, end_ns, off_cpu_end_ns FROM push_cursors WHERE destination = ?1",
                params![destination],
                |r| {
                    Ok(PushCursor {
                        window_id: WindowId(r.get(0)?),
                        end_unix_ns: to_u64(r.get(1)?),
                        off_cpu_end_unix_ns: to_u64(r.get(2)?),
                    })
                },
            )
            .optional();
        match row {
            Ok(c) => Ok(c),
            Err(rusqlite::Error::SqliteFailure(_, Some(msg))) if msg.contains("no such table") => {
                Ok(None)
            }
            Err(e) => Err(sql_err(&self.path, "read push cursor")(e)),
        }
    }

    /// Moves the cursor of `destination` to `cursor`, in one transaction: once this
    /// returns, a restarted agent carries on after that window.
    ///
    /// # Errors
    /// SQLite errors (a read-only store cannot keep cursors).
    pub fn set_push_cursor(
        &self,
        destination: &str,
        cursor: PushCursor,
        now_unix_ns: u64,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO push_cursors (destination, window_id, end_ns, updated_ns, off_cpu_end_ns) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (destination) DO UPDATE SET \
                 window_id = excluded.window_id, end_ns = excluded.end_ns, \
                 updated_ns = excluded.updated_ns, off_cpu_end_ns = excluded.off_cpu_end_ns",
                params![
                    destination,
                    cursor.window_id.0,
                    to_i64(cursor.end_unix_ns),
                    to_i64(now_unix_ns),
                    to_i64(cursor.off_cpu_end_unix_ns)
                ],
            )
            .map(|_| ())
            .map_err(sql_err(&self.path, "write push cursor"))
    }
}

#[cfg(test)]
mod tests {
    use profiler_model::{Frame, FrameKind, Labels, Profile, ProfileMeta};

    use super::*;
    use crate::Window;

    const S: u64 = 1_000_000_000;
    const T0: u64 = 1_893_456_000 * S;

    fn window(i: u64) -> Window {
        let mut profile = Profile::new(ProfileMeta {
            start_unix_ns: T0 + i * 10 * S,
            duration_ns: 10 * S,
            frequency_hz: 99,
            ..ProfileMeta::default()
        });
        profile.add(
            &Labels::new().with("comm", "app"),
            &[Frame::named("main", FrameKind::User)],
            i + 1,
        );
        Window {
            start_unix_ns: T0 + i * 10 * S,
            end_unix_ns: T0 + (i + 1) * 10 * S,
            profile,
        }
    }

    #[test]
    fn cursors_survive_reopening_and_list_what_follows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = Store::open(dir.path(), StoreConfig::default()).expect("open");
        let ids: Vec<WindowId> = (0..5)
            .map(|i| writer.write_window(&window(i)).expect("write"))
            .collect();
        let outbox = Store::open_outbox(dir.path(), StoreConfig::default()).expect("outbox");
        assert_eq!(outbox.push_cursor("pyroscope").expect("read"), None);
        assert_eq!(
            outbox.last_window().expect("last").map(|w| w.id),
            Some(ids[4])
        );
        let all = outbox.windows_after(None, 100).expect("list");
        assert_eq!(all.iter().map(|w| w.id).collect::<Vec<_>>(), ids);
        assert_eq!(all[2].samples, 3);
        let first_two = outbox.windows_after(None, 2).expect("list");
        assert_eq!(first_two.len(), 2);
        let cursor = PushCursor::default().past(&all[1]);
        outbox
            .set_push_cursor("pyroscope", cursor, T0)
            .expect("set cursor");
        assert_eq!(outbox.windows_after_count(Some(ids[1])).expect("count"), 3);
        drop(outbox);
        drop(writer);

        // A new process (a restarted agent) finds the cursor where it was left.
        let writer = Store::open(dir.path(), StoreConfig::default()).expect("reopen");
        let outbox = Store::open_outbox(dir.path(), StoreConfig::default()).expect("outbox");
        assert_eq!(outbox.push_cursor("pyroscope").expect("read"), Some(cursor));
        assert_eq!(outbox.push_cursor("otlp").expect("read"), None);
        let rest = outbox.windows_after(Some(ids[1]), 100).expect("list");
        assert_eq!(rest.iter().map(|w| w.id).collect::<Vec<_>>(), ids[2..]);
        assert!(rest.iter().all(|w| !cursor.covers(w)));
        assert!(cursor.covers(&all[0]) && cursor.covers(&all[1]));
        // The writer's own view is untouched by the outbox.
        assert_eq!(writer.stats().windows, 5);
    }

    #[test]
    fn a_store_without_the_table_has_no_cursors() {
        let store = Store::open_in_memory(StoreConfig::default()).expect("open");
        assert_eq!(store.push_cursor("x").expect("read"), None);
        store.create_cursor_table().expect("create");
        let c = PushCursor {
            window_id: WindowId(3),
            end_unix_ns: 9,
            off_cpu_end_unix_ns: 8,
        };
        store.set_push_cursor("x", c, 1).expect("set");
        store
            .set_push_cursor(
                "x",
                PushCursor {
                    window_id: WindowId(4),
                    ..c
                },
                2,
            )
            .expect("update");
        assert_eq!(
            store.push_cursor("x").expect("read"),
            Some(PushCursor {
                window_id: WindowId(4),
                ..c
            })
        );
    }

    #[test]
    fn a_merged_window_behind_the_cursor_is_covered() {
        let c = PushCursor {
            window_id: WindowId(10),
            end_unix_ns: 1_000,
            off_cpu_end_unix_ns: 0,
        };
        let merged = WindowSummary {
            id: WindowId(11),
            start_unix_ns: 0,
            end_unix_ns: 900,
            samples: 5,
            kind: ProfileKind::Cpu,
        };
        assert!(c.covers(&merged));
        let next = WindowSummary {
            id: WindowId(12),
            start_unix_ns: 1_000,
            end_unix_ns: 2_000,
            samples: 5,
            kind: ProfileKind::Cpu,
        };
        assert!(!c.covers(&next));
    }

    #[test]
    fn the_off_cpu_twin_of_a_window_taken_is_not_covered() {
        let cpu = WindowSummary {
            id: WindowId(7),
            start_unix_ns: 1_000,
            end_unix_ns: 2_000,
            samples: 5,
            kind: ProfileKind::Cpu,
        };
        let twin = WindowSummary {
            id: WindowId(8),
            kind: ProfileKind::OffCpu,
            ..cpu
        };
        let c = PushCursor::default().past(&cpu);
        assert_eq!((c.window_id, c.end_unix_ns), (WindowId(7), 2_000));
        assert!(!c.covers(&twin), "same end, other kind: still to send");
        let c = c.past(&twin);
        assert_eq!(c.off_cpu_end_unix_ns, 2_000);
        let merged_off = WindowSummary {
            id: WindowId(9),
            start_unix_ns: 0,
            end_unix_ns: 2_000,
            ..twin
        };
        assert!(c.covers(&merged_off), "a merge of off-CPU windows sent");
    }
}
