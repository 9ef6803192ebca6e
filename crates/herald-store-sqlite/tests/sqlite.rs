//! The SQLite backend: the conformance suite on a file and in memory, and
//! what only SQLite has to prove: durability settings, surviving a
//! reopen, group commit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use herald_store::{MessageStatus, NewMessage, Store, conformance};
use herald_store_sqlite::SqliteStore;
use time::OffsetDateTime;
use time::macros::datetime;

/// A directory removed when dropped (the test's own, under the system's
/// temporary directory).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "herald-store-{name}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn now() -> OffsetDateTime {
    datetime!(2030-06-01 12:00 UTC)
}

fn message(seq: u32) -> NewMessage {
    NewMessage {
        id: format!("01J{seq:023}"),
        message_id: format!("<{seq}@sqlite.test>"),
        created_at: now(),
        send_at: None,
        sender: Some("sender@example.com".to_owned()),
        recipients: vec!["bob@example.com".to_owned()],
        rendered: vec![b'x'; 2048],
        smtputf8: false,
        tags: vec!["t".to_owned()],
        metadata: Default::default(),
        trace_id: None,
        submitted_by: None,
        template: None,
        idempotency: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_a_file() {
    let dir = TempDir::new("conformance");
    let seq = AtomicUsize::new(0);
    conformance::run_all(|| {
        // A fresh file per test, in a directory that does not exist yet.
        let path = dir
            .path()
            .join(format!("{}", seq.fetch_add(1, Ordering::Relaxed)))
            .join("herald.db");
        async move {
            SqliteStore::open(&format!("sqlite://{}", path.display()))
                .await
                .unwrap()
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_in_memory() {
    conformance::run_all(|| async { SqliteStore::open("sqlite::memory:").await.unwrap() }).await;
}

#[tokio::test]
async fn data_survives_reopening_the_file() {
    let dir = TempDir::new("reopen");
    let path = dir.path().join("herald.db");
    let path = path.to_str().unwrap();
    let store = SqliteStore::open(path).await.unwrap();
    store.enqueue(message(1)).await.unwrap();
    store.enqueue(message(2)).await.unwrap();
    // Dropped without close: what was answered must already be on disk.
    drop(store);

    let store = SqliteStore::open(&format!("sqlite://{path}"))
        .await
        .unwrap();
    let record = store.get(&message(1).id).await.unwrap().unwrap();
    assert_eq!(record.status, MessageStatus::Queued);
    let claimed = store
        .claim("w", 10, Duration::from_secs(60), now())
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(claimed[0].rendered, message(1).rendered);
    store.close().await;

    // And the claim itself survived too.
    let store = SqliteStore::open(path).await.unwrap();
    let record = store.get(&message(2).id).await.unwrap().unwrap();
    assert_eq!(record.status, MessageStatus::Sending);
    store.close().await;
}

#[tokio::test]
async fn opening_a_relative_url_and_a_plain_path() {
    let dir = TempDir::new("urls");
    std::fs::create_dir_all(dir.path()).unwrap();
    // `sqlite://relative.db` is relative to the working directory; use an
    // absolute plain path with a new sub-directory for the other form.
    let plain = dir.path().join("nested/deeper/herald.db");
    let store = SqliteStore::open(plain.to_str().unwrap()).await.unwrap();
    store.ping().await.unwrap();
    store.close().await;
    assert!(plain.exists());

    let url = format!("sqlite:{}", dir.path().join("other.db").display());
    let store = SqliteStore::open(&url).await.unwrap();
    store.ping().await.unwrap();
    store.close().await;
    assert!(dir.path().join("other.db").exists());
}

#[tokio::test]
async fn wal_and_full_sync_are_in_force() {
    let dir = TempDir::new("pragmas");
    let path = dir.path().join("herald.db");
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    store.enqueue(message(1)).await.unwrap();

    // WAL is a property of the file: any connection sees it.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    drop(conn);
    assert!(path.with_extension("db-wal").exists(), "a WAL file exists");

    // synchronous is per connection: ask the writer's own.
    assert_eq!(store.writer_pragma("synchronous").await.unwrap(), 2, "FULL");
    assert_eq!(store.writer_pragma("foreign_keys").await.unwrap(), 1);
    assert!(store.writer_pragma("busy_timeout").await.unwrap() >= 1000);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enqueues_share_commits() {
    let dir = TempDir::new("group");
    let store = Arc::new(
        SqliteStore::open(dir.path().join("herald.db").to_str().unwrap())
            .await
            .unwrap(),
    );
    let before = store.commits();
    let tasks: Vec<_> = (0..200)
        .map(|n| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.enqueue(message(n)).await })
        })
        .collect();
    for task in tasks {
        let answer = task.await.unwrap().unwrap();
        assert!(answer.created);
    }
    let commits = store.commits() - before;
    assert!(commits < 200, "200 enqueues took {commits} commits");
    assert_eq!(store.depth().await.unwrap(), 200);
    for n in 0..200 {
        assert!(
            store.get(&message(n).id).await.unwrap().is_some(),
            "message {n}"
        );
    }
}

/// The latest template is kept in memory; a change whose caller stopped
/// waiting (a client that hung up on its PUT) still lands, and the next
/// read sees it rather than the version remembered before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_change_whose_caller_left_is_still_seen() {
    let store = SqliteStore::open("sqlite::memory:").await.unwrap();
    let put = |subject: &str| herald_store::NewTemplate {
        name: "reset".into(),
        subject: subject.into(),
        text: Some("text".into()),
        html: None,
        layout: None,
        created_at: now(),
    };
    store.put_template(put("v1")).await.unwrap();
    assert_eq!(
        store
            .template("reset", None)
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );

    // Polled once (the change is handed over), then dropped. (It is
    // almost always still waiting for the writer then; on a loaded machine
    // it may be done already, which proves nothing but does no harm.)
    {
        let mut change = std::pin::pin!(store.put_template(put("v2")));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let _ = change.as_mut().poll(&mut cx);
    }
    // The change lands, and the latest version read (the one kept in
    // memory) becomes it: the old one is not remembered for good. (Between
    // the commit and the moment the store forgets the name, a read may
    // still give version 1: the change has not been answered yet.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let latest = loop {
        let latest = store.template("reset", None).await.unwrap().unwrap();
        if latest.version == 2 {
            break latest;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still version {} after 10 s",
            latest.version
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(latest.subject, "v2");
    assert_eq!(store.templates().await.unwrap()[0].version, 2);
    store.close().await;
}

#[tokio::test]
async fn a_failed_item_does_not_sink_its_group() {
    let dir = TempDir::new("savepoint");
    let store = Arc::new(
        SqliteStore::open(dir.path().join("herald.db").to_str().unwrap())
            .await
            .unwrap(),
    );
    store.enqueue(message(1)).await.unwrap();
    // The same id again violates the primary key: that request fails
    // alone; the others commit, whether or not they shared its
    // transaction (each request has its own savepoint).
    let tasks: Vec<_> = [1, 2, 3]
        .into_iter()
        .map(|n| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.enqueue(message(n)).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    assert!(answers[0].is_err(), "duplicate id: {:?}", answers[0]);
    assert!(answers[1].is_ok() && answers[2].is_ok(), "{answers:?}");
    assert_eq!(store.depth().await.unwrap(), 3);
    let record = store.get(&message(1).id).await.unwrap().unwrap();
    assert_eq!(record.events.len(), 1, "the failed duplicate left nothing");
}

#[tokio::test]
async fn a_database_migrated_by_the_sqlx_era_herald_opens_with_its_data() {
    let dir = TempDir::new("sqlx-era");
    std::fs::create_dir_all(dir.path()).unwrap();
    let path = dir.path().join("herald.db");
    {
        // What herald before rusqlite left behind: the schema, sqlx's
        // bookkeeping table, user_version 0, and a queued message.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../migrations/0001_queue.sql"))
            .unwrap();
        conn.execute_batch(
            "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
             installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, \
             checksum BLOB NOT NULL, execution_time BIGINT NOT NULL); \
             INSERT INTO _sqlx_migrations VALUES (1, 'queue', CURRENT_TIMESTAMP, TRUE, x'00', 1); \
             INSERT INTO messages (id, message_id, status, created_at, updated_at, \
                 next_attempt_at, smtputf8) VALUES ('01OLD', '<old@x>', 'queued', 1, 1, 1, 0); \
             INSERT INTO message_bodies VALUES ('01OLD', x'41'); \
             INSERT INTO recipients (message_id, position, address, status) \
                 VALUES ('01OLD', 0, 'a@example.com', 'pending');",
        )
        .unwrap();
    }
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    assert_eq!(store.depth().await.unwrap(), 1, "the old message counts");
    let claimed = store
        .claim("w", 10, Duration::from_secs(60), now())
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, "01OLD");
    assert_eq!(claimed[0].rendered, b"A");
    store.close().await;

    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(
        version,
        i64::try_from(herald_store_sqlite::SCHEMA_VERSION).unwrap(),
        "adopted as version 1, then migrated to the latest"
    );
    let sqlx_tables: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = '_sqlx_migrations'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(
        sqlx_tables, 1,
        "sqlx's bookkeeping stays for the older herald"
    );
    drop(conn);
    // Opened again, nothing is applied twice (which would fail: the
    // tables exist), and the claim held.
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    let record = store.get("01OLD").await.unwrap().unwrap();
    assert_eq!(record.status, MessageStatus::Sending);
    store.close().await;
}

#[tokio::test]
async fn a_database_from_a_newer_herald_is_refused_untouched() {
    let dir = TempDir::new("newer");
    let path = dir.path().join("herald.db");
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    store.enqueue(message(1)).await.unwrap();
    store.close().await;
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();

    let error = SqliteStore::open(path.to_str().unwrap()).await.unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("version 99") && text.contains("newer"),
        "{text}"
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let messages: i64 = conn
        .query_row("SELECT COUNT(*) FROM messages", [], |row| row.get(0))
        .unwrap();
    assert_eq!(messages, 1);
}

#[tokio::test]
async fn a_read_only_url_is_refused_with_a_reason() {
    let error = SqliteStore::open("sqlite://herald.db?mode=ro")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("mode=ro"), "{error}");
}

#[tokio::test]
async fn mode_rw_does_not_create_a_missing_file() {
    let dir = TempDir::new("mode-rw");
    std::fs::create_dir_all(dir.path()).unwrap();
    let path = dir.path().join("absent.db");
    let url = format!("sqlite://{}?mode=rw", path.display());
    assert!(SqliteStore::open(&url).await.is_err());
    assert!(!path.exists());

    let url = format!("sqlite://{}?mode=rwc", path.display());
    let store = SqliteStore::open(&url).await.unwrap();
    store.enqueue(message(1)).await.unwrap();
    store.close().await;
    let url = format!("sqlite://{}?mode=rw", path.display());
    let store = SqliteStore::open(&url).await.unwrap();
    assert_eq!(store.depth().await.unwrap(), 1);
    store.close().await;
}

#[tokio::test]
async fn a_url_path_is_percent_decoded_and_unknown_parameters_refused() {
    let dir = TempDir::new("percent");
    let url = format!("sqlite://{}/mail%20queue.db", dir.path().display());
    let store = SqliteStore::open(&url).await.unwrap();
    store.enqueue(message(1)).await.unwrap();
    store.close().await;
    assert!(dir.path().join("mail queue.db").exists());

    let error = SqliteStore::open(&format!("{url}?cache=shared"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("cache=shared"), "{error}");
    let error = SqliteStore::open("sqlite://bad%zzname.db")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("%-escape"), "{error}");
}

#[tokio::test]
async fn a_file_name_with_uri_characters_is_taken_literally() {
    let dir = TempDir::new("uri-chars");
    let path = dir.path().join("odd%20name#1.db");
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    store.enqueue(message(1)).await.unwrap();
    store.close().await;
    assert!(path.exists(), "{} was created as named", path.display());
}
