//! Fuzz target `control`: see `gdp_fuzz::control` for what it checks.
//!
//! Run with: `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run control --features libfuzzer`
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gdp_fuzz::control(data));
