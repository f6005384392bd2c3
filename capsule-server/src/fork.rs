//! Evidence that a writer forked a capsule: see [`gdp_proto::fork`], where
//! the type lives because readers receive it in `Forks` responses.

pub use gdp_proto::fork::ForkEvidence;
