//! Secrets and the environment: overrides, variables that must be set,
//! and masking in `Debug` and errors.

use super::*;

#[test]
fn secrets_come_from_the_environment() {
    let doc = format!("{RELAY}username = \"me\"\npassword_env = \"PRIMARY_SMTP_PASSWORD\"\n");
    let c = parse_env(&doc, &[("PRIMARY_SMTP_PASSWORD", "from-env")]).expect("config");
    let creds = c.relays[0].client.credentials.clone().expect("credentials");
    assert_eq!(creds.secret, Secret::Password("from-env".into()));

    let doc = format!("{RELAY}username = \"me\"\noauth2_token_env = \"TOKEN\"\n");
    let c = parse_env(&doc, &[("TOKEN", "ya29.x")]).expect("config");
    let creds = c.relays[0].client.credentials.clone().expect("credentials");
    assert_eq!(creds.secret, Secret::OAuth2Token("ya29.x".into()));
    assert_eq!(creds.mechanism, None);
}

#[test]
fn a_missing_secret_variable_names_the_field() {
    let doc = format!("{RELAY}username = \"me\"\npassword_env = \"PRIMARY_SMTP_PASSWORD\"\n");
    let e = parse(&doc).expect_err("unset variable");
    assert_eq!(e.field, "relays[0].password_env");
    assert!(e.message.contains("PRIMARY_SMTP_PASSWORD"), "{e}");
    let e = parse_env(&doc, &[("PRIMARY_SMTP_PASSWORD", "")]).expect_err("empty variable");
    assert_eq!(e.field, "relays[0].password_env");

    let doc = format!("{RELAY}username = \"me\"\noauth2_token_env = \"TOKEN\"\n");
    assert_eq!(
        parse(&doc).expect_err("unset").field,
        "relays[0].oauth2_token_env"
    );
}

#[test]
fn environment_overrides() {
    let keys = [
        "0123456789abcdef",
        "fedcba9876543210",
        "from-named-variable-1",
    ];
    let doc = format!(
        "[server]\nhttp_listen = \"127.0.0.1:1\"\n[store]\nurl = \"sqlite://file.db\"\n\
         [auth]\napi_keys = [\"{}\"]\napi_keys_env = \"MY_KEYS\"\n",
        keys[0]
    );
    let c = parse_env(
        &doc,
        &[
            ("HERALD_HTTP_LISTEN", "0.0.0.0:8443"),
            ("HERALD_STORE_URL", "postgres://db/herald"),
            ("HERALD_API_KEYS", &format!(" {} ,, ", keys[1])),
            ("MY_KEYS", keys[2]),
        ],
    )
    .expect("config");
    assert_eq!(c.server.http_listen, "0.0.0.0:8443".parse().expect("addr"));
    assert_eq!(c.store.url, "postgres://db/herald");
    assert_eq!(c.auth.api_keys.len(), 3);
    for key in keys {
        assert!(c.auth.api_keys.iter().any(|k| k.matches(key)), "{key}");
    }

    // Empty overrides mean "use the file".
    let c = parse_env(&doc, &[("HERALD_STORE_URL", ""), ("MY_KEYS", "")]).expect("config");
    assert_eq!(c.store.url, "sqlite://file.db");
    assert_eq!(c.auth.api_keys.len(), 1);

    // api_keys_env naming HERALD_API_KEYS reads it once.
    let c = parse_env(
        "[auth]\napi_keys_env = \"HERALD_API_KEYS\"\n",
        &[("HERALD_API_KEYS", "0123456789abcdef,fedcba9876543210")],
    )
    .expect("config");
    assert_eq!(c.auth.api_keys.len(), 2);

    // Bad overrides name the variable.
    let e = parse_env("", &[("HERALD_HTTP_LISTEN", "localhost")]).expect_err("bad");
    assert_eq!(e.field, "HERALD_HTTP_LISTEN");
    let e = parse_env("", &[("HERALD_STORE_URL", "redis://x:pw@y")]).expect_err("bad");
    assert_eq!(e.field, "HERALD_STORE_URL");
    assert!(!e.to_string().contains("pw@"), "{e}");
    let e = parse_env("", &[("HERALD_API_KEYS", "0123456789abcdef,tooshort")]).expect_err("bad");
    assert_eq!(e.field, "HERALD_API_KEYS[1]");
    assert!(!e.to_string().contains("tooshort"), "{e}");
}

