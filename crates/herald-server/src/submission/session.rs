//! One SMTP submission session: commands parsed by `smtp-proto`, answers
//! written in order (pipelining), AUTH with an API key, and a message
//! queued durably before its `250`.

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use herald_message::EmailAddress;
use smtp_proto::request::receiver::{DataReceiver, DummyDataReceiver};
use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN, Error as ParseError, MAIL_SMTPUTF8, Request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

mod chunking;

use super::lockout::Lockout;
use crate::api::AppState;
use crate::config::{Scope, SubmissionConfig};

/// The longest command line read (RFC 5321 §4.5.3.1.4 allows 512 octets;
/// extensions make it longer).
const MAX_LINE: usize = 4096;
/// Bad commands in one session before it is closed.
const MAX_ERRORS: u32 = 10;
/// How much is read from the socket at once.
const READ_CHUNK: usize = 64 * 1024;

/// What every session of the listeners shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) state: AppState,
    pub(crate) config: SubmissionConfig,
    pub(crate) hostname: String,
    pub(crate) lockout: Lockout,
    pub(crate) stop: CancellationToken,
}

/// How a run of [`Session::run`] ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// QUIT, or the session was closed with a 421.
    Closed,
    /// The client asked for STARTTLS and got its `220`.
    StartTls,
}

/// An open MAIL transaction.
#[derive(Debug)]
pub(super) struct Transaction {
    pub(super) sender: Option<EmailAddress>,
    pub(super) recipients: Vec<EmailAddress>,
    seen: HashSet<String>,
    pub(super) smtputf8: bool,
    /// BDAT chunks so far (CHUNKING).
    chunks: Vec<u8>,
    /// A BDAT was accepted: DATA is no longer allowed.
    chunking: bool,
    /// The chunks went over the size limit (552 at LAST).
    oversize: bool,
}

/// One client's session.
#[derive(Debug)]
pub(crate) struct Session {
    shared: Arc<Shared>,
    peer: SocketAddr,
    tls: bool,
    /// EHLO (true) or HELO (false) seen; `None` before either.
    greeted: Option<bool>,
    /// The name of the API key the client authenticated with.
    submitter: Option<String>,
    mail: Option<Transaction>,
    errors: u32,
    input: Vec<u8>,
    output: Vec<u8>,
}

/// A command's outcome: go on, or end the session (run).
enum Flow {
    Go,
    End(End),
}

/// What reading the next line gave.
enum Line {
    Got(Vec<u8>),
    /// The session is over (EOF, timeout or shutdown; a 421 was sent
    /// where one could be).
    Over,
}

impl Session {
    /// A session with `peer`; `tls` when the connection is already
    /// encrypted (implicit TLS).
    pub(crate) fn new(shared: Arc<Shared>, peer: SocketAddr, tls: bool) -> Self {
        Self {
            shared,
            peer,
            tls,
            greeted: None,
            submitter: None,
            mail: None,
            errors: 0,
            input: Vec::new(),
            output: Vec::new(),
        }
    }

    /// After STARTTLS: the session starts over, encrypted (RFC 3207 §4.2).
    pub(crate) fn encrypted(&mut self) {
        self.tls = true;
        self.greeted = None;
        self.submitter = None;
        self.mail = None;
    }

    /// The banner, or a 421 for an address locked out (then `false`).
    pub(crate) async fn greet<S: AsyncWrite + Unpin>(&mut self, io: &mut S) -> io::Result<bool> {
        let locked = self
            .shared
            .lockout
            .is_locked(self.peer.ip(), self.shared.state.clock.instant());
        if locked {
            self.reply(&format!(
                "421 4.7.0 {} too many failed authentications; try again later",
                self.shared.hostname
            ));
        } else {
            self.reply(&format!("220 {} ESMTP herald", self.shared.hostname));
        }
        self.flush(io).await?;
        Ok(!locked)
    }

