//! What the server saw: accepted messages and one log per connection.
//! Tests assert on these records instead of on timing, so they carry
//! everything a client's behaviour can be judged by (pipelining, TLS, AUTH).

/// A message the server accepted with a 250 after the final dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The [`SessionLog::id`] of the connection that delivered it.
    pub session: usize,
    /// The MAIL FROM address, without angle brackets (empty for `<>`).
    pub mail_from: String,
    /// The accepted RCPT TO addresses, in order; rejected ones are absent.
    pub rcpt_to: Vec<String>,
    /// The body, dot-unstuffed, exactly as the client meant it: the
    /// terminating `.CRLF` is removed, while the CRLF that ends the last line
    /// of the message is kept (so a message rendered as `"...\r\n"` comes
    /// back byte-for-byte). Empty when `record_data` is off.
    pub data: Vec<u8>,
    /// MAIL FROM carried the SMTPUTF8 parameter.
    pub smtputf8: bool,
    /// MAIL FROM carried `BODY=8BITMIME`.
    pub body_8bit: bool,
    /// The `SIZE=` value of MAIL FROM, if given.
    pub size_param: Option<usize>,
}

/// Who ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closer {
    /// The client sent QUIT, closed its socket, or broke the connection.
    Client,
    /// The server closed it (a fault, a 421, `close_idle_connections`, shutdown).
    Server,
    /// The connection is still open.
    Unknown,
}

/// One command line as the server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRecord {
    /// The line without CRLF; AUTH secrets replaced by `***`.
    pub line: String,
    /// The command word, upper-cased: `EHLO`, `MAIL`, `RCPT`, `DATA`, ...
    pub verb: String,
    /// More client bytes were already received behind this command when the
    /// server processed it: the client did not wait for this reply before
    /// sending the next command.
    pub pipelined: bool,
}

/// Everything that happened on one TCP connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLog {
    /// Index of the connection in accept order, starting at 0; equal to its
    /// position in [`TestServer::sessions`](crate::TestServer::sessions).
    pub id: usize,
    /// TLS is active (implicit, or after STARTTLS).
    pub tls: bool,
    /// The negotiated TLS version, e.g. `"TLSv1.3"`.
    pub tls_version: Option<String>,
    /// The user who authenticated successfully.
    pub authenticated: Option<String>,
    /// The SASL mechanism of that successful AUTH, upper-cased.
    pub auth_mechanism: Option<String>,
    /// Every command line, in order (AUTH continuation lines are not commands).
    pub commands: Vec<CommandRecord>,
    /// Who closed the connection; [`Closer::Unknown`] while it is open.
    pub closed_by: Closer,
}

impl SessionLog {
    pub(crate) fn new(id: usize) -> Self {
        Self {
            id,
            tls: false,
            tls_version: None,
            authenticated: None,
            auth_mechanism: None,
            commands: Vec::new(),
            closed_by: Closer::Unknown,
        }
    }

    /// The verbs of all commands, in order; handy for assertions.
    pub fn verbs(&self) -> Vec<&str> {
        self.commands.iter().map(|c| c.verb.as_str()).collect()
    }
}
