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

impl PgDatabase {
    /// `text` (a config from [`super::config_text`] for `dir`) turned into
    /// node `name` of a cluster on this database: its own node id, this
    /// database as its store.
    pub(crate) fn node_config(&self, name: &str, dir: &std::path::Path, text: &str) -> String {
        let text = text
            .replace(
                "http_listen = \"127.0.0.1:0\"",
                &format!("http_listen = \"127.0.0.1:0\"\nnode_id = \"{name}\""),
            )
            .replace(
                &format!("url = \"sqlite://{}/herald.db\"", dir.display()),
                &format!("url = \"{}\"", self.url),
            );
        assert!(text.contains(&self.url), "{text}");
        text
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
