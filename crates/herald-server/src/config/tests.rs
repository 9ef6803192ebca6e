use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use herald_policy::{BreakerConfig, Jitter, RetryPolicy};
use herald_smtp::{Mechanism, PoolConfig, Secret, TlsMode};

use super::*;

mod docs;
mod limits;
mod oauth2;
mod otlp;
mod secrets;
mod submission;

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, &no_env)
}

fn parse_env(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_toml_str(text, &|name| vars.get(name).cloned())
}

#[track_caller]
fn ok(text: &str) -> Config {
    match parse(text) {
        Ok(config) => config,
        Err(e) => panic!("{text}\n→ {e}"),
    }
}

#[track_caller]
fn err(text: &str) -> ConfigError {
    match parse(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    }
}

const RELAY: &str = "[[relays]]\nname = \"primary\"\nhost = \"smtp.example.com\"\n";

/// A file in the temporary directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(contents: &[u8]) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "herald-config-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).expect("write temp file");
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn defaults_when_sections_are_missing() {
    let c = ok("");
    assert_eq!(
        c.server.http_listen,
        "127.0.0.1:8080".parse().expect("addr")
    );
    assert_eq!(c.server.drain_timeout, Duration::from_secs(30));
    assert_eq!(c.store.url, "sqlite://herald.db");
    assert!(c.auth.api_keys.is_empty());
    assert_eq!(c.retry, RetryPolicy::default());
    assert_eq!(c.delivery.concurrency, 16);
    assert_eq!(c.delivery.lease, Duration::from_secs(60));
    assert_eq!(c.delivery.max_lost_leases, 3);
    assert_eq!(c.store.pool_size, 16);
    assert_eq!(c.store.retention, Duration::from_secs(30 * 24 * 3600));
    assert_eq!(
        c.server.node_id,
        format!("{}:8080", herald_smtp::default_helo_name())
    );
    assert_eq!(c.delivery.poll_interval, Duration::from_secs(1));
    assert_eq!(c.delivery.helo_name, herald_smtp::default_helo_name());
    let t = c.delivery.timeouts;
    assert_eq!(
        (t.connect, t.tls),
        (Duration::from_secs(30), Duration::from_secs(30))
    );
    for d in [t.banner, t.command, t.mail, t.rcpt, t.data] {
        assert_eq!(d, Duration::from_secs(300));
    }
    assert_eq!(t.data_dot, Duration::from_secs(600));
    assert_eq!(
        c.limits,
        LimitsConfig {
            max_message_bytes: 26_214_400,
            max_batch: 1000,
            max_queue_depth: 1_000_000,
            max_recipients: 100,
        }
    );
    assert_eq!(c.outbox.dir, PathBuf::from("outbox"));
    assert!(c.relays.is_empty());

    // Empty sections are the same as missing ones.
    let empty =
        ok("relays = []\n[server]\n[store]\n[auth]\n[retry]\n[delivery]\n[limits]\n[outbox]\n");
    assert_eq!(empty.server, c.server);
    assert_eq!(empty.delivery, c.delivery);
}

#[test]
fn default_embedded_is_the_empty_file() {
    let embedded = Config::default_embedded();
    let parsed = ok("");
    assert_eq!(embedded.server, parsed.server);
    assert_eq!(embedded.store, parsed.store);
    assert_eq!(embedded.auth, parsed.auth);
    assert_eq!(embedded.retry, parsed.retry);
    assert_eq!(embedded.delivery, parsed.delivery);
    assert_eq!(embedded.limits, parsed.limits);
    assert_eq!(embedded.outbox, parsed.outbox);
    assert!(embedded.relays.is_empty());
    assert!(embedded.auth.api_keys.is_empty());
}

