//! Records: the contract between stages. The runner writes a run record per finished run to
//! the journal and a session entry to the manifest; analysis, report and audit read them from
//! here, so none of them depends on the runner.

pub mod journal;
pub mod manifest;
pub mod requests;
mod run;
pub mod shards;

pub use journal::{Journal, JournalError};
pub use manifest::{HostInfo, Manifest, ServerProvenance, Session, read_manifest};
pub use run::{
    AgentRun, Background, DEGRADED_LAG_P99_MS, GpuSample, GroupStats, LagStats, LoadRequest,
    LoadRun, LoadSummary, LoadedModel, ModelRun, Percentiles, PromptBuild, ReportedRequest,
    RunRecord, RunStatus, ServerCounters, ServerMetrics, ServerMetricsSummary, ServerSample,
    ServerScrape, in_flight,
};
