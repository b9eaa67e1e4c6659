//! Auth-change events, delivered through a bounded channel that never blocks
//! the client.

use core::cell::Cell;

use embassy_sync::blocking_mutex::Mutex as BlockingMutex;
use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_sync::channel::{Channel, TrySendError};
use heapless::String;
use paywall_auth::limits::{EMAIL_MAX, USER_ID_MAX};
use paywall_auth::{AuthChange, Notice, RecordKey, Session};

use crate::store::StorageFault;

/// Who a session belongs to, as carried by an [`Event`]: the identity
/// without the tokens, so an event is small (about 330 bytes with the
/// default capacities) and safe to log.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UserInfo {
    /// Backend user id; stays the same across resume, refresh and upgrade.
    pub id: String<USER_ID_MAX>,
    /// `None` for anonymous users.
    pub email: Option<String<EMAIL_MAX>>,
    /// Whether this is a guest account.
    pub is_anonymous: bool,
}

impl UserInfo {
    /// The identity of `session`.
    pub fn of(session: &Session) -> Self {
        UserInfo {
            id: session.user.id.clone(),
            email: session.user.email.clone(),
            is_anonymous: session.user.is_anonymous,
        }
    }
}

/// Something the application may want to react to.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
// No allocator to box the identity into; a channel slot is sized for the
// largest variant whatever the layout.
#[allow(clippy::large_enum_variant)]
pub enum Event {
    /// The session changed (docs/protocol.md §8): `INITIAL_SESSION` once after
    /// start, then `SIGNED_IN`, `SIGNED_OUT`, `TOKEN_REFRESHED`,
    /// `USER_UPDATED`. `user` is who is signed in after the change.
    Auth {
        /// What happened.
        change: AuthChange,
        /// The user after the change; `None` when signed out.
        user: Option<UserInfo>,
    },
    /// A notice of the core: a stored record that could not be decoded (the
    /// client ignores it and starts without it), or a storage write that
    /// failed (the core keeps the state in memory and retries the write).
    Notice(Notice),
    /// The flash map itself could not be read at start (not one bad record:
    /// the map did not open, or reading it failed even after
    /// `sequential-storage`'s automatic repair). The client started without
    /// that record — signed out if it was the session. Flash that stays
    /// unreadable can be wiped with
    /// [`AuthClient::erase_storage`](crate::AuthClient::erase_storage); the
    /// client never erases anything on its own.
    StorageUnreadable {
        /// The record being read.
        key: RecordKey,
        /// Why it could not be read.
        fault: StorageFault,
    },
}

/// Where the client pushes its [`Event`]s.
///
/// `publish` is called from inside the client's drive loop, so it must not
/// block and must not wait: the machine is never held up by a slow consumer.
pub trait EventSink {
    /// Delivers one event (or drops it; see the implementation).
    fn publish(&self, event: Event);
}

/// An [`EventSink`] that discards everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

impl EventSink for NoEvents {
    fn publish(&self, _event: Event) {}
}

/// A bounded queue of the last `N` events, shared between the client and any
/// number of consumers (an `embassy-sync` [`Channel`] underneath).
///
/// **When it is full, the oldest event is dropped** to make room for the new
/// one and [`dropped`](Self::dropped) counts it: the client never blocks on a
/// consumer, and a consumer that falls behind sees the latest state rather
/// than a stale backlog. Auth events are edge notifications; the current
/// state is always available from [`AuthClient::session`](crate::AuthClient::session),
/// so a consumer that notices `dropped()` moved should re-read it.
///
/// Put it in a `static` to share it between tasks:
///
/// ```
/// use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
/// use paywall_auth_embassy::EventChannel;
///
/// static EVENTS: EventChannel<CriticalSectionRawMutex, 4> = EventChannel::new();
/// assert_eq!(EVENTS.dropped(), 0);
/// ```
pub struct EventChannel<M: RawMutex, const N: usize> {
    channel: Channel<M, Event, N>,
    dropped: BlockingMutex<M, Cell<u32>>,
}

impl<M: RawMutex, const N: usize> EventChannel<M, N> {
    /// An empty channel.
    pub const fn new() -> Self {
        EventChannel {
            channel: Channel::new(),
            dropped: BlockingMutex::new(Cell::new(0)),
        }
    }

    /// Waits for the next event.
    pub async fn receive(&self) -> Event {
        self.channel.receive().await
    }

    /// The next event, if one is queued.
    pub fn try_receive(&self) -> Option<Event> {
        self.channel.try_receive().ok()
    }

    /// How many events were dropped because the queue was full (wraps at
    /// `u32::MAX`).
    pub fn dropped(&self) -> u32 {
        self.dropped.lock(Cell::get)
    }

    /// Number of queued events.
    pub fn len(&self) -> usize {
        self.channel.len()
    }

    /// Whether no event is queued.
    pub fn is_empty(&self) -> bool {
        self.channel.is_empty()
    }

    fn count_drop(&self) {
        self.dropped.lock(|d| d.set(d.get().wrapping_add(1)));
    }
}

impl<M: RawMutex, const N: usize> Default for EventChannel<M, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: RawMutex, const N: usize> core::fmt::Debug for EventChannel<M, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EventChannel")
            .field("capacity", &N)
            .field("len", &self.len())
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl<M: RawMutex, const N: usize> EventSink for EventChannel<M, N> {
    fn publish(&self, event: Event) {
        let event = match self.channel.try_send(event) {
            Ok(()) => return,
            Err(TrySendError::Full(event)) => event,
        };
        // Full: make room by dropping the oldest event. Another producer
        // could refill the slot in between; then the new event is the one
        // dropped. Either way exactly one event is lost and counted, and
        // nothing waits.
        if self.channel.try_receive().is_ok() {
            self.count_drop();
        }
        if self.channel.try_send(event).is_err() {
            self.count_drop();
        }
    }
}
