//! Deciding which fault strikes: the recipient local-part grammar, the
//! phase-wide rules with their firing counts, and the seeded random faults.
//! Pure bookkeeping with no I/O, so the grammar is unit-tested on its own.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::{Fault, FaultRule, Phase, ServerConfig};
use crate::lock;

/// The fault a recipient address scripts, before `-once`/`-twice` counting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AddressScript {
    /// Applied to the RCPT reply itself.
    pub(crate) at_rcpt: Option<Fault>,
    /// Armed for the transaction when the RCPT is accepted: the reply to DATA
    /// ([`Phase::Data`]) or after the dot ([`Phase::DataDot`]).
    pub(crate) in_txn: Option<(Phase, Fault)>,
    /// `Some(n)`: only the first `n` sightings of the address fire.
    pub(crate) limit: Option<usize>,
}

/// What an accepted or rejected RCPT should do, after counting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RcptPlan {
    pub(crate) at_rcpt: Option<Fault>,
    pub(crate) in_txn: Option<(Phase, Fault)>,
}

/// Parses the fault grammar out of an address's local part
/// (case-insensitive; everything after the recognised prefix is ignored
/// except a `-once` / `-twice` marker anywhere in the local part).
pub(crate) fn parse_address(address: &str) -> Option<AddressScript> {
    let local = match address.rfind('@') {
        Some(at) => &address[..at],
        None => address,
    };
    let local = local.to_ascii_lowercase();
    let limit = if local.contains("-once") {
        Some(1)
    } else if local.contains("-twice") {
        Some(2)
    } else {
        None
    };
    let at_rcpt = |fault| AddressScript {
        at_rcpt: Some(fault),
        in_txn: None,
        limit,
    };
    let in_txn = |phase, fault| AddressScript {
        at_rcpt: None,
        in_txn: Some((phase, fault)),
        limit,
    };

    // Longer prefixes first where one could shadow another.
    if local.starts_with("stallrcpt") {
        Some(at_rcpt(Fault::Stall))
    } else if local.starts_with("stalldata") {
        Some(in_txn(Phase::Data, Fault::Stall))
    } else if local.starts_with("stalldot") {
        Some(in_txn(Phase::DataDot, Fault::Stall))
    } else if local.starts_with("dropdata") {
        Some(in_txn(Phase::DataDot, Fault::DropMidData))
    } else if local.starts_with("disconnect") {
        Some(at_rcpt(Fault::Disconnect421))
    } else if local.starts_with("close") {
        Some(at_rcpt(Fault::Close))
    } else if let Some(rest) = local.strip_prefix("slow") {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let ms = digits.parse::<u64>().ok()?;
        Some(at_rcpt(Fault::Delay(Duration::from_millis(ms))))
    } else if let Some(rest) = local.strip_prefix("rcpt") {
        let code = leading_code(rest)?;
        Some(at_rcpt(Fault::Reply(code, rcpt_text(code).to_owned())))
    } else if let Some(rest) = local.strip_prefix("data") {
        let code = leading_code(rest)?;
        Some(in_txn(
            Phase::DataDot,
            Fault::Reply(code, data_text(code).to_owned()),
        ))
    } else {
        None
    }
}

/// Three leading digits forming a 4xx or 5xx code.
fn leading_code(rest: &str) -> Option<u16> {
    let digits = rest.get(..3)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let code = digits.parse::<u16>().ok()?;
    (400..=599).contains(&code).then_some(code)
}

/// Reply text (enhanced code first) for a scripted RCPT failure.
pub(crate) fn rcpt_text(code: u16) -> &'static str {
    match code {
        421 => "4.4.2 closing connection",
        450 => "4.2.1 mailbox temporarily unavailable",
        451 => "4.7.1 try again later",
        452 => "4.5.3 too many recipients",
        550 => "5.1.1 user unknown",
        551 => "5.1.6 user not local",
        552 => "5.2.2 mailbox full",
        553 => "5.1.3 mailbox name not allowed",
        554 => "5.7.1 relay access denied",
        400..=499 => "4.0.0 temporary failure",
        _ => "5.0.0 permanent failure",
    }
}

