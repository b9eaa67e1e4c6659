//! What a user of the SDK can ask for.

use heapless::String;

use crate::error::{CapacityError, Field};
use crate::limits::{CAPTCHA_MAX, EMAIL_MAX, IDEMPOTENCY_KEY_MAX};
use crate::secret::{Secret, bounded};
use crate::session::{Password, UserMeta};

/// Names the completion of a command.
///
/// Commands that collapse into one operation (parallel anonymous sign-ins,
/// parallel refreshes) get the **same** id, so an adapter that keeps one
/// waiter list per id fans a single completion out to every caller — the
/// core decides who joins whom, the adapter only delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CommandId(pub u32);

/// A request from the user of the SDK.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Command {
    /// Sign in as a guest: no-op if already anonymous, else resume the stored
    /// anonymous account, else create one (docs/protocol.md §7.1).
    SignInAnonymously(SignInOptions),
    /// Attach an email and password to the current anonymous account.
    UpgradeToEmail(UpgradeRequest),
    /// Sign out, softly (keep the anonymous account resumable) or not.
    SignOut(SignOutOptions),
    /// Rotate the tokens now (callers that arrive while one refresh is in
    /// flight share it). Completes with [`Outcome::Session`]; without a
    /// session, with [`Error::NotAuthenticated`].
    ///
    /// When the server refuses the refresh token as dead (401
    /// `invalid_refresh_token` and kin), the session is over: it is removed
    /// from storage, `SIGNED_OUT` is emitted, and this command fails with
    /// that server error. The reference client resolves `null` instead;
    /// bindings that mirror its API (the wasm package) map the error to
    /// `null`, while Rust callers keep the reason.
    ///
    /// [`Outcome::Session`]: crate::Outcome::Session
    /// [`Error::NotAuthenticated`]: crate::Error::NotAuthenticated
    Refresh,
    /// A fresh access token: immediate when fresh, else after one shared
    /// refresh. `None` when signed out.
    AccessToken,
}

/// Options of [`Command::SignInAnonymously`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SignInOptions {
    /// Mint a new anonymous user even if one is signed in or resumable. The
    /// previous anonymous account is forgotten (the user asked for it).
    pub force_new: bool,
    /// Forwarded to the backend when non-empty.
    pub captcha_token: Option<Secret<CAPTCHA_MAX>>,
    /// Forwarded to the backend when a new user is created.
    pub user_meta: UserMeta,
}

impl SignInOptions {
    /// A forced sign-in (new user).
    pub fn force_new() -> Self {
        SignInOptions {
            force_new: true,
            ..Self::default()
        }
    }

    /// Sets the captcha token.
    pub fn with_captcha(mut self, token: &str) -> Result<Self, CapacityError> {
        self.captcha_token = Some(Secret::new(token, Field::CaptchaToken)?);
        Ok(self)
    }
}

/// Arguments of [`Command::UpgradeToEmail`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UpgradeRequest {
    /// The email to attach.
    pub email: String<EMAIL_MAX>,
    /// The password to set.
    pub password: Password,
    /// Forwarded to the backend when non-empty.
    pub user_meta: UserMeta,
    /// Makes a retried upgrade safe: the backend answers a repeated key with
    /// the first answer. Concurrent upgrades with the same key join.
    pub idempotency_key: Option<String<IDEMPOTENCY_KEY_MAX>>,
}

impl UpgradeRequest {
    /// Builds a request, checking every capacity.
    ///
    /// ```
    /// let r = paywall_auth::UpgradeRequest::new("a@b.c", "s3cret", Some("key-1")).unwrap();
    /// assert_eq!(r.email, "a@b.c");
    /// assert_eq!(format!("{:?}", r.password), "Secret(6 bytes)");
    /// ```
    pub fn new(
        email: &str,
        password: &str,
        idempotency_key: Option<&str>,
    ) -> Result<Self, CapacityError> {
        Ok(UpgradeRequest {
            email: bounded(email, Field::Email)?,
            password: Secret::new(password, Field::Password)?,
            user_meta: UserMeta::new(),
            idempotency_key: idempotency_key
                .map(|k| bounded(k, Field::IdempotencyKey))
                .transpose()?,
        })
    }
}

/// Options of [`Command::SignOut`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SignOutOptions {
    /// Hard sign-out: also forget the anonymous account (and revoke it on the
    /// server). Without it, the next anonymous sign-in resumes the same user.
    pub forget_anonymous: bool,
}
