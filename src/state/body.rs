//! [`BodySlot`]: what the middleware learns of the request body of a
//! connection's current request.
//!
//! hyper serves one HTTP/1 request at a time on a connection, so one slot
//! per connection, in its [`ConnectionHandle`](crate::ConnectionHandle),
//! tracks every body of that connection in turn: tracking a request body
//! allocates nothing. Each tracked body gets a ticket; a body that outlives
//! its request (moved into a task the handler spawned) holds an old ticket,
//! and nothing it reports changes what the slot says of the current one.

use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A bit of [`BodySlot::state`]: the body of that ticket was read to its
/// end.
const FINISHED: u64 = 1;
/// A bit of [`BodySlot::state`]: the response to that ticket's request is
/// ready, and a body dropped from now on is dropped, not handed back.
const SETTLED: u64 = 2;
/// The ticket's shift in [`BodySlot::state`], past the bits above.
const TICKET: u32 = 2;

/// A body handed back unread, as the type-erased body it was.
pub(crate) type Leftover = Box<dyn Any + Send>;

/// The request body tracked last on one connection (or for one request,
/// where the middleware finds no connection).
pub(crate) struct BodySlot {
    /// `ticket << TICKET`, with [`FINISHED`] and [`SETTLED`].
    state: AtomicU64,
    /// A body dropped unread before its response was ready, with its
    /// ticket: handed back to the middleware, which may discard it to keep
    /// the connection (the keep-alive rescue).
    leftover: Mutex<Option<(u64, Leftover)>>,
}

/// What the middleware learns of a tracked body when its response is
/// ready.
pub(crate) enum BodyEnd {
    /// It was read to its end.
    Finished,
    /// It was not: the body itself if it was dropped by then.
    Unread(Option<Leftover>),
}

impl BodySlot {
    pub(crate) const fn new() -> Self {
        Self {
            state: AtomicU64::new(0),
            leftover: Mutex::new(None),
        }
    }

    /// Starts tracking a new request body: its ticket.
    #[inline]
    pub(crate) fn begin(&self) -> u64 {
        // A compare-and-swap, not a load and a store, so that two bodies
        // tracked at once (a handle shared against its docs) never share
        // a ticket.
        let previous = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
                Some(((state >> TICKET) + 1) << TICKET)
            })
            .unwrap_or_else(|state| state);
        (previous >> TICKET) + 1
    }

    /// Records that the body of `ticket` was read to its end; nothing if
    /// its response was settled or a newer body is tracked.
    #[inline]
    pub(crate) fn finish(&self, ticket: u64) {
        let _ = self.state.compare_exchange(
            ticket << TICKET,
            ticket << TICKET | FINISHED,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }

    /// Keeps `body`, the body of `ticket` dropped unread, for the
    /// middleware while its response is not ready; otherwise drops it.
    pub(crate) fn hand_back(&self, ticket: u64, body: Leftover) {
        let mut leftover = self.lock();
        if self.state.load(Ordering::Acquire) == ticket << TICKET {
            *leftover = Some((ticket, body));
        }
    }

    /// Whether the body of `ticket` was read to its end, once its response
    /// is ready. From then on, a body dropped unread is not handed back,
    /// so that hyper sees it dropped.
    #[inline]
    pub(crate) fn settle(&self, ticket: u64) -> BodyEnd {
        let open = ticket << TICKET;
        match self
            .state
            .compare_exchange(open, open | SETTLED, Ordering::AcqRel, Ordering::Acquire)
        {
            Err(state) if state == open | FINISHED => BodyEnd::Finished,
            // Unread; a state of another ticket (two bodies at once) is
            // taken as unread too: the connection ends.
            _ => BodyEnd::Unread(self.take_back(ticket)),
        }
    }

    /// The body of `ticket`, if it was handed back; drops an older one.
    fn take_back(&self, ticket: u64) -> Option<Leftover> {
        match self.lock().take() {
            Some((held, body)) if held == ticket => Some(body),
            _ => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(u64, Leftover)>> {
        self.leftover
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl fmt::Debug for BodySlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.load(Ordering::Relaxed);
        f.debug_struct("BodySlot")
            .field("ticket", &(state >> TICKET))
            .field("finished", &(state & FINISHED != 0))
            .field("settled", &(state & SETTLED != 0))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unread(end: BodyEnd) -> Option<Option<Leftover>> {
        match end {
            BodyEnd::Finished => None,
            BodyEnd::Unread(leftover) => Some(leftover),
        }
    }

    #[test]
    fn a_ticket_tells_its_own_body_from_an_older_one() {
        let slot = BodySlot::new();
        let first = slot.begin();
        slot.finish(first);
        assert!(unread(slot.settle(first)).is_none(), "read to its end");

        let second = slot.begin();
        assert_ne!(first, second);
        // The first body, kept alive by its handler, reports again: it
        // changes nothing of the second.
        slot.finish(first);
        slot.hand_back(first, Box::new(1u8));
        slot.hand_back(second, Box::new(2u8));
        let back = unread(slot.settle(second))
            .expect("unread")
            .expect("handed back");
        assert_eq!(back.downcast_ref::<u8>(), Some(&2));
    }

    #[test]
    fn a_body_dropped_after_its_response_is_not_kept() {
        let slot = BodySlot::new();
        let ticket = slot.begin();
        assert!(matches!(slot.settle(ticket), BodyEnd::Unread(None)));
        // Kept, it would hold hyper's body open: hyper would wait for it.
        slot.hand_back(ticket, Box::new(()));
        assert!(slot.lock().is_none());
        // Nor does a late end change the settled answer's ticket.
        slot.finish(ticket);
        assert!(matches!(slot.settle(ticket), BodyEnd::Unread(None)));
    }

    #[test]
    fn a_finished_body_is_not_handed_back() {
        let slot = BodySlot::new();
        let ticket = slot.begin();
        slot.finish(ticket);
        slot.hand_back(ticket, Box::new(()));
        assert!(slot.lock().is_none());
        assert!(matches!(slot.settle(ticket), BodyEnd::Finished));
    }
}
