//! CHUNKING (RFC 3030): `BDAT <size> [LAST]`, the message in chunks of a
//! declared size, with no dot-stuffing and no end-of-data line to
//! confuse. The chunk's bytes are always read, even when the command is
//! refused: they are never taken for commands.

use std::io;

use smtp_proto::request::receiver::{BdatReceiver, DummyDataReceiver};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{End, Flow, Session};

impl Session {
    pub(super) async fn bdat<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        size: usize,
        last: bool,
    ) -> io::Result<Flow> {
        let max = self.shared.config.max_message_bytes;
        let refusal = match &self.mail {
            None => Some("503 5.5.1 Need MAIL before BDAT"),
            Some(m) if m.recipients.is_empty() => Some("554 5.5.1 No valid recipients"),
            Some(_) => None,
        };
        let keep = refusal.is_none()
            && self
                .mail
                .as_ref()
                .is_some_and(|m| !m.oversize && m.chunks.len().saturating_add(size) <= max);
        let mut chunk = Vec::new();
        let mut receiver = BdatReceiver::new(size, last);
        let mut discard = DummyDataReceiver::new_bdat(size);
        loop {
            let mut bytes = self.input.iter();
            let done = if keep {
                receiver.ingest(&mut bytes, &mut chunk)
            } else {
                discard.ingest(&mut bytes)
            };
            let consumed = self.input.len() - bytes.as_slice().len();
            self.input.drain(..consumed);
            if done {
                break;
            }
            if !self.fill(io, self.shared.config.data_timeout).await? {
                return Ok(Flow::End(End::Closed));
            }
        }
        if let Some(refusal) = refusal {
            return Ok(self.refuse(refusal));
        }
        let Some(mail) = self.mail.as_mut() else {
            return Ok(Flow::Go);
        };
        mail.chunking = true;
        if keep {
            mail.chunks.append(&mut chunk);
        } else {
            mail.oversize = true;
        }
        if !last {
            self.reply(&format!("250 2.0.0 {size} octets received"));
            return Ok(Flow::Go);
        }
        let Some(mut mail) = self.mail.take() else {
            return Ok(Flow::Go);
        };
        if mail.oversize {
            self.reply(&format!(
                "552 5.3.4 Message size exceeds the limit of {max} bytes"
            ));
            return Ok(Flow::Go);
        }
        let data = std::mem::take(&mut mail.chunks);
        let reply =
            super::super::queue::enqueue(&self.shared, self.submitter.as_deref(), mail, &data)
                .await;
        self.reply(&reply);
        Ok(Flow::Go)
    }
}
