//! Buffered bytes in and out of one connection: command lines, DATA bodies
//! (dot-unstuffed by smtp-proto) and batched replies. Replies are flushed
//! only when the server is about to wait for the client, so a pipelined
//! batch costs one write, and reads are large so no command costs a syscall.

use std::io;
use std::sync::{Arc, Mutex};

use smtp_proto::request::receiver::DataReceiver;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use crate::lock;
use crate::tls::Conn;

/// Longest command line accepted; RFC 5321 asks for 512, clients with long
/// AUTH tokens (XOAUTH2) need more.
const MAX_LINE: usize = 64 * 1024;
/// Spare room reserved before each read.
const READ_CHUNK: usize = 16 * 1024;

/// Why a session stopped.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The client closed, sent QUIT, or went away.
    Client,
    /// The server decided to close (fault, 421, idle close).
    Server,
    /// A command line exceeded [`MAX_LINE`].
    LineTooLong,
    /// The socket or TLS failed.
    Io(io::Error),
}

impl From<io::Error> for Stop {
    fn from(err: io::Error) -> Self {
        Stop::Io(err)
    }
}

/// Result of a step of the session: `Err` ends the connection.
pub(crate) type Flow<T = ()> = Result<T, Stop>;

/// Lets [`TestServer::close_idle_connections`](crate::TestServer::close_idle_connections)
/// reach a session, but only while it waits between transactions.
#[derive(Debug, Default)]
pub(crate) struct IdleCtl {
    state: Mutex<IdleState>,
    notify: Notify,
}

#[derive(Debug, Default)]
struct IdleState {
    idle: bool,
    close_requested: bool,
}

impl IdleCtl {
    /// Asks the session to close if it is idle right now; a busy session is
    /// left alone, so a request can never strike a later transaction.
    pub(crate) fn close_if_idle(&self) {
        let mut state = lock(&self.state);
        if state.idle {
            state.close_requested = true;
            self.notify.notify_one();
        }
    }

    fn enter(&self) {
        let mut state = lock(&self.state);
        state.idle = true;
        state.close_requested = false;
    }

    /// Leaves the idle state, telling whether a close was requested while idle.
    fn leave(&self) -> bool {
        let mut state = lock(&self.state);
        state.idle = false;
        state.close_requested
    }
}

/// A message body after the final dot.
#[derive(Debug)]
pub(crate) struct Body {
    /// Unstuffed bytes; empty when not kept.
    pub(crate) data: Vec<u8>,
    /// Unstuffed size, counted even when the bytes were not kept.
    pub(crate) size: usize,
}

/// The connection with its input and output buffers.
#[derive(Debug)]
pub(crate) struct Wire {
    pub(crate) conn: Conn,
    inbuf: Vec<u8>,
    /// Start of unconsumed input in `inbuf`.
    pos: usize,
    /// Bytes after `pos` already searched for LF, so a slowly arriving long
    /// line is not rescanned from its start on every read.
    scanned: usize,
    out: Vec<u8>,
}

impl Wire {
    pub(crate) fn new(conn: Conn) -> Self {
        Self {
            conn,
            inbuf: Vec::with_capacity(READ_CHUNK),
            pos: 0,
            scanned: 0,
            out: Vec::with_capacity(1024),
        }
    }

    /// Client bytes received but not yet processed.
    pub(crate) fn buffered(&self) -> &[u8] {
        &self.inbuf[self.pos..]
    }

    /// Drops unprocessed input (after STARTTLS, where it must not be trusted).
    pub(crate) fn discard_buffered(&mut self) {
        self.inbuf.clear();
        self.pos = 0;
        self.scanned = 0;
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        self.scanned = 0;
        if self.pos >= self.inbuf.len() {
            self.inbuf.clear();
            self.pos = 0;
        }
    }

    /// Queues one reply line; `more` makes it a `code-text` continuation line.
    pub(crate) fn push_reply(&mut self, code: u16, more: bool, text: &str) {
        let sep = if more { '-' } else { ' ' };
        // Writing into a Vec cannot fail.
        let _ = std::io::Write::write_fmt(&mut self.out, format_args!("{code}{sep}{text}\r\n"));
    }

