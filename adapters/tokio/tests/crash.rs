//! Crash consistency of the FileStore: a child process rotating refresh
//! tokens in a loop is killed with SIGKILL at random moments, again and
//! again; after every kill the directory must still hold a session of the
//! same guest whose refresh token the backend accepts.
//!
//! The child is this test binary re-executed with an environment variable
//! (`crash_child` below), so no extra binary target is needed.
//!
//! A second variant fills the disk under the child (its store's writes
//! fail with ENOSPC while a marker file exists) before the kill: no token
//! may be spent that could not be saved (docs/protocol.md §13.2).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use paywall_auth_emulator::Route;
use paywall_auth_tokio::{AuthClient, FileStore, SignInOptions, Store, StoreError};

const DIR_ENV: &str = "PAYWALL_AUTH_CRASH_DIR";
const ORIGIN_ENV: &str = "PAYWALL_AUTH_CRASH_ORIGIN";
const FULL_ENV: &str = "PAYWALL_AUTH_CRASH_FULL_MARKER";
const KILLS: usize = 60;

/// A [`FileStore`] on a disk that is full while `marker` exists.
#[derive(Debug)]
struct FullDisk {
    inner: FileStore,
    marker: std::path::PathBuf,
}

impl Store for FullDisk {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key).await
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        if self.marker.exists() {
            return Err(StoreError::Io {
                op: "write",
                path: self.marker.clone(),
                source: std::io::Error::from_raw_os_error(28),
            });
        }
        self.inner.set(key, value).await
    }

    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        self.inner.remove(key).await
    }
}

/// The child: resume the guest stored in the directory, say "ready", then
/// refresh forever (each refresh rotates the token and rewrites both
/// records) until it is killed.
#[test]
#[ignore = "child process of sigkill_during_rotations_never_loses_the_account"]
fn crash_child() {
    let (Ok(dir), Ok(origin)) = (std::env::var(DIR_ENV), std::env::var(ORIGIN_ENV)) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = FileStore::open_wait(&dir, GUARD).await.unwrap();
        let full = std::env::var(FULL_ENV).ok();
        let client = AuthClient::builder(origin, PID)
            .store(FullDisk {
                inner: store,
                marker: full.clone().unwrap_or_default().into(),
            })
            .build()
            .await
            .unwrap();
        let session = client
            .sign_in_anonymously(SignInOptions::default())
            .await
            .unwrap();
        println!("ready {}", session.user.id);
        loop {
            match client.refresh().await {
                Ok(_) => {}
                // A full disk: refused before the request, nothing spent.
                Err(e) if full.is_some() && e.code() == "storage_failed" => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
    });
}

/// Where the kills landed, as seen from the files and the backend.
#[derive(Debug, Default)]
struct Windows {
    /// The backend rotated, the new token never reached the disk.
    rotated_not_saved: usize,
    /// The guest record was rewritten (it goes first), the session record
    /// not yet.
    between_writes: usize,
    /// Between rotations.
    clean: usize,
}

