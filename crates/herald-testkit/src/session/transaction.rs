//! The mail transaction: MAIL, RCPT, DATA and the body, where most
//! scripted faults strike and where accepted messages are recorded. Split
//! from the session so each file reads as one part of RFC 5321.

use std::sync::Arc;

use smtp_proto::{MAIL_BODY_8BITMIME, MAIL_BODY_BINARYMIME, MAIL_SMTPUTF8, MailFrom, RcptTo};

use super::{Session, Verdict};
use crate::config::{Fault, Phase};
use crate::log::ReceivedMessage;
use crate::wire::{Flow, Stop};

/// The mail transaction between MAIL and the reply after the final dot.
#[derive(Debug)]
pub(super) struct Txn {
    mail_from: String,
    rcpts: Vec<String>,
    smtputf8: bool,
    body_8bit: bool,
    size_param: Option<usize>,
    /// The first `data…`/`stall…`/`dropdata` fault among accepted recipients.
    armed: Option<(Phase, Fault)>,
}

/// The `SIZE=` parameter of a MAIL line, read from the raw line because the
/// parser reports an absent SIZE and `SIZE=0` alike.
fn size_param(line: &str) -> Option<usize> {
    line.split_ascii_whitespace().skip(1).find_map(|word| {
        let (key, value) = word.split_once('=')?;
        key.eq_ignore_ascii_case("SIZE")
            .then(|| value.parse().ok())
            .flatten()
    })
}

impl Session {
    pub(super) async fn mail(&mut self, from: MailFrom<String>, line: &str) -> Flow {
        let shared = Arc::clone(&self.shared);
        let cfg = &shared.config;
        if !self.greeted {
            return self.reply(503, "5.5.1 send EHLO/HELO first").await;
        }
        if self.txn.is_some() {
            return self.reply(503, "5.5.1 nested MAIL command").await;
        }
        if cfg.require_tls && !self.tls {
            return self
                .reply(530, "5.7.0 must issue a STARTTLS command first")
                .await;
        }
        if cfg.require_auth && self.auth_user.is_none() {
            return self.reply(530, "5.7.0 authentication required").await;
        }
        if cfg
            .max_messages_per_connection
            .is_some_and(|max| self.delivered >= max)
        {
            return self
                .say_421("4.7.0 too many messages on this connection")
                .await;
        }
        let smtputf8 = from.flags & MAIL_SMTPUTF8 != 0;
        let body_8bit = from.flags & MAIL_BODY_8BITMIME != 0;
        let size = size_param(line);
        if from.flags & MAIL_BODY_BINARYMIME != 0 {
            return self.reply(555, "5.5.4 BODY=BINARYMIME not supported").await;
        }
        if (smtputf8 || body_8bit || size.is_some()) && !self.ehlo_mode {
            return self.reply(555, "5.5.4 MAIL parameters need EHLO").await;
        }
        if smtputf8 && !cfg.smtputf8 {
            return self.reply(555, "5.5.4 SMTPUTF8 not supported").await;
        }
        if body_8bit && !cfg.eight_bit_mime {
            return self.reply(555, "5.5.4 8BITMIME not supported").await;
        }
        if !from.address.is_ascii() && !smtputf8 {
            return self
                .reply(553, "5.6.7 non-ASCII address needs SMTPUTF8")
                .await;
        }
        if let (Some(limit), Some(size)) = (cfg.size_limit, size)
            && size > limit
        {
            return self
                .reply(552, "5.3.4 message size exceeds fixed maximum message size")
                .await;
        }
        let (code, text) = match self.apply(self.rule(Phase::Mail)).await? {
            Verdict::Normal => (250, format!("2.1.0 sender <{}> OK", from.address)),
            Verdict::Custom(code, text) => (code, text),
        };
        if code < 400 {
            self.txn = Some(Txn {
                mail_from: from.address,
                rcpts: Vec::new(),
                smtputf8,
                body_8bit,
                size_param: size,
                armed: None,
            });
        }
        self.reply(code, &text).await
    }

