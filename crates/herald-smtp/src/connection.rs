//! One SMTP session: opening it (TCP, implicit TLS, greeting, EHLO,
//! STARTTLS, AUTH), reading whole replies and writing commands, each under
//! its phase's timeout and the caller's cancellation.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use crate::auth;
use crate::config::{ClientConfig, Mechanism, TlsMode};
use crate::error::{Error, ErrorKind, Phase};
use crate::reply::{FrameError, Reply, parse_reply};
use crate::tls::TlsInfo;

/// Anything a session can run over: TCP, TLS over TCP, or an in-memory
/// pipe in tests.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// Now, by the runtime's clock: tokio's, which tests can pause and
/// advance, as the `Instant` that deadlines are written in.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The caller's limits on an operation: a deadline and a cancellation
/// token. Every wait is cut short by either.
#[derive(Debug, Clone, Default)]
pub struct Ctx {
    /// No phase may run past this instant.
    pub deadline: Option<Instant>,
    /// Cancelling stops the operation at once; the connection is then
    /// closed, since its state is unknown.
    pub cancel: CancellationToken,
}

impl Ctx {
    /// A context with a deadline `d` from now.
    pub fn with_timeout(d: Duration) -> Self {
        Self {
            deadline: Some(now() + d),
            cancel: CancellationToken::new(),
        }
    }
}

/// What the server said it supports in its EHLO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The EHLO reply's lines after the greeting line, as sent.
    pub lines: Vec<String>,
    /// PIPELINING (RFC 2920).
    pub pipelining: bool,
    /// SIZE, with the limit (0 = no limit given).
    pub size: Option<usize>,
    /// 8BITMIME.
    pub eight_bit_mime: bool,
    /// SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
    /// STARTTLS.
    pub starttls: bool,
    /// ENHANCEDSTATUSCODES.
    pub enhanced_status_codes: bool,
    /// AUTH mechanisms herald can use, in the server's terms.
    pub auth: Vec<Mechanism>,
    /// Whether the session had to fall back to HELO (no extensions).
    pub helo_only: bool,
}

impl Capabilities {
    fn from_ehlo(raw: &[u8], reply: &Reply) -> Self {
        let parsed = smtp_proto::EhloResponse::parse(&mut raw.iter()).ok();
        let has = |flag| parsed.as_ref().is_some_and(|p| p.has_capability(flag));
        let auth_bits = parsed.as_ref().map_or(0, |p| p.auth());
        let mut auth = Vec::new();
        for (bit, mechanism) in [
            (smtp_proto::AUTH_PLAIN, Mechanism::Plain),
            (smtp_proto::AUTH_LOGIN, Mechanism::Login),
            (smtp_proto::AUTH_XOAUTH2, Mechanism::Xoauth2),
        ] {
            if auth_bits & bit != 0 {
                auth.push(mechanism);
            }
        }
        Self {
            lines: reply.lines().iter().skip(1).cloned().collect(),
            pipelining: has(smtp_proto::EXT_PIPELINING),
            size: has(smtp_proto::EXT_SIZE).then(|| parsed.as_ref().map_or(0, |p| p.size)),
            eight_bit_mime: has(smtp_proto::EXT_8BIT_MIME),
            smtputf8: has(smtp_proto::EXT_SMTP_UTF8),
            starttls: has(smtp_proto::EXT_START_TLS),
            enhanced_status_codes: has(smtp_proto::EXT_ENHANCED_STATUS_CODES),
            auth,
            helo_only: false,
        }
    }
}

