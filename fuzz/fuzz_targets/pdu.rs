//! Fuzz target `pdu`: see `gdp_fuzz::pdu` for what it checks.
//!
//! Run with: `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run pdu --features libfuzzer`
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gdp_fuzz::pdu(data));