#[test]
fn relay_defaults() {
    let c = ok(RELAY);
    let r = &c.relays[0];
    assert_eq!(r.name, "primary");
    assert_eq!(r.client.host, "smtp.example.com");
    assert_eq!(r.client.tls, TlsMode::StartTls);
    assert_eq!(r.client.port, 587);
    assert!(r.client.credentials.is_none());
    assert!(!r.client.allow_insecure_auth);
    assert_eq!(r.client.helo_name, c.delivery.helo_name);
    assert_eq!(r.client.timeouts, c.delivery.timeouts);
    assert_eq!(r.pool, PoolConfig::default());
    assert_eq!(r.breaker, BreakerConfig::default());
}

#[test]
fn port_defaults_follow_tls() {
    for (tls, port) in [
        ("implicit", 465),
        ("starttls", 587),
        ("opportunistic", 25),
        ("none", 25),
    ] {
        let c = ok(&format!("{RELAY}tls = \"{tls}\"\n"));
        assert_eq!(c.relays[0].client.port, port, "{tls}");
        assert_eq!(c.relays[0].client.tls.as_str(), tls);
    }
    let c = ok(&format!("{RELAY}tls = \"implicit\"\nport = 2465\n"));
    assert_eq!(c.relays[0].client.port, 2465);
}

#[test]
fn every_duration_parses() {
    let samples = [
        ("500ms", Duration::from_millis(500)),
        ("30s", Duration::from_secs(30)),
        ("5m", Duration::from_secs(300)),
        ("1h", Duration::from_secs(3600)),
        ("3d", Duration::from_secs(3 * 86_400)),
        ("1h 30m", Duration::from_secs(5400)),
    ];
    type Read = fn(&Config) -> Duration;
    let get: [(&str, &str, Read); 15] = [
        ("server", "drain_timeout", |c| c.server.drain_timeout),
        ("retry", "min_delay", |c| c.retry.min_delay),
        ("retry", "initial_delay", |c| c.retry.initial_delay),
        ("retry", "max_delay", |c| c.retry.max_delay),
        ("retry", "max_age", |c| c.retry.max_age),
        ("delivery", "connect_timeout", |c| {
            c.delivery.timeouts.connect
        }),
        ("delivery", "connect_timeout", |c| c.delivery.timeouts.tls),
        ("delivery", "command_timeout", |c| c.delivery.timeouts.rcpt),
        ("delivery", "data_timeout", |c| c.delivery.timeouts.data_dot),
        ("delivery", "lease", |c| c.delivery.lease),
        ("delivery", "poll_interval", |c| c.delivery.poll_interval),
        ("relays", "idle_timeout", |c| c.relays[0].pool.idle_timeout),
        ("relays.breaker", "open_for", |c| {
            c.relays[0].breaker.open_for
        }),
        ("relays.breaker", "max_open_for", |c| {
            c.relays[0].breaker.max_open_for
        }),
        ("delivery", "command_timeout", |c| {
            c.delivery.timeouts.banner
        }),
    ];
    for (text, want) in samples {
        for (section, field, read) in get {
            if (section, field) == ("delivery", "lease") && want < Duration::from_secs(3) {
                continue; // below the shortest lease; refused by its own test
            }
            // Keep the other fields consistent with the one under test.
            let context = match (section, field) {
                ("retry", "min_delay") => "initial_delay = \"3d\"\nmax_delay = \"3d\"\n",
                ("retry", "initial_delay") => "min_delay = \"1ms\"\nmax_delay = \"3d\"\n",
                ("retry", "max_delay") => "min_delay = \"1ms\"\ninitial_delay = \"1ms\"\n",
                ("delivery", "data_timeout") => "lease = \"4d\"\n",
                ("delivery", "lease") => "data_timeout = \"1ms\"\n",
                ("relays.breaker", "open_for") => "max_open_for = \"4d\"\n",
                ("relays.breaker", "max_open_for") => "open_for = \"1ms\"\n",
                _ => "",
            };
            let doc = match section {
                "relays" => format!("{RELAY}{field} = \"{text}\"\n"),
                "relays.breaker" => {
                    format!("{RELAY}[relays.breaker]\n{context}{field} = \"{text}\"\n")
                }
                _ => format!("[{section}]\n{context}{field} = \"{text}\"\n"),
            };
            assert_eq!(read(&ok(&doc)), want, "{doc}");
        }
    }
}

