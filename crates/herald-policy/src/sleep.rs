//! Waiting between attempts, injected beside the [`Clock`](crate::Clock)
//! so that tests need not wait: the mailer's retries and the HTTP client's
//! both ask a [`Sleeper`]. `TokioSleeper` (feature `tokio`) waits on
//! tokio's timer; [`ManualSleeper`] moves a [`ManualClock`] instead.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::ManualClock;

/// Waits between attempts.
pub trait Sleeper: Send + Sync + std::fmt::Debug {
    /// Waits `duration`.
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// Waits on tokio's timer.
#[cfg(feature = "tokio")]
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSleeper;

#[cfg(feature = "tokio")]
impl Sleeper for TokioSleeper {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// Moves a [`ManualClock`] forward by each wait instead of waiting, and
/// remembers the waits: give the same clock to the mailer, and the retry
/// policy sees the time pass. For tests.
#[derive(Debug)]
pub struct ManualSleeper {
    clock: Arc<ManualClock>,
    waits: Mutex<Vec<Duration>>,
}

impl ManualSleeper {
    /// A sleeper that moves `clock`.
    pub fn new(clock: Arc<ManualClock>) -> Self {
        Self {
            clock,
            waits: Mutex::new(Vec::new()),
        }
    }

    /// Every wait asked for, in order.
    pub fn waits(&self) -> Vec<Duration> {
        self.waits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Sleeper for ManualSleeper {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        self.waits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(duration);
        self.clock.advance(duration);
        Box::pin(std::future::ready(()))
    }
}
