//! The events an endpoint's sender has handed out, in outbox order, and
//! which of them are finished. With several POSTs in flight they finish
//! in any order, but the endpoint's cursor may only pass an event once it
//! and every event before it are finished: a crash then sends again what
//! was in flight (delivery is at least once) and never skips an event.

use std::collections::VecDeque;

use herald_store::FeedCursor;

/// Handed-out events, oldest first.
#[derive(Debug, Default)]
pub(super) struct Window {
    events: VecDeque<(FeedCursor, bool)>,
}

impl Window {
    /// An event handed out after every one before it; `finished` for one
    /// that needs no POST (a type the endpoint does not want).
    pub(super) fn push(&mut self, cursor: FeedCursor, finished: bool) {
        self.events.push_back((cursor, finished));
    }

    /// Marks the event at `cursor` finished (delivered or given up).
    pub(super) fn finish(&mut self, cursor: FeedCursor) {
        if let Some(event) = self.events.iter_mut().find(|(at, _)| *at == cursor) {
            event.1 = true;
        }
    }

    /// Lets go of the finished events at the front: the cursor the
    /// endpoint may move to, if it may move.
    pub(super) fn advance(&mut self) -> Option<FeedCursor> {
        let mut moved = None;
        while let Some(&(at, true)) = self.events.front() {
            moved = Some(at);
            self.events.pop_front();
        }
        moved
    }

    /// Events handed out and not let go of.
    pub(super) fn len(&self) -> usize {
        self.events.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(id: i64) -> FeedCursor {
        FeedCursor { tx: 7, id }
    }

    #[test]
    fn the_cursor_passes_an_event_only_with_everything_before_it() {
        let mut window = Window::default();
        for id in 1..=4 {
            window.push(at(id), false);
        }
        window.finish(at(2));
        window.finish(at(3));
        assert_eq!(window.advance(), None, "1 is still in flight");
        window.finish(at(1));
        assert_eq!(window.advance(), Some(at(3)));
        assert_eq!(window.len(), 1);
        window.push(at(5), true);
        assert_eq!(window.advance(), None, "4 is still in flight");
        window.finish(at(4));
        assert_eq!(window.advance(), Some(at(5)), "5 needed no POST");
        assert_eq!(window.len(), 0);
        assert_eq!(window.advance(), None);
    }

    #[test]
    fn events_that_need_no_post_pass_at_once() {
        let mut window = Window::default();
        window.push(at(1), true);
        window.push(at(2), true);
        assert_eq!(window.advance(), Some(at(2)));
        window.push(at(3), false);
        window.push(at(4), true);
        assert_eq!((window.len(), window.advance()), (2, None));
    }
}
