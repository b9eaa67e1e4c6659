//! Traces recorded by the tokio client (`record_trace`) over real loopback
//! HTTP against the emulator: what they hold (the requests the emulator
//! saw, no secret unless asked), that today's core replays them line for
//! line, and that a changed line is named by the replay.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;
use paywall_auth_emulator::Emulator;
use paywall_auth_tokio::paywall_auth::trace::{
    ReplayError, TraceHeader, TraceLine, TraceOutput, read_header, replay,
};
use paywall_auth_tokio::{
    AuthClient, AuthEvent, FileStore, ReplayFileError, Session, SignInOptions, SignOutOptions,
    UpgradeOutcome, UpgradeRequest, replay_trace_file,
};

const PASSWORD: &str = "correct horse battery staple";

/// A client on the file store `dir` recording to `trace`.
async fn recording_client(emu: &Emulator, dir: &Path, trace: &Path, keep: bool) -> AuthClient {
    AuthClient::builder(emu.origin(), PID)
        .store(FileStore::open(dir).unwrap())
        .request_timeout(std::time::Duration::from_secs(20))
        .record_trace(trace)
        .record_trace_secrets(keep)
        .build()
        .await
        .unwrap()
}

/// The secrets a trace must not show: every refresh token the emulator
/// ever issued, the signature of every access token the client held (from
/// the events, which announce every session), the records left on the
/// store, and the password.
fn secrets(emu: &Emulator, events: &[AuthEvent], dir: &Path) -> BTreeSet<String> {
    let mut secrets = BTreeSet::new();
    for record in emu.sessions() {
        secrets.insert(record.current_refresh_token.clone());
        secrets.extend(record.spent_refresh_tokens.iter().cloned());
    }
    for session in events.iter().filter_map(|e| e.session.as_ref()) {
        secrets.extend(session_secrets(session));
    }
    for (name, bytes) in files(dir) {
        if name == anon_key() {
            secrets.insert(String::from_utf8(bytes).unwrap());
        }
    }
    secrets.insert(PASSWORD.to_owned());
    assert!(secrets.iter().all(|s| s.len() >= 16), "{secrets:?}");
    secrets
}

fn session_secrets(session: &Session) -> [String; 2] {
    let access = session.access_token.expose();
    let signature = access.rsplit_once('.').unwrap().1;
    [
        session.refresh_token.expose().to_owned(),
        signature.to_owned(),
    ]
}

/// The header and the lines of a trace file.
fn read_trace(path: &Path) -> (String, TraceHeader, Vec<TraceLine>) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.ends_with('\n'), "a trace ends with a whole line");
    let mut lines = text.lines();
    let header = read_header(lines.next().unwrap()).unwrap();
    let lines = lines.map(|l| serde_json::from_str(l).unwrap()).collect();
    (text, header, lines)
}

/// The paths of the requests a trace says the client sent, in order.
fn sent_paths(lines: &[TraceLine]) -> Vec<String> {
    lines
        .iter()
        .flat_map(|l| &l.outputs)
        .filter_map(|o| match o {
            TraceOutput::Send { path, .. } => Some(path.clone()),
            _ => None,
        })
        .collect()
}

fn emulator_paths(emu: &Emulator) -> Vec<String> {
    emu.requests().into_iter().map(|r| r.path).collect()
}

