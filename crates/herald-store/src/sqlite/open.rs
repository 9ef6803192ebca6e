//! Where the database is and how its connections are opened: the store
//! URL, the pragmas of the write connection and of the read-only ones,
//! and the schema migrations applied at start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension as _};

use super::codec::db;
use crate::StoreError;

/// How long a connection waits for a lock held by another process (a
/// backup, an `sqlite3` shell) before the operation fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Prepared statements kept per connection: every statement the store
/// runs, with room to spare, so none is compiled twice.
const STATEMENT_CACHE: usize = 64;

/// The schema, in order; version N is the N-th entry. Applied by
/// [`migrate`], which records the version in `PRAGMA user_version`.
const MIGRATIONS: &[&str] = &[include_str!("../../migrations/sqlite/0001_queue.sql")];

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
    /// Parses `sqlite:///abs/path`, `sqlite://relative`, `sqlite:relative`
    /// (optionally with `?mode=…` and `vfs=…`), `sqlite::memory:`, or a
    /// plain path, taken as it is.
    pub(super) fn parse(url: &str) -> Result<Self, StoreError> {
        let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        else {
            return Ok(Self::File {
                path: PathBuf::from(url),
                create: true,
                params: Vec::new(),
            });
        };
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        // A URL's path is percent-encoded (`mail%20queue.db`); a plain path
        // above is not.
        let path = percent_decode(path)
            .ok_or_else(|| unavailable(format!("a bad %-escape in the path of {url:?}")))?;
        let mut mode = None;
        let mut params = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("mode", value)) => mode = Some(value),
                Some(("vfs", _)) => params.push(pair.to_owned()),
                _ => {
                    return Err(unavailable(format!(
                        "unknown parameter {pair:?} in {url:?} (mode and vfs are known)"
                    )));
                }
            }
        }
        if path == ":memory:" || mode == Some("memory") {
            return Ok(Self::Scratch(Arc::new(ScratchFile::new())));
        }
        if path.is_empty() {
            return Err(unavailable(format!("no database file in {url:?}")));
        }
        let create = match mode {
            None | Some("rwc") => true,
            Some("rw") => false,
            Some(other) => {
                return Err(unavailable(format!(
                    "mode={other} in {url:?}: herald writes its queue, so only rw and rwc \
                     (the default) are possible"
                )));
            }
        };
        Ok(Self::File {
            path: PathBuf::from(path),
            create,
            params,
        })
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
            return Err(unavailable(format!(
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

/// Decodes `%XX` escapes; `None` for a bad escape or a result that is not
/// UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first == b'%' {
            let hex = tail.get(..2)?;
            let hex = std::str::from_utf8(hex).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(first);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
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
        return Err(unavailable(format!(
            "the database's schema is version {current}, newer than this herald knows \
             ({newest}): run a newer herald"
        )));
    }
    for (version, sql) in (1..)
        .zip(MIGRATIONS)
        .skip(usize::try_from(current).unwrap_or(0))
    {
        let tx = conn.transaction().map_err(db("begin migration"))?;
        tx.execute_batch(sql)
            .and_then(|()| tx.pragma_update(None, "user_version", version))
            .and_then(|()| tx.commit())
            .map_err(|e| unavailable(format!("migration {version}: {e}")))?;
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

fn unavailable(reason: String) -> StoreError {
    StoreError::Unavailable(format!("sqlite: {reason}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn file(url: &str) -> (PathBuf, bool, Vec<String>) {
        match Location::parse(url).unwrap() {
            Location::File {
                path,
                create,
                params,
            } => (path, create, params),
            Location::Scratch(_) => panic!("{url} is not a file"),
        }
    }

    #[test]
    fn urls_name_files() {
        let abs = (PathBuf::from("/var/lib/herald/herald.db"), true, vec![]);
        assert_eq!(file("sqlite:///var/lib/herald/herald.db"), abs);
        assert_eq!(file("sqlite:/var/lib/herald/herald.db"), abs);
        assert_eq!(file("sqlite://herald.db").0, PathBuf::from("herald.db"));
        assert_eq!(file("sqlite:herald.db").0, PathBuf::from("herald.db"));
        assert!(!file("sqlite://herald.db?mode=rw").1, "rw never creates");
        assert!(file("sqlite://herald.db?mode=rwc").1);
        assert_eq!(
            file("sqlite://herald.db?vfs=unix-dotfile").2,
            vec!["vfs=unix-dotfile".to_owned()]
        );
        // A plain path is a path: no decoding, no parameters.
        assert_eq!(
            file("/tmp/50%25 off?.db").0,
            PathBuf::from("/tmp/50%25 off?.db")
        );
        assert!(matches!(
            Location::parse("sqlite::memory:").unwrap(),
            Location::Scratch(_)
        ));
    }

    #[test]
    fn url_paths_are_percent_decoded() {
        assert_eq!(
            file("sqlite:///srv/mail%20queue.db").0,
            PathBuf::from("/srv/mail queue.db")
        );
        assert_eq!(
            file("sqlite://%E9%82%AE%E4%BB%B6.db").0,
            PathBuf::from("邮件.db")
        );
        for bad in [
            "sqlite://a%2",
            "sqlite://a%",
            "sqlite://a%zz.db",
            "sqlite://%ff.db",
        ] {
            let error = Location::parse(bad).unwrap_err().to_string();
            assert!(error.contains("%-escape"), "{bad}: {error}");
        }
    }

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
