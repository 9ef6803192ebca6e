//! `herald migrate --config FILE`: brings the configured store's schema up
//! to this build's version ahead of a rollout, says which version it is
//! at, and never prints the store URL's password.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// These tests run the binary in its own process: they wait on real time
// (for conditions, with deadlines), so they read the machine's clocks.
#![allow(clippy::disallowed_methods)]

mod support;

use std::process::Command;

use support::{PgDatabase, Setup};

fn setup() -> Setup {
    Setup {
        http_port: support::free_port(),
        relay_port: 25,
        concurrency: 1,
        lease: "60s",
        drain_timeout: "1s",
        data_timeout: "1s",
    }
}

fn migrate(config: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["migrate", "--config"])
        .arg(config)
        .env_remove("HERALD_STORE_URL")
        .output()
        .expect("run herald migrate");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn migrate_creates_the_sqlite_schema_and_reports_its_version() {
    let dir = support::TempDir::new("migrate");
    let config = support::write_config(dir.path(), &setup());
    let (ok, stdout, stderr) = migrate(&config);
    assert!(ok, "{stderr}");
    let want = format!("schema at version {}", herald_store_sqlite::SCHEMA_VERSION);
    assert!(stdout.contains(&want), "{stdout}");
    assert!(dir.path().join("herald.db").exists());
    // Again: nothing to do, same answer.
    let (ok, again, stderr) = migrate(&config);
    assert!(ok, "{stderr}");
    assert_eq!(again, stdout);
}

#[test]
fn migrate_on_postgres_reports_the_version_without_the_password() {
    let db = PgDatabase::create("migrate");
    // Trust authentication ignores the password; it must still never show.
    let url = db.url.replace("postgres@", "postgres:s3cret-pw@");
    let dir = support::TempDir::new("migrate-pg");
    let config = support::write_config_on(dir.path(), "herald.toml", &setup(), &url);
    let (ok, stdout, stderr) = migrate(&config);
    assert!(ok, "{stderr}");
    let want = format!(
        "schema at version {}",
        herald_store_postgres::SCHEMA_VERSION
    );
    assert!(stdout.contains(&want), "{stdout}");
    assert!(stdout.contains("postgres:***@"), "{stdout}");
    assert!(!stdout.contains("s3cret") && !stderr.contains("s3cret"));
    let (ok, again, stderr) = migrate(&config);
    assert!(ok, "{stderr}");
    assert_eq!(again, stdout);
    drop(db);
}
