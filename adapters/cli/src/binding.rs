//! Which backend a store belongs to.
//!
//! The first command that signs in on a store writes `binding.json` beside
//! the records: the API origin and the paywall id it used. Later commands
//! read them from there, so `paywall-auth status` needs no flags, and a
//! command that names another origin or paywall is refused instead of
//! sending this store's refresh token to a backend it does not belong to
//! (or silently reading another paywall's empty records as "signed out").
//! `--rebind` moves a store to a new backend on purpose.
//!
//! Nothing here has a default: a value missing from the flags, the
//! environment and the binding is a usage error that names the flag and the
//! variable to set (only `demo` and `emulator` default to `pw_demo`).

use std::path::Path;

use paywall_auth::RecordKey;
use paywall_auth_tokio::{FileStore, Store as _, StoreError};
use serde_json::{Value, json};

use crate::cli::{ENV_API_ORIGIN, ENV_PAYWALL_ID, Global};
use crate::fail::Failure;
use crate::local;

/// Name of the binding file in the store directory (a store key, so the
/// store writes it like a record: atomically, `fsync`ed, mode `0600`).
pub const BINDING_KEY: &str = "binding.json";

/// Version of the binding file's format.
const BINDING_SCHEMA: u64 = 1;

/// The backend a store belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// `scheme://host[:port]`, normalized.
    pub api_origin: String,
    pub paywall_id: String,
}

impl Binding {
    fn to_bytes(&self) -> Vec<u8> {
        let mut text = json!({
            "schema": BINDING_SCHEMA,
            "api_origin": self.api_origin,
            "paywall_id": self.paywall_id,
        })
        .to_string();
        text.push('\n');
        text.into_bytes()
    }

    fn describe(&self) -> String {
        format!("paywall {} at {}", self.paywall_id, self.api_origin)
    }
}

/// What the store's binding file says.
#[derive(Debug)]
pub enum Bound {
    /// No binding yet (or no store yet).
    Absent,
    Valid(Binding),
    /// Present but unusable: refused unless `--rebind` replaces it.
    Corrupt(Failure),
}

/// What the command line and the environment asked for, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Given {
    pub api_origin: Option<String>,
    pub paywall_id: Option<String>,
    pub rebind: bool,
}

impl Given {
    pub fn from_global(global: &Global) -> Result<Given, Failure> {
        let api_origin = global
            .api_origin()
            .map(|origin| normalize_origin(&origin))
            .transpose()?;
        let paywall_id = global.paywall_id();
        if let Some(id) = &paywall_id {
            validate_paywall_id(id)?;
        }
        Ok(Given {
            api_origin,
            paywall_id,
            rebind: global.rebind,
        })
    }
}

/// What a command needs to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Reading the records (`status`, `watch`): the paywall id names them.
    PaywallId,
    /// Talking to the backend: both, and the store gets bound to them.
    Backend,
}

/// The outcome of [`merge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Always `Some` for [`Need::Backend`].
    pub api_origin: Option<String>,
    pub paywall_id: String,
    /// The binding to write before the command runs: on first use and on
    /// `--rebind`, for commands that talk to the backend.
    pub write: Option<Binding>,
    /// The binding `--rebind` replaces, whose records are deleted first.
    pub replaces: Option<Binding>,
}

