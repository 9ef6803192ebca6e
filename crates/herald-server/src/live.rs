//! A setting that a reload can replace while the service runs: readers
//! take the current value (an `Arc`, cheap to clone) once per use and keep
//! it for that use, so that a delivery or a request in progress finishes
//! with the settings it started with, and the next one sees the new ones.

use std::sync::{Arc, RwLock};

/// A shared, swappable value. Clones share it.
#[derive(Debug)]
pub(crate) struct Live<T>(Arc<RwLock<Arc<T>>>);

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T> Live<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(value))))
    }

    /// The value now; a later [`set`](Self::set) does not change it.
    pub(crate) fn get(&self) -> Arc<T> {
        // Every write replaces the Arc whole: a poisoned lock still holds
        // a complete value.
        let guard = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(&guard)
    }

    /// Replaces the value for every later [`get`](Self::get).
    pub(crate) fn set(&self, value: T) {
        let mut guard = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = Arc::new(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_keeps_what_it_took_and_the_next_sees_the_new_value() {
        let live = Live::new(1);
        let shared = live.clone();
        let taken = live.get();
        shared.set(2);
        assert_eq!(*taken, 1);
        assert_eq!(*live.get(), 2);
    }
}
