//! The example file and every TOML block of docs/configuration.md must
//! load, so the documentation cannot drift from the code.

use super::*;

const EXAMPLE: &str = include_str!("../../../../../examples/herald.toml");
const DOCS: &str = include_str!("../../../../../docs/configuration.md");

#[test]
fn the_example_file_is_a_working_development_config() {
    let c = ok(EXAMPLE);
    assert_eq!(
        c.server.http_listen,
        "127.0.0.1:8080".parse().expect("addr")
    );
    assert_eq!(c.store.url, "sqlite://herald.db");
    assert_eq!(c.auth.api_keys.len(), 1);
    assert!(c.auth.api_keys[0].matches("dev-key-change-me-0123456789"));
    assert!(c.relays.is_empty(), "development mail goes to the outbox");
    assert_eq!(c.retry.initial_delay, Duration::from_secs(5));
}

/// The ```toml blocks of a Markdown document.
fn toml_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (n, line) in markdown.lines().enumerate() {
        match &mut current {
            None if line.trim_start().starts_with("```toml") => {
                current = Some((n + 1, String::new()))
            }
            Some(_) if line.trim_start().starts_with("```") => {
                blocks.extend(current.take());
            }
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
            None => {}
        }
    }
    blocks
}

#[test]
fn every_toml_block_in_the_docs_parses() {
    let blocks = toml_blocks(DOCS);
    assert!(blocks.len() >= 4, "found {} blocks", blocks.len());
    // Variables the examples name are set, and so is HERALD_API_KEYS; the
    // other overrides are not, so the file's own values are checked.
    let env = |name: &str| match name {
        ENV_API_KEYS => Some("docs-example-key-0123456789".to_owned()),
        // Webhook secrets have their own form.
        _ if name.ends_with("WEBHOOK_SECRET") => {
            Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned())
        }
        _ if name.starts_with("HERALD_") => None,
        // API keys need 16 characters.
        _ if name.ends_with("_KEY") => Some("docs-example-key-from-env-0123".to_owned()),
        _ => Some("secret-from-env".to_owned()),
    };
    for (line, text) in blocks {
        if let Err(e) = Config::from_toml_str(&text, &env) {
            panic!("docs/configuration.md block at line {line}: {e}\n{text}");
        }
    }
}

#[test]
fn the_docs_mention_every_field() {
    for field in [
        "http_listen",
        "drain_timeout",
        "url",
        "api_keys",
        "api_keys_env",
        "initial_delay",
        "multiplier",
        "max_delay",
        "min_delay",
        "max_attempts",
        "max_age",
        "jitter",
        "concurrency",
        "connect_timeout",
        "command_timeout",
        "data_timeout",
        "lease",
        "poll_interval",
        "helo_name",
        "max_message_bytes",
        "max_batch",
        "max_queue_depth",
        "max_recipients",
        "rate",
        "burst",
        "daily_quota",
        "quota_reset",
        "provider",
        "region",
        "dir",
        "name",
        "host",
        "port",
        "tls",
        "username",
        "password",
        "password_env",
        "oauth2_token_env",
        "token_url",
        "client_id",
        "client_secret_env",
        "refresh_token_env",
        "scope",
        "refresh_margin",
        "auth_mechanism",
        "ca_file",
        "allow_insecure_auth",
        "max_connections",
        "max_messages_per_connection",
        "idle_timeout",
        "failure_threshold",
        "open_for",
        "max_open_for",
        "half_open_calls",
        "failure_rate",
        "slow_call",
        "slow_rate",
        "min_calls",
        "otlp_endpoint",
        "service_name",
        "sample_ratio",
        "implicit_tls_listen",
        "cert_file",
        "key_file",
        "command_timeout",
        "data_timeout",
        ENV_API_KEYS,
        ENV_STORE_URL,
        ENV_HTTP_LISTEN,
    ] {
        assert!(
            DOCS.contains(&format!("`{field}`")),
            "docs/configuration.md lacks `{field}`"
        );
    }
}

#[test]
fn the_error_messages_shown_in_the_docs_are_real() {
    let start = DOCS.find("```text\n").expect("a text block") + "```text\n".len();
    let end = start + DOCS[start..].find("```").expect("its end");
    let shown: Vec<&str> = DOCS[start..end].lines().collect();
    let produced: Vec<String> = [
        format!("{RELAY}tls = \"ssl\"\n"),
        "[delivery]\nlease = \"2s\"\n".to_owned(),
        "[server]\nhttp_lisen = \"127.0.0.1:8080\"\n".to_owned(),
        "[server]\nhttp_listen = \"127.0.0.1:8080\"\n\n[store\n".to_owned(),
    ]
    .iter()
    .map(|doc| err(doc).to_string())
    .collect();
    assert_eq!(shown, produced);
}