    /// Serves commands until QUIT, STARTTLS or the end of the connection.
    pub(crate) async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
    ) -> io::Result<End> {
        loop {
            let line = match self
                .next_line(io, self.shared.config.command_timeout)
                .await?
            {
                Line::Got(line) => line,
                Line::Over => return Ok(End::Closed),
            };
            let flow = self.command(io, &line).await?;
            if let Flow::End(end) = flow {
                self.flush(io).await?;
                if end == End::StartTls {
                    // Commands pipelined after STARTTLS were sent in the
                    // clear: they must not be obeyed once encrypted
                    // (CVE-2011-0411).
                    self.input.clear();
                }
                return Ok(end);
            }
        }
    }

    async fn command<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        line: &[u8],
    ) -> io::Result<Flow> {
        let request = match Request::parse(&mut line.iter()) {
            Ok(request) => request.into_owned(),
            Err(error) => return Ok(self.refuse(parse_error(&error))),
        };
        match request {
            Request::Ehlo { host } => self.ehlo(&host),
            Request::Helo { host } => {
                self.mail = None;
                self.greeted = Some(false);
                let host = shown(&host);
                self.reply(&format!("250 {} greets {host}", self.shared.hostname));
            }
            Request::StartTls => {
                if self.tls {
                    return Ok(self.refuse("503 5.5.1 TLS is already active"));
                }
                self.reply("220 2.0.0 Ready to start TLS");
                return Ok(Flow::End(End::StartTls));
            }
            Request::Auth {
                mechanism,
                initial_response,
            } => return self.auth(io, mechanism, initial_response).await,
            Request::Mail { from } => self.mail(&from.address, from.size, from.flags).await,
            Request::Rcpt { to } => self.rcpt(&to.address),
            Request::Data => return self.data(io).await,
            Request::Bdat {
                chunk_size,
                is_last,
            } => return self.bdat(io, chunk_size, is_last).await,
            Request::Rset => {
                self.mail = None;
                self.reply("250 2.0.0 OK");
            }
            Request::Noop { .. } => self.reply("250 2.0.0 OK"),
            Request::Quit => {
                self.reply("221 2.0.0 Bye");
                return Ok(Flow::End(End::Closed));
            }
            Request::Vrfy { .. } => self.reply("252 2.5.0 Cannot VRFY user"),
            _ => return Ok(self.refuse("502 5.5.1 Command not implemented")),
        }
        Ok(Flow::Go)
    }

    fn ehlo(&mut self, host: &str) {
        self.mail = None;
        self.greeted = Some(true);
        let mut lines = vec![
            format!("{} greets {}", self.shared.hostname, shown(host)),
            "PIPELINING".to_owned(),
            format!("SIZE {}", self.shared.config.max_message_bytes),
            "8BITMIME".to_owned(),
            "SMTPUTF8".to_owned(),
            "ENHANCEDSTATUSCODES".to_owned(),
            "CHUNKING".to_owned(),
        ];
        if self.tls {
            lines.push("AUTH PLAIN LOGIN".to_owned());
        } else {
            lines.push("STARTTLS".to_owned());
        }
        let last = lines.len() - 1;
        for (i, line) in lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            self.reply(&format!("250{sep}{line}"));
        }
    }

    async fn auth<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        mechanism: u64,
        initial: String,
    ) -> io::Result<Flow> {
        if !self.tls {
            return Ok(self.refuse("530 5.7.0 Must issue a STARTTLS command first"));
        }
        if self.greeted != Some(true) {
            return Ok(self.refuse("503 5.5.1 Send EHLO first"));
        }
        if self.submitter.is_some() {
            return Ok(self.refuse("503 5.5.1 Already authenticated"));
        }
        if self.mail.is_some() {
            return Ok(self.refuse("503 5.5.1 AUTH is not allowed during a transaction"));
        }
        if self
            .shared
            .lockout
            .is_locked(self.peer.ip(), self.shared.state.clock.instant())
        {
            return Ok(self.locked_out());
        }
        let password = match mechanism {
            AUTH_PLAIN => {
                let response = if initial.is_empty() {
                    match self.challenge(io, "334 ").await? {
                        Some(r) => r,
                        None => return Ok(Flow::End(End::Closed)),
                    }
                } else {
                    initial
                };
                decode(&response).and_then(|bytes| {
                    let mut parts = bytes.split(|b| *b == 0);
                    match (parts.next(), parts.next(), parts.next(), parts.next()) {
                        (Some(_), Some(_), Some(password), None) => {
                            String::from_utf8(password.to_vec()).ok()
                        }
                        _ => None,
                    }
                })
            }
            AUTH_LOGIN => {
                if initial.is_empty() {
                    match self.challenge(io, "334 VXNlcm5hbWU6").await? {
                        Some(_) => {}
                        None => return Ok(Flow::End(End::Closed)),
                    }
                }
                match self.challenge(io, "334 UGFzc3dvcmQ6").await? {
                    Some(r) => decode(&r).and_then(|b| String::from_utf8(b).ok()),
                    None => return Ok(Flow::End(End::Closed)),
                }
            }
            _ => return Ok(self.refuse("504 5.5.4 Unrecognized authentication type")),
        };
        let Some(password) = password else {
            return Ok(self.refuse("501 5.5.2 Cannot decode the response"));
        };
        let key = self
            .shared
            .state
            .key_for(&password)
            .map(|k| (k.name().to_owned(), k.scopes().allows(Scope::Send)));
        match key {
            Some((name, true)) => {
                tracing::info!(peer = %self.peer.ip(), key = %name, "SMTP client authenticated");
                self.submitter = Some(name);
                self.reply("235 2.7.0 Authentication successful");
                Ok(Flow::Go)
            }
            Some((name, false)) => {
                tracing::warn!(peer = %self.peer.ip(), key = %name, "SMTP AUTH with a key without the send scope");
                Ok(self.refuse("535 5.7.8 This API key lacks the send scope"))
            }
            None => {
                let locked = self
                    .shared
                    .lockout
                    .fail(self.peer.ip(), self.shared.state.clock.instant());
                tracing::warn!(peer = %self.peer.ip(), locked, "SMTP AUTH failed");
                if locked {
                    return Ok(self.locked_out());
                }
                self.reply("535 5.7.8 Authentication credentials invalid");
                Ok(Flow::Go)
            }
        }
    }

    /// Sends a `334` challenge and reads the client's answer; `None` when
    /// the session ended. A `*` (cancel) does not decode, so it is
    /// answered with 501.
    async fn challenge<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        prompt: &str,
    ) -> io::Result<Option<String>> {
        self.reply(prompt);
        match self
            .next_line(io, self.shared.config.command_timeout)
            .await?
        {
            Line::Got(line) => Ok(Some(String::from_utf8_lossy(&line).trim().to_owned())),
            Line::Over => Ok(None),
        }
    }

    fn locked_out(&mut self) -> Flow {
        self.reply("421 4.7.0 Too many failed authentications; closing");
        Flow::End(End::Closed)
    }

    async fn mail(&mut self, address: &str, size: usize, flags: u64) {
        if self.submitter.is_none() {
            self.refuse("530 5.7.0 Authentication required");
            return;
        }
        if self.greeted.is_none() {
            self.refuse("503 5.5.1 Send EHLO first");
            return;
        }
        if self.mail.is_some() {
            self.refuse("503 5.5.1 Nested MAIL command");
            return;
        }
        if size > self.shared.config.max_message_bytes {
            self.reply(&format!(
                "552 5.3.4 Message size exceeds the limit of {} bytes",
                self.shared.config.max_message_bytes
            ));
            return;
        }
        let sender = if address.is_empty() {
            None
        } else {
            match EmailAddress::parse_addr_spec(address) {
                Ok(a) => Some(a),
                Err(e) => {
                    self.refuse(&format!("553 5.1.7 Bad sender address: {e}"));
                    return;
                }
            }
        };
        if crate::api::admit(&self.shared.state, 1).await.is_err() {
            self.reply("452 4.3.1 The queue is full; try again later");
            return;
        }
        self.mail = Some(Transaction {
            smtputf8: flags & MAIL_SMTPUTF8 != 0
                || sender.as_ref().is_some_and(EmailAddress::needs_smtputf8),
            sender,
            recipients: Vec::new(),
            seen: HashSet::new(),
            chunks: Vec::new(),
            chunking: false,
            oversize: false,
        });
        self.reply("250 2.1.0 Sender OK");
    }

    fn rcpt(&mut self, address: &str) {
        let max = self.shared.config.max_recipients;
        let Some(mail) = self.mail.as_mut() else {
            self.refuse("503 5.5.1 Need MAIL before RCPT");
            return;
        };
        let parsed = EmailAddress::parse_addr_spec(address);
        let reply = match parsed {
            Err(e) => format!("553 5.1.3 Bad recipient address: {e}"),
            Ok(_) if mail.recipients.len() >= max => {
                format!("452 4.5.3 Too many recipients (at most {max})")
            }
            Ok(rcpt) => {
                if mail.seen.insert(rcpt.mailbox_key()) {
                    mail.smtputf8 |= rcpt.needs_smtputf8();
                    mail.recipients.push(rcpt);
                }
                "250 2.1.5 Recipient OK".to_owned()
            }
        };
        self.reply(&reply);
    }

    async fn data<S: AsyncRead + AsyncWrite + Unpin>(&mut self, io: &mut S) -> io::Result<Flow> {
        match &self.mail {
            None => return Ok(self.refuse("503 5.5.1 Need MAIL before DATA")),
            Some(m) if m.recipients.is_empty() => {
                return Ok(self.refuse("554 5.5.1 No valid recipients"));
            }
            Some(m) if m.chunking => {
                return Ok(self.refuse("503 5.5.1 DATA after BDAT; finish with BDAT LAST"));
            }
            Some(_) => {}
        }
        self.reply("354 End data with <CR><LF>.<CR><LF>");
        let max = self.shared.config.max_message_bytes;
        let mut data = Vec::new();
        let mut receiver = DataReceiver::new();
        let mut discard: Option<DummyDataReceiver> = None;
        loop {
            let mut bytes = self.input.iter();
            let done = match discard.as_mut() {
                Some(d) => d.ingest(&mut bytes),
                None => receiver.ingest(&mut bytes, &mut data),
            };
            let consumed = self.input.len() - bytes.as_slice().len();
            self.input.drain(..consumed);
            if discard.is_none() && data.len() > max {
                discard = Some(DummyDataReceiver::new_data(&receiver));
                data = Vec::new();
            }
            if done {
                break;
            }
            if !self.fill(io, self.shared.config.data_timeout).await? {
                return Ok(Flow::End(End::Closed));
            }
        }
        let Some(mail) = self.mail.take() else {
            return Ok(Flow::Go);
        };
        if discard.is_some() {
            self.reply(&format!(
                "552 5.3.4 Message size exceeds the limit of {max} bytes"
            ));
            return Ok(Flow::Go);
        }
        let reply =
            super::queue::enqueue(&self.shared, self.submitter.as_deref(), mail, &data).await;
        self.reply(&reply);
        Ok(Flow::Go)
    }

    /// A refusal that counts towards [`MAX_ERRORS`].
    fn refuse(&mut self, reply: &str) -> Flow {
        self.errors += 1;
        if self.errors > MAX_ERRORS {
            self.reply("421 4.7.0 Too many errors; closing");
            return Flow::End(End::Closed);
        }
        self.reply(reply);
        Flow::Go
    }

    fn reply(&mut self, line: &str) {
        self.output.extend_from_slice(line.as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }

    async fn flush<S: AsyncWrite + Unpin>(&mut self, io: &mut S) -> io::Result<()> {
        if !self.output.is_empty() {
            io.write_all(&self.output).await?;
            io.flush().await?;
            self.output.clear();
        }
        Ok(())
    }

    /// The next line (with its LF). Replies wait in the buffer while
    /// pipelined commands are already here, and go out before reading.
    async fn next_line<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        timeout: Duration,
    ) -> io::Result<Line> {
        loop {
            if let Some(pos) = self.input.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.input.drain(..=pos).collect();
                if line.len() > MAX_LINE {
                    self.reply("500 5.5.2 Line too long");
                    self.errors += 1;
                    continue;
                }
                return Ok(Line::Got(line));
            }
            if self.input.len() > MAX_LINE {
                self.reply("500 5.5.2 Line too long; closing");
                self.flush(io).await?;
                return Ok(Line::Over);
            }
            if !self.fill(io, timeout).await? {
                return Ok(Line::Over);
            }
        }
    }

    /// Flushes the replies, then reads more input; `false` at the end of
    /// the session (EOF; timeout or shutdown, after a 421).
    async fn fill<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        timeout: Duration,
    ) -> io::Result<bool> {
        self.flush(io).await?;
        self.input.reserve(READ_CHUNK);
        let stop = self.shared.stop.clone();
        let read = tokio::select! {
            () = stop.cancelled() => None,
            read = tokio::time::timeout(timeout, io.read_buf(&mut self.input)) => Some(read),
        };
        match read {
            None => {
                self.reply("421 4.3.2 Service shutting down; closing");
                self.flush(io).await?;
                Ok(false)
            }
            Some(Err(_elapsed)) => {
                self.reply("421 4.4.2 Timeout; closing");
                self.flush(io).await?;
                Ok(false)
            }
            Some(Ok(read)) => Ok(read? > 0),
        }
    }
}

