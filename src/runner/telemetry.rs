//! Resource telemetry around runs: client and server memory and CPU (sysinfo), GPU memory,
//! power and temperature (nvidia-smi, when the machine has one), and host provenance.

use serde::{Deserialize, Serialize};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerSample {
    pub pid: u32,
    pub rss_mb: f64,
    /// CPU seconds the server used during this run.
    pub cpu_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GpuSample {
    pub memory_used_mb: Option<f64>,
    pub power_w: Option<f64>,
    pub temperature_c: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostInfo {
    pub cpu: String,
    pub logical_cpus: usize,
    pub physical_cores: Option<usize>,
    pub memory_gb: f64,
    pub os: String,
    pub kernel: String,
    pub arch: String,
    #[serde(default)]
    pub gpu: Option<String>,
}

const MB: f64 = 1024.0 * 1024.0;

pub struct Telemetry {
    system: Option<System>,
    own_pid: Pid,
    server_pids: Vec<Pid>,
    /// Accumulated CPU milliseconds per server at the start of the current run.
    cpu_start_ms: Vec<u64>,
    has_gpu: bool,
}

impl Telemetry {
    pub fn new(server_pids: &[u32]) -> Telemetry {
        Telemetry {
            system: System::new().ok(),
            own_pid: Pid::from_u32(std::process::id()),
            server_pids: server_pids.iter().map(|p| Pid::from_u32(*p)).collect(),
            cpu_start_ms: vec![0; server_pids.len()],
            has_gpu: gpu_name().is_some(),
        }
    }

    fn refresh(&mut self) {
        let mut pids = self.server_pids.clone();
        pids.push(self.own_pid);
        if let Some(sys) = &mut self.system {
            sys.refresh_processes_specifics(
                ProcessesToUpdate::Some(&pids),
                true,
                ProcessRefreshKind::nothing().with_memory().with_cpu(),
            );
        }
    }

    /// Marks the start of a run (CPU time is reported as a difference).
    pub fn begin_run(&mut self) {
        self.refresh();
        let Some(sys) = &self.system else { return };
        self.cpu_start_ms = self
            .server_pids
            .iter()
            .map(|p| sys.process(*p).map_or(0, |pr| pr.accumulated_cpu_time()))
            .collect();
    }

    /// Samples at the end of a run: client RSS, each server's RSS and CPU time since `begin_run`, GPU.
    pub fn end_run(&mut self) -> (Option<f64>, Vec<ServerSample>, Option<GpuSample>) {
        self.refresh();
        let gpu = if self.has_gpu { gpu_sample() } else { None };
        let Some(sys) = &self.system else {
            return (None, Vec::new(), gpu);
        };
        let client = sys.process(self.own_pid).map(|p| p.memory() as f64 / MB);
        let servers = self
            .server_pids
            .iter()
            .zip(&self.cpu_start_ms)
            .filter_map(|(pid, start)| {
                let p = sys.process(*pid)?;
                Some(ServerSample {
                    pid: pid.as_u32(),
                    rss_mb: p.memory() as f64 / MB,
                    cpu_s: p.accumulated_cpu_time().saturating_sub(*start) as f64 / 1000.0,
                })
            })
            .collect();
        (client, servers, gpu)
    }
}

fn nvidia_smi(query: &str) -> Option<String> {
    let out = std::process::Command::new("nvidia-smi")
        .args([
            &format!("--query-gpu={query}"),
            "--format=csv,noheader,nounits",
        ])
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned()
    })
}

pub fn gpu_name() -> Option<String> {
    nvidia_smi("name").filter(|n| !n.is_empty())
}

fn gpu_sample() -> Option<GpuSample> {
    let line = nvidia_smi("memory.used,power.draw,temperature.gpu")?;
    let mut fields = line.split(',').map(|f| f.trim().parse::<f64>().ok());
    Some(GpuSample {
        memory_used_mb: fields.next().flatten(),
        power_w: fields.next().flatten(),
        temperature_c: fields.next().flatten(),
    })
}

pub fn host_info() -> HostInfo {
    let mut sys = System::new().ok();
    if let Some(s) = &mut sys {
        s.refresh_memory();
        s.refresh_cpu_all();
    }
    let cpu = sys
        .as_ref()
        .and_then(|s| s.cpus().first().map(|c| c.brand().trim().to_owned()))
        .unwrap_or_default();
    HostInfo {
        cpu,
        logical_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        physical_cores: System::physical_core_count().ok(),
        memory_gb: sys
            .as_ref()
            .map_or(0.0, |s| s.total_memory() as f64 / (MB * 1024.0)),
        os: System::long_os_version().unwrap_or_default(),
        kernel: System::kernel_version().unwrap_or_default(),
        arch: System::cpu_arch(),
        gpu: gpu_name(),
    }
}
