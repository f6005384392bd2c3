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
//! On a running testbed, [`testbed::faults`] breaks things on command, and
//! [`run::run`] plays a [`scenario`]: [`workload`]s (writers, subscribers,
//! pings) in the hosts, faults on a schedule, then a [`report`] with
//! [`chart`]s.
//!
//! The topology format is described in [`topology`]; `deploy/README.md`
//! walks through an example.

pub mod chart;
pub mod compose;
pub mod daemon;
pub mod engine;
pub mod measure;
pub mod names;
pub mod network;
pub mod relay;
pub mod report;
pub mod run;
pub mod scenario;
pub mod state;
pub mod sys;
pub mod testbed;
pub mod topology;
pub mod workload;
