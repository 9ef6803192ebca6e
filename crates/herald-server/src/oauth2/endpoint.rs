//! One token request (RFC 6749 §6): a form-encoded POST of the refresh
//! token to the token endpoint, over HTTPS (plain HTTP only to the local
//! machine, for tests), answered by JSON with `access_token` and
//! `expires_in`, or with `error` and `error_description`. hyper's HTTP/1
//! client on one connection per request: a refresh happens about once an
//! hour, so nothing is pooled.

use std::pin::pin;
use std::time::Duration;

use herald_smtp::TokenError;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;

use super::OAuth2Config;

/// The largest answer read; a token answer is a few kilobytes at most.
const MAX_ANSWER: usize = 64 * 1024;

/// The lifetime assumed when the answer gives none (RFC 6749 makes
/// `expires_in` optional; providers give it).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// A new access token and how long it lives.
pub(super) struct Grant {
    pub(super) access_token: String,
    pub(super) lifetime: Duration,
}

/// Where a token URL points.
struct Target {
    https: bool,
    /// The host as connected to (IPv6 without brackets).
    host: String,
    port: u16,
    /// `host[:port]` as the Host header carries it.
    authority: String,
    path: String,
}

/// Checks a `token_url`: `https://host[:port]/path`, or `http://` to
/// 127.0.0.1, ::1 or localhost only (a local endpoint, in tests).
pub fn check_token_url(url: &str) -> Result<(), String> {
    target(url).map(|_| ())
}

