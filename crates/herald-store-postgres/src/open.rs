//! Where the database is and how to reach it: the store URL read into the
//! driver's configuration and a TLS connector, the pool, the secrets that
//! must never be shown, and the schema migrations applied at open.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::Socket;

use super::codec::{db, get};
use super::pipeline::{Conn, step};
use super::tls::{MakeRustls, RustlsStream, SslMode};
use herald_store::{StoreError, StoreUrl, redact_url};

/// The schema version this build creates and migrates to.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// The schema, in order; version N is the N-th entry.
const MIGRATIONS: &[(&str, &str)] = &[
    ("queue", include_str!("../migrations/0001_queue.sql")),
    (
        "suppression",
        include_str!("../migrations/0002_suppression.sql"),
    ),
    (
        "relay_limits",
        include_str!("../migrations/0003_relay_limits.sql"),
    ),
    // Named 0004: the branches merged before it add 0002 and 0003.
    (
        "templates",
        include_str!("../migrations/0004_templates.sql"),
    ),
    (
        "message_template",
        include_str!("../migrations/0005_message_template.sql"),
    ),
    // Named 0006: another branch takes 0005.
    (
        "webhook_state",
        include_str!("../migrations/0006_webhook_state.sql"),
    ),
];

/// The key of the advisory lock that migrations hold: nodes that start
/// together migrate one after another ("herald" in ASCII).
const MIGRATION_LOCK: i64 = 0x6865_7261_6c64;

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an operation waits for a free connection before the store
/// answers that it is unavailable.
const WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// A database to connect to; cheap to clone.
#[derive(Clone)]
pub(crate) struct Target {
    config: tokio_postgres::Config,
    tls: MakeRustls,
    /// The URL's password, as written and as decoded: scrubbed from every
    /// error text.
    secrets: Arc<[String]>,
    shown: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Target").field(&self.shown).finish()
    }
}

impl Target {
    /// Reads a `postgres://` URL. `sslmode` and `sslrootcert` are ours to
    /// apply (see [`super::tls`]); everything else is the driver's.
    pub(crate) fn parse(url: &str) -> Result<Self, StoreError> {
        let shown = redact_url(url);
        let secrets = secrets(url);
        let scrub = |e: StoreError| scrub(e, &secrets);
        let StoreUrl::Postgres(url) = StoreUrl::parse(url).map_err(scrub)? else {
            return Err(StoreError::Unusable(format!(
                "postgres: {shown} is not a postgres:// URL"
            )));
        };
        let (base, query) = url.split_once('?').unwrap_or((&url, ""));
        let mut mode = SslMode::Prefer;
        let mut rootcert = None;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            match pair.split_once('=') {
                Some(("sslmode", value)) => mode = SslMode::parse(value)?,
                Some(("sslrootcert", value)) => rootcert = Some(percent_decode(value)),
                _ => kept.push(pair),
            }
        }
        let sslmode = format!("sslmode={}", mode.driver());
        kept.push(&sslmode);
        let rewritten = format!("{base}?{}", kept.join("&"));
        let mut config: tokio_postgres::Config = rewritten.parse().map_err(|e| {
            scrub(StoreError::Unusable(format!(
                "postgres: {shown}: {}",
                super::codec::describe(&e)
            )))
        })?;
        if config.get_application_name().is_none() {
            config.application_name("herald");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let tls = MakeRustls::new(mode, rootcert.as_deref()).map_err(scrub)?;
        let mut secrets = secrets;
        if let Some(password) = config.get_password() {
            secrets.push(String::from_utf8_lossy(password).into_owned());
        }
        secrets.retain(|s| !s.is_empty());
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Ok(Self {
            config,
            tls,
            secrets: secrets.into(),
            shown,
        })
    }