    /// Sends every queued reply.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.conn.write_all(&self.out).await?;
        self.conn.flush().await?;
        self.out.clear();
        Ok(())
    }

    /// Makes room for a read without copying more than the unconsumed tail.
    fn prepare_read(&mut self) {
        if self.pos > 0 && self.inbuf.capacity() - self.inbuf.len() < READ_CHUNK / 2 {
            self.inbuf.drain(..self.pos);
            self.pos = 0;
        }
        self.inbuf.reserve(READ_CHUNK);
    }

    /// Flushes pending replies (the client may be waiting for them), then
    /// reads more input. End of stream is the client leaving.
    pub(crate) async fn fill(&mut self) -> Flow<usize> {
        self.flush().await?;
        self.prepare_read();
        match self.conn.read_buf(&mut self.inbuf).await? {
            0 => Err(Stop::Client),
            n => Ok(n),
        }
    }

    /// Like [`Wire::fill`], but the wait can be cut short by an idle-close
    /// request.
    async fn fill_idle(&mut self, ctl: &IdleCtl) -> Flow<usize> {
        // Idle before the flush: once the client holds the last reply, a
        // close request from the test must already find the session idle.
        ctl.enter();
        if let Err(err) = self.flush().await {
            ctl.leave();
            return Err(err.into());
        }
        self.prepare_read();
        let read = tokio::select! {
            biased;
            () = ctl.notify.notified() => None,
            read = self.conn.read_buf(&mut self.inbuf) => Some(read),
        };
        if ctl.leave() {
            return Err(Stop::Server);
        }
        match read {
            None => Err(Stop::Server),
            Some(Ok(0)) => Err(Stop::Client),
            Some(Ok(n)) => Ok(n),
            Some(Err(err)) => Err(err.into()),
        }
    }

    fn take_line(&mut self) -> Option<Vec<u8>> {
        let buf = &self.inbuf[self.pos..];
        let from = self.scanned.min(buf.len());
        match buf[from..].iter().position(|&b| b == b'\n') {
            Some(i) => {
                let end = from + i + 1;
                let line = buf[..end].to_vec();
                self.consume(end);
                Some(line)
            }
            None => {
                self.scanned = buf.len();
                None
            }
        }
    }

    /// Next command line, LF included. With `idle` set, the wait for input
    /// counts as idle for `close_idle_connections`.
    pub(crate) async fn read_line(&mut self, idle: Option<&IdleCtl>) -> Flow<Vec<u8>> {
        loop {
            if let Some(line) = self.take_line() {
                return Ok(line);
            }
            if self.buffered().len() > MAX_LINE {
                return Err(Stop::LineTooLong);
            }
            match idle {
                Some(ctl) if self.buffered().is_empty() => self.fill_idle(ctl).await?,
                _ => self.fill().await?,
            };
        }
    }

    /// Reads a DATA body up to and including the final dot. When `keep` is
    /// false, or once the body passes `limit`, bytes are only counted, so a
    /// benchmark or an oversized body does not grow memory.
    pub(crate) async fn read_body(&mut self, keep: bool, limit: Option<usize>) -> Flow<Body> {
        let mut receiver = DataReceiver::new();
        // smtp-proto only recognises a dot (final or stuffed) after it has
        // seen CRLF; the body starts at a line start, so show it one.
        let mut primer = Vec::new();
        receiver.ingest(&mut b"\r\n".iter(), &mut primer);

        let mut sink = Vec::new();
        let mut keeping = keep;
        let mut dropped = 0usize;
        loop {
            let input = &self.inbuf[self.pos..];
            let mut iter = input.iter();
            let done = receiver.ingest(&mut iter, &mut sink);
            let consumed = input.len() - iter.as_slice().len();
            self.consume(consumed);

            if keeping && limit.is_some_and(|l| sink.len() > l) {
                keeping = false;
            }
            // Keep the last byte: the receiver pops it if it turns out to be
            // the CR of the final CRLF.CRLF.
            if !keeping && sink.len() > 1 {
                let n = sink.len() - 1;
                dropped += n;
                sink.drain(..n);
            }
            if done {
                let size = dropped + sink.len();
                if !keeping {
                    sink = Vec::new();
                }
                return Ok(Body { data: sink, size });
            }
            self.fill().await?;
        }
    }

    /// Reads and throws away everything until the client leaves: a stalled
    /// server that still drains its socket, so the client's writes succeed.
    pub(crate) async fn discard_until_eof(&mut self) -> Stop {
        loop {
            self.discard_buffered();
            self.inbuf.reserve(READ_CHUNK);
            match self.conn.read_buf(&mut self.inbuf).await {
                Ok(0) => return Stop::Client,
                Ok(_) => {}
                Err(err) => return Stop::Io(err),
            }
        }
    }

    /// Sends what is queued and closes the connection, ignoring errors: the
    /// peer may already be gone.
    pub(crate) async fn close(&mut self) {
        let _ = self.flush().await;
        let _ = self.conn.shutdown().await;
    }
}

/// Shared handle type used by the server to reach a session's idle control.
pub(crate) type IdleHandle = Arc<IdleCtl>;
