//! One SMTP connection, from banner to close: the RFC 5321 state machine
//! (with STARTTLS per RFC 3207 and PIPELINING per RFC 2920), the points where
//! scripted faults strike, and the records tests assert on.

use std::sync::Arc;

use smtp_proto::Request;
use tokio::net::TcpStream;

use crate::config::{Fault, Phase, TlsMode};
use crate::log::{Closer, CommandRecord};
use crate::server::Shared;
use crate::tls::{self, Conn};
use crate::wire::{Flow, IdleHandle, Stop, Wire};

mod auth;
mod transaction;

use transaction::Txn;

/// What a fault left for the reply to say.
enum Verdict {
    /// Answer as the protocol says.
    Normal,
    /// Answer with this code and text instead.
    Custom(u16, String),
}

pub(crate) struct Session {
    shared: Arc<Shared>,
    id: usize,
    ctl: IdleHandle,
    wire: Wire,
    tls: bool,
    /// EHLO or HELO accepted since the connection (or TLS) started.
    greeted: bool,
    /// The greeting was EHLO, so extensions may be used.
    ehlo_mode: bool,
    /// The banner was a failure: only QUIT is served (RFC 5321 §3.1).
    banner_rejected: bool,
    auth_user: Option<String>,
    txn: Option<Txn>,
    /// Messages accepted on this connection.
    delivered: usize,
}

/// Marks the session closed by the server if its task is dropped (server
/// shutdown) before it could record anything else.
struct CloseGuard {
    shared: Arc<Shared>,
    id: usize,
}

impl Drop for CloseGuard {
    fn drop(&mut self) {
        self.shared.closed(self.id, Closer::Server);
    }
}

/// Serves one accepted connection to its end.
pub(crate) async fn run(shared: Arc<Shared>, id: usize, tcp: TcpStream, ctl: IdleHandle) {
    let _guard = CloseGuard {
        shared: Arc::clone(&shared),
        id,
    };
    let mut session = Session {
        shared: Arc::clone(&shared),
        id,
        ctl,
        wire: Wire::new(Conn::Plain(tcp)),
        tls: false,
        greeted: false,
        ehlo_mode: false,
        banner_rejected: false,
        auth_user: None,
        txn: None,
        delivered: 0,
    };
    let stop = match session.serve().await {
        Ok(never) => match never {},
        Err(stop) => stop,
    };
    let closer = match stop {
        Stop::Client => Closer::Client,
        Stop::Server => Closer::Server,
        Stop::LineTooLong => {
            session
                .wire
                .push_reply(500, false, &session.text("5.5.2 line too long"));
            Closer::Server
        }
        Stop::Io(err) => {
            tracing::debug!(session = id, error = %err, "herald-testkit: connection failed");
            Closer::Client
        }
    };
    session.wire.close().await;
    shared.closed(id, closer);
}

/// The line as text, without its line ending.
fn line_text(raw: &[u8]) -> String {
    let line = raw.strip_suffix(b"\n").unwrap_or(raw);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    String::from_utf8_lossy(line).into_owned()
}

/// Hides an AUTH initial response, which carries the secret.
fn redact(line: &str, verb: &str) -> String {
    let mut words = line.split_ascii_whitespace();
    if verb == "AUTH"
        && let (Some(cmd), Some(mech), Some(_)) = (words.next(), words.next(), words.next())
    {
        return format!("{cmd} {mech} ***");
    }
    line.to_owned()
}