    /// A pool of at most `size` connections.
    pub(crate) fn pool(&self, size: usize) -> Result<Pool, StoreError> {
        let manager = Manager::from_config(
            self.config.clone(),
            self.tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(WAIT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Unusable(format!("postgres: connection pool: {e}")))
    }

    /// A connection of its own (for LISTEN), with its connection half for
    /// the caller to drive.
    pub(crate) async fn connect(
        &self,
    ) -> Result<
        (
            tokio_postgres::Client,
            tokio_postgres::Connection<Socket, RustlsStream<Socket>>,
        ),
        StoreError,
    > {
        self.config
            .connect(self.tls.clone())
            .await
            .map_err(|e| self.scrub(db("connect")(e)))
    }

    /// `error` with every secret of the URL replaced by `***`.
    pub(crate) fn scrub(&self, error: StoreError) -> StoreError {
        scrub(error, &self.secrets)
    }

    /// The URL as it may be shown.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    /// `error` from opening the store: scrubbed, and naming the database
    /// (its URL as it may be shown).
    pub(crate) fn opening(&self, error: StoreError) -> StoreError {
        let at = |text: String| match text.strip_prefix("postgres: ") {
            Some(rest) => format!("postgres ({}): {rest}", self.shown),
            None => text,
        };
        self.scrub(match error {
            StoreError::Unavailable(text) => StoreError::Unavailable(at(text)),
            StoreError::Unusable(text) => StoreError::Unusable(at(text)),
            other => other,
        })
    }
}

/// The password of `url`'s user information and of a `password=`
/// parameter, as written (the driver's decoded one is added later).
fn secrets(url: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Some((_, rest)) = url.split_once("://") {
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        if let Some(at) = authority.rfind('@')
            && let Some((_, password)) = authority[..at].split_once(':')
        {
            found.push(password.to_owned());
            found.push(percent_decode(password));
        }
    }
    if let Some((_, query)) = url.split_once('?') {
        for pair in query.split('&') {
            if let Some((name, value)) = pair.split_once('=')
                && name.eq_ignore_ascii_case("password")
            {
                found.push(value.to_owned());
                found.push(percent_decode(value));
            }
        }
    }
    found
}

fn scrub(error: StoreError, secrets: &[String]) -> StoreError {
    let clean = |mut text: String| {
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            text = text.replace(secret.as_str(), "***");
        }
        text
    };
    match error {
        StoreError::Unavailable(text) => StoreError::Unavailable(clean(text)),
        StoreError::Unusable(text) => StoreError::Unusable(clean(text)),
        other => other,
    }
}

