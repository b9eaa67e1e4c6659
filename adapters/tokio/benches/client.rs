//! What the client costs on top of the HTTP request it makes, and how many
//! `access_token()` calls per second it serves from a fresh session.
//!
//! Run (see docs/tokio-measurements.md for the figures):
//! `cargo bench -p paywall-auth-tokio --bench client`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use divan::Bencher;
use divan::counter::ItemsCount;
use paywall_auth_emulator::{Emulator, EmulatorConfig, Route};
use paywall_auth_tokio::{AuthClient, MemoryStore, SignInOptions, paywall_auth::SDK_VERSION};
use tokio::runtime::Runtime;

const PID: &str = "pw_demo";

fn main() {
    divan::main();
}

/// One runtime (2 workers, like the target kiosks), one emulator, one
/// client, one bare reqwest client for the whole run.
struct World {
    runtime: Runtime,
    emulator: Emulator,
    client: AuthClient,
    bare: reqwest::Client,
    /// The bare client's own guest, so the two never spend each other's
    /// refresh tokens.
    bare_refresh_token: Mutex<String>,
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (emulator, client, bare, token) = runtime.block_on(async {
        let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
        let client = AuthClient::builder(emulator.origin(), PID)
            .store(MemoryStore::new())
            .proactive_refresh(None)
            .build()
            .await
            .unwrap();
        client
            .sign_in_anonymously(SignInOptions::default())
            .await
            .unwrap();
        paywall_auth_tokio::install_ring_provider();
        let bare = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let reply = bare_post(&bare, &emulator, Route::AnonymousSignIn, "{}".to_owned()).await;
        (emulator, client, bare, refresh_token_of(&reply))
    });
    World {
        runtime,
        emulator,
        client,
        bare,
        bare_refresh_token: Mutex::new(token),
    }
});

/// The same POST the client makes (same headers, same body), with nothing
/// around it but reading the body.
async fn bare_post(
    bare: &reqwest::Client,
    emulator: &Emulator,
    route: Route,
    body: String,
) -> bytes::Bytes {
    let response = bare
        .post(emulator.url(route))
        .header("Accept", "application/json")
        .header("X-SDK-Version", SDK_VERSION)
        .header("X-Paywall-Id", PID)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    response.bytes().await.unwrap()
}

fn refresh_token_of(reply: &[u8]) -> String {
    let value: serde_json::Value = serde_json::from_slice(reply).unwrap();
    value["refresh_token"].as_str().unwrap().to_owned()
}

/// Keeps the emulator's request log from growing for the whole run.
fn trim_log(world: &World) {
    world.emulator.clear_log();
}

mod refresh {
    use super::*;

    /// `client.refresh()`: command → core → POST /auth/refresh → decode →
    /// two store writes → completion.
    #[divan::bench(sample_count = 100, sample_size = 20)]
    fn client(bencher: Bencher<'_, '_>) {
        let world = &*WORLD;
        trim_log(world);
        bencher.bench(|| world.runtime.block_on(world.client.refresh()).unwrap());
    }

    /// The same POST with reqwest alone (plus pulling the next refresh
    /// token out of the reply, which a bare caller must do too).
    #[divan::bench(sample_count = 100, sample_size = 20)]
    fn bare_reqwest(bencher: Bencher<'_, '_>) {
        let world = &*WORLD;
        trim_log(world);
        bencher.bench(|| {
            world.runtime.block_on(async {
                let token = world.bare_refresh_token.lock().unwrap().clone();
                let body = format!(r#"{{"refresh_token":"{token}"}}"#);
                let reply = bare_post(&world.bare, &world.emulator, Route::Refresh, body).await;
                *world.bare_refresh_token.lock().unwrap() = refresh_token_of(&reply);
            })
        });
    }
}

mod anonymous_sign_in {
    use super::*;

    /// `sign_in_anonymously(force_new)`: a new guest every time.
    #[divan::bench(sample_count = 100, sample_size = 20)]
    fn client(bencher: Bencher<'_, '_>) {
        let world = &*WORLD;
        trim_log(world);
        bencher.bench(|| {
            world
                .runtime
                .block_on(world.client.sign_in_anonymously(SignInOptions::force_new()))
                .unwrap()
        });
    }

    #[divan::bench(sample_count = 100, sample_size = 20)]
    fn bare_reqwest(bencher: Bencher<'_, '_>) {
        let world = &*WORLD;
        trim_log(world);
        bencher.bench(|| {
            world.runtime.block_on(bare_post(
                &world.bare,
                &world.emulator,
                Route::AnonymousSignIn,
                "{}".to_owned(),
            ))
        });
    }
}

mod access_token {
    use super::*;

    /// One caller, fresh session: a round trip through the driver, no I/O.
    #[divan::bench(sample_count = 100, sample_size = 100)]
    fn one_caller(bencher: Bencher<'_, '_>) {
        let world = &*WORLD;
        bencher.bench(|| world.runtime.block_on(world.client.access_token()).unwrap());
    }

    /// `tasks` tasks each asking 100 times, all at once: calls per second
    /// the single driver serves.
    #[divan::bench(args = [1, 8, 64], sample_count = 30)]
    fn many_tasks(bencher: Bencher<'_, '_>, tasks: usize) {
        const CALLS: usize = 100;
        let world = &*WORLD;
        trim_log(world);
        bencher.counter(ItemsCount::new(tasks * CALLS)).bench(|| {
            world.runtime.block_on(async {
                let mut set = tokio::task::JoinSet::new();
                for _ in 0..tasks {
                    let client = world.client.clone();
                    set.spawn(async move {
                        for _ in 0..CALLS {
                            client.access_token().await.unwrap().unwrap();
                        }
                    });
                }
                set.join_all().await
            })
        });
        assert_eq!(world.emulator.count(Route::Refresh), 0, "fresh: no request");
    }
}
