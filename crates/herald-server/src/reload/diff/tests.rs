//! Which sections a reload replaces and which fields it says need a
//! restart, from pairs of configuration files.

use super::*;

const BASE: &str = r#"
[server]
http_listen = "127.0.0.1:8080"

[store]
url = "sqlite://herald.db"

[auth]
api_keys = ["first-key-0123456789abcdef"]

[retry]
max_attempts = 5

[[relays]]
name = "primary"
host = "127.0.0.1"
port = 2525
tls = "none"

[[relays]]
name = "backup"
host = "127.0.0.1"
port = 2526
tls = "none"
"#;

fn config(text: &str) -> Config {
    let env = |name: &str| {
        (name == "WH_SECRET").then(|| "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned())
    };
    Config::from_toml_str(text, &env).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn diff_of(edit: impl Fn(&str) -> String) -> Changes {
    diff(&config(BASE), &config(&edit(BASE)))
}

#[test]
fn the_same_file_changes_nothing() {
    let changes = diff_of(str::to_owned);
    assert_eq!(changes, Changes::default());
    assert!(changes.live_sections().is_empty());
}

#[test]
fn each_live_section_is_named_when_it_changes() {
    let table: &[(&str, &str, &str)] = &[
        ("port = 2526", "port = 2527", "relays"),
        ("max_attempts = 5", "max_attempts = 9", "retry"),
        (
            "first-key-0123456789abcdef",
            "other-key-0123456789abcdef",
            "auth",
        ),
        ("[retry]", "[limits]\nmax_batch = 10\n\n[retry]", "limits"),
        (
            "[retry]",
            "[suppression]\nauto = []\n\n[retry]",
            "suppression",
        ),
        (
            "[retry]",
            "[[webhooks]]\nname = \"app\"\nurl = \"http://127.0.0.1:9/h\"\nsecret_env = \"WH_SECRET\"\n\n[retry]",
            "webhooks",
        ),
    ];
    for (from, to, section) in table {
        let changes = diff_of(|text| text.replace(from, to));
        assert_eq!(
            changes.live_sections(),
            vec![(*section).to_owned()],
            "{from} → {to}"
        );
        assert!(
            changes.restart_needed.is_empty(),
            "{from} → {to}: {changes:?}"
        );
    }
}

#[test]
fn start_only_fields_are_named_for_a_restart() {
    let table: &[(&str, &str, &str)] = &[
        (
            "http_listen = \"127.0.0.1:8080\"",
            "http_listen = \"127.0.0.1:8081\"",
            // The default node id is HOSTNAME:PORT: it moves with the port.
            "server.http_listen, server.node_id",
        ),
        ("sqlite://herald.db", "sqlite://other.db", "store.url"),
        (
            "[retry]",
            "[delivery]\nconcurrency = 3\n\n[retry]",
            "delivery.concurrency",
        ),
    ];
    for (from, to, field) in table {
        let changes = diff_of(|text| text.replace(from, to));
        assert_eq!(changes.restart_needed.join(", "), *field, "{from} → {to}");
        assert!(changes.live_sections().is_empty(), "{from} → {to}");
    }
}

#[test]
fn a_relay_is_the_same_unless_something_of_its_own_changed() {
    let old = config(BASE);
    let new = config(&BASE.replace("port = 2526", "port = 2527"));
    assert!(same_relay(&old.relays[0], &new.relays[0]));
    assert!(!same_relay(&old.relays[1], &new.relays[1]));
    let limited = config(&BASE.replace("port = 2525", "port = 2525\nrate = \"10/s\""));
    assert!(!same_relay(&old.relays[0], &limited.relays[0]));
    let breaker = config(&BASE.replace(
        "port = 2525\ntls = \"none\"",
        "port = 2525\ntls = \"none\"\n[relays.breaker]\nopen_for = \"5s\"",
    ));
    assert!(!same_relay(&old.relays[0], &breaker.relays[0]));
    // Reordered: a change of the list, each relay still the same.
    let swapped = diff(&old, &{
        let mut c = old.clone();
        c.relays.reverse();
        c
    });
    assert!(swapped.relays);
}

#[test]
fn carrying_over_keeps_start_only_fields_so_they_are_named_again() {
    let mut running = config(BASE);
    let new = config(
        &BASE
            .replace("max_attempts = 5", "max_attempts = 9")
            .replace("sqlite://herald.db", "sqlite://other.db"),
    );
    let changes = diff(&running, &new);
    changes.carry_over(&mut running, new.clone());
    assert_eq!(running.retry, new.retry);
    assert_eq!(running.store.url, "sqlite://herald.db");
    let again = diff(&running, &new);
    assert!(again.live_sections().is_empty());
    assert_eq!(again.restart_needed, vec!["store.url".to_owned()]);
}
