//! The kiosk store: private files, atomic replacement, one client per
//! directory, corrupted or unwritable storage surfaced, never a silent
//! logout, and changes by another writer fed to the core.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use paywall_auth_tokio::{
    AuthChange, AuthClient, Error, FileStore, MemoryStore, Notice, RecordKey, SignInOptions, Store,
    StoreError,
};

#[tokio::test]
async fn records_are_private_files_replaced_atomically() {
    let emu = emulator().await;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("kiosk/auth");
    let client = client(&emu, FileStore::open(&dir).unwrap()).await;
    let guest = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    client.refresh().await.unwrap();
    client.shutdown().await;

    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(".lock")), 0o600);
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, [".lock".to_owned(), anon_key(), session_key()]);
    for name in [anon_key(), session_key()] {
        assert_eq!(mode(&dir.join(&name)), 0o600, "{name}");
    }
    // The reference client's formats: the JSON session, the raw token.
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(session_key())).unwrap()).unwrap();
    assert_eq!(record["user"]["id"], guest.user.id.as_str());
    assert!(record["expires_at"].as_u64().unwrap() > 1_600_000_000_000);
    let token = std::fs::read_to_string(dir.join(anon_key())).unwrap();
    assert_eq!(token, record["refresh_token"].as_str().unwrap());
}

#[tokio::test]
async fn a_second_client_on_the_same_directory_is_refused() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let first = client(&emu, FileStore::open(dir.path()).unwrap()).await;

    let err = FileStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert_eq!(Error::from(err).code(), "store_locked");

    // Released with the client.
    first.shutdown().await;
    let reopened = FileStore::open(dir.path()).unwrap();
    drop(reopened);
}

#[tokio::test]
async fn open_wait_waits_for_the_previous_owner() {
    let dir = tempfile::tempdir().unwrap();
    let held = FileStore::open(dir.path()).unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(held);
    });
    let store = FileStore::open_wait(dir.path(), GUARD).await.unwrap();
    release.await.unwrap();
    drop(store);

    let _held = FileStore::open(dir.path()).unwrap();
    let err = FileStore::open_wait(dir.path(), Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }));
}

#[tokio::test]
async fn temporaries_left_by_a_crash_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join(format!(".{}.tmp-999-0", session_key()));
    std::fs::write(&stale, b"half a record").unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    assert!(!stale.exists());
    assert_eq!(store.get(&session_key()).await.unwrap(), None);
}

#[tokio::test]
async fn a_corrupt_record_is_reported_and_left_alone() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(session_key()), b"{\"access_token\":").unwrap();
    let before = files(dir.path());

    let client = client(&emu, FileStore::open(dir.path()).unwrap()).await;
    assert_eq!(client.session(), None);
    let mut notices = client.notices();
    match next(&mut notices).await.unwrap() {
        Notice::CorruptRecord { key, .. } => assert_eq!(key, RecordKey::Session),
        other => panic!("unexpected notice {other:?}"),
    }
    assert_eq!(files(dir.path()), before, "the evidence is kept");
    let mut events = client.subscribe();
    let initial = next(&mut events).await.unwrap();
    assert_eq!(initial.change, AuthChange::InitialSession);
    assert_eq!(initial.session, None);
    client.shutdown().await;
}

#[tokio::test]
async fn an_unreadable_store_fails_the_build_instead_of_signing_out() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    // A directory where the record should be: reading it fails (as root
    // too, unlike permission bits).
    std::fs::create_dir(dir.path().join(session_key())).unwrap();
    let err = AuthClient::builder(emu.origin(), PID)
        .store(FileStore::open(dir.path()).unwrap())
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.code(), "storage_failed", "{err}");
    assert!(matches!(
        err,
        Error::Store(StoreError::Io { op: "read", .. })
    ));
}

#[tokio::test]
async fn a_failed_write_is_reported_kept_in_memory_and_retried() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let client = AuthClient::builder(emu.origin(), PID)
        .store(FileStore::open(dir.path()).unwrap())
        .build()
        .await
        .unwrap();
    let mut notices = client.notices();
    // Make the session record unwritable: a non-empty directory in its place.
    let blocker = dir.path().join(session_key());
    std::fs::create_dir(&blocker).unwrap();
    std::fs::write(blocker.join("x"), b"").unwrap();

    let err = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "storage_failed");
    assert_eq!(
        next(&mut notices).await.unwrap(),
        Notice::StorageFailed {
            key: RecordKey::Session
        }
    );
    // Not a logout: the session lives on in memory, and the resumable copy
    // (written after it) is on disk.
    let session = client.session().expect("kept in memory");
    assert!(dir.path().join(anon_key()).exists());

    // Once the disk is writable again the core's retry lands the record.
    std::fs::remove_dir_all(&blocker).unwrap();
    let path = dir.path().join(session_key());
    eventually("the retried write", || path.is_file()).await;
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(record["user"]["id"], session.user.id.as_str());
    client.shutdown().await;
}