/// Strips a leading enhanced status code (`x.y.z `) from reply text.
fn strip_enhanced(text: &str) -> &str {
    let Some((code, rest)) = text.split_once(' ') else {
        return text;
    };
    let mut parts = code.split('.');
    let class_ok = parts.next().is_some_and(|c| matches!(c, "2" | "4" | "5"));
    let digits_ok = |p: Option<&str>| {
        p.is_some_and(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
    };
    if class_ok && digits_ok(parts.next()) && digits_ok(parts.next()) && parts.next().is_none() {
        rest
    } else {
        text
    }
}

impl Session {
    async fn serve(&mut self) -> Flow<std::convert::Infallible> {
        if self.shared.config.tls == TlsMode::Implicit {
            self.handshake().await?;
        }
        self.banner().await?;
        loop {
            let idle = self.txn.is_none().then_some(&*self.ctl);
            let raw = self.wire.read_line(idle).await?;
            let pipelined = !self.wire.buffered().is_empty();
            self.command(&raw, pipelined).await?;
        }
    }

    /// Reply text as configured: enhanced status codes are dropped when the
    /// extension is turned off, as RFC 2034 requires.
    fn text(&self, text: &str) -> String {
        if self.shared.config.enhanced_status_codes {
            text.to_owned()
        } else {
            strip_enhanced(text).to_owned()
        }
    }

    /// Queues a one-line reply, after the configured slow-server delay.
    async fn reply(&mut self, code: u16, text: &str) -> Flow {
        self.pace().await?;
        let text = self.text(text);
        self.wire.push_reply(code, false, &text);
        Ok(())
    }

    /// Applies `reply_delay`; what is already answered goes out first so
    /// only this reply is late.
    async fn pace(&mut self) -> Flow {
        if let Some(delay) = self.shared.config.reply_delay {
            self.wire.flush().await?;
            tokio::time::sleep(delay).await;
        }
        Ok(())
    }

    /// Carries out `fault`, if any. Faults that end the connection return
    /// `Err`; the others tell how the reply should read.
    async fn apply(&mut self, fault: Option<Fault>) -> Flow<Verdict> {
        let Some(fault) = fault else {
            return Ok(Verdict::Normal);
        };
        match fault {
            Fault::Delay(delay) => {
                self.wire.flush().await?;
                tokio::time::sleep(delay).await;
                Ok(Verdict::Normal)
            }
            Fault::Reply(421, text) => self.say_421(&text).await,
            Fault::Reply(code, text) => Ok(Verdict::Custom(code, text)),
            Fault::Disconnect421 => self.say_421("4.4.2 closing connection").await,
            Fault::Close | Fault::DropMidData => {
                self.wire.flush().await?;
                Err(Stop::Server)
            }
            Fault::Stall => {
                self.wire.flush().await?;
                Err(self.wire.discard_until_eof().await)
            }
        }
    }

    async fn say_421<T>(&mut self, text: &str) -> Flow<T> {
        self.reply(421, text).await?;
        self.wire.flush().await?;
        Err(Stop::Server)
    }

    /// Fault for `phase` from the phase-wide rules.
    fn rule(&self, phase: Phase) -> Option<Fault> {
        self.shared.faults.rule(phase)
    }

    async fn banner(&mut self) -> Flow {
        let verdict = self.apply(self.rule(Phase::Banner)).await?;
        match verdict {
            Verdict::Normal => {
                let banner = self.shared.config.banner.clone();
                self.reply(220, &banner).await
            }
            Verdict::Custom(code, text) => {
                self.banner_rejected = code >= 400;
                self.reply(code, &text).await
            }
        }
    }

    async fn command(&mut self, raw: &[u8], pipelined: bool) -> Flow {
        let line = line_text(raw);
        let verb = line
            .split_ascii_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        self.shared.record_command(
            self.id,
            CommandRecord {
                line: redact(&line, &verb),
                verb: verb.clone(),
                pipelined,
            },
        );
        let request = Request::parse(&mut raw.iter()).map(Request::into_owned);
        if self.banner_rejected && !matches!(request, Ok(Request::Quit)) {
            return self
                .reply(503, "5.5.0 no SMTP service here, only QUIT")
                .await;
        }
        match request {
            Ok(Request::Ehlo { .. }) => self.greeting(true).await,
            Ok(Request::Helo { .. }) => self.greeting(false).await,
            Ok(Request::Mail { from }) => self.mail(from, &line).await,
            Ok(Request::Rcpt { to }) => self.rcpt(to).await,
            Ok(Request::Data) => self.data().await,
            Ok(Request::Rset) => self.rset().await,
            Ok(Request::Quit) => self.quit().await,
            Ok(Request::StartTls) => self.starttls().await,
            Ok(Request::Auth {
                initial_response, ..
            }) => self.auth(&line, initial_response).await,
            Ok(Request::Noop { .. }) => self.reply(250, "2.0.0 OK").await,
            Ok(Request::Vrfy { .. }) => {
                self.reply(252, "2.5.2 cannot VRFY user, but will accept message")
                    .await
            }
            Ok(Request::Help { .. }) => self.reply(214, "2.0.0 herald-testkit").await,
            Ok(_) => self.reply(502, "5.5.1 command not implemented").await,
            Err(err) => self.parse_error(err, &verb, &line).await,
        }
    }

    async fn parse_error(&mut self, err: smtp_proto::Error, verb: &str, line: &str) -> Flow {
        use smtp_proto::Error as E;
        match err {
            E::UnknownCommand => {
                self.reply(500, "5.5.2 syntax error, command unrecognized")
                    .await
            }
            E::InvalidSenderAddress => self.reply(553, "5.1.7 bad sender address syntax").await,
            E::InvalidRecipientAddress => {
                self.reply(553, "5.1.3 bad recipient address syntax").await
            }
            E::UnsupportedParameter { param } => {
                self.reply(555, &format!("5.5.4 unsupported parameter {param}"))
                    .await
            }
            E::InvalidParameter { param } => {
                self.reply(501, &format!("5.5.4 invalid parameter {param}"))
                    .await
            }
            E::SyntaxError { .. } if verb == "AUTH" && line.split_whitespace().nth(1).is_some() => {
                self.reply(504, "5.5.4 unrecognized authentication type")
                    .await
            }
            E::SyntaxError { syntax } => self.reply(501, &format!("5.5.4 syntax: {syntax}")).await,
            _ => self.reply(500, "5.5.2 syntax error").await,
        }
    }

    /// EHLO (`extended`) or HELO.
    async fn greeting(&mut self, extended: bool) -> Flow {
        let verdict = self.apply(self.rule(Phase::Ehlo)).await?;
        if let Verdict::Custom(code, text) = verdict {
            if code < 400 {
                self.txn = None;
                self.greeted = true;
                self.ehlo_mode = extended;
            }
            return self.reply(code, &text).await;
        }
        if extended && !self.shared.config.ehlo_supported {
            return self.reply(502, "5.5.1 command not implemented").await;
        }
        // A greeting resets any transaction (RFC 5321 §4.1.4).
        self.txn = None;
        self.greeted = true;
        self.ehlo_mode = extended;
        let hostname = self.shared.config.hostname.clone();
        if !extended {
            return self.reply(250, &hostname).await;
        }
        let lines = self.capabilities(hostname);
        self.pace().await?;
        let last = lines.len() - 1;
        for (i, line) in lines.iter().enumerate() {
            self.wire.push_reply(250, i < last, line);
        }
        Ok(())
    }

    /// The EHLO reply lines, hostname first.
    fn capabilities(&self, hostname: String) -> Vec<String> {
        let cfg = &self.shared.config;
        let mut lines = vec![hostname];
        if cfg.pipelining {
            lines.push("PIPELINING".to_owned());
        }
        if let Some(limit) = cfg.size_limit {
            lines.push(format!("SIZE {limit}"));
        }
        if cfg.eight_bit_mime {
            lines.push("8BITMIME".to_owned());
        }
        if cfg.smtputf8 {
            lines.push("SMTPUTF8".to_owned());
        }
        if cfg.enhanced_status_codes {
            lines.push("ENHANCEDSTATUSCODES".to_owned());
        }
        if cfg.tls == TlsMode::StartTls && !self.tls {
            lines.push("STARTTLS".to_owned());
        }
        let mechanisms = cfg.effective_auth_mechanisms();
        if self.auth_advertised() && !mechanisms.is_empty() {
            lines.push(format!("AUTH {}", mechanisms.join(" ")));
        }
        lines
    }

    /// Whether AUTH is offered now: like real submission servers, not
    /// before STARTTLS unless configured otherwise.
    fn auth_advertised(&self) -> bool {
        let cfg = &self.shared.config;
        cfg.auth.is_some()
            && (self.tls || cfg.tls == TlsMode::None || cfg.advertise_auth_without_tls)
    }

    async fn rset(&mut self) -> Flow {
        let (code, text) = match self.apply(self.rule(Phase::Rset)).await? {
            Verdict::Normal => (250, "2.0.0 OK".to_owned()),
            Verdict::Custom(code, text) => (code, text),
        };
        if code < 400 {
            self.txn = None;
        }
        self.reply(code, &text).await
    }

    async fn quit(&mut self) -> Flow {
        let (code, text) = match self.apply(self.rule(Phase::Quit)).await? {
            Verdict::Normal => (221, "2.0.0 bye".to_owned()),
            Verdict::Custom(code, text) => (code, text),
        };
        self.reply(code, &text).await?;
        self.wire.flush().await?;
        Err(Stop::Client)
    }

    async fn starttls(&mut self) -> Flow {
        if self.tls {
            return self.reply(503, "5.5.1 TLS already active").await;
        }
        if self.shared.config.tls != TlsMode::StartTls {
            return self.reply(502, "5.5.1 STARTTLS not offered").await;
        }
        let (code, text) = match self.apply(self.rule(Phase::StartTls)).await? {
            Verdict::Normal => (220, "2.0.0 ready to start TLS".to_owned()),
            Verdict::Custom(code, text) => (code, text),
        };
        self.reply(code, &text).await?;
        if code >= 400 {
            return Ok(());
        }
        self.wire.flush().await?;
        // Bytes pipelined behind STARTTLS arrived in clear text and must not
        // be acted on inside TLS (RFC 3207 §4.2, the CVE-2011-0411 class).
        self.wire.discard_buffered();
        self.handshake().await?;
        // RFC 3207 §4.2: forget everything learnt before TLS.
        self.greeted = false;
        self.ehlo_mode = false;
        self.txn = None;
        self.auth_user = None;
        Ok(())
    }

    /// Turns the plain connection into TLS and records the version.
    async fn handshake(&mut self) -> Flow {
        let Conn::Plain(tcp) = std::mem::replace(&mut self.wire.conn, Conn::Gone) else {
            return Err(Stop::Server);
        };
        let stream = self.shared.tls.acceptor.accept(tcp).await?;
        let version = tls::version_name(&stream);
        self.wire.conn = Conn::Tls(Box::new(stream));
        self.tls = true;
        self.shared.update_session(self.id, |log| {
            log.tls = true;
            log.tls_version = version;
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_enhanced_codes_only() {
        assert_eq!(strip_enhanced("2.1.0 sender OK"), "sender OK");
        assert_eq!(strip_enhanced("5.7.8 bad"), "bad");
        assert_eq!(strip_enhanced("localhost ESMTP"), "localhost ESMTP");
        assert_eq!(strip_enhanced("1.2.3 nope"), "1.2.3 nope");
        assert_eq!(strip_enhanced("2.0.0"), "2.0.0");
    }

    #[test]
    fn redacts_auth_secrets() {
        assert_eq!(redact("AUTH PLAIN AGFAYg==", "AUTH"), "AUTH PLAIN ***");
        assert_eq!(redact("AUTH LOGIN", "AUTH"), "AUTH LOGIN");
        assert_eq!(redact("MAIL FROM:<a@b>", "MAIL"), "MAIL FROM:<a@b>");
    }

    #[test]
    fn line_text_drops_line_ending() {
        assert_eq!(line_text(b"NOOP\r\n"), "NOOP");
        assert_eq!(line_text(b"NOOP\n"), "NOOP");
    }
}