#[test]
fn a_short_initial_delay_alone_is_valid() {
    // The floor follows it when unset; set, it is checked against it.
    let config = ok("[retry]\ninitial_delay = \"500ms\"\n");
    assert_eq!(config.retry.initial_delay, Duration::from_millis(500));
    assert_eq!(config.retry.min_delay, Duration::from_millis(500));
    let config = ok("[retry]\ninitial_delay = \"5s\"\n");
    assert_eq!(config.retry.min_delay, Duration::from_secs(1));
    let error = err("[retry]\ninitial_delay = \"500ms\"\nmin_delay = \"2s\"\n");
    assert!(error.to_string().contains("min_delay"), "{error}");
}

#[test]
fn a_bad_duration_names_its_field() {
    for (doc, field) in [
        (
            "[server]\ndrain_timeout = \"soon\"\n",
            "server.drain_timeout",
        ),
        ("[delivery]\nlease = \"15 fortnights\"\n", "delivery.lease"),
        ("[retry]\nmax_age = 3\n", "retry.max_age"),
        (
            &format!("{RELAY}idle_timeout = \"\"\n"),
            "relays[0].idle_timeout",
        ),
    ] {
        let e = err(doc);
        assert_eq!(e.field, field, "{e}");
        assert!(
            e.message.contains("30s"),
            "says what a duration looks like: {e}"
        );
    }
}