#[tokio::test]
async fn changes_by_another_writer_reach_the_client() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let client = client(
        &emu,
        FileStore::open(dir.path())
            .unwrap()
            .watch_every(Duration::from_millis(20)),
    )
    .await;
    let mine = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    let mut events = client.subscribe();
    next(&mut events).await.unwrap();

    // Another account's session, written by someone ignoring the lock (an
    // operator restoring a backup, say).
    let other_store = MemoryStore::new();
    let other = self::client(&emu, other_store.clone()).await;
    let theirs = other
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    other.shutdown().await;
    std::fs::write(
        dir.path().join(session_key()),
        other_store.get_now(&session_key()).unwrap(),
    )
    .unwrap();

    let switched = next(&mut events).await.unwrap();
    assert_eq!(switched.change, AuthChange::SignedIn);
    assert_eq!(switched.session.as_ref().unwrap().user.id, theirs.user.id);
    assert_eq!(client.user().unwrap().id, theirs.user.id);
    assert_ne!(theirs.user.id, mine.user.id);

    std::fs::remove_file(dir.path().join(session_key())).unwrap();
    let out = next(&mut events).await.unwrap();
    assert_eq!(out.change, AuthChange::SignedOut);
    assert_eq!(client.session(), None);
    // Its own writes are never reported back as changes.
    client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    assert_eq!(
        next(&mut events).await.unwrap().change,
        AuthChange::SignedIn
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(queued(&mut events).is_empty(), "no echo of own writes");
    client.shutdown().await;
}

#[tokio::test]
async fn the_compact_format_survives_a_restart() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let build = |store| {
        AuthClient::builder(emu.origin(), PID)
            .store(store)
            .store_format(paywall_auth_tokio::StoreFormat::Postcard)
            .build()
    };
    let first = build(FileStore::open(dir.path()).unwrap()).await.unwrap();
    let guest = first
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    first.shutdown().await;
    let record = std::fs::read(dir.path().join(session_key())).unwrap();
    assert!(serde_json::from_slice::<serde_json::Value>(&record).is_err());

    let second = build(FileStore::open(dir.path()).unwrap()).await.unwrap();
    assert_eq!(second.session(), Some(guest));
    second.shutdown().await;
}

/// Runs `f` on its own thread and fails the test if it has not returned
/// within [`GUARD`]: a read that blocks (a FIFO) must fail the test, not hang
/// it.
fn within_guard<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(GUARD)
        .unwrap_or_else(|_| panic!("{what} blocked for {GUARD:?}"))
}

fn mkfifo(path: &std::path::Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_fifo_in_place_of_a_record_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join(anon_key());
    mkfifo(&fifo);

    let path = dir.path().to_path_buf();
    let err = within_guard("an unlocked read of a FIFO", move || {
        FileStore::read_unlocked(&path, &anon_key()).unwrap_err()
    });
    let text = err.to_string();
    assert!(matches!(err, StoreError::Io { op: "read", .. }), "{err:?}");
    assert!(text.contains(&fifo.display().to_string()), "{text}");
    assert!(text.contains("not a regular file (a FIFO)"), "{text}");

    // The client restoring from the store, with its lock held: refused
    // (never taken for "no record"), and no hang.
    let path = dir.path().to_path_buf();
    let err = within_guard("a client restoring from a FIFO", move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let emu = emulator().await;
            AuthClient::builder(emu.origin(), PID)
                .store(FileStore::open(&path).unwrap())
                .build()
                .await
                .unwrap_err()
        })
    });
    assert_eq!(err.code(), "storage_failed", "{err}");
    assert!(err.to_string().contains("(a FIFO)"), "{err}");
}

#[test]
fn devices_directories_and_oversized_records_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.path().join(session_key())).unwrap();
    let err = within_guard("reading /dev/zero", {
        let path = dir.path().to_path_buf();
        move || FileStore::read_unlocked(&path, &session_key()).unwrap_err()
    });
    assert!(
        err.to_string()
            .contains("not a regular file (a character device)"),
        "{err}"
    );

    std::fs::create_dir(dir.path().join(anon_key())).unwrap();
    let err = FileStore::read_unlocked(dir.path(), &anon_key()).unwrap_err();
    assert!(
        err.to_string().contains("not a regular file (a directory)"),
        "{err}"
    );

    let big = dir.path().join("pw-visitor-id");
    std::fs::write(&big, vec![b'x'; paywall_auth_tokio::MAX_RECORD_BYTES + 1]).unwrap();
    let err = FileStore::read_unlocked(dir.path(), "pw-visitor-id").unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&big.display().to_string()), "{text}");
    assert!(
        text.contains("record too large (65537 bytes; at most 65536)"),
        "{text}"
    );
    // Exactly at the cap is fine, and absent is `None`.
    std::fs::write(&big, vec![b'x'; paywall_auth_tokio::MAX_RECORD_BYTES]).unwrap();
    assert_eq!(
        FileStore::read_unlocked(dir.path(), "pw-visitor-id")
            .unwrap()
            .map(|v| v.len()),
        Some(paywall_auth_tokio::MAX_RECORD_BYTES)
    );
    assert_eq!(
        FileStore::read_unlocked(dir.path().join("absent"), "pw-visitor-id").unwrap(),
        None
    );
}

#[tokio::test]
async fn a_record_too_large_to_read_back_is_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let err = store
        .set("k", &vec![0; paywall_auth_tokio::MAX_RECORD_BYTES + 1])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("record too large"), "{err}");
    assert!(!dir.path().join("k").exists());
}

#[tokio::test]
async fn write_errors_name_the_path_and_the_os_cause() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("store");
    let store = FileStore::open(&dir).unwrap();
    // The directory vanishes under the open store (an unmounted volume, an
    // operator's `rm -r`): the temporary file cannot be created.
    std::fs::remove_dir_all(&dir).unwrap();
    let err = store.set(&session_key(), b"{}").await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "could not create {}/.{}.tmp-",
            dir.display(),
            session_key()
        )),
        "{text}"
    );
    assert!(
        text.ends_with("No such file or directory (os error 2)"),
        "{text}"
    );
}
