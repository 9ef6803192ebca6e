//! SMTP AUTH (RFC 4954) for the test server: PLAIN, LOGIN and XOAUTH2, in
//! both the initial-response and the 334-continuation forms, so a client's
//! every way of authenticating can be exercised and its failures scripted.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::{Session, Verdict, line_text};
use crate::config::{Credentials, Phase};
use crate::wire::Flow;

/// Mechanisms this server can carry out; `auth_mechanisms` may advertise
/// others (to test a client's choice), but they are refused with 504.
const SUPPORTED: [&str; 3] = ["PLAIN", "LOGIN", "XOAUTH2"];

/// The error Gmail sends for a bad XOAUTH2 token, base64-encoded in a 334.
const XOAUTH2_ERROR: &str =
    r#"{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}"#;

/// How an exchange ended, before the final reply.
enum Outcome {
    Success(String),
    BadCredentials,
    Cancelled,
    BadBase64,
}

/// Decodes a client response; `=` is the RFC 4954 spelling of "empty".
fn decode(response: &str) -> Option<Vec<u8>> {
    if response == "=" {
        return Some(Vec::new());
    }
    BASE64.decode(response.trim()).ok()
}

/// Checks a PLAIN message `authzid NUL authcid NUL passwd` (RFC 4616).
fn check_plain(message: &[u8], creds: &Credentials) -> Option<String> {
    let mut parts = message.split(|&b| b == 0);
    let (_authzid, user, pass) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    (user == creds.username.as_bytes() && pass == creds.password.as_bytes())
        .then(|| creds.username.clone())
}

/// Splits an XOAUTH2 message `user=U ^A auth=Bearer T ^A ^A` into (U, T).
fn parse_xoauth2(message: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(message).ok()?;
    let body = text.strip_suffix("\x01\x01")?;
    let (user, auth) = body.split_once('\x01')?;
    let user = user.strip_prefix("user=")?;
    let token = auth.strip_prefix("auth=Bearer ")?;
    Some((user.to_owned(), token.to_owned()))
}

/// Whether `token` is the fixed token or one the book holds unexpired
/// (the book counts every token it is asked about).
fn token_valid(creds: &Credentials, token: &str) -> bool {
    if creds.xoauth2_token.as_deref() == Some(token) {
        return true;
    }
    creds
        .xoauth2_tokens
        .as_ref()
        .is_some_and(|book| book.check(token))
}

impl Session {
    pub(super) async fn auth(&mut self, line: &str, initial: String) -> Flow {
        let shared = Arc::clone(&self.shared);
        let cfg = &shared.config;
        let Some(creds) = &cfg.auth else {
            return self.reply(502, "5.5.1 AUTH not offered").await;
        };
        if !self.ehlo_mode {
            return self.reply(503, "5.5.1 send EHLO first").await;
        }
        if self.auth_user.is_some() {
            return self.reply(503, "5.5.1 already authenticated").await;
        }
        if self.txn.is_some() {
            return self
                .reply(503, "5.5.1 AUTH not allowed during a mail transaction")
                .await;
        }
        if cfg.require_tls && !self.tls {
            return self
                .reply(530, "5.7.0 must issue a STARTTLS command first")
                .await;
        }
        if !self.auth_advertised() {
            return self
                .reply(
                    538,
                    "5.7.11 encryption required for requested authentication mechanism",
                )
                .await;
        }
        let mechanism = line
            .split_ascii_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_ascii_uppercase();
        if !SUPPORTED.contains(&mechanism.as_str())
            || !cfg.effective_auth_mechanisms().contains(&mechanism)
        {
            return self
                .reply(504, "5.5.4 unrecognized authentication type")
                .await;
        }

        let outcome = match mechanism.as_str() {
            "PLAIN" => self.plain(initial, creds).await?,
            "LOGIN" => self.login(initial, creds).await?,
            _ => self.xoauth2(initial, creds).await?,
        };
        let (success, code, text) = match outcome {
            Outcome::Cancelled => return self.reply(501, "5.0.0 authentication cancelled").await,
            Outcome::BadBase64 => return self.reply(501, "5.5.2 invalid base64 data").await,
            Outcome::Success(user) => (Some(user), 235, "2.7.0 authentication successful"),
            Outcome::BadCredentials => (None, 535, "5.7.8 authentication credentials invalid"),
        };
        let (code, text) = match self.apply(self.rule(Phase::Auth)).await? {
            Verdict::Normal => (code, text.to_owned()),
            Verdict::Custom(code, text) => (code, text),
        };
        if code < 400
            && let Some(user) = success
        {
            self.auth_user = Some(user.clone());
            self.shared.update_session(self.id, |log| {
                log.authenticated = Some(user);
                log.auth_mechanism = Some(mechanism);
            });
        }
        self.reply(code, &text).await
    }

