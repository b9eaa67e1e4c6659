//! What the firmware asks of the auth client, the same on every board.

use embassy_futures::select::{Either, select};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embedded_storage_async::nor_flash::NorFlash;
use paywall_auth_embassy::paywall_auth::{Config, StoreFormat};
use paywall_auth_embassy::{AuthClient, Connect, Event, EventChannel, FlashStore};

/// The paywall this device signs in to.
pub const PAYWALL_ID: &str = "pw_demo";

/// Bytes of flash given to the session store: four 4 KiB pages, so a page
/// can always be recycled while both records are live.
pub const STORE_SIZE: u32 = 16 * 1024;

/// The client's events: four slots, the oldest dropped when full.
pub type Events = EventChannel<CriticalSectionRawMutex, 4>;

/// The auth client on `flash` (its first [`STORE_SIZE`] bytes) through
/// `connector`, storing postcard records (the compact format meant for
/// flash).
pub fn new_client<'e, C: Connect, F: NorFlash>(
    connector: C,
    flash: F,
    events: &'e Events,
) -> AuthClient<'e, C, F> {
    let config = match Config::new(PAYWALL_ID) {
        Ok(config) => config.with_store_format(StoreFormat::Postcard),
        Err(_) => defmt::panic!("invalid paywall id"),
    };
    let store = match FlashStore::new(flash, 0..STORE_SIZE) {
        Ok(store) => store,
        Err(_) => defmt::panic!("flash range must be page-aligned and span two pages"),
    };
    AuthClient::new(config, connector, store, events)
}

/// After boot, for ever: keeps the tokens fresh (the client's timers) and
/// logs the auth changes the client reports on `events`.
pub async fn serve<C: Connect, F: NorFlash>(
    client: &mut AuthClient<'_, C, F>,
    events: &Events,
) -> ! {
    loop {
        match select(client.wait_deadline(), events.receive()).await {
            Either::First(()) => client.service_timers().await,
            Either::Second(Event::Auth { change, user }) => match user {
                Some(user) => defmt::info!("{=str}: user {=str}", change.as_str(), user.id),
                None => defmt::info!("{=str}: signed out", change.as_str()),
            },
            Either::Second(other) => defmt::warn!("{}", other),
        }
    }
}
