//! The runner under kill -9, a second runner and a full disk, against the pacer: whatever
//! happens, every finished run stays in a readable journal, and the next `run` picks up
//! where the last one stopped.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{banterhearts, journal, pacer, project, reliability, wait_for_lines};

fn spec(url: &str, repetitions: u32) -> String {
    format!(
        "id: TR981\ntitle: runner faults\nstatus: running\nquestion: does anything the runner finished get lost?\nbackends:\n  pacer: {{kind: llama-cpp, endpoints: [\"http://{url}\"]}}\nworkload: {{prompts: [a], max_tokens: 6}}\nmatrix:\n  temperature: [0.2, 0.8]\nrepetitions: {repetitions}\n"
    )
}

fn spawn(root: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_banterhearts"))
        .arg("-C")
        .arg(root)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
}

/// A runner killed with SIGKILL cannot clean up. Its lock file still names it; the next run
/// takes the lock over, says whose it was, keeps every line the dead one wrote byte for byte
/// and records the rest.
#[test]
fn a_lock_left_by_a_killed_runner_is_taken_over_and_nothing_is_lost() {
    let _serial = common::serial();
    let p = pacer(&["--ttft-ms", "20", "--itl-ms", "5", "--tokens", "6"]);
    let dir = project(&[("TR981.yaml", &spec(&p.addr, 15))]);
    let runs = dir.path().join("data/TR981/runs.jsonl");
    let mut child = spawn(dir.path(), &["run", "TR981", "-q"]);
    wait_for_lines(&runs, 3, Duration::from_secs(60));
    signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    let before = lines(&runs);
    let entry = std::fs::read_to_string(dir.path().join("data/TR981/.lock")).unwrap();
    assert!(
        entry.contains(&format!("\"pid\":{}", child.id())),
        "the lock names the runner that holds it: {entry:?}"
    );
    let out = banterhearts(dir.path(), &["run", "TR981"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("pid {}", child.id()))
            && out.stderr.contains("ended without letting go of it"),
        "{}",
        out.stderr
    );
    let after = lines(&runs);
    assert_eq!(after.len(), 30, "every planned run is recorded once");
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "the dead runner's lines are kept"
    );
    let ids: std::collections::BTreeSet<_> = journal(dir.path(), "TR981")
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 30);
    // A runner that finished lets go cleanly: the next one has no one to take over from.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("data/TR981/.lock")).unwrap(),
        ""
    );
    let again = banterhearts(dir.path(), &["run", "TR981"]);
    assert!(!again.stderr.contains("letting go"), "{}", again.stderr);
    reliability(
        "runner killed with SIGKILL mid-experiment, then run again",
        before.len(),
        "the next run took over the dead runner's lock, named it, and recorded the rest",
        "nothing (every finished run kept byte for byte)",
    );
}

/// One runner per data set: a second on the same TR, or on the same shard, is refused and told
/// who holds it; another shard of the same TR runs beside it.
#[test]
fn a_second_runner_on_the_same_data_is_refused_and_told_who_holds_it() {
    let _serial = common::serial();
    let p = pacer(&["--ttft-ms", "20", "--itl-ms", "5", "--tokens", "6"]);
    let dir = project(&[("TR981.yaml", &spec(&p.addr, 40))]);
    let mut cases = 0;
    for shard in [None, Some("0/2")] {
        let mut args = vec!["run", "TR981", "-q"];
        let runs = match shard {
            Some(s) => {
                args.extend(["--shard", s]);
                dir.path().join("data/TR981/shards/0-of-2/runs.jsonl")
            }
            None => dir.path().join("data/TR981/runs.jsonl"),
        };
        let first = spawn(dir.path(), &args);
        wait_for_lines(&runs, 1, Duration::from_secs(60));
        let before = lines(&runs).len();
        let second = banterhearts(dir.path(), &args);
        assert_eq!(second.code, 2, "{}", second.stderr);
        assert!(
            second.stderr.contains("another runner holds")
                && second.stderr.contains(&format!("pid {}", first.id())),
            "{}",
            second.stderr
        );
        if shard.is_some() {
            // The other shard has its own lock and journal, and runs beside the first.
            let mut other = spawn(dir.path(), &["run", "TR981", "-q", "--shard", "1/2"]);
            wait_for_lines(
                &dir.path().join("data/TR981/shards/1-of-2/runs.jsonl"),
                1,
                Duration::from_secs(60),
            );
            signal(&other, libc::SIGTERM);
            assert_eq!(other.wait().unwrap().code(), Some(130));
        }
        signal(&first, libc::SIGTERM);
        let out = first.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(130));
        assert!(
            lines(&runs).len() >= before,
            "the refused runner cost nothing"
        );
        cases += 1;
    }
    reliability(
        "a second runner on a TR, and on a shard, while the first runs",
        cases,
        "refused with exit 2, naming the first runner's pid, host and command; another shard ran beside it",
        "nothing",
    );
}