    /// Sends a 334 challenge and reads the client's one-line answer.
    async fn challenge(&mut self, text: &str) -> Flow<String> {
        self.pace().await?;
        self.wire.push_reply(334, false, text);
        let raw = self.wire.read_line(None).await?;
        Ok(line_text(&raw).trim().to_owned())
    }

    async fn plain(&mut self, initial: String, creds: &Credentials) -> Flow<Outcome> {
        let response = if initial.is_empty() {
            self.challenge("").await?
        } else {
            initial
        };
        if response == "*" {
            return Ok(Outcome::Cancelled);
        }
        let Some(message) = decode(&response) else {
            return Ok(Outcome::BadBase64);
        };
        Ok(match check_plain(&message, creds) {
            Some(user) => Outcome::Success(user),
            None => Outcome::BadCredentials,
        })
    }

    async fn login(&mut self, initial: String, creds: &Credentials) -> Flow<Outcome> {
        // "Username:" and "Password:", base64-encoded, as clients expect.
        let user = if initial.is_empty() {
            self.challenge("VXNlcm5hbWU6").await?
        } else {
            initial
        };
        if user == "*" {
            return Ok(Outcome::Cancelled);
        }
        let Some(user) = decode(&user) else {
            return Ok(Outcome::BadBase64);
        };
        let pass = self.challenge("UGFzc3dvcmQ6").await?;
        if pass == "*" {
            return Ok(Outcome::Cancelled);
        }
        let Some(pass) = decode(&pass) else {
            return Ok(Outcome::BadBase64);
        };
        Ok(
            if user == creds.username.as_bytes() && pass == creds.password.as_bytes() {
                Outcome::Success(creds.username.clone())
            } else {
                Outcome::BadCredentials
            },
        )
    }

    async fn xoauth2(&mut self, initial: String, creds: &Credentials) -> Flow<Outcome> {
        let response = if initial.is_empty() {
            self.challenge("").await?
        } else {
            initial
        };
        if response == "*" {
            return Ok(Outcome::Cancelled);
        }
        let Some(message) = decode(&response) else {
            return Ok(Outcome::BadBase64);
        };
        if let Some((user, token)) = parse_xoauth2(&message)
            && user == creds.username
            && token_valid(creds, &token)
        {
            return Ok(Outcome::Success(user));
        }
        // The XOAUTH2 failure dance: an error challenge, an empty answer,
        // then the 535.
        self.challenge(&BASE64.encode(XOAUTH2_ERROR)).await?;
        Ok(Outcome::BadCredentials)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_message_checks_user_and_password() {
        let creds = Credentials::new("bob", "s3cret");
        assert_eq!(check_plain(b"\0bob\0s3cret", &creds), Some("bob".into()));
        assert_eq!(
            check_plain(b"admin\0bob\0s3cret", &creds),
            Some("bob".into())
        );
        assert_eq!(check_plain(b"\0bob\0wrong", &creds), None);
        assert_eq!(check_plain(b"bob\0s3cret", &creds), None);
        assert_eq!(check_plain(b"\0bob\0s3cret\0x", &creds), None);
    }

    #[test]
    fn xoauth2_message_splits() {
        assert_eq!(
            parse_xoauth2(b"user=bob\x01auth=Bearer tok\x01\x01"),
            Some(("bob".into(), "tok".into()))
        );
        assert_eq!(parse_xoauth2(b"user=bob\x01auth=Bearer tok\x01"), None);
        assert_eq!(parse_xoauth2(b"user=bob\x01auth=Basic tok\x01\x01"), None);
    }

    #[test]
    fn decode_accepts_equals_as_empty() {
        assert_eq!(decode("="), Some(Vec::new()));
        assert_eq!(decode("Ym9i"), Some(b"bob".to_vec()));
        assert_eq!(decode("!!"), None);
    }
}