fn target(url: &str) -> Result<Target, String> {
    let uri: Uri = url
        .trim()
        .parse()
        .map_err(|_| format!("{url:?} is not a URL"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("{url:?} must be an https:// URL")),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{url:?} names no host"))?;
    if authority.as_str().contains('@') {
        return Err("must not carry a user name or password".to_owned());
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    if host.is_empty() {
        return Err(format!("{url:?} names no host"));
    }
    if !https && !matches!(host.as_str(), "127.0.0.1" | "::1" | "localhost") {
        return Err(format!(
            "{url:?} must be https:// (plain http:// only to 127.0.0.1, ::1 or localhost)"
        ));
    }
    Ok(Target {
        https,
        port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
        host,
        authority: authority.as_str().to_owned(),
        path: uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
    })
}

/// Exchanges the refresh token for an access token, within `timeout`.
pub(super) async fn request(config: &OAuth2Config, timeout: Duration) -> Result<Grant, TokenError> {
    let target = target(&config.token_url).map_err(TokenError::permanent)?;
    let shown = format!(
        "{}://{}",
        if target.https { "https" } else { "http" },
        target.authority
    );
    let answer = tokio::time::timeout(timeout, exchange(&target, form(config))).await;
    match answer {
        Err(_) => Err(TokenError::transient(format!(
            "the token endpoint {shown} did not answer within {}s",
            timeout.as_secs()
        ))),
        Ok(Err(fault)) => Err(TokenError::transient(format!(
            "the token endpoint {shown}: {}",
            redact(&fault, config)
        ))),
        Ok(Ok((status, body))) => interpret(status, &body, config, &shown),
    }
}

/// The form body of a refresh_token grant.
fn form(config: &OAuth2Config) -> String {
    let mut pairs = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", config.refresh_token.as_str()),
        ("client_id", config.client_id.as_str()),
    ];
    if let Some(secret) = &config.client_secret {
        pairs.push(("client_secret", secret));
    }
    if let Some(scope) = &config.scope {
        pairs.push(("scope", scope));
    }
    let mut body = String::new();
    for (name, value) in pairs {
        if !body.is_empty() {
            body.push('&');
        }
        encode_into(&mut body, name);
        body.push('=');
        encode_into(&mut body, value);
    }
    body
}

/// `application/x-www-form-urlencoded` encoding of one name or value.
fn encode_into(out: &mut String, text: &str) {
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
}

async fn exchange(target: &Target, body: String) -> Result<(StatusCode, Bytes), String> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    // Best effort: a request is one write either way.
    let _ = tcp.set_nodelay(true);
    let request = Request::builder()
        .method(Method::POST)
        .uri(target.path.as_str())
        .header(HOST, target.authority.as_str())
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(ACCEPT, "application/json")
        .header(USER_AGENT, concat!("herald/", env!("CARGO_PKG_VERSION")))
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    if target.https {
        let tls = herald_smtp::system_tls_config(None).map_err(|e| e.to_string())?;
        let name = rustls::pki_types::ServerName::try_from(target.host.clone())
            .map_err(|e| format!("bad server name: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        send(TokioIo::new(stream), request).await
    } else {
        send(TokioIo::new(tcp), request).await
    }
}

/// Sends `request` on a fresh HTTP/1 connection over `io` and reads the
/// whole answer, driving the connection in the same task (nothing is left
/// running if the caller gives up).
async fn send<T>(io: T, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let mut conn = pin!(conn);
    let mut exchange = pin!(async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?
            .to_bytes();
        Ok::<_, String>((status, body))
    });
    tokio::select! {
        answer = &mut exchange => answer,
        closed = &mut conn => match closed {
            Err(e) => Err(format!("HTTP: {e}")),
            // The server closed after answering: the answer is buffered.
            Ok(()) => exchange.await,
        },
    }
}

#[derive(Deserialize)]
struct Success {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    /// A number, or (some older servers) a string of digits.
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Refusal {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// The endpoint's answer as a grant or a clear error.
fn interpret(
    status: StatusCode,
    body: &[u8],
    config: &OAuth2Config,
    shown: &str,
) -> Result<Grant, TokenError> {
    // 5xx and 429 pass; any other refusal needs the operator.
    let passing = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
    let fail = |detail: String| {
        let detail = redact(&detail, config);
        if passing {
            TokenError::transient(detail)
        } else {
            TokenError::permanent(detail)
        }
    };
    if !status.is_success() {
        return Err(match serde_json::from_slice::<Refusal>(body) {
            Ok(refusal) => fail(format!(
                "the token endpoint {shown} refused the refresh (HTTP {}): {}{}",
                status.as_u16(),
                printable(&refusal.error),
                refusal
                    .error_description
                    .map(|d| format!(" ({})", printable(&d)))
                    .unwrap_or_default()
            )),
            Err(_) => fail(format!(
                "the token endpoint {shown} answered HTTP {}",
                status.as_u16()
            )),
        });
    }
    let success: Success = serde_json::from_slice(body).map_err(|_| {
        TokenError::transient(format!(
            "the token endpoint {shown} answered HTTP {} without an access_token in JSON",
            status.as_u16()
        ))
    })?;
    if success.access_token.is_empty() {
        return Err(TokenError::transient(format!(
            "the token endpoint {shown} answered an empty access_token"
        )));
    }
    if let Some(kind) = &success.token_type
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(TokenError::permanent(format!(
            "the token endpoint {shown} issued a {:?} token; XOAUTH2 needs a bearer token",
            printable(kind)
        )));
    }
    let seconds = match &success.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    Ok(Grant {
        access_token: success.access_token,
        lifetime: seconds
            .filter(|s| *s > 0)
            .map_or(DEFAULT_LIFETIME, Duration::from_secs),
    })
}

/// At most 200 printable characters of a server's text.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// `text` with every secret of `config` replaced by `***`, in case a
/// server or an I/O error echoes one.
fn redact(text: &str, config: &OAuth2Config) -> String {
    let mut out = text.to_owned();
    for secret in [Some(&config.refresh_token), config.client_secret.as_ref()]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
    {
        out = out.replace(secret.as_str(), "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OAuth2Config {
        OAuth2Config {
            token_url: "https://oauth2.googleapis.com/token".into(),
            client_id: "id 1".into(),
            client_secret: Some("s&cret".into()),
            refresh_token: "1//rt=x".into(),
            scope: Some("https://mail.google.com/".into()),
            timeout: super::super::DEFAULT_REQUEST_TIMEOUT,
            refresh_margin: super::super::DEFAULT_REFRESH_MARGIN,
        }
    }

    #[test]
    fn the_form_is_url_encoded() {
        assert_eq!(
            form(&config()),
            "grant_type=refresh_token&refresh_token=1%2F%2Frt%3Dx&client_id=id+1\
             &client_secret=s%26cret&scope=https%3A%2F%2Fmail.google.com%2F"
        );
    }

    #[test]
    fn token_urls_must_be_https_unless_local() {
        for good in [
            "https://oauth2.googleapis.com/token",
            "https://login.microsoftonline.com/common/oauth2/v2.0/token",
            "http://127.0.0.1:8080/token",
            "http://localhost/token",
            "http://[::1]:9/token",
        ] {
            assert!(check_token_url(good).is_ok(), "{good}");
        }
        for bad in [
            "http://oauth2.googleapis.com/token",
            "ftp://example.com/token",
            "oauth2.googleapis.com/token",
            "https://user:pw@example.com/token",
            "",
        ] {
            assert!(check_token_url(bad).is_err(), "{bad}");
        }
        let t = target("https://example.com/a?b=c").unwrap();
        assert_eq!((t.port, t.path.as_str()), (443, "/a?b=c"));
    }

    #[test]
    fn answers_become_grants_or_clear_errors() {
        let c = config();
        let ok = interpret(
            StatusCode::OK,
            br#"{"access_token":"ya29.a","expires_in":3599,"token_type":"Bearer"}"#,
            &c,
            "x",
        )
        .unwrap();
        assert_eq!(ok.access_token, "ya29.a");
        assert_eq!(ok.lifetime, Duration::from_secs(3599));
        let text = interpret(
            StatusCode::OK,
            br#"{"access_token":"t","expires_in":"2"}"#,
            &c,
            "x",
        )
        .unwrap();
        assert_eq!(text.lifetime, Duration::from_secs(2));

        let refused = interpret(
            StatusCode::BAD_REQUEST,
            br#"{"error":"invalid_grant","error_description":"Token 1//rt=x has been expired or revoked."}"#,
            &c,
            "https://oauth2.googleapis.com",
        )
        .err()
        .unwrap();
        assert!(!refused.is_transient());
        let shown = refused.to_string();
        assert!(shown.contains("invalid_grant"), "{shown}");
        assert!(shown.contains("HTTP 400"), "{shown}");
        assert!(!shown.contains("1//rt=x"), "a secret leaked: {shown}");

        let busy = interpret(StatusCode::SERVICE_UNAVAILABLE, b"<html>", &c, "x")
            .err()
            .unwrap();
        assert!(busy.is_transient());
        let mac = interpret(
            StatusCode::OK,
            br#"{"access_token":"t","token_type":"mac"}"#,
            &c,
            "x",
        );
        assert!(mac.is_err());
    }
}
