//! Durable records and the operations the machine asks the adapter to apply.

use heapless::String;

use crate::error::{CapacityError, Field};
use crate::limits::PAYWALL_ID_MAX;
use crate::session::{RefreshToken, Session};

/// Longest storage key: `pw-` + paywall id + `-anon-rt-v1`.
pub const KEY_MAX: usize = PAYWALL_ID_MAX + 16;

/// The records the core owns (docs/protocol.md §6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RecordKey {
    /// `pw-{pid}-auth-v1`: the current session.
    Session,
    /// `pw-{pid}-anon-rt-v1`: the refresh token of the last anonymous
    /// account, kept across soft sign-outs so the account can be resumed.
    AnonRefreshToken,
}

impl RecordKey {
    /// Both keys, in the order the machine restores them.
    pub const ALL: [RecordKey; 2] = [RecordKey::Session, RecordKey::AnonRefreshToken];

    /// Short name for messages.
    pub const fn name(self) -> &'static str {
        match self {
            RecordKey::Session => "session",
            RecordKey::AnonRefreshToken => "anonymous refresh token",
        }
    }

    /// The exact key the reference client uses, so an app switching to this
    /// SDK keeps its users.
    ///
    /// ```
    /// use paywall_auth::RecordKey;
    /// assert_eq!(RecordKey::Session.storage_key("pw_1").unwrap(), "pw-pw_1-auth-v1");
    /// assert_eq!(RecordKey::AnonRefreshToken.storage_key("pw_1").unwrap(), "pw-pw_1-anon-rt-v1");
    /// ```
    pub fn storage_key(self, paywall_id: &str) -> Result<String<KEY_MAX>, CapacityError> {
        let suffix = match self {
            RecordKey::Session => "auth-v1",
            RecordKey::AnonRefreshToken => "anon-rt-v1",
        };
        crate::secret::concat(["pw-", paywall_id, "-", suffix]).ok_or(CapacityError {
            field: Field::PaywallId,
            capacity: PAYWALL_ID_MAX,
            len: paywall_id.len(),
        })
    }

    /// A one-byte tag for key-value stores on flash.
    pub const fn tag(self) -> u8 {
        match self {
            RecordKey::Session => 1,
            RecordKey::AnonRefreshToken => 2,
        }
    }

    /// The key for a [`tag`](Self::tag), if it is one of ours.
    pub const fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(RecordKey::Session),
            2 => Some(RecordKey::AnonRefreshToken),
            _ => None,
        }
    }
}

/// How records are encoded on storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum StoreFormat {
    /// The reference client's format: JSON session with `expires_at` in ms,
    /// raw refresh-token string. Byte-compatible with `@monetize.software/sdk`.
    #[default]
    ReferenceJson,
    /// postcard: a fraction of the size, for flash.
    Postcard,
}

/// Identifies one storage operation; the machine waits for its
/// acknowledgement before emitting anything that depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StoreId(pub u32);

/// A write or removal the adapter must apply, then acknowledge with
/// [`Machine::handle_stored`](crate::Machine::handle_stored).
#[derive(Debug)]
pub struct StoreOp<'a> {
    /// Acknowledge with this id.
    pub id: StoreId,
    /// Which record.
    pub key: RecordKey,
    /// `None` removes the record.
    pub value: Option<RecordValue<'a>>,
    /// The value is the one the record already holds: the write is asked
    /// for only to prove the store can take it before a request rotates a
    /// refresh token (docs/protocol.md §13.2). Write it like any other
    /// value (durably: that is the proof); an adapter that can prove the
    /// same without writing (reserved space on flash) may do that instead.
    /// A failure cancels the request with nothing spent.
    pub verify_only: bool,
}

/// The value of a record to write.
#[derive(Debug, Clone, Copy)]
pub enum RecordValue<'a> {
    /// The session record.
    Session(&'a Session),
    /// The anonymous refresh token record.
    AnonRefreshToken(&'a RefreshToken),
}

impl RecordValue<'_> {
    /// Encodes the value into `buf` in `format` and returns the bytes.
    pub fn encode<'b>(
        &self,
        format: StoreFormat,
        buf: &'b mut [u8],
    ) -> Result<&'b [u8], CapacityError> {
        let n = match self {
            RecordValue::Session(s) => crate::codec::record::encode_session(s, format, buf)?,
            RecordValue::AnonRefreshToken(t) => {
                crate::codec::record::encode_anon_token(t, format, buf)?
            }
        };
        Ok(&buf[..n])
    }
}