/// An open, greeted (and, if configured, encrypted and authenticated)
/// SMTP session, ready for transactions.
pub struct Connection {
    io: Box<dyn Io>,
    rbuf: Vec<u8>,
    pub(crate) wbuf: Vec<u8>,
    pub(crate) config: Arc<ClientConfig>,
    banner: Reply,
    pub(crate) caps: Capabilities,
    tls: Option<TlsInfo>,
    authenticated: Option<Mechanism>,
    /// Set when the session's state is unknown (an error mid-transaction,
    /// a cancelled wait, a 421): it must not be reused.
    pub(crate) broken: bool,
    /// Transactions started on this connection.
    pub(crate) transactions: usize,
    pub(crate) last_used: Instant,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("host", &self.config.host)
            .field("port", &self.config.port)
            .field("tls", &self.tls)
            .field("authenticated", &self.authenticated)
            .field("transactions", &self.transactions)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects over TCP to `config.host:config.port` and sets up the
    /// session: implicit TLS, greeting, EHLO, STARTTLS, AUTH as configured.
    pub async fn open(config: Arc<ClientConfig>, ctx: &Ctx) -> Result<Self, Error> {
        let addr = (config.host.as_str(), config.port);
        let tcp = guard(Phase::Connect, config.timeouts.connect, ctx, async {
            TcpStream::connect(addr)
                .await
                .map_err(|e| Error::network(Phase::Connect, &e))
        })
        .await?;
        // Commands and bodies are written whole; Nagle would only add a
        // delayed-ACK wait to every reply.
        tcp.set_nodelay(true)
            .map_err(|e| Error::network(Phase::Connect, &e))?;
        Self::open_on(Box::new(tcp), config, ctx).await
    }

    /// Sets up a session over an already connected stream (a TCP socket
    /// from elsewhere, or an in-memory pipe in tests).
    pub async fn open_on(
        io: Box<dyn Io>,
        config: Arc<ClientConfig>,
        ctx: &Ctx,
    ) -> Result<Self, Error> {
        let mut conn = Self {
            io,
            rbuf: Vec::with_capacity(4096),
            wbuf: Vec::with_capacity(4096),
            banner: Reply::new(0, None, ""),
            caps: Capabilities::default(),
            tls: None,
            authenticated: None,
            broken: false,
            transactions: 0,
            last_used: now(),
            config,
        };
        if conn.config.tls == TlsMode::Implicit {
            conn.start_tls(Phase::TlsHandshake, ctx).await?;
        }
        let banner = conn
            .read_reply(Phase::Banner, conn.config.timeouts.banner, ctx)
            .await?;
        if banner.code() != 220 {
            return Err(Error::rejected(Phase::Banner, banner));
        }
        conn.banner = banner;
        conn.ehlo(ctx).await?;

        let wants_starttls = matches!(conn.config.tls, TlsMode::StartTls | TlsMode::Opportunistic);
        if wants_starttls && conn.tls.is_none() {
            if conn.caps.starttls {
                let timeout = conn.config.timeouts.command;
                let reply = conn
                    .command(b"STARTTLS\r\n", Phase::StartTls, timeout, ctx)
                    .await?;
                if reply.code() != 220 {
                    return Err(Error::rejected(Phase::StartTls, reply));
                }
                conn.start_tls(Phase::StartTls, ctx).await?;
                // RFC 3207: everything learnt before TLS is forgotten.
                conn.ehlo(ctx).await?;
            } else if conn.config.tls == TlsMode::StartTls {
                return Err(Error::new(
                    ErrorKind::TlsUnavailable,
                    Phase::StartTls,
                    "the server does not offer STARTTLS; refusing to continue in plain text",
                ));
            }
        }

        if let Some(credentials) = conn.config.credentials.clone() {
            if conn.tls.is_none() && !conn.config.allow_insecure_auth {
                return Err(Error::new(
                    ErrorKind::AuthUnavailable,
                    Phase::Auth,
                    "refusing to send credentials over an unencrypted connection",
                ));
            }
            let mechanism = auth::authenticate(&mut conn, &credentials, ctx).await?;
            conn.authenticated = Some(mechanism);
        }
        Ok(conn)
    }

    /// The server's 220 greeting.
    pub fn banner(&self) -> &Reply {
        &self.banner
    }

    /// What the server offers (from the last EHLO).
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// TLS details, when the session is encrypted.
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// The AUTH mechanism that succeeded, if we authenticated.
    pub fn authenticated(&self) -> Option<Mechanism> {
        self.authenticated
    }

    /// Whether the connection may carry another transaction.
    pub fn is_usable(&self) -> bool {
        !self.broken
    }

    /// How many transactions this connection has carried.
    pub fn transactions(&self) -> usize {
        self.transactions
    }