/// The client's EHLO/HELO name as a reply may echo it: printable ASCII
/// only, at most 64 characters. The name is the client's to choose, and a
/// reply line must stay printable and under 512 octets (found by fuzzing:
/// NUL and 8-bit bytes went back verbatim).
fn shown(host: &str) -> String {
    let mut shown: String = host
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .take(64)
        .collect();
    if shown.is_empty() {
        shown.push('?');
    }
    shown
}

fn decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if text == "=" {
        return Some(Vec::new());
    }
    BASE64.decode(text).ok()
}

fn parse_error(error: &ParseError) -> &'static str {
    match error {
        ParseError::UnknownCommand => "500 5.5.1 Command unrecognized",
        ParseError::InvalidSenderAddress => "553 5.1.7 Bad sender address syntax",
        ParseError::InvalidRecipientAddress => "553 5.1.3 Bad recipient address syntax",
        ParseError::SyntaxError { .. } => "501 5.5.4 Syntax error in parameters or arguments",
        ParseError::InvalidParameter { .. } => "501 5.5.4 Invalid parameter",
        ParseError::UnsupportedParameter { .. } => "555 5.5.4 Unsupported parameter",
        ParseError::ResponseTooLong => "500 5.5.2 Line too long",
        _ => "500 5.5.2 Syntax error",
    }
}
