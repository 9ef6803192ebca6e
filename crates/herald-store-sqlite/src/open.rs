//! Where the database is and how its connections are opened: the store
//! URL, the pragmas of the write connection and of the read-only ones,
//! and the schema migrations applied at start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension as _};

use super::codec::db;
use herald_store::{SqliteLocation, StoreError, StoreUrl};

/// How long a connection waits for a lock held by another process (a
/// backup, an `sqlite3` shell) before the operation fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Prepared statements kept per connection: every statement the store
/// runs, with room to spare, so none is compiled twice.
const STATEMENT_CACHE: usize = 64;

/// The schema, in order; version N is the N-th entry. Applied by
/// [`migrate`], which records the version in `PRAGMA user_version`.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_queue.sql"),
    include_str!("../migrations/0002_nodes.sql"),
    include_str!("../migrations/0003_suppression.sql"),
    include_str!("../migrations/0004_relay_limits.sql"),
    // Named 0005: the branches merged before it add 0003 and 0004.
    include_str!("../migrations/0005_templates.sql"),
    include_str!("../migrations/0006_message_template.sql"),
    // Named 0007: another branch takes 0006.
    include_str!("../migrations/0007_webhook_state.sql"),
];

/// The schema version this build creates and migrates to.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// The database a store URL names.
#[derive(Debug, Clone)]
pub(super) enum Location {
    /// A file; `create` unless the URL said `mode=rw`.
    File {
        path: PathBuf,
        create: bool,
        /// Other URI parameters (`vfs=…`, …), passed to SQLite as they are.
        params: Vec<String>,
    },
    /// `sqlite::memory:`: a throw-away database in a private temporary
    /// file, removed once the store and its connections are gone (tests
    /// only). A file rather than SQLite's shared-cache memory, so that its
    /// readers and writer are isolated exactly as on a real file (shared
    /// cache has table locks, which can fail a reader with `SQLITE_LOCKED`).
    Scratch(Arc<ScratchFile>),
}

/// A temporary database file, removed (with its WAL) when dropped.
#[derive(Debug)]
pub(super) struct ScratchFile {
    path: PathBuf,
}

impl ScratchFile {
    fn new() -> Self {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "herald-scratch-{}-{}.db",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let scratch = Self { path };
        scratch.remove();
        scratch
    }

    fn remove(&self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut name = self.path.clone().into_os_string();
            name.push(suffix);
            let _ = std::fs::remove_file(name);
        }
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        self.remove();
    }
}

impl Location {
    /// The location a store URL names: `url` parsed by
    /// [`herald_store::StoreUrl`], which must name SQLite.
    pub(super) fn parse(url: &str) -> Result<Self, StoreError> {
        match StoreUrl::parse(url)? {
            StoreUrl::Sqlite(SqliteLocation::File {
                path,
                create,
                params,
            }) => Ok(Self::File {
                path,
                create,
                params,
            }),
            StoreUrl::Sqlite(SqliteLocation::Memory) => {
                Ok(Self::Scratch(Arc::new(ScratchFile::new())))
            }
            StoreUrl::Postgres(_) => Err(StoreError::Unusable(
                "sqlite: store.url names PostgreSQL, not SQLite".to_owned(),
            )),
        }
    }

    /// The directory the file goes in, if it has to exist first.
    pub(super) fn parent(&self) -> Option<&Path> {
        match self {
            Self::File { path, create, .. } if *create => {
                path.parent().filter(|dir| !dir.as_os_str().is_empty())
            }
            _ => None,
        }
    }

    /// Opens a connection: read-write for the writer, read-only otherwise.
    fn connect(&self, write: bool) -> rusqlite::Result<Connection> {
        let mut flags = OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let (path, create, params) = match self {
            Self::File {
                path,
                create,
                params,
            } => (path, *create, params.as_slice()),
            Self::Scratch(file) => (&file.path, true, &[][..]),
        };
        if write {
            flags |= OpenFlags::SQLITE_OPEN_READ_WRITE;
            if create {
                flags |= OpenFlags::SQLITE_OPEN_CREATE;
            }
        } else {
            flags |= OpenFlags::SQLITE_OPEN_READ_ONLY;
        }
        let uri = file_uri(path, params);
        let conn = Connection::open_with_flags(uri, flags)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.pragma_update(None, "foreign_keys", true)?;
        Ok(conn)
    }

