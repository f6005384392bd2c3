//! Fuzz target `frames`: see `gdp_fuzz::frames` for what it checks.
//!
//! Run with: `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run frames --features libfuzzer`
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gdp_fuzz::frames(data));
