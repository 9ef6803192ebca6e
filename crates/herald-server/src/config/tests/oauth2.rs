//! `[relays.oauth2]`: refreshed XOAUTH2 tokens, exactly one secret per
//! relay, errors that name the field, and secrets kept out of sight.

use super::*;

const VARS: [(&str, &str); 2] = [
    ("GMAIL_CLIENT_SECRET", "client-secret-7"),
    ("GMAIL_REFRESH_TOKEN", "1//refresh-secret-8"),
];

fn oauth2(extra: &str) -> String {
    format!(
        "{RELAY}username = \"me@example.com\"\n{extra}\n[relays.oauth2]\n\
         token_url = \"https://oauth2.googleapis.com/token\"\n\
         client_id = \"123.apps.googleusercontent.com\"\n\
         client_secret_env = \"GMAIL_CLIENT_SECRET\"\n\
         refresh_token_env = \"GMAIL_REFRESH_TOKEN\"\n\
         scope = \"https://mail.google.com/\"\n"
    )
}

#[test]
fn an_oauth2_section_gives_a_refreshing_token_source() {
    let c = parse_env(&oauth2(""), &VARS).expect("config");
    let relay = &c.relays[0];
    let creds = relay.client.credentials.clone().expect("credentials");
    assert!(matches!(creds.secret, Secret::OAuth2Source(_)), "{creds:?}");
    let settings = relay.oauth2.as_ref().expect("oauth2 settings");
    assert_eq!(settings.token_url, "https://oauth2.googleapis.com/token");
    assert_eq!(settings.client_id, "123.apps.googleusercontent.com");
    assert_eq!(settings.client_secret.as_deref(), Some("client-secret-7"));
    assert_eq!(settings.refresh_token, "1//refresh-secret-8");
    assert_eq!(settings.scope.as_deref(), Some("https://mail.google.com/"));
    assert_eq!(settings.timeout, Duration::from_secs(15));
    assert_eq!(settings.refresh_margin, Duration::from_secs(60));

    // The request's timeout and the refresh margin may be set.
    let tuned = format!("{}timeout = \"5s\"\nrefresh_margin = \"10m\"\n", oauth2(""));
    let c = parse_env(&tuned, &VARS).expect("config");
    let settings = c.relays[0].oauth2.as_ref().expect("oauth2 settings");
    assert_eq!(
        (settings.timeout, settings.refresh_margin),
        (Duration::from_secs(5), Duration::from_secs(600))
    );
    for key in ["timeout", "refresh_margin"] {
        let zero = format!("{}{key} = \"0s\"\n", oauth2(""));
        let error = parse_env(&zero, &VARS).unwrap_err();
        assert_eq!(error.field, format!("relays[0].oauth2.{key}"), "{error}");
    }

    // xoauth2 may be named; it is implied anyway.
    let c = parse_env(&oauth2("auth_mechanism = \"xoauth2\""), &VARS).expect("config");
    assert_eq!(
        c.relays[0]
            .client
            .credentials
            .as_ref()
            .and_then(|c| c.mechanism),
        Some(Mechanism::Xoauth2)
    );

    // Nothing secret in Debug, anywhere.
    let shown = format!("{c:?} {c:#?}");
    for secret in ["client-secret-7", "refresh-secret-8"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(shown.contains("oauth2.googleapis.com"), "{shown}");
}

#[test]
fn exactly_one_secret_and_the_right_mechanism() {
    for (extra, field) in [
        ("password = \"pw\"", "relays[0].oauth2"),
        ("oauth2_token_env = \"TOKEN\"", "relays[0].oauth2"),
        ("auth_mechanism = \"plain\"", "relays[0].auth_mechanism"),
    ] {
        let e = parse_env(&oauth2(extra), &VARS).expect_err(extra);
        assert_eq!(e.field, field, "{extra}: {e}");
    }
    let e = parse_env(&oauth2("password_env = \"PW\""), &VARS).expect_err("two");
    assert!(e.message.contains("[relays.oauth2]"), "{e}");

    // No username: the section names itself.
    let doc = oauth2("").replace("username = \"me@example.com\"\n", "");
    let e = parse_env(&doc, &VARS).expect_err("no username");
    assert_eq!(
        (e.field.as_str(), e.message.as_str()),
        ("relays[0].oauth2", "needs username")
    );
}

#[test]
fn bad_oauth2_settings_name_their_field() {
    let cases = [
        (
            "token_url = \"https://oauth2.googleapis.com/token\"",
            "token_url = \"http://oauth2.googleapis.com/token\"",
            "relays[0].oauth2.token_url",
        ),
        (
            "client_id = \"123.apps.googleusercontent.com\"",
            "client_id = \" \"",
            "relays[0].oauth2.client_id",
        ),
        (
            "scope = \"https://mail.google.com/\"",
            "scope = \"\"",
            "relays[0].oauth2.scope",
        ),
        (
            "refresh_token_env = \"GMAIL_REFRESH_TOKEN\"",
            "refresh_token_env = \"UNSET_VARIABLE\"",
            "relays[0].oauth2.refresh_token_env",
        ),
        (
            "client_secret_env = \"GMAIL_CLIENT_SECRET\"",
            "client_secret_env = \"UNSET_VARIABLE\"",
            "relays[0].oauth2.client_secret_env",
        ),
    ];
    for (good, bad, field) in cases {
        let doc = oauth2("").replace(good, bad);
        assert_ne!(doc, oauth2(""), "{good}");
        let e = parse_env(&doc, &VARS).expect_err(bad);
        assert_eq!(e.field, field, "{bad}: {e}");
    }
    // Unknown keys and a missing refresh token are refused by name too.
    let doc = oauth2("").replace("scope =", "scopes =");
    assert!(parse_env(&doc, &VARS).is_err());
    let doc = oauth2("").replace("refresh_token_env = \"GMAIL_REFRESH_TOKEN\"\n", "");
    let e = parse_env(&doc, &VARS).expect_err("no refresh token");
    assert!(e.to_string().contains("refresh_token_env"), "{e}");

    // A public client has no secret; a local endpoint may be plain http.
    let doc = oauth2("")
        .replace("client_secret_env = \"GMAIL_CLIENT_SECRET\"\n", "")
        .replace("https://oauth2.googleapis.com", "http://127.0.0.1:8080");
    let c = parse_env(&doc, &VARS).expect("config");
    assert_eq!(
        c.relays[0]
            .oauth2
            .as_ref()
            .and_then(|o| o.client_secret.clone()),
        None
    );
}
