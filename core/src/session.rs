//! The user and session the machine holds.

use heapless::{String, Vec};

use crate::error::{CapacityError, Field};
use crate::limits::*;
use crate::secret::{Secret, bounded, fingerprint, fingerprint_more};
use crate::time::Instant;

/// An access token (a JWT), redacted when formatted.
pub type AccessToken = Secret<ACCESS_TOKEN_MAX>;
/// A single-use refresh token, redacted when formatted.
pub type RefreshToken = Secret<REFRESH_TOKEN_MAX>;
/// A password on its way to an upgrade request, redacted when formatted.
pub type Password = Secret<PASSWORD_MAX>;

/// The account a session belongs to (docs/protocol.md §2.2).
///
/// Equality compares the known fields: the server's spelling of the object
/// (`server_json`) is how it was written down, not who the user is (a
/// record written without it reads back with it).
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct User {
    /// Backend user id. Stays the same across resume, refresh and upgrade.
    pub id: String<USER_ID_MAX>,
    /// `None` for anonymous users.
    pub email: Option<String<EMAIL_MAX>>,
    /// Whether this is a guest account.
    pub is_anonymous: bool,
    /// Display name from an OAuth profile.
    pub name: Option<String<NAME_MAX>>,
    /// Avatar URL from an OAuth profile.
    pub avatar: Option<String<AVATAR_MAX>>,
    /// Country, when the backend knows it.
    pub country: Option<String<COUNTRY_MAX>>,
    /// The user object as the server (or a `ReferenceJson` record) spelled
    /// it, keys the core does not know and `null`s included; empty when
    /// there is none or it was longer than [`USER_JSON_MAX`].
    ///
    /// The fields above are what the core decides with; this text is what
    /// a `ReferenceJson` record stores and what a JavaScript caller sees,
    /// so an app reading a key the backend added keeps working, as with the
    /// reference client. Where the machine corrected a known field (a guest
    /// the reply did not mark anonymous, a user id taken from the access
    /// token, §12), the record writes the corrected fields and keeps the
    /// other keys of this text (see `codec::record`).
    ///
    /// Kept only when the build gives it room: `USER_JSON_MAX` is 0 by
    /// default (an MCU has no use for keys it does not read), and the wasm
    /// package's build sets it to 2048.
    pub server_json: String<USER_JSON_MAX>,
}

impl PartialEq for User {
    fn eq(&self, other: &User) -> bool {
        self.same_identity(other)
            && self.name == other.name
            && self.avatar == other.avatar
            && self.country == other.country
    }
}

impl Eq for User {}

impl User {
    /// An anonymous user with the given id.
    pub fn anonymous(id: &str) -> Result<Self, CapacityError> {
        Ok(User {
            id: bounded(id, Field::UserId)?,
            is_anonymous: true,
            ..User::default()
        })
    }

    /// Whether two users are the same *identity* for event purposes: same id
    /// and email (§8.2), plus the anonymous flag, whose flip is exactly what
    /// a UI switching from "guest" to "profile" needs to hear about.
    pub fn same_identity(&self, other: &User) -> bool {
        self.id == other.id && self.email == other.email && self.is_anonymous == other.is_anonymous
    }

    /// Takes the server's spelling of the user from `from`, after the
    /// machine patched this user's known fields from `from`.
    pub(crate) fn adopt_server_json(&mut self, from: &User) {
        self.server_json.clone_from(&from.server_json);
    }
}

/// A signed-in session (docs/protocol.md §2.3).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Session {
    /// Bearer for API calls.
    pub access_token: AccessToken,
    /// Single-use token that buys the next access token.
    pub refresh_token: RefreshToken,
    /// When the access token expires, on the caller's clock (ms).
    pub expires_at: Instant,
    /// Whose session this is.
    pub user: User,
}

impl Session {
    /// An empty session to decode into (crate-internal: no caller should see
    /// a session without tokens).
    pub(crate) fn blank() -> Self {
        Session {
            access_token: Secret::default(),
            refresh_token: Secret::default(),
            expires_at: Instant(0),
            user: User::default(),
        }
    }