    /// Whether the server has closed the connection (or sent something
    /// unasked, such as a 421 before closing) while it sat idle. Checked
    /// without waiting, before a pooled connection is reused.
    pub fn peer_closed(&mut self) -> bool {
        if !self.rbuf.is_empty() {
            return true;
        }
        let mut cx = Context::from_waker(Waker::noop());
        let mut scratch = [0u8; 512];
        let mut buf = ReadBuf::new(&mut scratch);
        // Ready means EOF, an error, or bytes nobody asked for: all fatal.
        Pin::new(&mut self.io)
            .poll_read(&mut cx, &mut buf)
            .is_ready()
    }

    /// Sends QUIT and closes, politely but without waiting long.
    pub async fn quit(mut self) {
        let ctx = Ctx::default();
        let timeout = self.config.timeouts.command.min(Duration::from_secs(5));
        if !self.broken {
            let _ = self.command(b"QUIT\r\n", Phase::Other, timeout, &ctx).await;
        }
        let _ = tokio::time::timeout(timeout, self.io.shutdown()).await;
    }

    /// NOOP: a cheap round trip to prove the session is alive.
    pub async fn noop(&mut self, ctx: &Ctx) -> Result<Reply, Error> {
        let timeout = self.config.timeouts.command;
        let reply = self
            .command(b"NOOP\r\n", Phase::Other, timeout, ctx)
            .await?;
        if reply.is_positive() {
            Ok(reply)
        } else {
            Err(self.fail(Error::rejected(Phase::Other, reply)))
        }
    }

    async fn ehlo(&mut self, ctx: &Ctx) -> Result<(), Error> {
        let timeout = self.config.timeouts.command;
        let line = format!("EHLO {}\r\n", self.config.helo_name);
        self.write(line.as_bytes(), Phase::Ehlo, timeout, ctx)
            .await?;
        let (reply, raw) = self.read_reply_raw(Phase::Ehlo, timeout, ctx).await?;
        if reply.code() == 250 {
            self.caps = Capabilities::from_ehlo(&raw, &reply);
            return Ok(());
        }
        if reply.code() == 421 || !reply.is_permanent() {
            return Err(self.fail(Error::rejected(Phase::Ehlo, reply)));
        }
        // An old server that knows no EHLO: HELO, and no extensions.
        let line = format!("HELO {}\r\n", self.config.helo_name);
        let reply = self
            .command(line.as_bytes(), Phase::Ehlo, timeout, ctx)
            .await?;
        if reply.code() != 250 {
            return Err(self.fail(Error::rejected(Phase::Ehlo, reply)));
        }
        self.caps = Capabilities {
            helo_only: true,
            ..Capabilities::default()
        };
        Ok(())
    }

    async fn start_tls(&mut self, phase: Phase, ctx: &Ctx) -> Result<(), Error> {
        let server_name = rustls::pki_types::ServerName::try_from(self.config.host.clone())
            .map_err(|e| Error::new(ErrorKind::Tls, phase, format!("bad server name: {e}")))?;
        let connector = TlsConnector::from(self.config.tls_config.clone());
        // Swap the plain stream out; on failure the connection is useless
        // anyway, so an empty placeholder is fine.
        let plain = std::mem::replace(
            &mut self.io,
            Box::new(tokio::io::join(tokio::io::empty(), tokio::io::sink())),
        );
        let timeout = self.config.timeouts.tls;
        let stream = guard(phase, timeout, ctx, async {
            connector
                .connect(server_name, plain)
                .await
                .map_err(|e| Error::new(ErrorKind::Tls, phase, e.to_string()))
        })
        .await
        .map_err(|e| self.fail(e))?;
        self.tls = Some(TlsInfo::from_connection(stream.get_ref().1));
        self.io = Box::new(stream);
        self.rbuf.clear();
        Ok(())
    }

    /// Writes `line` and reads one reply, both within `timeout`.
    pub(crate) async fn command(
        &mut self,
        line: &[u8],
        phase: Phase,
        timeout: Duration,
        ctx: &Ctx,
    ) -> Result<Reply, Error> {
        self.write(line, phase, timeout, ctx).await?;
        self.read_reply(phase, timeout, ctx).await
    }

