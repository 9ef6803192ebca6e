//! SMTP AUTH (RFC 4954) with PLAIN, LOGIN and XOAUTH2. The exchanges carry
//! secrets, so nothing here is logged beyond the mechanism's name.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::config::{Credentials, Mechanism, Secret};
use crate::connection::{Connection, Ctx};
use crate::error::{Error, ErrorKind, Phase};

/// Picks a mechanism both sides support and authenticates with it.
pub(crate) async fn authenticate(
    conn: &mut Connection,
    credentials: &Credentials,
    ctx: &Ctx,
) -> Result<Mechanism, Error> {
    let offered = &conn.caps.auth;
    let mechanism = choose(credentials, offered).ok_or_else(|| {
        let offered: Vec<_> = offered.iter().map(|m| m.as_str()).collect();
        Error::new(
            ErrorKind::AuthUnavailable,
            Phase::Auth,
            if offered.is_empty() {
                "the server offers no AUTH mechanism herald supports".to_owned()
            } else {
                format!(
                    "no usable AUTH mechanism for these credentials (server offers {})",
                    offered.join(" ")
                )
            },
        )
    })?;
    tracing::debug!(mechanism = mechanism.as_str(), "smtp auth");
    let timeout = conn.config.timeouts.command;
    let user = credentials.username.as_str();
    let reply = match (&credentials.secret, mechanism) {
        (Secret::Password(password), Mechanism::Plain) => {
            let token = STANDARD.encode(format!("\0{user}\0{password}"));
            let line = format!("AUTH PLAIN {token}\r\n");
            conn.command(line.as_bytes(), Phase::Auth, timeout, ctx)
                .await?
        }
        (Secret::Password(password), Mechanism::Login) => {
            let mut reply = conn
                .command(b"AUTH LOGIN\r\n", Phase::Auth, timeout, ctx)
                .await?;
            for answer in [user, password.as_str()] {
                if reply.code() != 334 {
                    break;
                }
                let line = format!("{}\r\n", STANDARD.encode(answer));
                reply = conn
                    .command(line.as_bytes(), Phase::Auth, timeout, ctx)
                    .await?;
            }
            reply
        }
        (Secret::OAuth2Token(token), Mechanism::Xoauth2) => {
            let payload = STANDARD.encode(format!("user={user}\x01auth=Bearer {token}\x01\x01"));
            let line = format!("AUTH XOAUTH2 {payload}\r\n");
            let reply = conn
                .command(line.as_bytes(), Phase::Auth, timeout, ctx)
                .await?;
            if reply.code() == 334 {
                // The server sent a JSON error as a challenge; an empty
                // answer makes it finish with the real failure code.
                let detail = STANDARD
                    .decode(reply.text().trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .unwrap_or_default();
                let last = conn.command(b"\r\n", Phase::Auth, timeout, ctx).await?;
                tracing::debug!(detail = %detail, "xoauth2 refused");
                last
            } else {
                reply
            }
        }
        _ => {
            return Err(Error::new(
                ErrorKind::AuthUnavailable,
                Phase::Auth,
                format!("{} does not fit these credentials", mechanism.as_str()),
            ));
        }
    };
    if reply.code() == 235 {
        Ok(mechanism)
    } else {
        Err(conn.fail(Error::rejected(Phase::Auth, reply)))
    }
}

/// The configured mechanism if the server offers it; otherwise, for a
/// password, PLAIN before LOGIN; for a token, XOAUTH2.
fn choose(credentials: &Credentials, offered: &[Mechanism]) -> Option<Mechanism> {
    if let Some(forced) = credentials.mechanism {
        return offered.contains(&forced).then_some(forced);
    }
    let preference: &[Mechanism] = match credentials.secret {
        Secret::Password(_) => &[Mechanism::Plain, Mechanism::Login],
        Secret::OAuth2Token(_) => &[Mechanism::Xoauth2],
    };
    preference.iter().copied().find(|m| offered.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanism_choice_prefers_plain_and_respects_configuration() {
        let pw = Credentials::password("u", "p");
        assert_eq!(
            choose(&pw, &[Mechanism::Login, Mechanism::Plain]),
            Some(Mechanism::Plain)
        );
        assert_eq!(choose(&pw, &[Mechanism::Login]), Some(Mechanism::Login));
        assert_eq!(choose(&pw, &[Mechanism::Xoauth2]), None);
        let forced = Credentials {
            mechanism: Some(Mechanism::Login),
            ..pw
        };
        assert_eq!(
            choose(&forced, &[Mechanism::Plain, Mechanism::Login]),
            Some(Mechanism::Login)
        );
        assert_eq!(choose(&forced, &[Mechanism::Plain]), None);
        let token = Credentials::oauth2("u", "t");
        assert_eq!(
            choose(&token, &[Mechanism::Plain, Mechanism::Xoauth2]),
            Some(Mechanism::Xoauth2)
        );
        assert_eq!(choose(&token, &[Mechanism::Plain]), None);
    }
}
