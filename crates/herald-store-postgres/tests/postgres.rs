//! The PostgreSQL backend against a real server: the conformance suite,
//! and what only a shared database has to prove — the database's clock,
//! several nodes at once, migrations racing, a schema from the future,
//! LISTEN/NOTIFY, TLS modes, and secrets kept out of errors.
//!
//! The server is `postgres://postgres@127.0.0.1:5432/test` (trust
//! authentication), or `HERALD_TEST_POSTGRES_URL`. Every store gets a
//! schema of its own, dropped when the test ends, pass or fail. A server
//! that cannot be reached fails the tests: nothing here is skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// Tests measure real time (deadlines, elapsed) on the machine's clocks.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_store::{
    AttemptOutcome, AttemptRecord, MessageStatus, NewMessage, NextStep, RecipientResult,
    RecipientStatus, Store, StoreError, conformance,
};
use herald_store_postgres::{Clock, PgOptions, PgStore};
use time::OffsetDateTime;
use time::macros::datetime;
use tokio_postgres::NoTls;

fn server_url() -> String {
    std::env::var("HERALD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// `url` with `key=value` added to its parameters.
fn with_param(url: &str, param: &str) -> String {
    let joiner = if url.contains('?') { '&' } else { '?' };
    format!("{url}{joiner}{param}")
}

/// Schemas made for one test, dropped (with everything in them) when it
/// ends, even by a panic.
struct Schemas {
    admin: tokio_postgres::Client,
    made: Mutex<Vec<String>>,
}

impl Schemas {
    async fn new() -> Self {
        let (admin, connection) = tokio_postgres::connect(&server_url(), NoTls)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {} is not reachable: {e}", server_url()));
        tokio::spawn(connection);
        Self {
            admin,
            made: Mutex::new(Vec::new()),
        }
    }

    /// A new empty schema, and the server URL that puts herald in it.
    async fn fresh(&self) -> (String, String) {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "herald_t_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        self.admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
            ))
            .await
            .unwrap();
        self.made.lock().unwrap().push(name.clone());
        let url = with_param(&server_url(), &format!("options=-c%20search_path%3D{name}"));
        (name, url)
    }

    /// Runs `sql` in `schema`; its rows.
    async fn sql(&self, schema: &str, sql: &str) -> Vec<tokio_postgres::Row> {
        self.admin
            .batch_execute(&format!("SET search_path = {schema}"))
            .await
            .unwrap();
        let rows = self.admin.query(sql, &[]).await.unwrap();
        self.admin.batch_execute("RESET search_path").await.unwrap();
        rows
    }
}

impl Drop for Schemas {
    fn drop(&mut self) {
        let names = std::mem::take(&mut *self.made.lock().unwrap_or_else(|e| e.into_inner()));
        if names.is_empty() {
            return;
        }
        // A runtime of its own: this may run inside the test's, while it
        // unwinds.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let (admin, connection) =
                    tokio_postgres::connect(&server_url(), NoTls).await.unwrap();
                tokio::spawn(connection);
                for name in names {
                    admin
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .await
                        .unwrap();
                }
            });
        })
        .join();
        if dropped.is_err() {
            eprintln!("could not drop the test schemas");
        }
    }
}

fn options(clock: Clock) -> PgOptions {
    PgOptions {
        pool_size: 4,
        clock,
        ..PgOptions::default()
    }
}

async fn open(url: &str, clock: Clock) -> PgStore {
    PgStore::open(url, options(clock)).await.unwrap()
}