/// The disk fills up during the experiment (a 512 KiB tmpfs in a private mount namespace,
/// nearly filled): the runner stops with an error that says so and how to resume, the
/// journal holds every run finished before, whole, and after space is freed `run` records the
/// rest without touching them.
#[test]
fn a_full_disk_stops_the_run_with_a_clear_error_and_loses_nothing() {
    let _serial = common::serial();
    let p = pacer(&["--ttft-ms", "2", "--itl-ms", "1", "--tokens", "6"]);
    let dir = project(&[("TR981.yaml", &spec(&p.addr, 50))]);
    let root = dir.path();
    std::fs::create_dir_all(root.join("data")).unwrap();
    let out = tempfile::tempdir().unwrap();
    // Three pages free: the lock, the manifest and a few runs' lines.
    let script = r#"set -e
mount -t tmpfs -o size=512k tmpfs "$ROOT/data"
dd if=/dev/zero of="$ROOT/data/filler" bs=4096 count=125 2>/dev/null
set +e
"$BIN" -C "$ROOT" run TR981 -q >/dev/null 2>"$OUT/full.err"; echo $? >"$OUT/full.code"
cp -a "$ROOT/data/TR981" "$OUT/full"
rm "$ROOT/data/filler"
"$BIN" -C "$ROOT" run TR981 -q >/dev/null 2>"$OUT/resumed.err"; echo $? >"$OUT/resumed.code"
cp -a "$ROOT/data/TR981" "$OUT/resumed"
"#;
    let status = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env("ROOT", root)
        .env("BIN", env!("CARGO_BIN_EXE_banterhearts"))
        .env("OUT", out.path())
        .status()
        .expect("unshare runs (util-linux)");
    assert!(
        status.success(),
        "the tmpfs could not be set up: the tests run as root, as CI does"
    );
    let read = |name: &str| std::fs::read_to_string(out.path().join(name)).unwrap();
    let err = read("full.err");
    assert_eq!(read("full.code").trim(), "2", "{err}");
    assert!(
        err.contains("No space left on device")
            && err.contains("that run was not recorded, and the journal keeps every run before it")
            && err.contains(
                "the disk is full: free space on it, then run `banterhearts run TR981` to resume"
            )
            && !err.contains("panicked"),
        "{err}"
    );
    let full = lines(&out.path().join("full/runs.jsonl"));
    assert!(
        !full.is_empty() && full.len() < 100,
        "{} runs fit before the disk filled",
        full.len()
    );
    let journal_bytes = std::fs::read(out.path().join("full/runs.jsonl")).unwrap();
    assert_eq!(
        journal_bytes.last(),
        Some(&b'\n'),
        "no piece of a line is left"
    );
    for line in &full {
        serde_json::from_str::<serde_json::Value>(line).expect("every line is a whole record");
    }
    assert_eq!(read("resumed.code").trim(), "0", "{}", read("resumed.err"));
    let resumed = lines(&out.path().join("resumed/runs.jsonl"));
    assert_eq!(resumed.len(), 100);
    assert_eq!(&resumed[..full.len()], &full[..]);
    assert!(
        !std::fs::read_dir(out.path().join("resumed"))
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().contains("torn")),
        "nothing had to be set aside"
    );
    reliability(
        "the disk fills up during a journal append (tmpfs)",
        full.len(),
        "stopped with exit 2: \"No space left on device ... the journal keeps every run before it\", and how to resume; the partial line was cut off; after freeing space, run recorded the rest",
        "nothing (the run in flight is measured again)",
    );
}