/// Combines what was given with what the store is bound to.
///
/// A given value wins only if it agrees with the binding (or `--rebind`);
/// a value neither given nor bound is a usage error.
pub fn merge(given: &Given, bound: Bound, need: Need, store: &Path) -> Result<Plan, Failure> {
    let bound = match bound {
        Bound::Absent => None,
        Bound::Valid(binding) => Some(binding),
        Bound::Corrupt(_) if given.rebind => None,
        Bound::Corrupt(failure) => return Err(failure),
    };
    let api_origin = given
        .api_origin
        .clone()
        .or_else(|| bound.as_ref().map(|b| b.api_origin.clone()));
    let paywall_id = given
        .paywall_id
        .clone()
        .or_else(|| bound.as_ref().map(|b| b.paywall_id.clone()));
    let missing_origin = need == Need::Backend && api_origin.is_none();
    let (api_origin, paywall_id) = match (api_origin, paywall_id) {
        (_, None) if missing_origin => return Err(missing(store, true, true)),
        (_, None) => return Err(missing(store, false, true)),
        (None, Some(_)) if missing_origin => return Err(missing(store, true, false)),
        (origin, Some(id)) => (origin, id),
    };

    let mut plan = Plan {
        api_origin: api_origin.clone(),
        paywall_id: paywall_id.clone(),
        write: None,
        replaces: None,
    };
    let Some(origin) = api_origin else {
        return Ok(plan);
    };
    let wanted = Binding {
        api_origin: origin,
        paywall_id,
    };
    match bound {
        Some(bound) if bound == wanted => {}
        Some(bound) if !given.rebind => {
            return Err(Failure::new(
                "binding_mismatch",
                format!(
                    "the store {} belongs to {}, not {}: pass --store DIR to use another \
                     store, or --rebind to bind this one to {} (deleting the records of {} in it)",
                    store.display(),
                    bound.describe(),
                    wanted.describe(),
                    wanted.describe(),
                    bound.describe(),
                ),
            ));
        }
        Some(bound) => {
            if need == Need::Backend {
                plan.replaces = Some(bound);
                plan.write = Some(wanted);
            }
        }
        None => {
            if need == Need::Backend {
                plan.write = Some(wanted);
            }
        }
    }
    Ok(plan)
}

/// The usage error for configuration that is nowhere to be found.
fn missing(store: &Path, origin: bool, paywall_id: bool) -> Failure {
    let (flags, vars) = match (origin, paywall_id) {
        (true, true) => (
            "--api-origin URL --paywall-id ID".to_owned(),
            format!("{ENV_API_ORIGIN} and {ENV_PAYWALL_ID}"),
        ),
        (true, false) => ("--api-origin URL".to_owned(), ENV_API_ORIGIN.to_owned()),
        _ => ("--paywall-id ID".to_owned(), ENV_PAYWALL_ID.to_owned()),
    };
    let what = match (origin, paywall_id) {
        (true, true) => "no API origin and no paywall id",
        (true, false) => "no API origin",
        _ => "no paywall id",
    };
    Failure::usage(format!(
        "{what}: pass {flags} (or set {vars}); the store {} is not bound to a backend yet, \
         and remembers them once a command signs in",
        store.display()
    ))
}

/// Reads the binding without the store's lock (for `status`, `watch`, and
/// to fail fast before taking the lock).
pub fn read_unlocked(store: &Path) -> Result<Bound, Failure> {
    let bytes = FileStore::read_unlocked(store, BINDING_KEY).map_err(storage)?;
    Ok(parse(bytes.as_deref(), &store.join(BINDING_KEY)))
}

/// Reads the binding through the open (locked) store.
pub async fn read_locked(store: &FileStore) -> Result<Bound, Failure> {
    let bytes = store.get(BINDING_KEY).await.map_err(storage)?;
    Ok(parse(bytes.as_deref(), &store.dir().join(BINDING_KEY)))
}

fn parse(bytes: Option<&[u8]>, path: &Path) -> Bound {
    let Some(bytes) = bytes else {
        return Bound::Absent;
    };
    let corrupt = |why: String| {
        Bound::Corrupt(Failure::invalid_config(format!(
            "the store's binding {} is unusable ({why}): delete it, or pass --rebind with \
             --api-origin and --paywall-id",
            path.display()
        )))
    };
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(value) => value,
        Err(e) => return corrupt(format!("not JSON: {e}")),
    };
    if value["schema"].as_u64() != Some(BINDING_SCHEMA) {
        return corrupt(format!("schema is not {BINDING_SCHEMA}"));
    }
    let (Some(origin), Some(paywall_id)) =
        (value["api_origin"].as_str(), value["paywall_id"].as_str())
    else {
        return corrupt("api_origin or paywall_id missing".to_owned());
    };
    let api_origin = match normalize_origin(origin) {
        Ok(origin) => origin,
        Err(e) => return corrupt(e.message),
    };
    if let Err(e) = validate_paywall_id(paywall_id) {
        return corrupt(e.message);
    }
    Bound::Valid(Binding {
        api_origin,
        paywall_id: paywall_id.to_owned(),
    })
}

