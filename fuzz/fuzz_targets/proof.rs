//! Fuzz target `proof`: see `gdp_fuzz::proof` for what it checks.
//!
//! Run with: `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run proof --features libfuzzer`
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gdp_fuzz::proof(data));
