//! Which connection the running task serves: how the middleware inside an
//! app (`Router::layer(LingerLayer::new())`), and the handler's
//! [`ConnectionHandle`] extractor, find a connection they were never given.
//!
//! A [`LingerIo`](crate::LingerIo) records its handle, with the id of the
//! tokio task reading it, in a per-thread slot each time a read returns
//! bytes (a request is on its way). A
//! lookup made by the same task on the same thread finds it. axum's
//! `serve`, [`linger::serve`](crate::serve()), axum-server and hyper-util's
//! accept loops serve each connection on a task of its own, and hyper calls
//! the service from that task, so the slot names the connection whose
//! request is being dispatched. Anything else falls back to "unknown",
//! never to another connection:
//!
//! - a lookup from another task (a `tower::buffer::Buffer` worker, a task
//!   the handler spawned) or outside any task: another task id;
//! - a task that went on to read another connection on this thread: the
//!   slot holds that one's handle with this task's id only while it is the
//!   connection this task reads;
//! - a task that reads two connections at once: once the second is read
//!   while the first is open, both are marked as sharing a task, and a
//!   lookup that finds either answers "unknown".

use std::cell::{Cell, RefCell};

use tokio::task::Id;

use crate::state::connection::ConnectionHandle;

struct Slot {
    /// The task that last read a `LingerIo` on this thread, and that
    /// `LingerIo`'s handle.
    current: RefCell<Option<(Id, ConnectionHandle)>>,
    /// Whether any `LingerIo` was ever read on this thread.
    seen: Cell<bool>,
}

thread_local! {
    static SLOT: Slot = const {
        Slot {
            current: RefCell::new(None),
            seen: Cell::new(false),
        }
    };
    /// The address of the connection in [`SLOT`] (0: none), apart from it
    /// so that the check every read makes is one load: a type without a
    /// destructor needs no registration check on access.
    static HELD: Cell<usize> = const { Cell::new(0) };
}

/// What a lookup found.
pub(crate) enum Lookup {
    /// The connection the running task serves.
    Found(ConnectionHandle),
    /// A `LingerIo` was read on this thread, but none can be named for the
    /// running task (see the module docs): a fallback, not a wiring error.
    Unknown,
    /// No `LingerIo` was ever read on this thread: the server's
    /// connections are not `LingerIo`s.
    NoLingerIo,
}

/// Records that the running task read input from the connection of
/// `handle` (called when a read returned bytes: a request is on its way).
///
/// A read from the connection the slot already holds changes nothing: one
/// load and a compare. The slot holds a clone of the handle, so no other
/// connection can have its address meanwhile. Were the same connection
/// read by another task (its IO moved after an upgrade), the slot would
/// keep the first task's id: lookups from the other task find none, never
/// a wrong one.
#[inline]
pub(crate) fn enter(handle: &ConnectionHandle) {
    if HELD.with(Cell::get) != handle.addr() {
        enter_other(handle);
    }
}

/// [`enter`] for a connection the slot does not hold.
#[cold]
#[inline(never)]
fn enter_other(handle: &ConnectionHandle) {
    let Some(task) = tokio::task::try_id() else {
        return;
    };
    let _ = SLOT.try_with(|slot| {
        let Ok(mut current) = slot.current.try_borrow_mut() else {
            return;
        };
        match current.as_ref() {
            // One task reading two open connections: neither can be told
            // apart from the other by task.
            Some((held_by, held)) if *held_by == task && !held.is_ended() => {
                held.mark_shared_task();
                handle.mark_shared_task();
            }
            _ => {}
        }
        slot.seen.set(true);
        *current = Some((task, handle.clone()));
        HELD.with(|held| held.set(handle.addr()));
    });
}

/// Forgets `handle` if this thread's slot holds it (its connection ended).
pub(crate) fn leave(handle: &ConnectionHandle) {
    if HELD.with(Cell::get) != handle.addr() {
        return;
    }
    let _ = SLOT.try_with(|slot| {
        if let Ok(mut current) = slot.current.try_borrow_mut() {
            *current = None;
            HELD.with(|held| held.set(0));
        }
    });
}

/// The connection the running task serves, if it can be named.
pub(crate) fn lookup() -> Lookup {
    let task = tokio::task::try_id();
    SLOT.try_with(|slot| {
        if !slot.seen.get() {
            return Lookup::NoLingerIo;
        }
        match slot.current.try_borrow().ok().as_deref() {
            Some(Some((held_by, handle))) if Some(*held_by) == task && !handle.shares_task() => {
                Lookup::Found(handle.clone())
            }
            _ => Lookup::Unknown,
        }
    })
    .unwrap_or(Lookup::Unknown)
}

