//! Access tokens (HS256 JWTs) and refresh tokens (opaque random strings).

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};

/// Length of a refresh token: 32 base62 characters carry ~190 bits.
const REFRESH_TOKEN_LEN: usize = 32;

/// Claims of an access token.
///
/// `exp` is checked by [`Signer::verify`]'s caller against the emulator's
/// clock, not by `jsonwebtoken` against the system clock, so that
/// [`Emulator::advance_clock`](crate::Emulator::advance_clock) can expire
/// tokens without the test sleeping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub sub: String,
    /// `null` for anonymous users, as GoTrue does.
    pub email: Option<String>,
    pub is_anonymous: bool,
    pub exp: u64,
    pub iat: u64,
    pub session_id: String,
    pub role: String,
    /// Serial number of the token; see `State::min_jti`.
    pub jti: String,
    /// Filler added by [`Fault::OversizeToken`](crate::Fault::OversizeToken).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad: Option<String>,
}

/// Why a presented access token is unacceptable. The emulator answers all of
/// them with the same 401 `invalid_token`; the reason only goes into the
/// human-readable message.
#[derive(Debug)]
pub(crate) struct BadToken(pub &'static str);

/// HS256 signing and verification with the configured secret.
pub(crate) struct Signer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys are secrets; keep them out of debug output.
        f.debug_struct("Signer").finish_non_exhaustive()
    }
}

impl Signer {
    pub fn new(secret: &[u8]) -> Signer {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is judged on the emulator clock by the caller.
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        Signer {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn sign(&self, claims: &Claims) -> String {
        // HMAC signing of a serialisable struct has no failure mode for
        // HS256 (any key length is valid); an error here would be a bug in
        // jsonwebtoken, and an empty token then fails verification loudly.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .unwrap_or_default()
    }

    /// Checks the signature and decodes the claims; expiry is not checked.
    pub fn verify(&self, token: &str) -> Result<Claims, BadToken> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| BadToken("malformed or badly signed access token"))
    }

    /// Re-signs `token` with a `pad` claim large enough to make the encoded
    /// token at least `min_len` bytes long. Returns `None` when `token` is not
    /// one of ours.
    pub fn pad(&self, token: &str, min_len: usize) -> Option<String> {
        let mut claims = self.verify(token).ok()?;
        claims.pad = None;
        let base = self.sign(&claims).len();
        // Base64url turns 3 claim bytes into 4 token bytes; the `,"pad":""`
        // wrapper costs a few more. Overshooting by a handful is fine, the
        // contract is "at least".
        let filler = min_len.saturating_sub(base).div_ceil(4) * 3;
        claims.pad = Some("x".repeat(filler));
        Some(self.sign(&claims))
    }
}

/// A fresh opaque refresh token.
pub(crate) fn random_refresh_token() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(REFRESH_TOKEN_LEN)
        .map(char::from)
        .collect()
}
