//! Random generators whose runs can be replayed.
//!
//! A test that draws random numbers (when to kill a process, which bytes
//! to flip) takes them from [`seeded_rng`]. The seed comes from
//! `GDP_TEST_SEED` when set, else from the OS; either way it is printed
//! on standard error, which the test harness shows for a failing test, so
//! the failing run can be repeated exactly:
//!
//! ```text
//! GDP_TEST_SEED=1234 cargo test -p gdp-capsule-server --test crash
//! ```

use rand::SeedableRng;
use rand::rngs::StdRng;

/// The variable that fixes the seed of every [`seeded_rng`].
pub const SEED_ENV: &str = "GDP_TEST_SEED";

/// The seed for this run: `GDP_TEST_SEED` if set, else a fresh random
/// one. Printed on standard error either way.
///
/// # Panics
///
/// When `GDP_TEST_SEED` is set but is not a decimal `u64`.
pub fn test_seed() -> u64 {
    let seed = seed_from(std::env::var(SEED_ENV).ok().as_deref());
    eprintln!("random seed {seed}: run again with {SEED_ENV}={seed} to replay");
    seed
}

/// The seed `text` names, or a fresh random one.
fn seed_from(text: Option<&str>) -> u64 {
    match text {
        Some(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{SEED_ENV}={text:?} is not a u64: {e}")),
        None => rand::random(),
    }
}

/// A generator seeded with [`test_seed`].
pub fn seeded_rng() -> StdRng {
    StdRng::seed_from_u64(test_seed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_seed_is_used_and_a_missing_one_is_fresh() {
        assert_eq!(seed_from(Some(" 42\n")), 42);
        assert_ne!(seed_from(None), seed_from(None));
    }

    #[test]
    #[should_panic(expected = "is not a u64")]
    fn a_bad_seed_is_refused() {
        seed_from(Some("forty-two"));
    }
}
