//! banterhearts: declarative LLM-performance technical reports.
//!
//! Data flow: spec (YAML) -> plan (cells x repetitions) -> run -> artifacts -> analysis ->
//! report / index / audit. Each stage is a module; `cli` only parses arguments and calls them.

pub mod cli;
pub mod diagnostic;
pub mod plan;
pub mod registry;
pub mod spec;