    /// The write connection, durable as promised, with the schema
    /// migrated.
    pub(super) fn open_writer(&self) -> Result<Connection, StoreError> {
        let mut conn = self.connect(true).map_err(db("open database"))?;
        // WAL: readers never block the writer nor it them; FULL: a commit
        // is on disk (the WAL fsynced) before anyone hears of it. A scratch
        // database is thrown away anyway: it skips the fsyncs.
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
            .map_err(db("set WAL journal mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(unusable(format!(
                "the database refused WAL mode (journal_mode is {mode})"
            )));
        }
        let synchronous = match self {
            Self::File { .. } => "FULL",
            Self::Scratch(_) => "OFF",
        };
        conn.pragma_update(None, "synchronous", synchronous)
            .and_then(|()| conn.pragma_update(None, "temp_store", "MEMORY"))
            .map_err(db("set pragmas"))?;
        migrate(&mut conn)?;
        Ok(conn)
    }

    /// A read connection. Opened after the writer, so the file exists and
    /// is in WAL mode; read-only, so a bug in a query path cannot write.
    pub(super) fn open_reader(&self) -> Result<Connection, StoreError> {
        self.connect(false).map_err(db("open read connection"))
    }
}

/// `path` as an SQLite `file:` URI, with `params` appended.
fn file_uri(path: &Path, params: &[String]) -> String {
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        // The characters a URI gives meaning to; SQLite decodes %XX.
        match c {
            '%' | '?' | '#' => uri.push_str(&format!("%{:02X}", u32::from(c))),
            _ => uri.push(c),
        }
    }
    if !params.is_empty() {
        uri.push('?');
        uri.push_str(&params.join("&"));
    }
    uri
}

/// Brings the schema up to the newest version, one transaction per step.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    adopt_sqlx_history(conn)?;
    let newest = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    let current: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(db("read schema version"))?;
    if current > newest {
        return Err(unusable(format!(
            "the database's schema is version {current}, newer than this herald knows \
             ({newest}): run a newer herald"
        )));
    }
    for (version, sql) in (1..)
        .zip(MIGRATIONS)
        .skip(usize::try_from(current).unwrap_or(0))
    {
        // IMMEDIATE: the write lock is taken before the version is read
        // again, so two processes opening one file cannot both migrate.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db("begin migration"))?;
        tx.execute_batch(sql)
            .and_then(|()| tx.pragma_update(None, "user_version", version))
            .and_then(|()| tx.commit())
            .map_err(|e| unusable(format!("migration {version}: {e}")))?;
    }
    Ok(())
}

/// Databases made by herald before it used `user_version` recorded their
/// migrations in sqlx's `_sqlx_migrations` table: carry the version over
/// (once, while `user_version` is still 0), so the same schema is not
/// applied twice. The table stays, so that the older herald still opens
/// the file should it be brought back.
fn adopt_sqlx_history(conn: &Connection) -> Result<(), StoreError> {
    let current: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(db("read schema version"))?;
    let has_table = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
            [],
            |_| Ok(()),
        )
        .optional()
        .map_err(db("look for sqlx migrations"))?
        .is_some();
    if current != 0 || !has_table {
        return Ok(());
    }
    let applied: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success",
            [],
            |row| row.get(0),
        )
        .map_err(db("read sqlx migrations"))?;
    conn.pragma_update(None, "user_version", applied)
        .map_err(db("adopt sqlx migrations"))
}

fn unusable(reason: String) -> StoreError {
    StoreError::Unusable(format!("sqlite: {reason}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn file_uris_escape_what_a_uri_would_read() {
        assert_eq!(
            file_uri(Path::new("/tmp/a%b?c#d.db"), &[]),
            "file:/tmp/a%25b%3Fc%23d.db"
        );
        assert_eq!(
            file_uri(Path::new("x.db"), &["vfs=unix".to_owned()]),
            "file:x.db?vfs=unix"
        );
    }

    #[test]
    fn a_scratch_file_is_removed_with_its_last_owner() {
        let Location::Scratch(scratch) = Location::parse("sqlite::memory:").unwrap() else {
            panic!("not a scratch location");
        };
        let location = Location::Scratch(Arc::clone(&scratch));
        let path = scratch.path.clone();
        drop(scratch);
        let conn = location.open_writer().unwrap();
        assert!(path.exists());
        drop(conn);
        drop(location);
        assert!(!path.exists(), "{} is left behind", path.display());
    }
}