/// Reply text (enhanced code first) for a scripted failure after the dot.
pub(crate) fn data_text(code: u16) -> &'static str {
    match code {
        421 => "4.4.2 closing connection",
        450 | 451 => "4.3.0 temporary failure, try again later",
        452 => "4.3.1 insufficient system storage",
        550 => "5.7.1 message rejected",
        552 => "5.3.4 message too big",
        554 => "5.6.0 message content rejected",
        400..=499 => "4.0.0 temporary failure",
        _ => "5.0.0 permanent failure",
    }
}

/// Shared across all sessions of a server so that `times`, `-once` and the
/// random stream count server-wide, as tests of retries need.
#[derive(Debug)]
pub(crate) struct FaultBook {
    rules: Vec<FaultRule>,
    state: Mutex<BookState>,
}

#[derive(Debug)]
struct BookState {
    fired: Vec<usize>,
    seen: HashMap<String, usize>,
    random: Option<(f64, Fault, StdRng)>,
}

impl FaultBook {
    pub(crate) fn new(config: &ServerConfig) -> Self {
        let random = config
            .fault_probability
            .as_ref()
            .map(|(p, fault, seed)| (*p, fault.clone(), StdRng::seed_from_u64(*seed)));
        Self {
            rules: config.faults.clone(),
            state: Mutex::new(BookState {
                fired: vec![0; config.faults.len()],
                seen: HashMap::new(),
                random,
            }),
        }
    }

    /// The first rule for `phase` with firings left, counting this firing.
    pub(crate) fn rule(&self, phase: Phase) -> Option<Fault> {
        if !self.rules.iter().any(|r| r.phase == phase) {
            return None;
        }
        let mut state = lock(&self.state);
        for (rule, fired) in self.rules.iter().zip(state.fired.iter_mut()) {
            if rule.phase != phase {
                continue;
            }
            if rule.times.is_none_or(|n| *fired < n) {
                *fired += 1;
                return Some(rule.fault.clone());
            }
        }
        None
    }

