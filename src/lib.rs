//! banterhearts: declarative LLM-performance technical reports.
//!
//! Data flow: spec (YAML) -> plan (cells x repetitions) -> run -> artifacts -> analysis ->
//! report / index / audit. Each stage is a module; `cli` only parses arguments and calls them.

// A Diagnostic is built once per failed command, so its size on the error path does not matter.
#![allow(clippy::result_large_err)]

pub mod analysis;
pub mod audit;
pub mod backend;
pub mod catalogue;
pub mod cli;
pub mod cluster;
pub mod diagnostic;
pub mod model;
pub mod pacer;
pub mod plan;
pub mod record;
pub mod registry;
pub mod report;
pub mod runner;
pub mod scaffold;
pub mod schedule;
pub mod spec;
pub mod stats;
pub mod store;
pub mod workload;
