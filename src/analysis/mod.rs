//! Analysis of recorded runs. `contention` works on run records directly; the per-cell
//! statistics over frames come with the analysis stage.

pub mod contention;
