//! The two records of the core on NOR flash, in a `sequential-storage` map.
//!
//! - Key: [`RecordKey::tag`] (one byte). Value: the record's bytes exactly
//!   as the core encodes them ([`StoreFormat::Postcard`] is the format meant
//!   for flash), so the core alone decides what a record means.
//! - A removal is written as an **empty value** (a tombstone) rather than
//!   with `remove_item`: appending is a single item write, power-fail safe
//!   like any other, and works on flash that cannot rewrite a word
//!   (`MultiwriteNorFlash` is not required). No record of the core is ever
//!   empty, so an empty value unambiguously means "absent".
//! - `sequential-storage` appends every write and erases a page only after
//!   copying its live items forward, cycling through all pages (wear
//!   levelling). An item is committed by its CRC: a write cut by a power
//!   loss leaves an item that fails its check and is ignored, so a read
//!   returns the previous value; a half-erased page is re-erased by the
//!   crate's automatic repair on the next operation.

use core::ops::Range;

use embedded_storage_async::nor_flash::NorFlash;
use paywall_auth::{RecordKey, RecordValue, StoreFormat};
use sequential_storage::cache::{Cache, Uncached};
use sequential_storage::map::{MapConfig, MapConfigError, MapStorage, SerializationError, Value};

/// Why the flash map could not be used, reduced from
/// [`sequential_storage::Error`] to what an application can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum StorageFault {
    /// The flash driver returned an error.
    Flash,
    /// The map is corrupted beyond what `sequential-storage` repairs on its
    /// own.
    Corrupted,
    /// The map has no room left for the record (the flash range is too small
    /// for two records plus one page of headroom).
    Full,
    /// A record does not fit the client's buffer (`BUF` too small for the
    /// configured token capacities).
    BufferTooSmall,
    /// Anything else `sequential-storage` reported (a logic bug it caught, a
    /// record too big for a page …).
    Other,
}

impl StorageFault {
    /// A short description.
    pub const fn as_str(self) -> &'static str {
        match self {
            StorageFault::Flash => "flash driver error",
            StorageFault::Corrupted => "flash map corrupted",
            StorageFault::Full => "flash map full",
            StorageFault::BufferTooSmall => "record larger than the client buffer",
            StorageFault::Other => "flash map error",
        }
    }

    fn from_map<E>(error: &sequential_storage::Error<E>) -> Self {
        match error {
            sequential_storage::Error::Storage { .. } => StorageFault::Flash,
            sequential_storage::Error::Corrupted { .. } => StorageFault::Corrupted,
            sequential_storage::Error::FullStorage => StorageFault::Full,
            sequential_storage::Error::BufferTooSmall(_)
            | sequential_storage::Error::SerializationError(SerializationError::BufferTooSmall) => {
                StorageFault::BufferTooSmall
            }
            _ => StorageFault::Other,
        }
    }
}

impl core::fmt::Display for StorageFault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The core's records on a range of NOR flash.
///
/// The range must be page-aligned and span at least two erase pages;
/// four or more are recommended so that a page can always be recycled while
/// two full-size records are live (a postcard session with the default
/// capacities is under 3 KiB).
pub struct FlashStore<F: NorFlash> {
    map: MapStorage<u8, F, Cache<Uncached, Uncached, Uncached, u8>>,
}

impl<F: NorFlash> core::fmt::Debug for FlashStore<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FlashStore").finish_non_exhaustive()
    }
}

impl<F: NorFlash> FlashStore<F> {
    /// A store on `range` of `flash` (byte addresses, relative to the flash
    /// driver). Nothing is read or written yet.
    ///
    /// # Errors
    /// The range is not page-aligned or shorter than two pages.
    pub fn new(flash: F, range: Range<u32>) -> Result<Self, MapConfigError> {
        let config = MapConfig::try_new(range)?;
        Ok(FlashStore {
            map: MapStorage::new(flash, config, Cache::new_uncached()),
        })
    }

    /// Gives the flash back (to simulate a reboot in tests, or to reuse the
    /// driver).
    pub fn into_flash(self) -> F {
        self.map.destroy().0
    }

    /// Erases the whole range: every record is gone.
    ///
    /// # Errors
    /// The flash driver failed.
    pub async fn erase_all(&mut self) -> Result<(), StorageFault> {
        self.map
            .erase_all()
            .await
            .map_err(|e| StorageFault::from_map(&e))
    }

    /// The bytes of `key`, read into `buf`; `None` when absent or removed.
    pub(crate) async fn read<'b>(
        &mut self,
        key: RecordKey,
        buf: &'b mut [u8],
    ) -> Result<Option<&'b [u8]>, StorageFault> {
        match self.map.fetch_item::<&[u8]>(buf, &key.tag()).await {
            Ok(Some(bytes)) if !bytes.is_empty() => Ok(Some(bytes)),
            Ok(_) => Ok(None),
            Err(e) => Err(StorageFault::from_map(&e)),
        }
    }

    /// Writes `value` (encoded in `format` straight into `buf`, the map's
    /// data buffer) under `key`, or a tombstone when `value` is `None`.
    pub(crate) async fn write(
        &mut self,
        key: RecordKey,
        value: Option<RecordValue<'_>>,
        format: StoreFormat,
        buf: &mut [u8],
    ) -> Result<(), StorageFault> {
        let record = Record { value, format };
        self.map
            .store_item(buf, &key.tag(), &record)
            .await
            .map_err(|e| StorageFault::from_map(&e))
    }
}

/// A record as a map value: encoded by the core at write time, directly in
/// the map's buffer (no staging copy).
struct Record<'v> {
    value: Option<RecordValue<'v>>,
    format: StoreFormat,
}

impl<'a> Value<'a> for Record<'_> {
    fn serialize_into(&self, buffer: &mut [u8]) -> Result<usize, SerializationError> {
        match &self.value {
            None => Ok(0),
            Some(value) => value
                .encode(self.format, buffer)
                .map(<[u8]>::len)
                .map_err(|_| SerializationError::BufferTooSmall),
        }
    }

    fn deserialize_from(_buffer: &'a [u8]) -> Result<(Self, usize), SerializationError> {
        // Records are only ever read back as raw bytes (`&[u8]`).
        Err(SerializationError::InvalidFormat)
    }
}
