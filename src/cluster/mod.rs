//! Scale-out: a plan's shards put back together (`merge`), and the batch jobs that run them on
//! the schedulers clusters already have (`submit --slurm`, `submit --k8s`). The partition
//! itself is the plan's (`plan::shard`), so the runner never depends on this module.

pub mod k8s;
pub mod merge;
pub mod slurm;
pub mod submit;
