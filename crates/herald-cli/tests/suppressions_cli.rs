//! `herald suppressions add|list|remove` against a running `herald serve`.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// A test of a real process waits by the machine's clock.
#![allow(clippy::disallowed_methods)]

mod support;

use std::process::{Command, Output};

use support::{API_KEY, Herald, Setup, TempDir};

fn herald_cli(base: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("suppressions")
        .args(["--server", base])
        .args(args)
        .env("HERALD_API_KEY", API_KEY)
        .output()
        .expect("run herald suppressions")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn addresses_are_added_listed_and_removed() {
    let dir = TempDir::new("suppressions-cli");
    let port = support::free_port();
    let setup = Setup {
        http_port: port,
        relay_port: support::free_port(),
        concurrency: 1,
        lease: "30s",
        drain_timeout: "2s",
        data_timeout: "2s",
    };
    let config = support::write_config(dir.path(), &setup);
    let herald = Herald::start(&config, port, &dir.path().join("herald.log"));

    let added = herald_cli(
        &herald.base,
        &["add", "Carol@Example.org", "dave@example.net"],
    );
    assert!(added.status.success(), "{added:?}");
    assert!(
        stdout(&added).contains("added     Carol@Example.org"),
        "{}",
        stdout(&added)
    );
    let invalid = herald_cli(&herald.base, &["add", "not an address"]);
    assert_eq!(invalid.status.code(), Some(2), "{invalid:?}");
    assert!(stdout(&invalid).contains("invalid"), "{}", stdout(&invalid));

    let listed = herald_cli(&herald.base, &["list", "--reason", "manual"]);
    assert!(listed.status.success(), "{listed:?}");
    let text = stdout(&listed);
    assert!(
        text.contains("Carol@example.org") && text.contains("dave@example.net"),
        "{text}"
    );

    let removed = herald_cli(&herald.base, &["remove", "Carol@example.org"]);
    assert!(removed.status.success(), "{removed:?}");
    let again = herald_cli(&herald.base, &["remove", "Carol@example.org"]);
    assert!(!again.status.success(), "a second removal finds nothing");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("404"),
        "{again:?}"
    );
    let text = stdout(&herald_cli(&herald.base, &["list"]));
    assert!(!text.contains("Carol@example.org"), "{text}");
    herald.kill();
}
