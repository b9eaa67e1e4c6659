//! Power loss at every flash step: the RAM NOR flash is cut at its N-th
//! write or erase (nothing applied, or half applied with a torn word), the
//! client stops on the spot, and a new client boots over the bytes left.
//! Whatever N is, storage must open, and the anonymous account must still be
//! resumable — unless the user asked for a hard sign-out.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use paywall_auth::{SignInOptions, SignOutOptions};
use paywall_auth_embassy::Event;
use paywall_auth_emulator::Emulator;

/// The outcome of one operation run with a power cut armed.
enum Run {
    /// The power went; the flash bytes at that instant, and whether the
    /// operation cut was an erase.
    Lost(Vec<u8>, bool),
    /// The operation finished before the step to cut (every step was cut
    /// by an earlier run).
    Finished(Vec<u8>),
}

impl Run {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Run::Lost(bytes, _) | Run::Finished(bytes) => bytes.clone(),
        }
    }

    fn finished(&self) -> bool {
        matches!(self, Run::Finished(_))
    }
}

/// Where the power cut of a run falls.
#[derive(Clone, Copy)]
enum Arm {
    /// At the n-th flash operation of the run.
    Op(usize),
    /// At the run's first page erase, if it has one.
    NextErase,
}

/// Boots a client over `bytes`, arms a cut at flash operation `at` (counted
/// from the end of start-up), runs `op` and stops everything when the
/// power goes.
async fn run_with_cut<F>(emulator: &Emulator, bytes: Vec<u8>, at: Arm, cut: Cut, op: F) -> Run
where
    F: AsyncFnOnce(&mut Client<'_, TokioConnector>),
{
    let events = Recorder::default();
    let flash = RamFlash::from_bytes(bytes);
    let power = flash.power.clone();
    let lost = flash.lost.clone();
    let mut client = client(TokioConnector::new(emulator), flash, &events);
    client.start().await;
    assert_storage_opened(&events);
    {
        let mut power = power.borrow_mut();
        match at {
            Arm::Op(at) => power.cut_at = Some((power.ops + at, cut)),
            Arm::NextErase => power.cut_next_erase = Some(cut),
        }
    }
    let finished = tokio::select! {
        () = op(&mut client) => true,
        () = lost.notified() => false,
    };
    let (_, flash) = client.into_parts();
    let erase = power.borrow().cut_erase;
    if finished {
        Run::Finished(flash.bytes)
    } else {
        Run::Lost(flash.bytes, erase)
    }
}

/// What a reboot finds.
struct Boot<'e> {
    client: Client<'e, TokioConnector>,
}

async fn boot<'e>(emulator: &Emulator, bytes: Vec<u8>, events: &'e Recorder) -> Boot<'e> {
    let mut client = client(
        TokioConnector::new(emulator),
        RamFlash::from_bytes(bytes),
        events,
    );
    client.start().await;
    assert_storage_opened(events);
    Boot { client }
}

fn assert_storage_opened(events: &Recorder) {
    for event in events.0.borrow().iter() {
        assert!(
            !matches!(event, Event::StorageUnreadable { .. } | Event::Notice(_)),
            "storage must open cleanly after a power cut, got {event:?}"
        );
    }
}

impl Boot<'_> {
    /// Proves the guest `user_id` is resumable: the client holds it (as a
    /// session or as the anonymous record), and the server accepts its
    /// token. Returns the flash afterwards.
    async fn resume(mut self, user_id: &str, emulator: &Emulator) -> Vec<u8> {
        let created = emulator.anonymous_users_created();
        match self.client.session() {
            Some(session) => {
                assert_eq!(session.user.id, user_id);
                assert!(session.user.is_anonymous);
                // The stored token may be the parent of the server's current
                // one (the cut hit before the rotation was durable): the
                // reuse window hands the current tokens back.
                let refreshed = self.client.refresh().await.unwrap();
                assert_eq!(refreshed.user.id, user_id);
            }
            None => {
                assert!(
                    self.client.has_resumable_anonymous(),
                    "the guest must stay resumable"
                );
                let resumed = self
                    .client
                    .sign_in_anonymously(SignInOptions::default())
                    .await
                    .unwrap();
                assert_eq!(resumed.user.id, user_id);
            }
        }
        assert_eq!(
            emulator.anonymous_users_created(),
            created,
            "resuming must not create a user"
        );
        self.client.into_parts().1.bytes
    }
}

/// Signs a guest in on an empty flash; returns its id and the flash.
async fn signed_in(emulator: &Emulator) -> (String, Vec<u8>) {
    let events = Recorder::default();
    let (client, id) = fresh_guest(emulator, &events).await;
    (id, client.into_parts().1.bytes)
}

/// Rotations swept: enough to wrap the four-page map several times, so page
/// erases and the copying of live items are among the steps cut.
const ROTATIONS: usize = 64;

/// Power cuts made by a sweep, and how many of them hit a page erase.
#[derive(Default)]
struct Tally {
    cuts: usize,
    erases_cut: usize,
}