    /// Whether the access token is still usable for `leeway_ms` from `now`
    /// (strictly more than the leeway left, as in the reference client).
    pub fn is_fresh(&self, now: Instant, leeway_ms: u64) -> bool {
        now < self.fresh_until(leeway_ms)
    }

    /// The first instant at which [`is_fresh`](Self::is_fresh) is false:
    /// `expires_at - leeway`. Until then a request for the access token is
    /// answered from the session without a refresh, so an adapter may cache
    /// the token and hand it out synchronously while `now < fresh_until`
    /// without deciding freshness a second time.
    pub fn fresh_until(&self, leeway_ms: u64) -> Instant {
        Instant(self.expires_at.as_millis().saturating_sub(leeway_ms))
    }

    /// Whether the session is a guest session.
    pub fn is_anonymous(&self) -> bool {
        self.user.is_anonymous
    }

    /// A 64-bit fingerprint of everything a record of this session holds
    /// (tokens, expiry, user, and the server's spelling of the user).
    ///
    /// An adapter that caches a rendering of the session (the wasm package
    /// keeps the JS object it handed out, so that it stays the same object
    /// until the session changes) compares fingerprints instead of keeping
    /// a copy: with host capacities a copy is a 16 KiB token buffer moved
    /// byte by byte. Not for anything security-relevant; fields are
    /// length-prefixed so that no two layouts of the same bytes agree.
    ///
    /// ```
    /// # use paywall_auth::{Session, User, Instant, Secret, Field};
    /// let s = Session {
    ///     access_token: Secret::new("a.b.c", Field::AccessToken).unwrap(),
    ///     refresh_token: Secret::new("r1", Field::RefreshToken).unwrap(),
    ///     expires_at: Instant(5),
    ///     user: User::anonymous("u1").unwrap(),
    /// };
    /// let mut later = s.clone();
    /// assert_eq!(s.fingerprint(), later.fingerprint());
    /// later.refresh_token = Secret::new("r2", Field::RefreshToken).unwrap();
    /// assert_ne!(s.fingerprint(), later.fingerprint());
    /// ```
    pub fn fingerprint(&self) -> u64 {
        let u = &self.user;
        let mut h = fingerprint(&self.expires_at.as_millis().to_le_bytes());
        let field = |h: u64, text: Option<&str>| {
            let bytes = text.map_or(&[][..], str::as_bytes);
            let len = text.map_or(u64::MAX, |t| t.len() as u64);
            fingerprint_more(fingerprint_more(h, &len.to_le_bytes()), bytes)
        };
        h = field(h, Some(self.access_token.expose()));
        h = field(h, Some(self.refresh_token.expose()));
        h = field(h, Some(&u.id));
        h = field(h, u.email.as_deref());
        h = field(h, Some(if u.is_anonymous { "1" } else { "0" }));
        h = field(h, u.name.as_deref());
        h = field(h, u.avatar.as_deref());
        h = field(h, u.country.as_deref());
        if USER_JSON_MAX != 0 {
            h = field(h, Some(&u.server_json));
        }
        h
    }
}

/// `user_meta`: a small string→string map sent with sign-ins and upgrades.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UserMeta {
    entries: Vec<(String<META_KEY_MAX>, String<META_VALUE_MAX>), META_ENTRIES>,
}

impl UserMeta {
    /// An empty map.
    pub const fn new() -> Self {
        UserMeta {
            entries: Vec::new(),
        }
    }

    /// Inserts or replaces `key`.
    ///
    /// ```
    /// let mut m = paywall_auth::UserMeta::new();
    /// m.insert("source", "kiosk-7").unwrap();
    /// assert_eq!(m.get("source"), Some("kiosk-7"));
    /// ```
    pub fn insert(&mut self, key: &str, value: &str) -> Result<(), CapacityError> {
        let value = bounded(value, Field::UserMetaValue)?;
        if let Some(slot) = self.entries.iter_mut().find(|(k, _)| k == key) {
            slot.1 = value;
            return Ok(());
        }
        let key = bounded(key, Field::UserMetaKey)?;
        self.entries.push((key, value)).map_err(|_| CapacityError {
            field: Field::UserMeta,
            capacity: META_ENTRIES,
            len: META_ENTRIES + 1,
        })
    }

    /// The value for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
