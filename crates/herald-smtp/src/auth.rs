//! SMTP AUTH (RFC 4954) with PLAIN, LOGIN and XOAUTH2. The exchanges carry
//! secrets, so nothing here is logged beyond the mechanism's name. An
//! XOAUTH2 token from a [`TokenSource`] that the server refuses is handed
//! back to the source and AUTH is tried once more with a new one.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::config::{Credentials, Mechanism, Secret};
use crate::connection::{Connection, Ctx, guard};
use crate::error::{Error, ErrorKind, Phase};
use crate::reply::Reply;
use crate::token::TokenSource;

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
        (Secret::OAuth2Token(token), Mechanism::Xoauth2) => xoauth2(conn, user, token, ctx).await?,
        (Secret::OAuth2Source(source), Mechanism::Xoauth2) => {
            let token = fetch(source.as_ref(), timeout, ctx).await?;
            let reply = xoauth2(conn, user, &token, ctx).await?;
            if !token_refused(&reply) {
                reply
            } else {
                // Maybe expired: a new token, and one more try on this
                // session if the server kept it open. A fresh token that
                // is refused too is not the token's age; it is not
                // refreshed again (no loop).
                source.invalidate(&token);
                if conn.broken {
                    reply
                } else {
                    tracing::info!("xoauth2 token refused; trying once more with a new one");
                    let token = fetch(source.as_ref(), timeout, ctx).await?;
                    xoauth2(conn, user, &token, ctx).await?
                }
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

/// One AUTH XOAUTH2 exchange with `token`; the server's final reply.
async fn xoauth2(
    conn: &mut Connection,
    user: &str,
    token: &str,
    ctx: &Ctx,
) -> Result<Reply, Error> {
    let timeout = conn.config.timeouts.command;
    let payload = STANDARD.encode(format!("user={user}\x01auth=Bearer {token}\x01\x01"));
    let line = format!("AUTH XOAUTH2 {payload}\r\n");
    let reply = conn
        .command(line.as_bytes(), Phase::Auth, timeout, ctx)
        .await?;
    if reply.code() != 334 {
        return Ok(reply);
    }
    // The server sent a JSON error as a challenge; an empty answer makes
    // it finish with the real failure code.
    let detail = STANDARD
        .decode(reply.text().trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    let last = conn.command(b"\r\n", Phase::Auth, timeout, ctx).await?;
    tracing::debug!(detail = %detail, "xoauth2 refused");
    Ok(last)
}

/// Whether the server refused the token itself (a 5xx such as Gmail's
/// `535 5.7.8` or Microsoft's `535 5.7.3`), which may mean it expired; a
/// 4xx is the server's passing trouble and says nothing of the token.
fn token_refused(reply: &Reply) -> bool {
    reply.is_permanent()
}

/// The source's current token, within the command timeout and the
/// caller's deadline and cancellation.
async fn fetch(
    source: &dyn TokenSource,
    timeout: std::time::Duration,
    ctx: &Ctx,
) -> Result<String, Error> {
    guard(Phase::Auth, timeout, ctx, async {
        source.token().await.map_err(|e| Error::token(&e))
    })
    .await
}

/// The configured mechanism if the server offers it; otherwise, for a
/// password, PLAIN before LOGIN; for a token, XOAUTH2.
fn choose(credentials: &Credentials, offered: &[Mechanism]) -> Option<Mechanism> {
    if let Some(forced) = credentials.mechanism {
        return offered.contains(&forced).then_some(forced);
    }
    let preference: &[Mechanism] = match credentials.secret {
        Secret::Password(_) => &[Mechanism::Plain, Mechanism::Login],
        Secret::OAuth2Token(_) | Secret::OAuth2Source(_) => &[Mechanism::Xoauth2],
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