/// The handle a request carries: a [`ConnectionHandle`] extension, or
/// axum's `ConnectInfo<LingerConnectInfo>`.
pub(crate) fn carried(extensions: &http::Extensions) -> Option<ConnectionHandle> {
    if let Some(handle) = extensions.get::<ConnectionHandle>() {
        return Some(handle.clone());
    }
    #[cfg(feature = "axum")]
    {
        use crate::state::LingerConnectInfo;
        use axum::extract::ConnectInfo;
        if let Some(ConnectInfo(info)) =
            extensions.get::<ConnectInfo<LingerConnectInfo<std::net::SocketAddr>>>()
        {
            return Some(info.handle().clone());
        }
        #[cfg(unix)]
        if let Some(ConnectInfo(info)) =
            extensions.get::<ConnectInfo<LingerConnectInfo<tokio::net::unix::SocketAddr>>>()
        {
            return Some(info.handle().clone());
        }
    }
    None
}

/// A handler's [`ConnectionHandle`]: `async fn h(conn: ConnectionHandle)`
/// gets the handle of the connection its request arrived on (the one the
/// running task reads, else a handle the request carries), so that
/// `conn.mark_closing()` ends the connection after this response. Rejects
/// the request with `500 Internal Server Error` where there is none (the
/// server's connections are not `LingerIo`s, or the handler runs behind a
/// layer that moved it to another task).
#[cfg(feature = "axum")]
impl<S: Sync> axum::extract::FromRequestParts<S> for ConnectionHandle {
    type Rejection = (http::StatusCode, &'static str);

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        if let Lookup::Found(handle) = lookup() {
            return Ok(handle);
        }
        carried(&parts.extensions).ok_or((
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "linger: this request's connection has no ConnectionHandle",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::config::LingerConfig;
    use crate::state::group::Group;

    fn handle() -> ConnectionHandle {
        ConnectionHandle::new(Group::new(LingerConfig::new()))
    }

    fn found(lookup: Lookup) -> Option<ConnectionHandle> {
        match lookup {
            Lookup::Found(handle) => Some(handle),
            Lookup::Unknown | Lookup::NoLingerIo => None,
        }
    }

    /// On one thread, tasks taking turns: each finds the connection it
    /// read last, while no other task has read one since, and else none,
    /// never another's; a task that read none (a `Buffer` worker, say)
    /// finds none; outside a task, none.
    #[tokio::test(flavor = "current_thread")]
    async fn a_task_finds_its_own_connection_and_no_other() {
        let (a, b) = (handle(), handle());
        let (ta, tb) = (a.clone(), b.clone());
        let reader_a = tokio::spawn(async move {
            enter(&ta);
            let before = found(lookup()).is_some_and(|h| h.addr() == ta.addr());
            tokio::task::yield_now().await;
            // Task B read its connection in between, on this thread: not
            // B's, and none until A reads again.
            let between = found(lookup()).is_none();
            enter(&ta);
            before && between && found(lookup()).is_some_and(|h| h.addr() == ta.addr())
        });
        let reader_b = tokio::spawn(async move {
            enter(&tb);
            found(lookup()).is_some_and(|h| h.addr() == tb.addr())
        });
        let worker = tokio::spawn(async { found(lookup()).is_none() });
        assert!(reader_b.await.unwrap(), "task B found its own");
        assert!(reader_a.await.unwrap(), "task A found B's");
        assert!(
            worker.await.unwrap(),
            "a task that read nothing found a connection"
        );
        assert!(found(lookup()).is_none(), "outside a task");
        drop((a, b));
    }

    /// One task reading two open connections: neither is named.
    #[tokio::test(flavor = "current_thread")]
    async fn a_task_reading_two_connections_names_neither() {
        let (a, b) = (handle(), handle());
        let (ta, tb) = (a.clone(), b.clone());
        let both = tokio::spawn(async move {
            enter(&ta);
            enter(&tb);
            let after_b = found(lookup()).is_none();
            enter(&ta);
            after_b && found(lookup()).is_none()
        });
        assert!(both.await.unwrap());
        assert!(a.shares_task() && b.shares_task());
    }

    /// One task serving connections one after another: each, once the
    /// one before has ended, is named.
    #[tokio::test(flavor = "current_thread")]
    async fn a_task_serving_connections_in_turn_names_each() {
        let serial = tokio::spawn(async {
            let (a, b) = (handle(), handle());
            enter(&a);
            a.mark_ended();
            leave(&a);
            enter(&b);
            found(lookup()).is_some_and(|h| h.addr() == b.addr()) && !a.shares_task()
        });
        assert!(serial.await.unwrap());
    }
}
