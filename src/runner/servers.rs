//! llama-server processes launched by the runner: free loopback ports, wait for `/health`,
//! logs under data/<TR>/logs/, and stopped on every exit path. On Linux each server also gets
//! SIGKILL when the runner dies (even by `kill -9`), so no orphan keeps a port or a core.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(
        "llama-server not found: set BANTERHEARTS_LLAMA_SERVER, put llama-server on PATH, or run scripts/setup-llama-server"
    )]
    NoBinary,
    #[error(
        "backend `{backend}`: launch argument `{arg}` uses ${{{var}}}, which is not set; export it (scripts/setup-llama-server prints the values)"
    )]
    MissingVar {
        backend: String,
        arg: String,
        var: String,
    },
    #[error("cannot start {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("llama-server exited during start-up ({status}); last lines of {log}:\n{tail}")]
    Exited {
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("llama-server did not become healthy within {secs} s; see {log}")]
    NotHealthy { secs: u64, log: PathBuf },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub struct ManagedServer {
    pub base_url: String,
    pub pid: u32,
    pub log: PathBuf,
    child: tokio::process::Child,
}

/// The llama-server binary: $BANTERHEARTS_LLAMA_SERVER, then PATH, then the setup script's cache.
pub fn find_llama_server() -> Result<PathBuf, LaunchError> {
    if let Some(p) = std::env::var_os("BANTERHEARTS_LLAMA_SERVER")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
    {
        return Ok(p);
    }
    if let Some(p) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("llama-server"))
            .find(|p| p.is_file())
    }) {
        return Ok(p);
    }
    let mut cached: Vec<PathBuf> = crate::model::cache_dir()
        .and_then(|c| std::fs::read_dir(c).ok())
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path().join("bin/llama-server")))
        .filter(|p| p.is_file())
        .collect();
    cached.sort();
    cached.pop().ok_or(LaunchError::NoBinary)
}

/// Expands `${VAR}` in each argument (`model::expand_vars`: the setup scripts' models fall back
/// to their cached files).
pub fn expand_args(backend: &str, args: &[String]) -> Result<Vec<String>, LaunchError> {
    args.iter()
        .map(|arg| {
            crate::model::expand_vars(arg).map_err(|var| LaunchError::MissingVar {
                backend: backend.into(),
                arg: arg.clone(),
                var,
            })
        })
        .collect()
}

/// The model file a llama-server argument list loads (`-m` / `--model`).
pub fn model_path(args: &[String]) -> Option<PathBuf> {
    args.windows(2)
        .find(|w| w[0] == "-m" || w[0] == "--model")
        .map(|w| PathBuf::from(&w[1]))
}

/// Makes a llama-server argument list load `model`: the value of its `-m` / `--model`
/// (`--model=X` too) replaced, or `-m model` added.
pub fn set_model(args: &mut Vec<String>, model: &Path) {
    let path = model.display().to_string();
    for i in 0..args.len() {
        if (args[i] == "-m" || args[i] == "--model") && i + 1 < args.len() {
            args[i + 1] = path;
            return;
        }
        if args[i].starts_with("--model=") || args[i].starts_with("-m=") {
            args[i] = format!("--model={path}");
            return;
        }
    }
    args.extend(["-m".to_owned(), path]);
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl ManagedServer {
    pub async fn launch(
        binary: &Path,
        args: &[String],
        log: PathBuf,
        health_timeout: Duration,
    ) -> Result<ManagedServer, LaunchError> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let port = free_port()?;
        let out = std::fs::File::create(&log)?;
        let mut cmd = tokio::process::Command::new(binary);
        cmd.args(args)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            // Its own process group: a Ctrl-C in the terminal reaches the runner, which then
            // stops the servers itself, instead of killing a server mid-request.
            .process_group(0);
        #[cfg(target_os = "linux")]
        // SAFETY: prctl is async-signal-safe and touches only the child being set up.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|source| LaunchError::Spawn {
            binary: binary.to_path_buf(),
            source,
        })?;
        let pid = child.id().unwrap_or(0);
        let base_url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                return Err(LaunchError::Exited {
                    status: status.to_string(),
                    tail: tail(&log, 15),
                    log,
                });
            }
            let healthy = client
                .get(format!("{base_url}/health"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if healthy {
                return Ok(ManagedServer {
                    base_url,
                    pid,
                    log,
                    child,
                });
            }
            if started.elapsed() > health_timeout {
                let _ = child.kill().await;
                return Err(LaunchError::NotHealthy {
                    secs: health_timeout.as_secs(),
                    log,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