    /// Counts a sighting of `address` and returns what it scripts, falling
    /// back to the random fault when the address scripts nothing.
    pub(crate) fn rcpt(&self, address: &str) -> RcptPlan {
        let script = parse_address(address);
        let mut state = lock(&self.state);
        if let Some(script) = script {
            let seen = state.seen.entry(address.to_ascii_lowercase()).or_insert(0);
            let armed = script.limit.is_none_or(|n| *seen < n);
            *seen = seen.saturating_add(1);
            return if armed {
                RcptPlan {
                    at_rcpt: script.at_rcpt,
                    in_txn: script.in_txn,
                }
            } else {
                RcptPlan::default()
            };
        }
        if let Some((p, fault, rng)) = state.random.as_mut()
            && rng.random::<f64>() < *p
        {
            return RcptPlan {
                at_rcpt: Some(fault.clone()),
                in_txn: None,
            };
        }
        RcptPlan::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn rcpt_fault(addr: &str) -> Option<Fault> {
        parse_address(addr).and_then(|s| s.at_rcpt)
    }

    fn txn_fault(addr: &str) -> Option<(Phase, Fault)> {
        parse_address(addr).and_then(|s| s.in_txn)
    }

    #[test]
    fn grammar_table() {
        assert_eq!(
            rcpt_fault("rcpt451@x"),
            Some(Fault::Reply(451, "4.7.1 try again later".into()))
        );
        assert_eq!(
            rcpt_fault("RCPT550.bob@x"),
            Some(Fault::Reply(550, "5.1.1 user unknown".into()))
        );
        assert_eq!(
            rcpt_fault("rcpt452@x"),
            Some(Fault::Reply(452, "4.5.3 too many recipients".into()))
        );
        assert_eq!(rcpt_fault("rcpt250@x"), None);
        assert_eq!(rcpt_fault("rcpt45@x"), None);
        assert_eq!(
            txn_fault("data451@x"),
            Some((
                Phase::DataDot,
                Fault::Reply(451, "4.3.0 temporary failure, try again later".into())
            ))
        );
        assert_eq!(
            txn_fault("data554@x"),
            Some((
                Phase::DataDot,
                Fault::Reply(554, "5.6.0 message content rejected".into())
            ))
        );
        assert_eq!(rcpt_fault("disconnect@x"), Some(Fault::Disconnect421));
        assert_eq!(rcpt_fault("close-me@x"), Some(Fault::Close));
        assert_eq!(
            txn_fault("dropdata@x"),
            Some((Phase::DataDot, Fault::DropMidData))
        );
        assert_eq!(rcpt_fault("stallrcpt@x"), Some(Fault::Stall));
        assert_eq!(txn_fault("stalldata@x"), Some((Phase::Data, Fault::Stall)));
        assert_eq!(
            txn_fault("stalldot@x"),
            Some((Phase::DataDot, Fault::Stall))
        );
        assert_eq!(
            rcpt_fault("slow200x@x"),
            Some(Fault::Delay(Duration::from_millis(200)))
        );
        assert_eq!(rcpt_fault("slow@x"), None);
        assert_eq!(parse_address("alice@rcpt451.example"), None);
        assert_eq!(parse_address("alice@x"), None);
    }

    #[test]
    fn once_and_twice_markers() {
        assert_eq!(parse_address("rcpt451-once@x").unwrap().limit, Some(1));
        assert_eq!(parse_address("a-twice.rcpt451@x"), None);
        assert_eq!(parse_address("rcpt451.a-twice@x").unwrap().limit, Some(2));
        assert_eq!(parse_address("rcpt451@x").unwrap().limit, None);
    }

    #[test]
    fn once_counts_across_calls() {
        let book = FaultBook::new(&ServerConfig::default());
        assert!(book.rcpt("rcpt451-once@x").at_rcpt.is_some());
        assert!(book.rcpt("rcpt451-once@x").at_rcpt.is_none());
        assert!(book.rcpt("rcpt451-twice@x").at_rcpt.is_some());
        assert!(book.rcpt("RCPT451-twice@X").at_rcpt.is_some());
        assert!(book.rcpt("rcpt451-twice@x").at_rcpt.is_none());
        assert!(book.rcpt("rcpt451@x").at_rcpt.is_some());
        assert!(book.rcpt("rcpt451@x").at_rcpt.is_some());
    }

    #[test]
    fn rules_fire_limited_times_in_order() {
        let config = ServerConfig {
            faults: vec![
                FaultRule::times(Phase::Mail, Fault::Close, 1),
                FaultRule::always(Phase::Mail, Fault::Stall),
            ],
            ..ServerConfig::default()
        };
        let book = FaultBook::new(&config);
        assert_eq!(book.rule(Phase::Rcpt), None);
        assert_eq!(book.rule(Phase::Mail), Some(Fault::Close));
        assert_eq!(book.rule(Phase::Mail), Some(Fault::Stall));
        assert_eq!(book.rule(Phase::Mail), Some(Fault::Stall));
    }

    #[test]
    fn random_faults_are_seeded() {
        let config = ServerConfig {
            fault_probability: Some((0.3, Fault::Close, 42)),
            ..ServerConfig::default()
        };
        let draw = || {
            let book = FaultBook::new(&config);
            (0..200)
                .map(|_| book.rcpt("a@x").at_rcpt.is_some())
                .collect::<Vec<_>>()
        };
        let first = draw();
        assert_eq!(first, draw());
        let hits = first.iter().filter(|h| **h).count();
        assert!((30..90).contains(&hits), "{hits} hits of 200 at p=0.3");
    }
}
