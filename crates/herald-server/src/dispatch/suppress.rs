//! Send-time suppression: the recipients of a claim that are on the
//! suppression list are taken off before anything is sent, and recorded
//! as `suppressed`. One look-up answers for every message of the claim
//! (a store round trip per claim, not per message).

use std::sync::Arc;

use herald_store::{Claimed, RecipientResult, Suppression};

use super::{Dispatcher, attempt};

/// The entries that hold for a claim's recipients; `None` when the store
/// could not answer (then nobody is suppressed: a lost look-up must not
/// lose mail).
pub(super) type Listed = Option<Arc<Vec<Suppression>>>;

impl Dispatcher {
    /// The entries holding now for any recipient of `claimed`.
    pub(super) async fn listed(&self, claimed: &[Claimed]) -> Listed {
        let recipients: Vec<String> = claimed
            .iter()
            .flat_map(|message| message.recipients.iter().cloned())
            .collect();
        match self
            .store
            .suppressions_among(&recipients, self.clock.now())
            .await
        {
            Ok(found) => Some(Arc::new(found)),
            Err(error) => {
                tracing::warn!(error = %error, "suppression look-up failed; sending to everyone");
                None
            }
        }
    }
}

/// Takes the recipients of `message` that `listed` holds off it (they are
/// not sent to), and returns their results.
pub(super) fn take_off(
    message: &mut Claimed,
    listed: Option<&[Suppression]>,
) -> Vec<RecipientResult> {
    let Some(found) = listed.filter(|found| !found.is_empty()) else {
        return Vec::new();
    };
    let mut suppressed = Vec::new();
    message.recipients.retain(|address| {
        let key = herald_store::suppression::address_key(address);
        match found.iter().find(|entry| entry.address == key) {
            Some(entry) => {
                tracing::info!(reason = %entry.reason, "recipient suppressed; not sent");
                suppressed.push(attempt::suppressed_result(address, entry));
                false
            }
            None => true,
        }
    });
    suppressed
}
