//! Keys: age identities and recipients that wrap the store's secrets, and the per-epoch
//! secret bundle from which chunk ids and per-chunk encryption keys are derived.

pub mod identity;
pub mod secret_file;
pub mod store_keys;

pub use identity::{Identity, Recipient};
pub use store_keys::StoreKeys;