/// xorshift64*: reproducible kill delays from a printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_rotations_never_loses_the_account() {
    sigkills(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_on_a_full_disk_spends_no_token_and_loses_no_account() {
    sigkills(true).await;
}

async fn sigkills(full_disk: bool) {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let first = client(&emu, FileStore::open(dir.path()).unwrap()).await;
    let guest = first
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    first.shutdown().await;

    let seed = std::env::var("PAYWALL_AUTH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("seed {seed} (set PAYWALL_AUTH_CRASH_SEED to replay)");
    let mut rng = Rng(seed);
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let mut windows = Windows::default();

    for kill in 0..KILLS {
        let rotations_before = emu.count(Route::Refresh);
        let marker = dir.path().with_extension("disk-full");
        let _ = std::fs::remove_file(&marker);
        let mut command = Command::new(&exe);
        if full_disk {
            command.env(FULL_ENV, &marker);
        }
        let mut child = command
            .args([
                "crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_ENV, dir.path())
            .env(ORIGIN_ENV, emu.origin())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let ready = guard(
            "the child to be ready",
            tokio::task::spawn_blocking(move || {
                BufReader::new(stdout)
                    .lines()
                    .map_while(Result::ok)
                    // libtest may put its "test crash_child ... " first.
                    .find_map(|line| line.find("ready ").map(|at| line[at..].to_owned()))
            }),
        )
        .await
        .unwrap();
        let Some(ready) = ready else {
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            panic!("child {kill} died before it was ready:\n{stderr}");
        };
        assert_eq!(ready, format!("ready {}", guest.user.id), "kill {kill}");
        if kill == 0 {
            // While the child runs, the store is its alone.
            assert!(matches!(
                FileStore::open(dir.path()),
                Err(StoreError::Locked { .. })
            ));
        }

        // Let it rotate for a random while (0-40 ms: a few rotations), then
        // kill it wherever it is: mid-request, mid-write, between writes.
        tokio::time::sleep(Duration::from_micros(rng.next() % 40_000)).await;
        if full_disk {
            // The disk fills up; the child keeps trying to refresh.
            std::fs::write(&marker, b"").unwrap();
            let at_full = emu.count(Route::Refresh);
            tokio::time::sleep(Duration::from_micros(rng.next() % 40_000)).await;
            child.kill().unwrap();
            child.wait().unwrap();
            std::fs::remove_file(&marker).unwrap();
            // At most the one refresh already past its check when the disk
            // filled; none started after.
            assert!(
                emu.count(Route::Refresh) <= at_full + 1,
                "kill {kill}: {} refreshes sent on a full disk",
                emu.count(Route::Refresh) - at_full
            );
        } else {
            child.kill().unwrap();
            child.wait().unwrap();
        }

        // Where did the kill land? (Only counted, to show the windows are
        // hit; every case must pass the checks below.)
        let on_disk = files(dir.path());
        let record: serde_json::Value =
            serde_json::from_slice(&on_disk[&session_key()]).expect("a whole record");
        let session_token = record["refresh_token"].as_str().unwrap().to_owned();
        let guest_token = String::from_utf8(on_disk[&anon_key()].clone()).unwrap();
        let server = emu
            .sessions()
            .into_iter()
            .find(|s| s.user_id == guest.user.id.as_str())
            .unwrap();
        if guest_token != server.current_refresh_token {
            windows.rotated_not_saved += 1;
        } else if session_token != guest_token {
            windows.between_writes += 1;
        } else {
            windows.clean += 1;
        }

        // What the directory holds must be a live session of the same guest.
        let store = FileStore::open_wait(dir.path(), GUARD).await.unwrap();
        let client = AuthClient::builder(emu.origin(), PID)
            .store(store)
            .build()
            .await
            .unwrap();
        assert!(client.has_resumable_anonymous(), "kill {kill}");
        // Signed in after every kill, between the two writes too (the
        // session is then unsettled and its refresh presents the newer
        // guest record first): a crash never reads as a sign-out.
        let restored = client
            .session()
            .unwrap_or_else(|| panic!("kill {kill}: signed out after a crash"));
        assert_eq!(restored.user.id, guest.user.id, "kill {kill}");
        let refreshed = client.refresh().await.unwrap_or_else(|e| {
            panic!(
                "kill {kill}: the stored token is dead ({e}); rotations {} -> {}",
                rotations_before,
                emu.count(Route::Refresh)
            )
        });
        assert_eq!(refreshed.user.id, guest.user.id, "kill {kill}");
        client.shutdown().await;
        assert_eq!(emu.anonymous_users_created(), 1, "kill {kill}: a new guest");
        let names: Vec<String> = files(dir.path()).into_keys().collect();
        assert_eq!(names, [anon_key(), session_key()], "kill {kill}");
    }

    let rotations = emu.count(Route::Refresh);
    println!(
        "{KILLS} kills (full disk: {full_disk}), {rotations} rotations, {:?}, no account lost; kills landed: {windows:?}",
        started.elapsed()
    );
    assert!(
        emu.sessions().iter().all(|s| !s.revoked),
        "no token was ever presented outside the reuse window"
    );
}