/// Boots over `bytes`, runs `refreshes` rotations with the power cut armed
/// at `arm`, then reboots over what is left and proves the guest resumes;
/// `bytes` becomes the flash after that. Returns whether the rotations
/// finished before the cut.
async fn rotate_with_cut(
    emulator: &Emulator,
    user_id: &str,
    bytes: &mut Vec<u8>,
    arm: Arm,
    cut: Cut,
    refreshes: usize,
    tally: &mut Tally,
) -> bool {
    let events = Recorder::default();
    let run = run_with_cut(emulator, bytes.clone(), arm, cut, async |c| {
        for _ in 0..refreshes {
            c.refresh().await.unwrap();
        }
    })
    .await;
    if let Run::Lost(_, erase) = run {
        tally.cuts += 1;
        tally.erases_cut += usize::from(erase);
    }
    *bytes = boot(emulator, run.bytes(), &events)
        .await
        .resume(user_id, emulator)
        .await;
    run.finished()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_loss_during_refresh_rotations_never_loses_the_guest() {
    let emulator = emulator().await;
    let (user_id, mut bytes) = signed_in(&emulator).await;
    let mut tally = Tally::default();

    // Enough rotations to fill the pages and force page recycling (erase +
    // copy of live items) several times; every step of every rotation is
    // cut once per cut kind.
    for _rotation in 0..ROTATIONS {
        for cut in [Cut::Before, Cut::Half] {
            let mut at = 0;
            while !rotate_with_cut(
                &emulator,
                &user_id,
                &mut bytes,
                Arm::Op(at),
                cut,
                1,
                &mut tally,
            )
            .await
            {
                at += 1;
            }
            // And once at the next page erase, wherever it falls: page
            // recycling comes every few rotations, at a step no op count
            // predicts, so rotate until it does.
            rotate_with_cut(
                &emulator,
                &user_id,
                &mut bytes,
                Arm::NextErase,
                cut,
                8,
                &mut tally,
            )
            .await;
        }
    }
    let Tally { cuts, erases_cut } = tally;
    println!(
        "{cuts} power cuts across {ROTATIONS} rotations, {erases_cut} of them during a page erase"
    );
    assert!(
        cuts >= ROTATIONS * 2 * 2,
        "every rotation writes at least two records ({cuts} cuts)"
    );
    assert!(
        erases_cut >= 4,
        "the sweep must have cut page erases several times"
    );
    assert_eq!(emulator.anonymous_users_created(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_loss_during_sign_in_leaves_a_working_device() {
    let emulator = emulator().await;
    for cut in [Cut::Before, Cut::Half] {
        let mut at = 0;
        loop {
            let created = emulator.anonymous_users_created();
            let run = run_with_cut(
                &emulator,
                vec![0xFF; FLASH_SIZE],
                Arm::Op(at),
                cut,
                async |c| {
                    c.sign_in_anonymously(SignInOptions::default())
                        .await
                        .unwrap();
                },
            )
            .await;
            let after = run.bytes();
            let first = emulator.users().last().unwrap().id.clone();
            assert_eq!(emulator.anonymous_users_created(), created + 1);
            let events = Recorder::default();
            let mut boot = boot(&emulator, after, &events).await;
            // Whatever reached flash is the account we get back; if nothing
            // did, the device simply signs in again.
            let stored = boot.client.session().is_some() || boot.client.has_resumable_anonymous();
            let again = boot
                .client
                .sign_in_anonymously(SignInOptions::default())
                .await
                .unwrap();
            if stored {
                assert_eq!(again.user.id, first.as_str());
                assert_eq!(emulator.anonymous_users_created(), created + 1);
            }
            if run.finished() {
                assert!(stored);
                break;
            }
            at += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_loss_during_soft_sign_out_keeps_the_guest_resumable() {
    let emulator = emulator().await;
    let (user_id, bytes) = signed_in(&emulator).await;
    for cut in [Cut::Before, Cut::Half] {
        let mut at = 0;
        loop {
            let run = run_with_cut(&emulator, bytes.clone(), Arm::Op(at), cut, async |c| {
                c.sign_out(SignOutOptions::default()).await.unwrap();
            })
            .await;
            let after = run.bytes();
            let events = Recorder::default();
            let boot = boot(&emulator, after, &events).await;
            boot.resume(&user_id, &emulator).await;
            if run.finished() {
                break;
            }
            at += 1;
        }
    }
    assert!(
        routes(&emulator).iter().all(|r| r != "signout"),
        "a soft sign-out never revokes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_loss_during_hard_sign_out_leaves_a_working_device() {
    let emulator = emulator().await;
    for cut in [Cut::Before, Cut::Half] {
        let mut at = 0;
        loop {
            let (user_id, bytes) = signed_in(&emulator).await;
            let run = run_with_cut(&emulator, bytes, Arm::Op(at), cut, async |c| {
                c.sign_out(SignOutOptions {
                    forget_anonymous: true,
                })
                .await
                .unwrap();
            })
            .await;
            let after = run.bytes();
            let events = Recorder::default();
            let mut boot = boot(&emulator, after, &events).await;
            // The user asked to forget the guest: it may or may not be
            // resumable depending on where power went, but the device works:
            // a sign-in gives a guest (the old one if it survived and the
            // server still honours it, else a new one).
            let session = boot
                .client
                .sign_in_anonymously(SignInOptions::default())
                .await
                .unwrap();
            assert!(session.user.is_anonymous);
            if run.finished() {
                assert_ne!(session.user.id, user_id.as_str());
                break;
            }
            at += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flash_that_fails_every_write_reports_and_retries() {
    // Not a power cut: a driver that errors. The core keeps the session in
    // memory, reports `storage_failed` and a notice, and schedules a retry.
    let emulator = emulator().await;
    let events = Recorder::default();
    let flash = RamFlash::new(FLASH_SIZE);
    flash.power.borrow_mut().fail_writes = true;
    let mut client = client(TokioConnector::new(&emulator), flash, &events);
    let error = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap_err();
    assert_eq!(error.code(), "storage_failed");
    assert!(client.session().is_some(), "the session is kept in memory");
    assert!(
        events
            .take()
            .iter()
            .any(|e| matches!(e, Event::Notice(paywall_auth::Notice::StorageFailed { .. })))
    );
    assert!(
        client.next_deadline().is_some(),
        "a storage retry is scheduled"
    );
}