fn message(seq: u32, created: OffsetDateTime) -> NewMessage {
    NewMessage {
        id: format!("01PG{seq:022}"),
        message_id: format!("<{seq}@postgres.test>"),
        created_at: created,
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

/// Waits until `done` holds, polling, for at most `limit`.
async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_with_the_callers_clock() {
    let schemas = Schemas::new().await;
    conformance::run_all(|| async {
        let (_, url) = schemas.fresh().await;
        open(&url, Clock::Caller).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_clock_decides_leases_and_retries() {
    let schemas = Schemas::new().await;
    let (_, url) = schemas.fresh().await;
    let store = open(&url, Clock::Database).await;
    let lease = Duration::from_secs(60);
    // A node whose clock runs four years ahead.
    let future = datetime!(2030-01-01 0:00 UTC);
    let m = message(1, future);
    store.enqueue(m.clone()).await.unwrap();

    // Due at once by the database's clock, though created "in 2030".
    let before = OffsetDateTime::now_utc();
    let claimed = store.claim("node-a", 10, lease, future).await.unwrap();
    assert_eq!(
        claimed.len(),
        1,
        "the message is due by the database's clock"
    );
    let until = claimed[0].lease_until;
    let expected = before + lease;
    assert!(
        (until - expected).abs() < time::Duration::seconds(5),
        "lease until {until}, expected about {expected} (database now + lease)"
    );
    // A claimer whose clock says the lease ran out years ago gets nothing:
    // by the database's clock it holds.
    let far = datetime!(2040-01-01 0:00 UTC);
    let stolen = store.claim("node-b", 10, lease, far).await.unwrap();
    assert!(stolen.is_empty(), "took an unexpired lease: {stolen:?}");
    assert_eq!(
        store
            .reclaim(herald_store::Leases::Expired, far)
            .await
            .unwrap(),
        0
    );

    // The retry is as far from the database's now as the caller asked it
    // to be from the attempt's end.
    let wait = time::Duration::minutes(10);
    let attempt = AttemptRecord {
        started_at: future,
        duration: Duration::from_secs(2),
        relay: "primary".to_owned(),
        outcome: AttemptOutcome::Transient,
        smtp_code: Some(451),
        enhanced_code: Some("4.7.1".to_owned()),
        detail: "451 4.7.1 later".to_owned(),
        recipients: vec![RecipientResult {
            address: "bob@example.com".to_owned(),
            status: RecipientStatus::Deferred,
            smtp_code: Some(451),
            enhanced_code: Some("4.7.1".to_owned()),
            response: Some("later".to_owned()),
            class: Some(herald_store::BounceClass::RateLimited),
        }],
        class: Some(herald_store::BounceClass::RateLimited),
        next: NextStep::RetryAt(future + time::Duration::seconds(2) + wait),
        suppression: herald_store::SuppressionPolicy::default(),
    };
    let now = OffsetDateTime::now_utc();
    let status = store
        .record_attempt(&m.id, "node-a", attempt)
        .await
        .unwrap();
    assert_eq!(status, MessageStatus::Deferred);
    let record = store.get(&m.id).await.unwrap().unwrap();
    let retry = record.next_attempt_at.unwrap();
    assert!(
        (retry - (now + wait)).abs() < time::Duration::seconds(5),
        "retry at {retry}, expected about {}",
        now + wait
    );
    // Not due before then, whatever the caller's clock says.
    assert!(
        store
            .claim("node-b", 10, lease, far)
            .await
            .unwrap()
            .is_empty()
    );

    // Heartbeats and leadership run on the database's clock too.
    assert!(store.lead("alerts", "a", lease, future).await.unwrap());
    assert!(!store.lead("alerts", "b", lease, far).await.unwrap());
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_claiming_at_once_never_share_a_message() {
    let schemas = Schemas::new().await;
    let (_, url) = schemas.fresh().await;
    let a = Arc::new(open(&url, Clock::Caller).await);
    let b = Arc::new(open(&url, Clock::Caller).await);
    let now = datetime!(2030-01-01 0:00 UTC);
    let messages: Vec<NewMessage> = (0..300).map(|n| message(n, now)).collect();
    let all: BTreeSet<String> = messages.iter().map(|m| m.id.clone()).collect();
    for chunk in messages.chunks(100) {
        let answers = a.enqueue_batch(chunk.to_vec()).await.unwrap();
        assert!(answers.iter().all(Result::is_ok));
    }
    let mut workers = Vec::new();
    for (n, store) in [&a, &b, &a, &b, &a, &b].into_iter().enumerate() {
        let store = Arc::clone(store);
        workers.push(tokio::spawn(async move {
            let owner = format!("worker-{n}");
            let mut mine = Vec::new();
            loop {
                let batch = store
                    .claim(&owner, 7, Duration::from_secs(60), now)
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|c| c.id));
            }
        }));
    }
    let mut seen = BTreeSet::new();
    for worker in workers {
        for id in worker.await.unwrap() {
            assert!(seen.insert(id.clone()), "{id} was claimed twice");
        }
    }
    assert_eq!(seen, all, "every message claimed exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_opening_together_migrate_once() {
    let schemas = Schemas::new().await;
    let (schema, url) = schemas.fresh().await;
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PgStore::open(&url, options(Clock::Caller)).await })
        })
        .collect();
    for open in opens {
        let store = open.await.unwrap().unwrap();
        // The newest schema this build knows.
        let newest = i64::try_from(herald_store_postgres::SCHEMA_VERSION).unwrap();
        assert_eq!(store.schema_version().await.unwrap(), newest);
        store.close().await;
    }
    let rows = schemas
        .sql(
            &schema,
            "SELECT version, count(*) FROM herald_schema GROUP BY version",
        )
        .await;
    assert_eq!(
        rows.len(),
        herald_store_postgres::SCHEMA_VERSION,
        "each version recorded"
    );
    for row in &rows {
        assert_eq!(row.get::<_, i64>(1), 1, "applied once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_from_a_newer_herald_is_refused_untouched() {
    let schemas = Schemas::new().await;
    let (schema, url) = schemas.fresh().await;
    let store = open(&url, Clock::Caller).await;
    store
        .enqueue(message(1, datetime!(2030-01-01 0:00 UTC)))
        .await
        .unwrap();
    store.close().await;
    schemas
        .sql(
            &schema,
            "INSERT INTO herald_schema (version, description) VALUES (99, 'future')",
        )
        .await;

    let error = PgStore::open(&url, options(Clock::Caller))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Unusable(_)), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("version 99") && text.contains("newer"),
        "{text}"
    );
    let rows = schemas.sql(&schema, "SELECT count(*) FROM messages").await;
    assert_eq!(rows[0].get::<_, i64>(0), 1, "the data is untouched");
    let rows = schemas
        .sql(&schema, "SELECT max(version) FROM herald_schema")
        .await;
    assert_eq!(rows[0].get::<_, i32>(0), 99, "the version is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_on_one_node_wakes_another() {
    let schemas = Schemas::new().await;
    let (_, url) = schemas.fresh().await;
    let a = open(&url, Clock::Caller).await;
    let b = open(&url, Clock::Caller).await;
    let wakes = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&wakes);
    b.listen(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    // The first wake says the listener is in place.
    assert!(
        eventually(Duration::from_secs(10), || wakes.load(Ordering::SeqCst)
            >= 1)
        .await,
        "the listener never started"
    );
    let before = wakes.load(Ordering::SeqCst);
    a.enqueue(message(1, datetime!(2030-01-01 0:00 UTC)))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || wakes.load(Ordering::SeqCst)
            > before)
        .await,
        "no wake-up within 10 s of the enqueue"
    );
    b.close().await;
    a.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enqueues_share_transactions() {
    let schemas = Schemas::new().await;
    let (_, url) = schemas.fresh().await;
    let store = Arc::new(open(&url, Clock::Caller).await);
    let now = datetime!(2030-01-01 0:00 UTC);
    let before = store.commits();
    let tasks: Vec<_> = (0..200)
        .map(|n| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.enqueue(message(n, now)).await })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().unwrap().created);
    }
    let commits = store.commits() - before;
    assert!(commits < 200, "200 enqueues took {commits} transactions");
    assert_eq!(store.depth().await.unwrap(), 200);
    let page = store
        .list(&herald_store::ListFilter {
            limit: 500,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_request_does_not_sink_the_others_sharing_its_commit() {
    let schemas = Schemas::new().await;
    let (_, url) = schemas.fresh().await;
    let store = Arc::new(open(&url, Clock::Caller).await);
    let now = datetime!(2030-01-01 0:00 UTC);
    store.enqueue(message(0, now)).await.unwrap();
    // A duplicate id, and a NUL byte PostgreSQL cannot store in text: each
    // fails alone, whatever group it lands in.
    let mut nul = message(1, now);
    nul.tags = vec!["bad\0tag".to_owned()];
    let mut requests = vec![message(0, now), nul];
    requests.extend((2..40).map(|n| message(n, now)));
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|m| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.enqueue(m).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    assert!(answers[0].is_err(), "duplicate id: {:?}", answers[0]);
    assert!(answers[1].is_err(), "NUL byte: {:?}", answers[1]);
    assert!(answers[2..].iter().all(Result::is_ok), "{answers:?}");
    assert_eq!(store.depth().await.unwrap(), 39);
    let record = store.get(&message(0, now).id).await.unwrap().unwrap();
    assert_eq!(record.events.len(), 1, "the duplicate left nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_appear_in_errors() {
    let secret = "Sup3r-Secret_pw";
    let server = server_url();
    let at_server = server.replacen("://postgres@", &format!("://postgres:{secret}@"), 1);
    let cases = [
        // Nothing listens on port 1: unavailable, worth trying again.
        (format!("postgres://herald:{secret}@127.0.0.1:1/test"), true),
        // A database that does not exist: unusable as configured.
        (
            with_param(
                &at_server.replacen("/test", "/no_such_db_herald", 1),
                "sslmode=disable",
            ),
            false,
        ),
        (
            format!("postgres://herald:{secret}@127.0.0.1:5432/test?sslmode=sometimes"),
            false,
        ),
        (
            format!("postgres://herald:{secret}@127.0.0.1:5432/test?nonsense=1"),
            false,
        ),
        (
            format!("postgres://herald@127.0.0.1:1/test?password={secret}"),
            true,
        ),
    ];
    for (url, transient) in cases {
        let error = PgStore::open(&url, options(Clock::Caller))
            .await
            .unwrap_err();
        let text = format!("{error} / {error:?}");
        assert!(!text.contains(secret), "{url}: {text}");
        assert_eq!(error.is_transient(), transient, "{url}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_do_what_libpq_does() {
    let schemas = Schemas::new().await;
    let ssl: String = schemas
        .admin
        .query_one("SHOW ssl", &[])
        .await
        .unwrap()
        .get(0);
    let (_, url) = schemas.fresh().await;
    let require = with_param(&url, "sslmode=require");
    if ssl != "on" {
        // A server without TLS: `require` must not quietly go plain.
        let error = PgStore::open(&require, options(Clock::Caller))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("TLS"), "{error}");
        open(&with_param(&url, "sslmode=prefer"), Clock::Caller).await;
        return;
    }
    // Encrypted, certificate unchecked.
    open(&require, Clock::Caller).await.ping().await.unwrap();
    open(&with_param(&url, "sslmode=prefer"), Clock::Caller)
        .await
        .ping()
        .await
        .unwrap();

    // Checked against a CA that did not sign the server's certificate.
    let dir = std::env::temp_dir().join(format!("herald-pg-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let stranger = dir.join("stranger.pem");
    let mut params = rcgen::CertificateParams::new(vec!["stranger.invalid".to_owned()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    std::fs::write(&stranger, params.self_signed(&key).unwrap().pem()).unwrap();
    for mode in ["verify-ca", "verify-full"] {
        let url = with_param(
            &url,
            &format!("sslmode={mode}&sslrootcert={}", stranger.display()),
        );
        let error = PgStore::open(&url, options(Clock::Caller))
            .await
            .unwrap_err();
        assert!(
            error.to_string().to_lowercase().contains("certificate"),
            "{mode}: {error}"
        );
    }

    // Checked against the server's own (self-signed) certificate: the CA
    // is right; `verify-ca` asks no more, `verify-full` also wants it to
    // name the host connected to, which an IP address it does not name is
    // not.
    let file: String = schemas
        .admin
        .query_one("SHOW ssl_cert_file", &[])
        .await
        .unwrap()
        .get(0);
    let data: String = schemas
        .admin
        .query_one("SHOW data_directory", &[])
        .await
        .unwrap()
        .get(0);
    let own = std::path::Path::new(&data).join(&file);
    let ca = with_param(
        &url,
        &format!("sslmode=verify-ca&sslrootcert={}", own.display()),
    );
    open(&ca, Clock::Caller).await.ping().await.unwrap();
    if url.contains("@127.0.0.1") {
        let full = with_param(
            &url,
            &format!("sslmode=verify-full&sslrootcert={}", own.display()),
        );
        let error = PgStore::open(&full, options(Clock::Caller))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("certificate"), "{error}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
