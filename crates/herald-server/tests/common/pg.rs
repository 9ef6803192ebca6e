//! A PostgreSQL database of a test's own, on the machine's server
//! (127.0.0.1:5432, user `postgres`, trust authentication; `scripts/deps`
//! starts it), dropped with everything in it when the test is done.

use std::process::Command;

pub(crate) struct PgDatabase {
    name: String,
    pub(crate) url: String,
}

impl PgDatabase {
    /// A fresh, empty database named after `prefix` and a new id.
    pub(crate) fn create(prefix: &str) -> Self {
        let name = format!(
            "herald_{prefix}_{}",
            herald_message::new_id().to_lowercase()
        );
        psql(&format!("CREATE DATABASE {name}"));
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}?sslmode=disable");
        Self { name, url }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        psql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// Runs one statement as `postgres` on the `postgres` database.
fn psql(sql: &str) {
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
        .args(["-U", "postgres", "-d", "postgres", "-c", sql])
        .output()
        .expect("run psql (PostgreSQL's client)");
    assert!(
        out.status.success(),
        "psql {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
