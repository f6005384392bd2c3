//! `gdp-deploy`: one topology description, two ways to run it.
//!
//! - [`testbed::up`] turns a [`topology::Topology`] into a local overlay
//!   testbed: one network namespace per host, all on one Linux bridge, a
//!   `redis-server` for the directory, and `gdp-router` and
//!   `gdp-capsule-server` processes inside their hosts' namespaces.
//!   [`testbed::down`] takes it apart again; the [`state::State`] file in
//!   between records everything that was made.
//! - [`compose::render`] turns the same topology into a compose file for
//!   container hosts.
//!
//! Both start the daemons the same way: [`daemon`] holds their key files
//! (made before anything starts, so every name is known up front) and their
//! command lines.
//!
//! The topology format is described in [`topology`]; `deploy/README.md`
//! walks through an example.

pub mod compose;
pub mod daemon;
pub mod engine;
pub mod measure;
pub mod names;
pub mod network;
pub mod relay;
pub mod state;
pub mod sys;
pub mod testbed;
pub mod topology;