/// Carries out `plan` on the locked store: deletes the records of the
/// binding it replaces, then writes the new binding. In that order, so a
/// crash in between leaves the old binding with no records, never the new
/// binding with another backend's tokens.
pub async fn apply(plan: &Plan, store: &FileStore) -> Result<(), Failure> {
    if let (Some(old), Some(new)) = (&plan.replaces, &plan.write) {
        let mut deleted = Vec::new();
        for key in [RecordKey::AnonRefreshToken, RecordKey::Session] {
            let name = key
                .storage_key(&old.paywall_id)
                .map_err(|e| Failure::invalid_config(e.to_string()))?;
            if store.get(name.as_str()).await.map_err(storage)?.is_some() {
                store.remove(name.as_str()).await.map_err(storage)?;
                deleted.push(name.as_str().to_owned());
            }
        }
        if deleted.is_empty() {
            tracing::info!(
                "rebinding {} from {} to {}",
                store.dir().display(),
                old.describe(),
                new.describe()
            );
        } else {
            tracing::warn!(
                "rebinding {} from {} to {}: deleted {} (that account cannot be resumed from \
                 this store any more; nothing was revoked)",
                store.dir().display(),
                old.describe(),
                new.describe(),
                deleted.join(" and ")
            );
        }
    }
    if let Some(binding) = &plan.write {
        store
            .set(BINDING_KEY, &binding.to_bytes())
            .await
            .map_err(storage)?;
        tracing::info!(
            "store {} bound to {}",
            store.dir().display(),
            binding.describe()
        );
    }
    Ok(())
}

fn storage(e: StoreError) -> Failure {
    Failure::from(paywall_auth_tokio::Error::from(e))
}

/// `scheme://host[:port]` of an API origin.
///
/// Refuses credentials in the URL (`https://user:pw@host`): the client
/// would drop them silently, and an error must not repeat them, so the
/// message shows the origin without them. A path, query or fragment is
/// ignored with a warning (the client builds its own paths).
pub fn normalize_origin(raw: &str) -> Result<String, Failure> {
    // The text may carry credentials: never echoed when it has a `@`.
    let shown = if raw.contains('@') {
        "(not shown: it contains `@`)".to_owned()
    } else {
        format!("{raw:?}")
    };
    let url = url::Url::parse(raw).map_err(|e| {
        Failure::invalid_config(format!("the API origin {shown} is not a URL: {e}"))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Failure::invalid_config(format!(
            "the API origin {shown} must start with https:// (or http://)"
        )));
    }
    if url.host().is_none() {
        return Err(Failure::invalid_config(format!(
            "the API origin {shown} has no host"
        )));
    }
    let origin = url.origin().ascii_serialization();
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Failure::invalid_config(format!(
            "the API origin {origin} carries credentials (user:password@ before the host); \
             they are never sent, so remove them from the URL"
        )));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        tracing::warn!("the API origin's path, query and fragment are ignored: using {origin}");
    }
    Ok(origin)
}