    /// Writes `bytes` (a command or a pipelined batch) and flushes.
    pub(crate) async fn write(
        &mut self,
        bytes: &[u8],
        phase: Phase,
        timeout: Duration,
        ctx: &Ctx,
    ) -> Result<(), Error> {
        tracing::trace!(phase = phase.as_str(), bytes = bytes.len(), "smtp write");
        let io = &mut self.io;
        let result = guard(phase, timeout, ctx, async {
            io.write_all(bytes)
                .await
                .and(io.flush().await)
                .map_err(|e| Error::network(phase, &e))
        })
        .await;
        result.map_err(|e| self.fail(e))
    }

    /// Writes and flushes the pending batch in `wbuf`.
    pub(crate) async fn flush_batch(
        &mut self,
        phase: Phase,
        timeout: Duration,
        ctx: &Ctx,
    ) -> Result<(), Error> {
        let batch = std::mem::take(&mut self.wbuf);
        let result = self.write(&batch, phase, timeout, ctx).await;
        self.wbuf = batch;
        self.wbuf.clear();
        result
    }

    /// Reads one whole reply.
    pub(crate) async fn read_reply(
        &mut self,
        phase: Phase,
        timeout: Duration,
        ctx: &Ctx,
    ) -> Result<Reply, Error> {
        self.read_reply_raw(phase, timeout, ctx)
            .await
            .map(|(reply, _)| reply)
    }

    async fn read_reply_raw(
        &mut self,
        phase: Phase,
        timeout: Duration,
        ctx: &Ctx,
    ) -> Result<(Reply, Vec<u8>), Error> {
        let Self { io, rbuf, .. } = self;
        let result = guard(phase, timeout, ctx, async {
            loop {
                match parse_reply(rbuf) {
                    Ok(Some((reply, used))) => {
                        let raw: Vec<u8> = rbuf.drain(..used).collect();
                        return Ok((reply, raw));
                    }
                    Ok(None) => {}
                    Err(FrameError::Malformed(line)) => {
                        return Err(Error::new(
                            ErrorKind::Protocol,
                            phase,
                            format!("not an SMTP reply: {line:?}"),
                        ));
                    }
                    Err(FrameError::TooLong) => {
                        return Err(Error::new(ErrorKind::Protocol, phase, "reply too long"));
                    }
                }
                let start = rbuf.len();
                rbuf.resize(start + 4096, 0);
                let n = io.read(&mut rbuf[start..]).await;
                rbuf.truncate(start + *n.as_ref().unwrap_or(&0));
                match n {
                    Ok(0) => {
                        return Err(Error::new(
                            ErrorKind::Network,
                            phase,
                            "connection closed by the server",
                        ));
                    }
                    Ok(_) => {}
                    Err(e) => return Err(Error::network(phase, &e)),
                }
            }
        })
        .await;
        match result {
            Ok((reply, raw)) => {
                tracing::trace!(phase = phase.as_str(), reply = %reply, "smtp reply");
                if reply.code() == 421 {
                    // The server is closing the channel.
                    self.broken = true;
                }
                Ok((reply, raw))
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Marks the connection unusable after `error` if the error says so.
    pub(crate) fn fail(&mut self, error: Error) -> Error {
        if error.closes_connection() || error.kind() == ErrorKind::Cancelled {
            self.broken = true;
        }
        error
    }
}

/// Runs `fut` within `timeout`, the context's deadline and cancellation.
pub(crate) async fn guard<T>(
    phase: Phase,
    timeout: Duration,
    ctx: &Ctx,
    fut: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    if ctx.cancel.is_cancelled() {
        return Err(Error::new(ErrorKind::Cancelled, phase, "cancelled"));
    }
    let mut limit = timeout;
    let mut by_deadline = false;
    if let Some(deadline) = ctx.deadline {
        let left = deadline.saturating_duration_since(now());
        if left.is_zero() {
            return Err(Error::new(ErrorKind::Cancelled, phase, "deadline passed"));
        }
        if left < limit {
            limit = left;
            by_deadline = true;
        }
    }
    tokio::select! {
        result = tokio::time::timeout(limit, fut) => match result {
            Ok(inner) => inner,
            Err(_) if by_deadline => Err(Error::new(ErrorKind::Cancelled, phase, "deadline passed")),
            Err(_) => Err(Error::timeout(phase, limit)),
        },
        () = ctx.cancel.cancelled() => Err(Error::new(ErrorKind::Cancelled, phase, "cancelled")),
    }
}
