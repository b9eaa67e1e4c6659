//! Many tasks, one client: collapsing comes from the core, the adapter only
//! fans one completion out to every caller.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use paywall_auth_emulator::Route;
use paywall_auth_tokio::{AuthClient, MemoryStore, SignInOptions};
use tokio::task::JoinSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_sign_ins_send_one_request() {
    let emu = emulator().await;
    let client = client(&emu, MemoryStore::new()).await;
    let mut tasks = JoinSet::new();
    for _ in 0..100 {
        let client = client.clone();
        tasks.spawn(async move {
            client
                .sign_in_anonymously(SignInOptions::default())
                .await
                .unwrap()
        });
    }
    let sessions = guard("100 sign-ins", tasks.join_all()).await;
    assert_eq!(sessions.len(), 100);
    assert!(sessions.iter().all(|s| *s == sessions[0]));
    assert_eq!(routes(&emu), [Route::AnonymousSignIn]);
    assert_eq!(emu.users().len(), 1);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_access_tokens_on_a_fresh_session_send_nothing() {
    let emu = emulator().await;
    let client = client(&emu, MemoryStore::new()).await;
    let session = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    emu.clear_log();
    let mut tasks = JoinSet::new();
    for _ in 0..1000 {
        let client = client.clone();
        tasks.spawn(async move { client.access_token().await.unwrap() });
    }
    let tokens = guard("1000 access tokens", tasks.join_all()).await;
    assert_eq!(tokens.len(), 1000);
    assert!(
        tokens
            .iter()
            .all(|t| t.as_ref() == Some(&session.access_token))
    );
    assert!(emu.requests().is_empty(), "{:?}", routes(&emu));
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_access_tokens_on_a_stale_session_share_one_refresh() {
    let emu = emulator().await;
    // Tokens that live 30 s are stale at once (leeway 60 s).
    emu.set_access_ttl(30);
    let client = AuthClient::builder(emu.origin(), PID)
        .proactive_refresh(None)
        .request_timeout(Duration::from_secs(20))
        .build()
        .await
        .unwrap();
    let stale = client
        .sign_in_anonymously(SignInOptions::default())
        .await
        .unwrap();
    // The refreshed token is fresh, so a caller that arrives after the
    // refresh landed needs no second one, however the tasks are scheduled.
    emu.set_access_ttl(3600);
    emu.clear_log();

    let mut tasks = JoinSet::new();
    for _ in 0..100 {
        let client = client.clone();
        tasks.spawn(async move { client.access_token().await.unwrap().unwrap() });
    }
    let tokens = guard("100 access tokens", tasks.join_all()).await;
    assert_eq!(routes(&emu), [Route::Refresh]);
    let current = client.session().unwrap();
    assert_ne!(current.access_token, stale.access_token);
    assert!(tokens.iter().all(|t| *t == current.access_token));
    assert_eq!(current.user.id, stale.user.id);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_queued_before_any_answer_share_one_request() {
    // A gate holds every request until all calls are queued, so the calls
    // overlap for certain rather than probably.
    let emu = emulator().await;
    emu.set_access_ttl(30); // stale at once (leeway 60 s)
    let transport = GatedTransport::closed();
    let client = AuthClient::builder(emu.origin(), PID)
        .transport(transport.clone())
        .proactive_refresh(None)
        .build()
        .await
        .unwrap();

    let calls = (0..100)
        .map(|_| client.sign_in_anonymously(SignInOptions::default()))
        .collect();
    let sessions = start_all_then(calls, || transport.open(1)).await;
    let first = sessions[0].as_ref().unwrap().clone();
    assert!(sessions.iter().all(|s| s.as_ref().unwrap() == &first));
    assert_eq!(routes(&emu), [Route::AnonymousSignIn]);

    // 100 token calls on the stale session: one refresh.
    emu.clear_log();
    let calls = (0..100).map(|_| client.access_token()).collect();
    let tokens = start_all_then(calls, || transport.open(1)).await;
    assert_eq!(routes(&emu), [Route::Refresh], "phase 2");
    let refreshed = client.session().unwrap();
    assert_ne!(refreshed.access_token, first.access_token);
    for token in tokens {
        assert_eq!(token.unwrap(), Some(refreshed.access_token.clone()));
    }

    // 50 explicit refreshes: one rotation, one result for all.
    emu.clear_log();
    let calls = (0..50).map(|_| client.refresh()).collect();
    let sessions = start_all_then(calls, || transport.open(1)).await;
    assert_eq!(routes(&emu), [Route::Refresh], "{:#?}", emu.requests());
    let errors: Vec<String> = sessions
        .iter()
        .filter_map(|s| s.as_ref().err().map(ToString::to_string))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let rotated = sessions[0].as_ref().unwrap().clone();
    assert_ne!(rotated.refresh_token, refreshed.refresh_token);
    assert!(sessions.iter().all(|s| s.as_ref().unwrap() == &rotated));
    assert_eq!(emu.users().len(), 1);
    client.shutdown().await;
}