#[tokio::test]
async fn a_redacted_lifecycle_trace_replays_and_holds_no_secret() {
    let emu = emulator().await;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("store");
    let first = root.path().join("first.jsonl");
    let second = root.path().join("second.jsonl");

    // Run 1: sign in, token, refresh, soft sign-out.
    let client = recording_client(&emu, &dir, &first, false).await;
    let mut events = client.subscribe();
    let guest = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    let token = client.access_token().await.unwrap().unwrap();
    assert_eq!(token.expose(), guest.access_token.expose());
    let refreshed = client.refresh().await.unwrap();
    assert_ne!(refreshed.refresh_token, guest.refresh_token);
    client.sign_out(SignOutOptions::default()).await.unwrap();
    client.shutdown().await;
    let mut seen = queued(&mut events);
    let run1_paths = emulator_paths(&emu);
    assert_eq!(run1_paths.len(), 2, "sign-in and refresh: {run1_paths:?}");

    // Run 2: a restart over the same store resumes the guest, then
    // upgrades it (a password goes through the trace).
    let client = recording_client(&emu, &dir, &second, false).await;
    let mut events = client.subscribe();
    let resumed = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert_eq!(resumed.user.id, guest.user.id);
    let upgraded = client
        .upgrade_anonymous_to_email(
            UpgradeRequest::new("kiosk@example.com", PASSWORD, None).unwrap(),
        )
        .await
        .unwrap();
    assert!(matches!(upgraded, UpgradeOutcome::Updated(ref s) if s.user.id == guest.user.id));
    client.shutdown().await;
    seen.extend(queued(&mut events));
    let run2_paths: Vec<String> = emulator_paths(&emu)[run1_paths.len()..].to_vec();
    assert_eq!(run2_paths.len(), 2, "resume and upgrade: {run2_paths:?}");

    let secrets = secrets(&emu, &seen, &dir);
    for (path, expected_paths, restored) in
        [(&first, &run1_paths, false), (&second, &run2_paths, true)]
    {
        let (text, header, lines) = read_trace(path);
        assert!(!header.secrets);
        assert_eq!(header.config.paywall_id, PID);
        assert!(text.starts_with("{\"paywall_auth_trace\":1,"), "{text}");
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{} holds a secret ({}…)",
                path.display(),
                &secret[..4]
            );
        }
        // What the trace says was sent is what the emulator received.
        assert_eq!(&sent_paths(&lines), expected_paths, "{}", path.display());
        // The first input is the restore, with the records the store held:
        // none at first; after the soft sign-out, the guest's refresh
        // token only (as a placeholder).
        let restore = serde_json::to_value(&lines[0].input).unwrap();
        assert_eq!(restore["kind"], "restored");
        assert!(restore["session"].is_null(), "{restore}");
        assert_eq!(
            !restore["anon_refresh_token"].is_null(),
            restored,
            "{restore}"
        );
        // One line per input, each replayed identically.
        let replayed = replay(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(replayed.inputs, text.lines().count() - 1);
        assert_eq!(
            replayed.outputs,
            lines.iter().map(|l| l.outputs.len()).sum::<usize>()
        );
        assert_eq!(replay_trace_file(path).unwrap(), replayed);
        #[cfg(unix)]
        assert_eq!(mode(path), 0o600, "{}", path.display());
    }
    // The upgrade's password was fed, as a placeholder of its length.
    let (text, _, _) = read_trace(&second);
    assert!(text.contains("\"command\":\"upgrade\""));
    assert!(text.contains("kiosk@example.com"));
}

#[tokio::test]
async fn record_secrets_keeps_the_tokens_and_still_replays() {
    let emu = emulator().await;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("store");
    let path = root.path().join("trace.jsonl");
    // An older file readable by all is tightened, as it will hold tokens.
    std::fs::write(&path, "old").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    let client = recording_client(&emu, &dir, &path, true).await;
    let guest = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    let refreshed = client.refresh().await.unwrap();
    client.shutdown().await;

    let (text, header, lines) = read_trace(&path);
    assert!(header.secrets);
    for secret in session_secrets(&guest)
        .iter()
        .chain(&session_secrets(&refreshed))
    {
        assert!(
            text.contains(secret.as_str()),
            "record-secrets lost a token"
        );
    }
    // With nothing redacted, every body the trace says was sent is the
    // emulator's received body, byte for byte.
    let sent: Vec<String> = lines
        .iter()
        .flat_map(|l| &l.outputs)
        .filter_map(|o| match o {
            TraceOutput::Send { body, .. } => Some(body.clone()),
            _ => None,
        })
        .collect();
    let received: Vec<String> = emu.requests().into_iter().map(|r| r.body).collect();
    assert_eq!(sent, received);
    let replayed = replay(&text).unwrap();
    assert_eq!(replayed.inputs, text.lines().count() - 1);
    #[cfg(unix)]
    assert_eq!(mode(&path), 0o600);
}