/// Decodes `%XX` escapes, leaving bad ones as they are.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 3)
            .filter(|_| bytes[i] == b'%')
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Brings the schema up to the newest version in one transaction, under
/// an advisory lock: a second node opening at the same moment waits, then
/// finds the work done. A schema newer than this herald knows is refused
/// before anything is changed.
pub(crate) async fn migrate(pool: &Pool) -> Result<(), StoreError> {
    let newest = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    let mut tx = Conn::get(pool).await?.begin();
    let rows = tx
        .run(
            &[
                step!("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK),
                step!("SELECT to_regclass('herald_schema') IS NOT NULL, current_schema()"),
            ],
            "look for the schema version",
        )
        .await?;
    let rows = rows.get(1);
    let row = rows.and_then(|rows| rows.first());
    let (exists, schema): (bool, Option<String>) = match row {
        Some(row) => (get(row, 0)?, get(row, 1)?),
        None => (false, None),
    };
    if schema.is_none() {
        tx.rollback().await;
        return Err(StoreError::Unusable(
            "postgres: no schema to create herald's tables in (the search_path names none \
             that exists)"
                .into(),
        ));
    }
    let current = if exists {
        version_in(&mut tx).await?
    } else {
        0
    };
    if current > newest {
        tx.rollback().await;
        return Err(StoreError::Unusable(format!(
            "postgres: the database's schema is version {current}, newer than this herald \
             knows ({newest}): run a newer herald"
        )));
    }
    let mut steps = Vec::new();
    if !exists {
        steps.push(
            "CREATE TABLE herald_schema ( \
                 version     int         PRIMARY KEY, \
                 description text        NOT NULL, \
                 applied_at  timestamptz NOT NULL DEFAULT now())",
        );
    }
    let skip = usize::try_from(current).unwrap_or(usize::MAX);
    let pending: Vec<(i32, &str, &str)> = (1..)
        .zip(MIGRATIONS)
        .skip(skip)
        .map(|(version, (name, sql))| (version, *name, *sql))
        .collect();
    if steps.is_empty() && pending.is_empty() {
        tx.rollback().await;
        return Ok(());
    }
    let conn = tx.client()?;
    for sql in steps {
        conn.batch_execute(sql)
            .await
            .map_err(|e| migration_error(0, &e))?;
    }
    for (version, _, sql) in &pending {
        conn.batch_execute(sql)
            .await
            .map_err(|e| migration_error(*version, &e))?;
    }
    let versions: Vec<i32> = pending.iter().map(|(v, ..)| *v).collect();
    let names: Vec<&str> = pending.iter().map(|(_, name, _)| *name).collect();
    tx.commit(
        &[step!(
            "INSERT INTO herald_schema (version, description) \
             SELECT * FROM unnest($1::int[], $2::text[])",
            versions,
            names,
        )],
        "record the schema version",
    )
    .await?;
    Ok(())
}

fn migration_error(version: i32, e: &tokio_postgres::Error) -> StoreError {
    StoreError::Unusable(format!(
        "postgres: migration {version}: {}",
        super::codec::describe(e)
    ))
}

async fn version_in(tx: &mut super::pipeline::Tx) -> Result<i64, StoreError> {
    let rows = tx
        .run(
            &[step!(
                "SELECT coalesce(max(version), 0)::bigint FROM herald_schema"
            )],
            "read the schema version",
        )
        .await?;
    match rows.first().and_then(|rows| rows.first()) {
        Some(row) => get(row, 0),
        None => Ok(0),
    }
}

/// The schema version the database is at (0 before any migration).
pub(crate) async fn schema_version(pool: &Pool) -> Result<i64, StoreError> {
    let mut tx = Conn::get(pool).await?.begin();
    let rows = tx
        .run(
            &[step!("SELECT to_regclass('herald_schema') IS NOT NULL")],
            "look for the schema version",
        )
        .await?;
    let exists = match rows.first().and_then(|rows| rows.first()) {
        Some(row) => get(row, 0)?,
        None => false,
    };
    let version = if exists {
        version_in(&mut tx).await?
    } else {
        0
    };
    tx.rollback().await;
    Ok(version)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn secrets_are_found_as_written_and_decoded() {
        let found = secrets("postgres://herald:p%40ss@db:5432/q?sslmode=disable&password=x%2By");
        assert!(found.contains(&"p%40ss".to_owned()), "{found:?}");
        assert!(found.contains(&"p@ss".to_owned()), "{found:?}");
        assert!(found.contains(&"x+y".to_owned()), "{found:?}");
        assert!(secrets("postgres://herald@db/q").is_empty());
    }

    #[test]
    fn ssl_parameters_are_ours_and_the_rest_the_drivers() {
        let target = Target::parse(
            "postgres://u:s3cret@db.internal/q?sslmode=verify-full&sslrootcert=system",
        )
        .unwrap();
        assert_eq!(
            target.shown,
            "postgres://u:***@db.internal/q?sslmode=verify-full&sslrootcert=system"
        );
        assert_eq!(
            target.config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        assert_eq!(target.config.get_application_name(), Some("herald"));
        let error = Target::parse("postgres://u:s3cret@db/q?sslmode=sometimes").unwrap_err();
        assert!(!error.to_string().contains("s3cret"), "{error}");
        let error = Target::parse("postgres://u:s3cret@db/q?nonsense=1").unwrap_err();
        assert!(!error.is_transient(), "{error}");
        assert!(!error.to_string().contains("s3cret"), "{error}");
    }

    #[test]
    fn scrubbing_hides_every_form_of_the_password() {
        let target = Target::parse("postgres://u:p%40ss@db/q").unwrap();
        let error = target.scrub(StoreError::Unavailable("said p@ss and p%40ss".into()));
        assert_eq!(error.to_string(), "store unavailable: said *** and ***");
    }
}
