//! The GDP router.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod core;
pub mod directory;
#[cfg(feature = "sim")]
pub mod sim;
#[cfg(feature = "testing")]
pub mod testing;