#[test]
fn an_unknown_field_anywhere_is_refused_by_name() {
    for (doc, field) in [
        ("bogus = 1\n", "bogus"),
        ("[sever]\nhttp_listen = \"127.0.0.1:1\"\n", "sever"),
        (
            "[server]\nhttp_lisen = \"127.0.0.1:1\"\n",
            "server.http_lisen",
        ),
        ("[store]\nurll = \"x\"\n", "store.urll"),
        ("[auth]\napi_key = [\"x\"]\n", "auth.api_key"),
        ("[retry]\njiter = \"full\"\n", "retry.jiter"),
        ("[delivery]\nleese = \"1m\"\n", "delivery.leese"),
        ("[limits]\nmax_msg_bytes = 1\n", "limits.max_msg_bytes"),
        ("[outbox]\npath = \"x\"\n", "outbox.path"),
        (
            &format!("{RELAY}pasword = \"hunter2-secret\"\n"),
            "relays[0].pasword",
        ),
        (
            &format!("{RELAY}{}prot = 25\n", RELAY.replace("primary", "backup")),
            "relays[1].prot",
        ),
        (
            &format!("{RELAY}[relays.breaker]\nthreshold = 3\n"),
            "relays[0].breaker.threshold",
        ),
        ("server.extra = 1\n", "server.extra"),
        (
            "relays = [{ name = \"a\", host = \"h\", hots = \"x\" }]\n",
            "relays[0].hots",
        ),
    ] {
        let e = err(doc);
        assert_eq!(e.field, field, "{doc}→ {e}");
        assert!(e.message.contains("unknown field"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}

#[test]
fn a_missing_required_field_is_named() {
    let e = err("[[relays]]\nname = \"a\"\n[[relays]]\nname = \"b\"\n");
    assert_eq!(e.field, "relays[0].host");
    assert_eq!(e.message, "required");
    let e = err(&format!("{RELAY}[[relays]]\nhost = \"h\"\n"));
    assert_eq!(e.field, "relays[1].name");
}

#[test]
fn a_wrong_type_or_name_is_reported_in_one_line() {
    let e = err(&format!("{RELAY}tls = \"ssl\"\n"));
    assert_eq!(
        e.to_string(),
        "relays[0].tls: unknown TLS mode \"ssl\" (none, starttls, opportunistic, implicit)"
    );
    let e = err("[retry]\njitter = \"random\"\n");
    assert_eq!(
        e.to_string(),
        "retry.jitter: unknown jitter \"random\" (none, full, equal)"
    );
    let e = err(&format!("{RELAY}auth_mechanism = \"cram-md5\"\n"));
    assert_eq!(e.field, "relays[0].auth_mechanism");
    let e = err(&format!("{RELAY}port = 70000\n"));
    assert_eq!(e.field, "relays[0].port");
    let e = err("[server]\nhttp_listen = \"localhost\"\n");
    assert_eq!(e.field, "server.http_listen");
    let e = err("server = 1\n");
    assert_eq!(
        e.to_string(),
        "server: invalid type: integer `1`, expected a table"
    );
    let e = err("[limits]\nmax_batch = \"many\"\n");
    assert_eq!(e.field, "limits.max_batch");
    assert!(!e.to_string().contains('\n'));
}

#[test]
fn toml_syntax_errors_give_line_and_column_in_one_line() {
    let e = err("[server]\nhttp_listen = \"127.0.0.1:8080\"\n\n[store\n");
    assert_eq!(e.field, "config");
    assert!(e.message.contains("line 4, column"), "{e}");
    assert!(!e.to_string().contains('\n'), "{e}");
    let e = err(&format!("{RELAY}password = hunter2\n"));
    assert!(e.message.contains("line 4"), "{e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

#[test]
fn every_validation_rule_names_its_field() {
    let u = "username = \"u\"\npassword = \"p\"\n";
    let cases: Vec<(String, &str)> = vec![
        (format!("{RELAY}{RELAY}"), "relays[1].name"),
        (RELAY.replace("primary", "Primary"), "relays[0].name"),
        (RELAY.replace("primary", ""), "relays[0].name"),
        (RELAY.replace("smtp.example.com", " "), "relays[0].host"),
        (format!("{RELAY}port = 0\n"), "relays[0].port"),
        (
            format!("{RELAY}max_connections = 0\n"),
            "relays[0].max_connections",
        ),
        (
            format!("{RELAY}max_messages_per_connection = 0\n"),
            "relays[0].max_messages_per_connection",
        ),
        (
            format!("{RELAY}idle_timeout = \"0s\"\n"),
            "relays[0].idle_timeout",
        ),
        (
            format!("{RELAY}[relays.breaker]\nfailure_threshold = 0\n"),
            "relays[0].breaker.failure_threshold",
        ),
        (
            format!("{RELAY}helo_name = \"bad name\"\n"),
            "relays[0].helo_name",
        ),
        (format!("{RELAY}username = \"u\"\n"), "relays[0].username"),
        (format!("{RELAY}password = \"p\"\n"), "relays[0].password"),
        (
            format!("{RELAY}{u}password_env = \"X\"\n"),
            "relays[0].password_env",
        ),
        (
            format!("{RELAY}{u}auth_mechanism = \"xoauth2\"\n"),
            "relays[0].auth_mechanism",
        ),
        (format!("{RELAY}tls = \"none\"\n{u}"), "relays[0].tls"),
        (
            format!("{RELAY}tls = \"opportunistic\"\n{u}"),
            "relays[0].tls",
        ),
        (
            format!("{RELAY}ca_file = \"/nonexistent/ca.pem\"\n"),
            "relays[0].ca_file",
        ),
        (
            "[delivery]\nconcurrency = 0\n".into(),
            "delivery.concurrency",
        ),
        ("[delivery]\nlease = \"2s\"\n".into(), "delivery.lease"),
        (
            "[delivery]\nmax_lost_leases = 0\n".into(),
            "delivery.max_lost_leases",
        ),
        ("[store]\npool_size = 0\n".into(), "store.pool_size"),
        ("[store]\nretention = \"10m\"\n".into(), "store.retention"),
        (
            "[store]\nurl_env = \"NOT_SET_ANYWHERE\"\n".into(),
            "store.url_env",
        ),
        ("[server]\nnode_id = \"a b\"\n".into(), "server.node_id"),
        ("[server]\nnode_id = \"\"\n".into(), "server.node_id"),
        (
            "[delivery]\nconnect_timeout = \"0s\"\n".into(),
            "delivery.connect_timeout",
        ),
        (
            "[delivery]\npoll_interval = \"0ms\"\n".into(),
            "delivery.poll_interval",
        ),
        (
            "[delivery]\nhelo_name = \"\"\n".into(),
            "delivery.helo_name",
        ),
        ("[retry]\nmax_attempts = 0\n".into(), "retry.max_attempts"),
        (
            "[retry]\ninitial_delay = \"2h\"\n".into(),
            "retry.initial_delay",
        ),
        ("[retry]\nmultiplier = 0.5\n".into(), "retry.multiplier"),
        ("[retry]\nmax_age = \"0s\"\n".into(), "retry.max_age"),
        ("[limits]\nmax_batch = 0\n".into(), "limits.max_batch"),
        (
            "[limits]\nmax_message_bytes = 0\n".into(),
            "limits.max_message_bytes",
        ),
        (
            "[limits]\nmax_queue_depth = 0\n".into(),
            "limits.max_queue_depth",
        ),
        (
            "[limits]\nmax_recipients = 0\n".into(),
            "limits.max_recipients",
        ),
        ("[outbox]\ndir = \"\"\n".into(), "outbox.dir"),
        ("[store]\nurl = \"mysql://db/herald\"\n".into(), "store.url"),
        ("[store]\nurl = \"sqlite://\"\n".into(), "store.url"),
        ("[store]\nurl = \"herald.db\"\n".into(), "store.url"),
        (
            "[auth]\napi_keys = [\"short\"]\n".into(),
            "auth.api_keys[0]",
        ),
        (
            "[auth]\napi_keys = [\"0123456789abcdef\", \"has a space 0123456789\"]\n".into(),
            "auth.api_keys[1]",
        ),
        (
            "[auth]\napi_keys_env = \"NOT_SET_ANYWHERE\"\n".into(),
            "auth.api_keys_env",
        ),
    ];
    for (doc, field) in cases {
        let e = err(&doc);
        assert_eq!(e.field, field, "{doc}→ {e}");
        assert!(!e.message.is_empty());
    }
}

#[test]
fn store_urls() {
    for url in [
        "sqlite://herald.db",
        "sqlite:///var/lib/herald/herald.db",
        "sqlite://data/herald.db?mode=rwc",
        "sqlite::memory:",
        "postgres://herald@db.internal/herald",
        "postgresql://herald:pw@db/herald",
    ] {
        assert_eq!(ok(&format!("[store]\nurl = \"{url}\"\n")).store.url, url);
    }
}

#[test]
fn a_store_password_is_never_shown() {
    let c = ok("[store]\nurl = \"postgres://herald:s3cret-pw@db:5432/herald\"\n");
    assert_eq!(
        c.store.redacted_url(),
        "postgres://herald:***@db:5432/herald"
    );
    assert!(!format!("{c:?}").contains("s3cret"));
    let e = err("[store]\nurl = \"mysql://herald:s3cret-pw@db/herald\"\n");
    assert!(!e.to_string().contains("s3cret"), "{e}");
    assert_eq!(
        crate::redact::url("sqlite://herald.db"),
        "sqlite://herald.db"
    );
}

#[test]
fn timeouts_map_onto_every_phase() {
    let c = ok(
        "[delivery]\nconnect_timeout = \"7s\"\ncommand_timeout = \"11s\"\ndata_timeout = \"13s\"\n",
    );
    let t = c.delivery.timeouts;
    assert_eq!(t.connect, Duration::from_secs(7));
    assert_eq!(t.tls, Duration::from_secs(7));
    for d in [t.banner, t.command, t.mail, t.rcpt, t.data] {
        assert_eq!(d, Duration::from_secs(11));
    }
    assert_eq!(t.data_dot, Duration::from_secs(13));
}

#[test]
fn every_field_is_read() {
    let c = ok(&format!(
        "[server]\nhttp_listen = \"0.0.0.0:9000\"\n\
         [retry]\ninitial_delay = \"5s\"\nmultiplier = 3.0\nmax_delay = \"10m\"\nmin_delay = \"2s\"\n\
         max_attempts = 4\nmax_age = \"1d\"\njitter = \"equal\"\n\
         [delivery]\nconcurrency = 3\nhelo_name = \"mail.example.com\"\n\
         [limits]\nmax_message_bytes = 1000\nmax_batch = 5\nmax_queue_depth = 7\nmax_recipients = 9\n\
         [outbox]\ndir = \"/var/spool/herald\"\n\
         {RELAY}tls = \"implicit\"\nusername = \"me\"\npassword = \"pw\"\nauth_mechanism = \"LOGIN\"\n\
         allow_insecure_auth = true\nmax_connections = 2\nmax_messages_per_connection = 50\n\
         [relays.breaker]\nfailure_threshold = 3\nhalf_open_probes = 2\nfailure_rate = 0.1\nslow_call = \"2s\"\n"
    ));
    assert_eq!(c.server.http_listen.port(), 9000);
    assert_eq!(
        c.retry,
        RetryPolicy {
            initial_delay: Duration::from_secs(5),
            multiplier: 3.0,
            max_delay: Duration::from_secs(600),
            min_delay: Duration::from_secs(2),
            max_attempts: 4,
            max_age: Duration::from_secs(86_400),
            jitter: Jitter::Equal,
        }
    );
    assert_eq!(c.delivery.concurrency, 3);
    assert_eq!(c.delivery.helo_name, "mail.example.com");
    assert_eq!(c.limits.max_recipients, 9);
    assert_eq!(c.outbox.dir, PathBuf::from("/var/spool/herald"));
    let r = &c.relays[0];
    assert_eq!(r.client.helo_name, "mail.example.com");
    assert!(r.client.allow_insecure_auth);
    let creds = r.client.credentials.as_ref().expect("credentials");
    assert_eq!(creds.username, "me");
    assert_eq!(creds.secret, Secret::Password("pw".into()));
    assert_eq!(creds.mechanism, Some(Mechanism::Login));
    assert_eq!(r.pool.max_connections, 2);
    assert_eq!(r.pool.max_messages_per_connection, 50);
    assert_eq!(r.breaker.failure_threshold, 3);
    // `half_open_probes`, the field's older name, still works.
    assert_eq!(r.breaker.half_open_calls, 2);
    assert_eq!(r.breaker.failure_rate, 0.1);
    assert_eq!(r.breaker.slow_call, Duration::from_secs(2));
    assert_eq!(r.breaker.min_calls, 20);
}

#[test]
fn node_ids_are_stable_and_follow_the_listen_port() {
    let host = herald_smtp::default_helo_name();
    let c = ok("[server]\nhttp_listen = \"0.0.0.0:9001\"\n");
    assert_eq!(c.server.node_id, format!("{host}:9001"));
    let moved = parse_env("", &[("HERALD_HTTP_LISTEN", "127.0.0.1:9002")]).expect("config");
    assert_eq!(moved.server.node_id, format!("{host}:9002"));
    let named = parse_env(
        "[server]\nnode_id = \"mail-1\"\n",
        &[("HERALD_HTTP_LISTEN", "127.0.0.1:9002")],
    )
    .expect("config");
    assert_eq!(named.server.node_id, "mail-1");
}

#[test]
fn the_store_url_may_come_from_a_variable() {
    let url = "postgres://herald:s3cret@db.internal/herald";
    let c = parse_env("[store]\nurl_env = \"DB_URL\"\n", &[("DB_URL", url)]).expect("config");
    assert_eq!(c.store.url, url);
    assert!(!format!("{:?}", c.store).contains("s3cret"));
    let over = parse_env(
        "[store]\nurl_env = \"DB_URL\"\n",
        &[("DB_URL", url), ("HERALD_STORE_URL", "sqlite://x.db")],
    )
    .expect("config");
    assert_eq!(over.store.url, "sqlite://x.db");
}