#[test]
fn debug_and_errors_never_show_secrets() {
    let doc = format!(
        "[store]\nurl = \"postgres://herald:store-secret-1@db/herald\"\n\
         [auth]\napi_keys = [\"api-key-secret-0123456789\"]\n\
         {RELAY}username = \"me\"\npassword = \"relay-secret-2\"\n\
         [[relays]]\nname = \"backup\"\nhost = \"h\"\nusername = \"me\"\noauth2_token_env = \"TOKEN\"\n"
    );
    let c = parse_env(&doc, &[("TOKEN", "token-secret-3")]).expect("config");
    let shown = format!("{c:?} {c:#?}");
    for secret in [
        "store-secret-1",
        "api-key-secret",
        "relay-secret-2",
        "token-secret-3",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(shown.contains("key: \"***\""), "{shown}");
    assert!(shown.contains("me"), "usernames are not secret");

    // Errors about secret fields do not quote them either.
    for (doc, secret) in [
        (
            format!("{RELAY}username = \"u\"\npassword = 987654321\n"),
            "987654321",
        ),
        (
            "[auth]\napi_keys = \"api-key-secret-0123456789\"\n".to_owned(),
            "api-key-secret",
        ),
        (
            "[auth]\napi_keys = [\"0123456789abcdef\", 1234567890123456789]\n".to_owned(),
            "1234567890123456789",
        ),
        (
            "[auth]\napi_keys = [\"short-secret\"]\n".to_owned(),
            "short-secret",
        ),
        ("[store]\nurl = 42424242\n".to_owned(), "42424242"),
        (
            "store = \"postgres://u:pw-secret-4@h/d\"\n".to_owned(),
            "pw-secret-4",
        ),
        (
            "auth = \"api-key-secret-0123456789\"\n".to_owned(),
            "api-key-secret",
        ),
        (
            "[[auth.keys]]\nname = \"a\"\nkey = 123456789012345678\nscopes = [\"send\"]\n"
                .to_owned(),
            "123456789012345678",
        ),
        (
            "[[auth.keys]]\nname = \"a\"\nkey = \"short-secret\"\nscopes = [\"send\"]\n".to_owned(),
            "short-secret",
        ),
    ] {
        let e = err(&doc);
        assert!(!format!("{e} {e:?}").contains(secret), "{e}");
    }
}

#[test]
fn api_keys_match_in_constant_time_by_digest() {
    let key = ApiKey::new("0123456789abcdef").expect("key");
    assert!(key.matches("0123456789abcdef"));
    assert!(!key.matches("0123456789abcdeF"));
    assert!(!key.matches("0123456789abcdef0"));
    assert!(!key.matches(""));
    assert_eq!(
        format!("{key:?}"),
        "ApiKey { name: \"default\", scopes: [send, read, manage, admin], key: \"***\" }"
    );
    assert_eq!(
        ApiKey::new("0123456789abcde").expect_err("short").field,
        "api_key"
    );
    assert!(ApiKey::new("0123456789abcdé!").is_err());
}

#[test]
fn ca_file_must_exist_and_parse() {
    let garbage = TempFile::new(b"this is not a certificate\n");
    let e = err(&format!(
        "{RELAY}ca_file = {:?}\n",
        garbage.0.display().to_string()
    ));
    assert_eq!(e.field, "relays[0].ca_file");

    let cert = rcgen::generate_simple_self_signed(vec!["relay.test".to_owned()]).expect("cert");
    let pem = TempFile::new(cert.cert.pem().as_bytes());
    let c = ok(&format!(
        "{RELAY}ca_file = {:?}\n",
        pem.0.display().to_string()
    ));
    assert_eq!(c.relays.len(), 1);
}

#[test]
fn load_reads_a_file_or_says_why_not() {
    let e = Config::load(std::path::Path::new("/nonexistent/herald.toml")).expect_err("missing");
    assert_eq!(e.field, "config");
    assert!(
        e.message
            .starts_with("cannot read /nonexistent/herald.toml"),
        "{e}"
    );

    let file = TempFile::new(b"[delivery]\nconcurrency = 2\n");
    assert_eq!(
        Config::load(&file.0).expect("config").delivery.concurrency,
        2
    );
}

#[test]
fn named_keys_carry_their_scopes() {
    use crate::config::{Scope, Scopes};

    let doc = "[auth]\napi_keys = [\"plain-key-0123456789\"]\n\
               [[auth.keys]]\nname = \"shop\"\nkey = \"shop-key-0123456789\"\nscopes = [\"send\"]\n\
               [[auth.keys]]\nname = \"ops\"\nkey_env = \"OPS_KEY\"\nscopes = [\"read\", \"manage\"]\n";
    let c = parse_env(doc, &[("OPS_KEY", "ops-key-0123456789")]).expect("config");
    let keys: Vec<(&str, Scopes)> = c
        .auth
        .api_keys
        .iter()
        .map(|k| (k.name(), k.scopes()))
        .collect();
    assert_eq!(
        keys,
        [
            ("shop", Scopes::of([Scope::Send])),
            ("ops", Scopes::of([Scope::Read, Scope::Manage])),
            ("auth.api_keys[0]", Scopes::ALL),
        ]
    );
    assert!(c.auth.api_keys[1].matches("ops-key-0123456789"));
    let ops = c.auth.api_keys[1].scopes();
    assert!(ops.allows(Scope::Read) && ops.allows(Scope::Manage));
    assert!(!ops.allows(Scope::Send) && !ops.allows(Scope::Admin));
    let admin = Scopes::of([Scope::Admin]);
    assert!(Scope::ALL.into_iter().all(|s| admin.allows(s)));
}

#[test]
fn named_keys_are_checked_field_by_field() {
    let entry = |body: &str| format!("[[auth.keys]]\nname = \"k\"\n{body}\n");
    for (doc, field, message) in [
        (
            entry("key = \"k-key-0123456789ab\"\nscopes = [\"write\"]"),
            "auth.keys[0].scopes[0]",
            "unknown scope \"write\"",
        ),
        (
            entry("key = \"k-key-0123456789ab\"\nscopes = []"),
            "auth.keys[0].scopes",
            "at least one",
        ),
        (
            entry("key = \"k-key-0123456789ab\"\nkey_env = \"X\"\nscopes = [\"send\"]"),
            "auth.keys[0].key",
            "exactly one",
        ),
        (
            entry("scopes = [\"send\"]"),
            "auth.keys[0].key",
            "exactly one",
        ),
        (
            entry("key_env = \"UNSET_VARIABLE\"\nscopes = [\"send\"]"),
            "auth.keys[0].key_env",
            "UNSET_VARIABLE is not set",
        ),
        (
            format!(
                "{}{}",
                entry("key = \"k-key-0123456789ab\"\nscopes = [\"send\"]"),
                entry("key = \"k-key-0123456789cd\"\nscopes = [\"read\"]")
            ),
            "auth.keys[1].name",
            "names another key",
        ),
        (
            "[[auth.keys]]\nname = \"Has Space\"\nkey = \"k-key-0123456789ab\"\nscopes = [\"send\"]\n"
                .to_owned(),
            "auth.keys[0].name",
            "lower-case",
        ),
    ] {
        let e = err(&doc);
        assert_eq!(e.field, field, "{doc}: {e}");
        assert!(e.message.contains(message), "{doc}: {e}");
    }
}