    pub(super) async fn rcpt(&mut self, to: RcptTo<String>) -> Flow {
        let Some(txn) = &self.txn else {
            return self.reply(503, "5.5.1 need MAIL command first").await;
        };
        if !to.address.is_ascii() && !txn.smtputf8 {
            return self
                .reply(553, "5.6.7 non-ASCII address needs SMTPUTF8")
                .await;
        }
        // Both are consulted so `-once` counts every sighting, even when a
        // phase-wide rule takes precedence.
        let rule = self.rule(Phase::Rcpt);
        let plan = self.shared.faults.rcpt(&to.address);
        let (code, text) = match self.apply(rule.or(plan.at_rcpt)).await? {
            Verdict::Normal => (250, format!("2.1.5 recipient <{}> OK", to.address)),
            Verdict::Custom(code, text) => (code, text),
        };
        if code < 400
            && let Some(txn) = &mut self.txn
        {
            txn.rcpts.push(to.address);
            if txn.armed.is_none() {
                txn.armed = plan.in_txn;
            }
        }
        self.reply(code, &text).await
    }

    pub(super) async fn data(&mut self) -> Flow {
        let Some(txn) = &self.txn else {
            return self.reply(503, "5.5.1 need MAIL command first").await;
        };
        if txn.rcpts.is_empty() {
            return self.reply(554, "5.5.1 no valid recipients").await;
        }
        let (at_data, at_dot) = match txn.armed.clone() {
            Some((Phase::Data, fault)) => (Some(fault), None),
            Some((_, fault)) => (None, Some(fault)),
            None => (None, None),
        };
        let fault = self.rule(Phase::Data).or(at_data);
        let (code, text) = match self.apply(fault).await? {
            Verdict::Normal => (354, "start mail input; end with <CRLF>.<CRLF>".to_owned()),
            Verdict::Custom(code, text) => (code, text),
        };
        self.reply(code, &text).await?;
        if code >= 400 {
            return Ok(());
        }

        let dot_fault = self.rule(Phase::DataDot).or(at_dot);
        if dot_fault == Some(Fault::DropMidData) {
            // Let part of the body arrive, then hang up before the dot.
            if self.wire.buffered().is_empty() {
                self.wire.fill().await?;
            }
            return Err(Stop::Server);
        }
        let keep = self.shared.config.record_data;
        let limit = self.shared.config.size_limit;
        let body = self.wire.read_body(keep, limit).await?;
        let Some(txn) = self.txn.take() else {
            return Ok(());
        };
        if limit.is_some_and(|limit| body.size > limit) {
            return self
                .reply(552, "5.3.4 message size exceeds fixed maximum message size")
                .await;
        }
        let verdict = self.apply(dot_fault).await?;
        if let Verdict::Custom(code, text) = verdict {
            if code >= 400 {
                return self.reply(code, &text).await;
            }
            self.store(txn, body.data);
            return self.reply(code, &text).await;
        }
        let queue_id = self.store(txn, body.data);
        self.reply(250, &format!("2.0.0 OK: queued as {queue_id}"))
            .await
    }

    /// Records an accepted message; returns its queue id.
    fn store(&mut self, txn: Txn, data: Vec<u8>) -> usize {
        self.delivered += 1;
        self.shared.push_message(ReceivedMessage {
            session: self.id,
            mail_from: txn.mail_from,
            rcpt_to: txn.rcpts,
            data,
            smtputf8: txn.smtputf8,
            body_8bit: txn.body_8bit,
            size_param: txn.size_param,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_size_param() {
        assert_eq!(
            size_param("MAIL FROM:<a@b> SIZE=120 BODY=8BITMIME"),
            Some(120)
        );
        assert_eq!(size_param("MAIL FROM:<a@b> size=0"), Some(0));
        assert_eq!(size_param("MAIL FROM:<a@b>"), None);
    }
}
