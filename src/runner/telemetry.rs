//! Resource telemetry around runs: client and server memory and CPU (sysinfo), GPU memory,
//! power and temperature (nvidia-smi, when the machine has one), and host provenance.

pub use crate::record::{GpuSample, HostInfo, ServerSample};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

const MB: f64 = 1024.0 * 1024.0;

/// What telemetry recorded of one run.
pub struct RunTelemetry {
    pub client_rss_mb: Option<f64>,
    pub servers: Vec<ServerSample>,
    pub gpu: Option<GpuSample>,
    pub background: Option<crate::record::Background>,
}

pub struct Telemetry {
    background: super::background::BackgroundMeter,
    system: Option<System>,
    own_pid: Pid,
    server_pids: Vec<Pid>,
    /// Accumulated CPU milliseconds per server at the start of the current run.
    cpu_start_ms: Vec<u64>,
    has_gpu: bool,
    power: Option<PowerSampler>,
}

impl Telemetry {
    pub fn new(server_pids: &[u32]) -> Telemetry {
        Telemetry {
            background: super::background::BackgroundMeter::new(server_pids),
            system: System::new().ok(),
            own_pid: Pid::from_u32(std::process::id()),
            server_pids: server_pids.iter().map(|p| Pid::from_u32(*p)).collect(),
            cpu_start_ms: vec![0; server_pids.len()],
            has_gpu: gpu_name().is_some(),
            power: None,
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

    /// Marks the start of a run (CPU time is reported as a difference) and starts sampling GPU
    /// power.
    pub fn begin_run(&mut self) {
        // First, so that nvidia-smi's whole life falls inside the window: once reaped at the
        // end, its CPU time is ours (cutime), not background.
        self.background.begin();
        if self.has_gpu {
            self.power = PowerSampler::start("nvidia-smi");
        }
        self.refresh();
        let Some(sys) = &self.system else { return };
        self.cpu_start_ms = self
            .server_pids
            .iter()
            .map(|p| sys.process(*p).map_or(0, |pr| pr.accumulated_cpu_time()))
            .collect();
    }

    /// Samples at the end of a run: client RSS, each server's RSS and CPU time since `begin_run`, GPU.
    pub fn end_run(&mut self) -> RunTelemetry {
        let sampled = self.power.take().and_then(PowerSampler::stop);
        // After nvidia-smi is reaped, so that its CPU time counts as ours.
        let background = self.background.end();
        self.refresh();
        let mut gpu = if self.has_gpu { gpu_sample() } else { None };
        if let (Some(gpu), Some((watts, samples))) = (&mut gpu, sampled) {
            gpu.power_w = Some(watts);
            gpu.power_samples = Some(samples);
        }
        let Some(sys) = &self.system else {
            return RunTelemetry {
                client_rss_mb: None,
                servers: Vec::new(),
                gpu,
                background,
            };
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
        RunTelemetry {
            client_rss_mb: client,
            servers,
            gpu,
            background,
        }
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
        power_samples: None,
    })
}

/// GPU board power sampled through a run. One reading after the run would catch the GPU idle
/// again (an H200 fell from 121 W to 81 W within a second of a query); `nvidia-smi -lms 100`
/// prints every GPU's draw every 100 ms until it is stopped.
struct PowerSampler {
    child: std::process::Child,
    reader: std::thread::JoinHandle<Vec<(u32, f64)>>,
}

impl PowerSampler {
    fn start(program: &str) -> Option<PowerSampler> {
        use std::io::BufRead;
        let mut child = std::process::Command::new(program)
            .args([
                "--query-gpu=index,power.draw",
                "--format=csv,noheader,nounits",
                "-lms",
                "100",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let stdout = child.stdout.take()?;
        let reader = std::thread::spawn(move || {
            std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|line| power_reading(&line))
                .collect()
        });
        Some(PowerSampler { child, reader })
    }

    /// Stops sampling: (watts, readings per GPU), or None without a reading.
    fn stop(mut self) -> Option<(f64, usize)> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        mean_power(&self.reader.join().ok()?)
    }
}

/// One `index, power.draw` line: (GPU index, watts). "[N/A]" and the like give None.
fn power_reading(line: &str) -> Option<(u32, f64)> {
    let (index, watts) = line.split_once(',')?;
    Some((index.trim().parse().ok()?, watts.trim().parse().ok()?))
}

/// Each GPU's mean power, summed over GPUs, and the fewest readings any GPU had.
fn mean_power(readings: &[(u32, f64)]) -> Option<(f64, usize)> {
    let mut per_gpu: std::collections::BTreeMap<u32, (f64, usize)> = Default::default();
    for &(gpu, watts) in readings {
        let (sum, count) = per_gpu.entry(gpu).or_default();
        *sum += watts;
        *count += 1;
    }
    let watts = per_gpu
        .values()
        .map(|(sum, count)| sum / *count as f64)
        .sum();
    let fewest = per_gpu.values().map(|(_, count)| *count).min()?;
    Some((watts, fewest))
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

#[cfg(test)]
mod tests {
    use super::*;

    // Lines as nvidia-smi 580 prints them (seen on an H200), two GPUs, one reading missing.
    #[test]
    fn power_is_each_gpus_mean_summed() {
        let lines = [
            "0, 121.47",
            "1, 60.00",
            "0, 118.53",
            "1, [N/A]",
            "0, 120.00",
            "1, 62.00",
        ];
        let readings: Vec<(u32, f64)> = lines.iter().filter_map(|l| power_reading(l)).collect();
        assert_eq!(readings.len(), 5);
        let (watts, fewest) = mean_power(&readings).unwrap();
        assert!((watts - (120.0 + 61.0)).abs() < 1e-9, "{watts}");
        assert_eq!(fewest, 2);
        assert!(mean_power(&[]).is_none());
    }

    // The sampler runs the program until stopped and averages what it printed; a program that
    // cannot start gives no sampler rather than an error.
    #[cfg(unix)]
    #[test]
    fn the_sampler_averages_a_looping_program_until_stopped() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("nvidia-smi");
        std::fs::write(
            &fake,
            "#!/bin/sh\nwhile true; do echo '0, 100.0'; echo '0, 200.0'; sleep 0.02; done\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let sampler = PowerSampler::start(fake.to_str().unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(150));
        let (watts, readings) = sampler.stop().unwrap();
        assert!(readings >= 2, "{readings}");
        assert!((100.0..=200.0).contains(&watts), "{watts}");
        assert!(PowerSampler::start("/nonexistent/nvidia-smi").is_none());
    }
}