/// A paywall id the CLI accepts: not empty, only ASCII letters, digits, `_`
/// and `-` (so never `/`, `.` or `..`), within the core's length limit.
///
/// Stricter than the core's `Config::new`, which also lets `.` and `~`
/// through: the id is a URL path segment and part of file names here, and
/// `.`/`..` are path traversal in both.
pub fn validate_paywall_id(id: &str) -> Result<(), Failure> {
    if id == "." || id == ".." {
        return Err(Failure::invalid_config(format!(
            "the paywall id cannot be `{id}`"
        )));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-')))
    {
        return Err(Failure::invalid_config(format!(
            "the paywall id {id:?} contains {c:?}: only letters, digits, `_` and `-` are allowed"
        )));
    }
    local::config(id).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given(origin: Option<&str>, id: Option<&str>, rebind: bool) -> Given {
        Given {
            api_origin: origin.map(str::to_owned),
            paywall_id: id.map(str::to_owned),
            rebind,
        }
    }

    fn bound(origin: &str, id: &str) -> Bound {
        Bound::Valid(Binding {
            api_origin: origin.to_owned(),
            paywall_id: id.to_owned(),
        })
    }

    const A: &str = "https://a.example";
    const B: &str = "https://b.example";

    #[test]
    fn first_use_binds_and_later_uses_need_nothing() {
        let dir = Path::new("/s");
        let plan = merge(
            &given(Some(A), Some("pw_1"), false),
            Bound::Absent,
            Need::Backend,
            dir,
        )
        .unwrap();
        assert_eq!(
            plan.write,
            Some(Binding {
                api_origin: A.to_owned(),
                paywall_id: "pw_1".to_owned()
            })
        );
        let plan = merge(
            &given(None, None, false),
            bound(A, "pw_1"),
            Need::Backend,
            dir,
        )
        .unwrap();
        assert_eq!(plan.api_origin.as_deref(), Some(A));
        assert_eq!(plan.paywall_id, "pw_1");
        assert_eq!(plan.write, None, "nothing to rewrite");
        // Readers never bind.
        let plan = merge(
            &given(Some(A), Some("pw_1"), false),
            Bound::Absent,
            Need::PaywallId,
            dir,
        )
        .unwrap();
        assert_eq!(plan.write, None);
    }

    #[test]
    fn another_backend_is_refused_unless_rebind() {
        let dir = Path::new("/s");
        for (origin, id) in [
            (Some(B), None),
            (None, Some("pw_2")),
            (Some(B), Some("pw_2")),
        ] {
            let err = merge(
                &given(origin, id, false),
                bound(A, "pw_1"),
                Need::Backend,
                dir,
            )
            .unwrap_err();
            assert_eq!(err.code, "binding_mismatch");
            assert!(
                err.message.contains("paywall pw_1 at https://a.example"),
                "{err}"
            );
            let wanted = format!(
                "paywall {} at {}",
                id.unwrap_or("pw_1"),
                origin.unwrap_or(A)
            );
            assert!(err.message.contains(&wanted), "{err}");
            // Readers are refused too: they would read the wrong records.
            assert!(
                merge(
                    &given(origin, id, false),
                    bound(A, "pw_1"),
                    Need::PaywallId,
                    dir
                )
                .is_err()
            );

            let plan = merge(
                &given(origin, id, true),
                bound(A, "pw_1"),
                Need::Backend,
                dir,
            )
            .unwrap();
            assert_eq!(plan.replaces.unwrap().paywall_id, "pw_1");
            assert_eq!(plan.write.unwrap().api_origin, origin.unwrap_or(A));
        }
    }

    #[test]
    fn missing_configuration_names_the_flag_and_the_variable() {
        let dir = Path::new("/s");
        let err = merge(&given(None, None, false), Bound::Absent, Need::Backend, dir).unwrap_err();
        assert_eq!(err.code, "usage");
        for needle in [
            "--api-origin",
            "--paywall-id",
            "PAYWALL_AUTH_API_ORIGIN",
            "PAYWALL_AUTH_PAYWALL_ID",
        ] {
            assert!(err.message.contains(needle), "{needle}: {err}");
        }
        let err = merge(
            &given(None, Some("pw_1"), false),
            Bound::Absent,
            Need::Backend,
            dir,
        )
        .unwrap_err();
        assert!(
            err.message
                .contains("--api-origin URL (or set PAYWALL_AUTH_API_ORIGIN)"),
            "{err}"
        );
        assert!(!err.message.contains("--paywall-id"), "{err}");
        // Reading the records needs only the paywall id.
        assert!(
            merge(
                &given(None, Some("pw_1"), false),
                Bound::Absent,
                Need::PaywallId,
                dir
            )
            .is_ok()
        );
        let err = merge(
            &given(Some(A), None, false),
            Bound::Absent,
            Need::PaywallId,
            dir,
        )
        .unwrap_err();
        assert!(
            err.message
                .contains("--paywall-id ID (or set PAYWALL_AUTH_PAYWALL_ID)"),
            "{err}"
        );
    }

    #[test]
    fn a_corrupt_binding_is_refused_unless_rebind() {
        let dir = Path::new("/s/binding.json");
        let corrupt = || parse(Some(b"{nope"), dir);
        assert!(matches!(corrupt(), Bound::Corrupt(_)));
        let err = merge(
            &given(Some(A), Some("pw_1"), false),
            corrupt(),
            Need::Backend,
            dir,
        )
        .unwrap_err();
        assert_eq!(err.code, "invalid_config");
        assert!(err.message.contains("/s/binding.json"), "{err}");
        let plan = merge(
            &given(Some(A), Some("pw_1"), true),
            corrupt(),
            Need::Backend,
            dir,
        )
        .unwrap();
        assert!(plan.write.is_some());
        for bad in [
            &br#"{"schema":2,"api_origin":"https://a.example","paywall_id":"p"}"#[..],
            br#"{"schema":1,"paywall_id":"p"}"#,
            br#"{"schema":1,"api_origin":"ftp://a","paywall_id":"p"}"#,
            br#"{"schema":1,"api_origin":"https://a.example","paywall_id":"../p"}"#,
        ] {
            assert!(matches!(parse(Some(bad), dir), Bound::Corrupt(_)));
        }
        let written = Binding {
            api_origin: A.to_owned(),
            paywall_id: "pw_1".to_owned(),
        };
        assert!(matches!(parse(Some(&written.to_bytes()), dir), Bound::Valid(b) if b == written));
    }

    #[test]
    fn origins_are_normalized_and_credentials_refused_unseen() {
        assert_eq!(normalize_origin("https://a.example/").unwrap(), A);
        assert_eq!(normalize_origin("https://a.example:443").unwrap(), A);
        assert_eq!(
            normalize_origin("http://127.0.0.1:8787/x?y#z").unwrap(),
            "http://127.0.0.1:8787"
        );
        for raw in [
            "https://user:hunter2@a.example",
            "https://hunter2@a.example/",
        ] {
            let err = normalize_origin(raw).unwrap_err();
            assert_eq!(err.code, "invalid_config");
            assert!(err.message.contains("credentials"), "{err}");
            assert!(err.message.contains("https://a.example"), "{err}");
            assert!(!err.message.contains("hunter2"), "{err}");
        }
        let err = normalize_origin("https://hunter2@").unwrap_err();
        assert!(!err.message.contains("hunter2"), "{err}");
        for bad in ["", "a.example", "ftp://a.example", "file:///etc/passwd"] {
            assert_eq!(
                normalize_origin(bad).unwrap_err().code,
                "invalid_config",
                "{bad}"
            );
        }
    }

    #[test]
    fn paywall_ids_use_the_protocol_charset() {
        for ok in ["pw_demo", "PW-1", "a", "0_-"] {
            assert!(validate_paywall_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a.b",
            "a~b",
            "a b",
            "é",
            "pw\n",
            &"p".repeat(1000),
        ] {
            let err = validate_paywall_id(bad).unwrap_err();
            assert_eq!(err.code, "invalid_config", "{bad:?}");
        }
    }
}
