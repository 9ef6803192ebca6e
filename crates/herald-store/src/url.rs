//! Store URLs: which backend a `store.url` names, and where its database
//! is. Parsing lives here, once, so that the service, the CLI and every
//! backend read a URL the same way and a URL's secret is hidden the same
//! way wherever one is shown.

use std::fmt;
use std::path::PathBuf;

use crate::StoreError;

/// A parsed `store.url`.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// The embedded default: one SQLite file, for one process.
    Sqlite(SqliteLocation),
    /// A PostgreSQL database shared by any number of nodes: the URL as
    /// given (`postgres://user:password@host:port/db?sslmode=…`), for the
    /// driver to read.
    Postgres(String),
}

/// Where an SQLite database is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqliteLocation {
    /// A file.
    File {
        /// Its path.
        path: PathBuf,
        /// Whether to create it if missing (`mode=rwc`, the default) or
        /// fail (`mode=rw`).
        create: bool,
        /// Other URI parameters (`vfs=…`), passed to SQLite as they are.
        params: Vec<String>,
    },
    /// `sqlite::memory:`: a throw-away database (tests).
    Memory,
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(location) => f.debug_tuple("Sqlite").field(location).finish(),
            Self::Postgres(url) => f.debug_tuple("Postgres").field(&redact(url)).finish(),
        }
    }
}

impl StoreUrl {
    /// Parses a store URL: `postgres://…` or `postgresql://…` for
    /// PostgreSQL; for SQLite `sqlite:///abs/path`, `sqlite://relative`,
    /// `sqlite:relative` (optionally with `?mode=rw|rwc` and `vfs=…`),
    /// `sqlite::memory:`, or a plain path, taken as it is.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        if let Some((scheme, _)) = url.split_once("://")
            && !scheme.eq_ignore_ascii_case("sqlite")
        {
            return Err(unusable(format!(
                "unknown store scheme {scheme:?} in {:?} (sqlite: and postgres:// are known)",
                redact(url)
            )));
        }
        let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        else {
            return Ok(Self::Sqlite(SqliteLocation::File {
                path: PathBuf::from(url),
                create: true,
                params: Vec::new(),
            }));
        };
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        // A URL's path is percent-encoded (`mail%20queue.db`); a plain path
        // above is not.
        let path = percent_decode(path)
            .ok_or_else(|| unusable(format!("a bad %-escape in the path of {url:?}")))?;
        let mut mode = None;
        let mut params = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("mode", value)) => mode = Some(value),
                Some(("vfs", _)) => params.push(pair.to_owned()),
                _ => {
                    return Err(unusable(format!(
                        "unknown parameter {pair:?} in {url:?} (mode and vfs are known)"
                    )));
                }
            }
        }
        if path == ":memory:" || mode == Some("memory") {
            return Ok(Self::Sqlite(SqliteLocation::Memory));
        }
        if path.is_empty() {
            return Err(unusable(format!("no database file in {url:?}")));
        }
        let create = match mode {
            None | Some("rwc") => true,
            Some("rw") => false,
            Some(other) => {
                return Err(unusable(format!(
                    "mode={other} in {url:?}: herald writes its queue, so only rw and rwc \
                     (the default) are possible"
                )));
            }
        };
        Ok(Self::Sqlite(SqliteLocation::File {
            path: PathBuf::from(path),
            create,
            params,
        }))
    }

    /// The URL as it may be shown: any password replaced by `***`.
    pub fn shown(&self) -> String {
        match self {
            Self::Sqlite(SqliteLocation::Memory) => "sqlite::memory:".to_owned(),
            Self::Sqlite(SqliteLocation::File { path, .. }) => {
                format!("sqlite://{}", path.display())
            }
            Self::Postgres(url) => redact(url),
        }
    }
}

/// `url` with the password of its user information (`user:password@`)
/// and any `password=` parameter replaced by `***`.
pub fn redact(url: &str) -> String {
    let mut shown = url.to_owned();
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        if let Some(at) = authority.rfind('@')
            && let Some(colon) = authority[..at].find(':')
        {
            shown = format!("{scheme}://{}:***{}", &authority[..colon], &rest[at..]);
        }
    }
    if let Some((head, query)) = shown.split_once('?') {
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if name.eq_ignore_ascii_case("password") => format!("{name}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        shown = format!("{head}?{}", query.join("&"));
    }
    shown
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
            rest = tail.get(2..)?;
        } else {
            bytes.push(first);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

fn unusable(reason: String) -> StoreError {
    StoreError::Unusable(format!("store.url: {reason}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn file(url: &str) -> (PathBuf, bool, Vec<String>) {
        match StoreUrl::parse(url).unwrap() {
            StoreUrl::Sqlite(SqliteLocation::File {
                path,
                create,
                params,
            }) => (path, create, params),
            other => panic!("{url} is not a file: {other:?}"),
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
        assert_eq!(
            StoreUrl::parse("sqlite::memory:").unwrap(),
            StoreUrl::Sqlite(SqliteLocation::Memory)
        );
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
            let error = StoreUrl::parse(bad).unwrap_err().to_string();
            assert!(error.contains("%-escape"), "{bad}: {error}");
        }
    }

    #[test]
    fn bad_sqlite_urls_are_refused_by_name() {
        for (url, says) in [
            ("sqlite://x.db?mode=ro", "mode=ro"),
            ("sqlite://x.db?cache=shared", "cache=shared"),
            ("sqlite://", "no database file"),
            ("mysql://u:pw@h/db", "unknown store scheme"),
        ] {
            let error = StoreUrl::parse(url).unwrap_err();
            assert!(!error.is_transient(), "{url}");
            let text = error.to_string();
            assert!(text.contains(says), "{url}: {text}");
            assert!(!text.contains("pw@"), "{url}: {text}");
        }
    }

    #[test]
    fn postgres_urls_are_kept_for_the_driver_and_shown_without_secrets() {
        let url = "postgres://herald:s3cret@db.internal:5432/herald?sslmode=require";
        let parsed = StoreUrl::parse(url).unwrap();
        assert_eq!(parsed, StoreUrl::Postgres(url.to_owned()));
        assert_eq!(
            parsed.shown(),
            "postgres://herald:***@db.internal:5432/herald?sslmode=require"
        );
        assert!(!format!("{parsed:?}").contains("s3cret"));
        assert_eq!(
            redact("postgresql://h/db?user=x&password=s3cret&sslmode=disable"),
            "postgresql://h/db?user=x&password=***&sslmode=disable"
        );
        // A password containing '@' (as typed, unescaped) is hidden whole.
        assert_eq!(redact("postgres://u:p@ss@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
