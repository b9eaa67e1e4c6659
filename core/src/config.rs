//! Settings of a machine.

use heapless::String;

use crate::error::{CapacityError, Field};
use crate::limits::PAYWALL_ID_MAX;
use crate::secret::bounded;
use crate::storage::StoreFormat;
use crate::time::Duration;

/// Why a [`Config`] was refused (`invalid_config` in the reference client).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConfigError {
    /// The paywall id is empty.
    EmptyPaywallId,
    /// The paywall id has a byte outside `[A-Za-z0-9._~-]`, or is only dots
    /// (`.`, `..`: path segments); it is put in URL paths and storage keys
    /// verbatim, so anything else is refused up front (the reference client
    /// silently builds a broken URL, §12.23).
    InvalidPaywallId,
    /// The paywall id is too long.
    Capacity(CapacityError),
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::EmptyPaywallId => f.write_str("invalid_config: paywall id is empty"),
            ConfigError::InvalidPaywallId => {
                f.write_str(
                    "invalid_config: paywall id may only contain A-Z a-z 0-9 . _ ~ - and must not be only dots",
                )
            }
            ConfigError::Capacity(c) => write!(f, "invalid_config: {c}"),
        }
    }
}

/// Settings of a [`Machine`](crate::Machine).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    pub(crate) paywall_id: String<PAYWALL_ID_MAX>,
    /// A token with less than this left is stale (reference: 60 s).
    pub leeway: Duration,
    /// Refresh proactively this long before expiry; `None` refreshes only
    /// lazily, when a token is asked for. Must exceed `leeway` to help.
    pub proactive_refresh: Option<Duration>,
    /// First delay before retrying a failed proactive refresh or storage
    /// write; doubles up to `retry_max`.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Encoding of the stored records.
    pub store_format: StoreFormat,
    /// A request unanswered this long is failed as
    /// [`TransportError::Timeout`](crate::TransportError::Timeout), so no
    /// caller waits forever on a transport that hangs; a late answer is
    /// ignored. `None` (the default) leaves timeouts to the adapter, as
    /// the tokio and embassy adapters do; set it for transports that can
    /// hang without ever failing (a browser `fetch`).
    pub request_timeout: Option<Duration>,
    /// Set when the storage reports the machine's own writes back through
    /// [`handle_external_change`](crate::Machine::handle_external_change),
    /// as `chrome.storage` does. The machine then expects one echo per
    /// acknowledged write, in order, and ignores them, so a late echo of a
    /// removal cannot sign a newer session out (§12.9).
    pub echoes_own_writes: bool,
    /// Before a request that rotates a refresh token (a refresh, a resume),
    /// rewrite the record its answer will update and send the request only
    /// once the store has acknowledged it ([`StoreOp::verify_only`]). A
    /// read-only or full store then fails the command with
    /// `storage_failed` and nothing spent, instead of rotating a token on
    /// the server that cannot be saved. On by default; a store that cannot
    /// fail (memory) may turn it off to save the write.
    ///
    /// [`StoreOp::verify_only`]: crate::StoreOp::verify_only
    pub verify_storage_before_rotation: bool,
}

impl Config {
    /// Defaults of the reference client for `paywall_id`.
    ///
    /// ```
    /// let c = paywall_auth::Config::new("pw_demo").unwrap();
    /// assert_eq!(c.paywall_id(), "pw_demo");
    /// assert!(paywall_auth::Config::new("").is_err());
    /// assert!(paywall_auth::Config::new("a/b").is_err());
    /// assert!(paywall_auth::Config::new("..").is_err());
    /// ```
    pub fn new(paywall_id: &str) -> Result<Self, ConfigError> {
        if paywall_id.is_empty() {
            return Err(ConfigError::EmptyPaywallId);
        }
        if !paywall_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
            // `.` and `..` are path segments: `/paywall/../auth` would
            // reach another route.
            || paywall_id.bytes().all(|b| b == b'.')
        {
            return Err(ConfigError::InvalidPaywallId);
        }
        Ok(Config {
            paywall_id: bounded(paywall_id, Field::PaywallId).map_err(ConfigError::Capacity)?,
            leeway: Duration::from_secs(60),
            proactive_refresh: Some(Duration::from_secs(120)),
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(300),
            store_format: StoreFormat::ReferenceJson,
            request_timeout: None,
            echoes_own_writes: false,
            verify_storage_before_rotation: true,
        })
    }

    /// The paywall id.
    pub fn paywall_id(&self) -> &str {
        &self.paywall_id
    }

    /// Same config with another storage format.
    pub fn with_store_format(mut self, format: StoreFormat) -> Self {
        self.store_format = format;
        self
    }
}

impl core::error::Error for ConfigError {}
