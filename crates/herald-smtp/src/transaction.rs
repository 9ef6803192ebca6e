//! One mail transaction: MAIL, RCPT for each recipient, DATA, the body.
//! With PIPELINING the commands go in one write and their replies are read
//! in order (RFC 2920), so a message costs two round trips. A rejected RCPT
//! never aborts the others; the body goes to those accepted.

use herald_message::Envelope;

use crate::connection::{Connection, Ctx};
use crate::error::{Error, ErrorKind, Phase};
use crate::reply::Reply;
use crate::stuffing::write_data;

/// What happened to one recipient.
#[derive(Debug, Clone)]
pub struct RecipientOutcome {
    /// The recipient's address.
    pub address: String,
    /// The server's acceptance (the reply to the final dot), or why this
    /// recipient was not delivered. A message-level failure (MAIL or DATA
    /// rejected, message too large) appears here for every recipient it
    /// affected.
    pub result: Result<Reply, Error>,
}

impl RecipientOutcome {
    /// Whether the server took responsibility for this recipient.
    pub fn is_delivered(&self) -> bool {
        self.result.is_ok()
    }
}

/// Options for one transaction.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendOptions {
    /// The message's headers carry UTF-8 (internationalised addresses):
    /// SMTPUTF8 is required even if the envelope is ASCII.
    pub smtputf8: bool,
}

impl Connection {
    /// Sends one message.
    ///
    /// `Ok` means the session is still sound: every recipient has an
    /// outcome (delivered, or refused with a classified error). `Err`
    /// means the connection failed (network, timeout, 421, protocol,
    /// cancellation) before the server took the message; the caller should
    /// retry all recipients, on another connection or later.
    pub async fn send(
        &mut self,
        envelope: &Envelope,
        message: &[u8],
        options: SendOptions,
        ctx: &Ctx,
    ) -> Result<Vec<RecipientOutcome>, Error> {
        if self.broken {
            return Err(Error::new(
                ErrorKind::Network,
                Phase::Mail,
                "connection is closed",
            ));
        }
        let reuse = self.transactions > 0;
        self.transactions += 1;
        self.last_used = crate::connection::now();

        let recipients: Vec<String> = envelope
            .recipients()
            .iter()
            .map(|r| r.address().to_owned())
            .collect();
        let smtputf8 = options.smtputf8 || envelope.needs_smtputf8();
        if let Some(error) = self.refuse_before_sending(message.len(), smtputf8) {
            return Ok(everyone(&recipients, &error));
        }

        let mut mail = format!(
            "MAIL FROM:<{}>",
            envelope.sender().map_or("", |s| s.address())
        );
        if self.caps.size.is_some() {
            mail.push_str(&format!(" SIZE={}", message.len()));
        }
        if self.caps.eight_bit_mime && !message.is_ascii() {
            mail.push_str(" BODY=8BITMIME");
        }
        if smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        mail.push_str("\r\n");

        let replies = if self.caps.pipelining {
            self.pipelined_envelope(reuse, &mail, &recipients, ctx)
                .await?
        } else {
            self.stepwise_envelope(reuse, &mail, &recipients, ctx)
                .await?
        };
        let EnvelopeReplies { mail, rcpts, data } = replies;

        if !mail.is_positive() {
            let error = Error::rejected(Phase::Mail, mail);
            if error.closes_connection() {
                return Err(self.fail(error));
            }
            return Ok(everyone(&recipients, &error));
        }
        let mut outcomes: Vec<RecipientOutcome> = Vec::with_capacity(recipients.len());
        for (address, reply) in recipients.iter().zip(rcpts) {
            let result = if reply.is_positive() {
                Ok(reply)
            } else {
                let error = Error::rejected(Phase::Rcpt, reply);
                if error.closes_connection() {
                    return Err(self.fail(error));
                }
                Err(error)
            };
            outcomes.push(RecipientOutcome {
                address: address.clone(),
                result,
            });
        }
        let accepted = outcomes.iter().filter(|o| o.result.is_ok()).count();

        let dot_timeout = self.config.timeouts.data_dot;
        let data = match data {
            Some(reply) => reply,
            // Not pipelined and nobody accepted: DATA was never sent.
            None => return Ok(outcomes),
        };
        if data.code() != 354 {
            let error = Error::rejected(Phase::Data, data);
            if error.closes_connection() {
                return Err(self.fail(error));
            }
            if accepted > 0 {
                fail_accepted(&mut outcomes, &error);
            }
            return Ok(outcomes);
        }
        if accepted == 0 {
            // A pipelining server said 354 although every RCPT failed
            // (RFC 2920 section 3.1): end the empty transaction.
            self.command(b".\r\n", Phase::DataDot, dot_timeout, ctx)
                .await?;
            return Ok(outcomes);
        }

        self.wbuf.clear();
        write_data(message, &mut self.wbuf);
        self.flush_batch(Phase::DataDot, dot_timeout, ctx).await?;
        let reply = self
            .read_reply(Phase::DataDot, dot_timeout, ctx)
            .await
            .map_err(Error::after_final_dot)?;
        if reply.is_positive() {
            for outcome in &mut outcomes {
                if outcome.result.is_ok() {
                    outcome.result = Ok(reply.clone());
                }
            }
        } else {
            let error = Error::rejected(Phase::DataDot, reply);
            if error.closes_connection() {
                return Err(self.fail(error));
            }
            fail_accepted(&mut outcomes, &error);
        }
        Ok(outcomes)
    }

