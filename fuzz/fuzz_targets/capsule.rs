//! Fuzz target `capsule`: see `gdp_fuzz::capsule` for what it checks.
//!
//! Run with: `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run capsule --features libfuzzer`
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gdp_fuzz::capsule(data));