#[tokio::test]
async fn a_tampered_output_is_reported_at_its_line() {
    let emu = emulator().await;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("store");
    let path = root.path().join("trace.jsonl");
    let client = recording_client(&emu, &dir, &path, false).await;
    let guest = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    client.shutdown().await;

    let text = std::fs::read_to_string(&path).unwrap();
    // The line whose outputs announce the guest (SIGNED_IN) claims another
    // user id there.
    let (index, line) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains("\"change\":\"SIGNED_IN\""))
        .expect("a SIGNED_IN line");
    let id = guest.user.id.as_str();
    let forged_id = format!(
        "{}{}",
        &id[..id.len() - 1],
        if id.ends_with('0') { '1' } else { '0' }
    );
    let forged_line = line.replace(
        &format!("\"user_id\":\"{id}\""),
        &format!("\"user_id\":\"{forged_id}\""),
    );
    assert_ne!(forged_line, line);
    let forged: String = text
        .lines()
        .enumerate()
        .map(|(i, l)| if i == index { forged_line.clone() } else { l.to_owned() } + "\n")
        .collect();
    let forged_path = root.path().join("forged.jsonl");
    std::fs::write(&forged_path, &forged).unwrap();

    let ReplayError::Diverged(divergence) = replay(&forged).unwrap_err() else {
        panic!("not a divergence");
    };
    assert_eq!(divergence.line, index + 1, "1-based, the header is line 1");
    assert!(divergence.what.starts_with("output "), "{divergence}");
    assert!(divergence.expected.contains(&forged_id), "{divergence}");
    assert!(divergence.actual.contains(id), "{divergence}");
    match replay_trace_file(&forged_path) {
        Err(ReplayFileError::Diverged(d)) => assert_eq!(d, divergence),
        other => panic!("{other:?}"),
    }
    // The untouched trace still replays.
    replay_trace_file(&path).unwrap();
}

#[tokio::test]
async fn replaying_a_missing_or_garbage_file_is_a_typed_error() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("missing.jsonl");
    match replay_trace_file(&missing) {
        Err(ReplayFileError::Io { path, source }) => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("{other:?}"),
    }
    let garbage = root.path().join("garbage.jsonl");
    std::fs::write(&garbage, "not a trace\n").unwrap();
    let err = replay_trace_file(&garbage).unwrap_err();
    assert!(matches!(err, ReplayFileError::Trace(_)), "{err:?}");
    assert!(err.to_string().contains("trace line 1"), "{err}");
    let empty = root.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    assert!(matches!(
        replay_trace_file(&empty),
        Err(ReplayFileError::Trace(_))
    ));
}

#[tokio::test]
async fn a_trace_path_that_cannot_be_created_fails_build() {
    let emu = emulator().await;
    let root = tempfile::tempdir().unwrap();
    let err = AuthClient::builder(emu.origin(), PID)
        .record_trace(root.path().join("no/such/dir/trace.jsonl"))
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_config");
    assert!(err.to_string().contains("no/such/dir/trace.jsonl"), "{err}");
    assert!(emu.requests().is_empty());
}

/// `/dev/full` opens but refuses every write: the client must work as if
/// no trace had been asked for.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_trace_that_cannot_be_written_does_not_break_the_client() {
    let emu = emulator().await;
    let store = paywall_auth_tokio::MemoryStore::new();
    let client = AuthClient::builder(emu.origin(), PID)
        .store(store.clone())
        .record_trace("/dev/full")
        .build()
        .await
        .unwrap();
    let guest = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    client.refresh().await.unwrap();
    client.shutdown().await;
    assert_eq!(emu.users().len(), 1);
    assert_eq!(emu.users()[0].id, guest.user.id.as_str());
    assert!(store.get_now(&anon_key()).is_some());
}