    /// Checks what can be known before a byte is sent.
    fn refuse_before_sending(&self, size: usize, smtputf8: bool) -> Option<Error> {
        if let Some(limit) = self.caps.size.filter(|&l| l > 0)
            && size > limit
        {
            return Some(Error::new(
                ErrorKind::MessageTooLarge,
                Phase::Mail,
                format!("{size} bytes; the server accepts at most {limit}"),
            ));
        }
        if smtputf8 && !self.caps.smtputf8 {
            return Some(Error::new(
                ErrorKind::Smtputf8Unavailable,
                Phase::Mail,
                "the message has internationalised addresses and the server lacks SMTPUTF8",
            ));
        }
        None
    }

    /// RSET (on reuse), MAIL, every RCPT and DATA in one write; then the
    /// replies, in order.
    async fn pipelined_envelope(
        &mut self,
        reuse: bool,
        mail: &str,
        recipients: &[String],
        ctx: &Ctx,
    ) -> Result<EnvelopeReplies, Error> {
        let t = self.config.timeouts;
        self.wbuf.clear();
        if reuse {
            self.wbuf.extend_from_slice(b"RSET\r\n");
        }
        self.wbuf.extend_from_slice(mail.as_bytes());
        for rcpt in recipients {
            self.wbuf
                .extend_from_slice(format!("RCPT TO:<{rcpt}>\r\n").as_bytes());
        }
        self.wbuf.extend_from_slice(b"DATA\r\n");
        self.flush_batch(Phase::Mail, t.mail, ctx).await?;

        if reuse {
            self.read_open_reply(Phase::Mail, t.command, ctx).await?;
        }
        let mail = self.read_open_reply(Phase::Mail, t.mail, ctx).await?;
        let mut rcpts = Vec::with_capacity(recipients.len());
        for _ in recipients {
            rcpts.push(self.read_open_reply(Phase::Rcpt, t.rcpt, ctx).await?);
        }
        let data = self.read_open_reply(Phase::Data, t.data, ctx).await?;
        if !mail.is_positive() && data.code() == 354 {
            // Should not happen (no sender, yet DATA accepted); end it.
            self.command(b".\r\n", Phase::DataDot, t.data_dot, ctx)
                .await?;
        }
        Ok(EnvelopeReplies {
            mail,
            rcpts,
            data: Some(data),
        })
    }

    /// Reads a reply in a pipelined batch; a 421 ends the batch (and the
    /// connection): the server will not answer the rest.
    async fn read_open_reply(
        &mut self,
        phase: Phase,
        timeout: std::time::Duration,
        ctx: &Ctx,
    ) -> Result<Reply, Error> {
        let reply = self.read_reply(phase, timeout, ctx).await?;
        if reply.code() == 421 {
            return Err(self.fail(Error::rejected(phase, reply)));
        }
        Ok(reply)
    }

    /// One command at a time, for servers without PIPELINING.
    async fn stepwise_envelope(
        &mut self,
        reuse: bool,
        mail: &str,
        recipients: &[String],
        ctx: &Ctx,
    ) -> Result<EnvelopeReplies, Error> {
        let t = self.config.timeouts;
        if reuse {
            let rset = self
                .command(b"RSET\r\n", Phase::Mail, t.command, ctx)
                .await?;
            if !rset.is_positive() {
                return Err(self.fail(Error::rejected(Phase::Mail, rset)));
            }
        }
        let mail_reply = self
            .command(mail.as_bytes(), Phase::Mail, t.mail, ctx)
            .await?;
        if !mail_reply.is_positive() {
            return Ok(EnvelopeReplies {
                mail: mail_reply,
                rcpts: Vec::new(),
                data: None,
            });
        }
        let mut rcpts = Vec::with_capacity(recipients.len());
        for rcpt in recipients {
            let line = format!("RCPT TO:<{rcpt}>\r\n");
            let reply = self
                .command(line.as_bytes(), Phase::Rcpt, t.rcpt, ctx)
                .await?;
            let closing = reply.code() == 421;
            rcpts.push(reply);
            if closing {
                break;
            }
        }
        let data = if rcpts.iter().any(Reply::is_positive) && rcpts.len() == recipients.len() {
            Some(self.command(b"DATA\r\n", Phase::Data, t.data, ctx).await?)
        } else {
            None
        };
        Ok(EnvelopeReplies {
            mail: mail_reply,
            rcpts,
            data,
        })
    }
}

struct EnvelopeReplies {
    mail: Reply,
    rcpts: Vec<Reply>,
    data: Option<Reply>,
}

fn everyone(recipients: &[String], error: &Error) -> Vec<RecipientOutcome> {
    recipients
        .iter()
        .map(|address| RecipientOutcome {
            address: address.clone(),
            result: Err(error.clone()),
        })
        .collect()
}

fn fail_accepted(outcomes: &mut [RecipientOutcome], error: &Error) {
    for outcome in outcomes {
        if outcome.result.is_ok() {
            outcome.result = Err(error.clone());
        }
    }
}
