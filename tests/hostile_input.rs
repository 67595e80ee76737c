//! Hostile input: what a user's editor, a crash or a bad measurement can leave behind must be
//! met with a located error or a clean result, never a panic or a lost record.
//!
//! - Specs and the catalogue, mutated byte by byte and line by line from every spec in the
//!   repository and the malformed-spec corpus, are accepted or rejected with a diagnostic that
//!   says `file:line:column`, in-process and through the binary.
//! - A journal cut at every byte offset gives back exactly its complete records, through every
//!   reader, and opening it for a resume keeps every byte.
//! - Reports render from journals of random values (zero, negative, huge, subnormal, missing,
//!   all degraded, one run, no spread) without a panic.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use banterhearts::diagnostic::{Diagnostic, Diagnostics};
use banterhearts::record::{RunRecord, RunStatus};
use banterhearts::registry::Registry;
use common::{banterhearts, repo_root};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Specs and the catalogue under mutation.
// ---------------------------------------------------------------------------------------------

/// Mutated specs per seed file. With the 84 seeds of today (25 specs, the catalogue, 58 files of
/// the malformed corpus) that is 10,920 specs; a test fails if the seeds give fewer than 10,000.
const CASES_PER_SEED: u32 = 130;
/// Of those, run through the real binary as well.
const BINARY_CASES: u32 = 300;
/// Mutations applied to one spec, at most.
const MAX_MUTATIONS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq)]
enum SeedKind {
    /// A spec, checked as `banterhearts validate` checks a project.
    Spec,
    /// `experiments/catalogue/claims.yaml`, checked as the audit loads it.
    Catalogue,
}

/// A project root to mutate one file of.
struct Seed {
    /// Where the seed comes from, for failure messages.
    origin: String,
    kind: SeedKind,
    /// The mutated file, relative to the project root, and its original bytes.
    target: PathBuf,
    text: Vec<u8>,
    /// The project's other files (prompts, traces, neighbouring specs), written once.
    others: Vec<(PathBuf, Vec<u8>)>,
}

/// A valid spec standing in for one a seed builds on or supersedes: the seed is then checked
/// with its neighbours present, as in the repository, without their own neighbours.
fn stub(id: &str) -> Vec<u8> {
    format!("id: {id}\ntitle: stub\nstatus: planned\nquestion: stands in for a neighbour?\n")
        .into_bytes()
}

fn sorted_dir(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths
}

fn is_yaml(p: &Path) -> bool {
    p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

fn spec_ids() -> Vec<String> {
    sorted_dir(&repo_root().join("experiments"))
        .into_iter()
        .filter(|p| is_yaml(p))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn seeds() -> &'static [Seed] {
    static SEEDS: OnceLock<Vec<Seed>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let repo = repo_root();
        let mut seeds = Vec::new();
        let prompts = PathBuf::from("experiments/prompts/agent.yaml");
        let prompts_text = std::fs::read(repo.join(&prompts)).unwrap();
        for path in sorted_dir(&repo.join("experiments")) {
            if !is_yaml(&path) {
                continue;
            }
            let loaded = banterhearts::spec::load(&path)
                .unwrap_or_else(|e| panic!("{} is a valid spec: {e}", path.display()));
            let mut others = vec![(prompts.clone(), prompts_text.clone())];
            for id in loaded
                .spec
                .builds_on
                .iter()
                .chain(loaded.spec.supersedes.as_ref().map(|s| &s.id))
            {
                others.push((PathBuf::from(format!("experiments/{id}.yaml")), stub(id)));
            }
            let target = path.strip_prefix(&repo).unwrap().to_path_buf();
            seeds.push(Seed {
                origin: target.display().to_string(),
                kind: SeedKind::Spec,
                text: std::fs::read(&path).unwrap(),
                target,
                others,
            });
        }
        let catalogue = PathBuf::from("experiments/catalogue/claims.yaml");
        seeds.push(Seed {
            origin: catalogue.display().to_string(),
            kind: SeedKind::Catalogue,
            text: std::fs::read(repo.join(&catalogue)).unwrap(),
            target: catalogue,
            others: Vec::new(),
        });
        let corpus = repo.join("tests/specs/invalid");
        for case in sorted_dir(&corpus).into_iter().filter(|p| p.is_dir()) {
            let files: Vec<(PathBuf, Vec<u8>)> = common::files(&case)
                .into_iter()
                .filter(|(rel, _)| rel != "expected")
                .map(|(rel, bytes)| (PathBuf::from(rel), bytes))
                .collect();
            for (target, text) in &files {
                let direct = target.parent() == Some(Path::new("experiments"));
                if !(direct && is_yaml(&case.join(target))) {
                    continue;
                }
                seeds.push(Seed {
                    origin: format!(
                        "tests/specs/invalid/{}/{}",
                        case.file_name().unwrap().to_string_lossy(),
                        target.display()
                    ),
                    kind: SeedKind::Spec,
                    target: target.clone(),
                    text: text.clone(),
                    others: files.iter().filter(|(p, _)| p != target).cloned().collect(),
                });
            }
        }
        seeds
    })
}

/// Every seed's bytes, one after another: inserted pieces are cut from it, so mutants mix
/// the punctuation, indentation, anchors and field names real specs use.
fn corpus() -> &'static [u8] {
    static CORPUS: OnceLock<Vec<u8>> = OnceLock::new();
    CORPUS.get_or_init(|| seeds().iter().flat_map(|s| s.text.clone()).collect())
}

/// What YAML gives a parser trouble with, and what specs give a validator trouble with.
const TOKENS: &[&[u8]] = &[
    b":", b": ", b"- ", b"-", b"  ", b"    ", b"\t", b"\n", b"\r\n", b"\r", b"'", b"\"", b"`",
    b"\\", b"&a ", b"*a", b"*undefined", b"<<: *a\n", b"<<: ", b"<<: [*a, *a]\n", b"<<: 1\n",
    b"{", b"}", b"[", b"]", b",", b"#", b" # comment\n", b"|\n", b">-\n", b"|-2\n", b"? ",
    b"!!str ", b"!!int ", b"!!float ", b"!!binary ", b"!!map ", b"!!seq ", b"!custom ",
    b"!<tag:yaml.org,2002:str> ", b"---\n", b"\n---\n", b"...\n", b"%YAML 1.2\n---\n",
    b"%TAG ! tag:x,2000:\n", b"\xef\xbb\xbf", b"\0", b"\x7f", b"\x1b[31m", b"\xc2\x85",
    b"\xe2\x80\xa8", b"\xc3\xa9", b"\xf0\x9f\xa6\x80", b"\xff", b"\xc3", b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80", b"~", b"null", b"true", b"yes", b"no", b"on", b"0x1F", b"0o17",
    b"1e309", b"-1e309", b"-0", b".nan", b".inf", b"-.inf", b"99999999999999999999999999",
    b"-1", b"0", b"4294967296", b"18446744073709551616", b"1e-320", b"0.1e-400", b"TR124",
    b"TR", b"TR/../x", b"id: ", b"id: TR124\n", b"matrix:\n", b"claims:\n", b"exclude: [{}]",
    b"include: [{}]", b"scenario: {kind: load}", b"{kind: concurrent, agents: 0}",
    b"{kind: load, rate: -1, duration_s: 0}", b"{kind: command, agents: 100000000}",
    b"supersedes: {id: TR124, reason: x}\n", b"builds_on: [TR124, TR124]\n",
    b"repetitions: 1000000000\n", b"warmup: -1\n", b"order: randomized(99999999999999999999)\n",
    b"stated: \"+1e999%\"\n", b"assert: \"ci_low >= \"\n", b"where: {}\n", b"pool: true\n",
    b"key: &a {x: 1}\nother: *a\n",
    b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
    b"matrix: {boom: &x [[1, 1, 1, 1, 1, 1, 1, 1], [*x, *x]]}\n",
];

#[derive(Debug, Clone)]
enum Piece {
    Token(usize),
    /// Bytes from elsewhere in the corpus, whole characters.
    Corpus {
        at: Index,
        len: usize,
    },
    /// A word (field name, value, id) from elsewhere in the corpus.
    Word(Index),
    Bytes(Vec<u8>),
    /// A very long scalar (or run of punctuation).
    Long {
        len: usize,
        byte: u8,
    },
    /// Brackets nested deeper than any parser's recursion limit.
    Deep {
        len: usize,
        open: u8,
    },
}

#[derive(Debug, Clone)]
enum Mutation {
    Insert {
        at: Index,
        piece: Piece,
    },
    /// A new line at a line start, indented.
    InsertLine {
        at: Index,
        indent: usize,
        piece: Piece,
    },
    Delete {
        at: Index,
        len: usize,
    },
    DeleteLines {
        at: Index,
        count: usize,
    },
    DuplicateLine {
        at: Index,
    },
    SwapLines {
        a: Index,
        b: Index,
    },
    SwapSpans {
        a: Index,
        b: Index,
        len: usize,
    },
    Replace {
        at: Index,
        byte: u8,
    },
    /// The word at a position replaced: keeps the YAML's shape, so the validator sees it.
    ReplaceWord {
        at: Index,
        piece: Piece,
    },
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        6 => (0..TOKENS.len()).prop_map(Piece::Token),
        4 => (any::<Index>(), 1usize..48).prop_map(|(at, len)| Piece::Corpus { at, len }),
        4 => any::<Index>().prop_map(Piece::Word),
        1 => proptest::collection::vec(any::<u8>(), 1..6).prop_map(Piece::Bytes),
        1 => (1usize..100_000, prop::sample::select(b"a :-'\"#".to_vec()))
            .prop_map(|(len, byte)| Piece::Long { len, byte }),
        1 => (100usize..2_000, prop::sample::select(b"[{-".to_vec()))
            .prop_map(|(len, open)| Piece::Deep { len, open }),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), piece()).prop_map(|(at, piece)| Mutation::Insert { at, piece }),
        3 => (any::<Index>(), 0usize..9, piece())
            .prop_map(|(at, indent, piece)| Mutation::InsertLine { at, indent, piece }),
        2 => (any::<Index>(), 1usize..40).prop_map(|(at, len)| Mutation::Delete { at, len }),
        2 => (any::<Index>(), 1usize..4).prop_map(|(at, count)| Mutation::DeleteLines { at, count }),
        1 => any::<Index>().prop_map(|at| Mutation::DuplicateLine { at }),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapLines { a, b }),
        1 => (any::<Index>(), any::<Index>(), 1usize..40)
            .prop_map(|(a, b, len)| Mutation::SwapSpans { a, b, len }),
        2 => (any::<Index>(), byte()).prop_map(|(at, byte)| Mutation::Replace { at, byte }),
        4 => (any::<Index>(), piece()).prop_map(|(at, piece)| Mutation::ReplaceWord { at, piece }),
    ]
}

/// Mostly printable ASCII: a file of random bytes stops at its first non-UTF-8 one, and the
/// parser and validator behind that check would see little.
fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![9 => 0x20u8..0x7f, 1 => any::<u8>()]
}

/// Few mutations more often than many: each one is likely to break the YAML, and the checks
/// behind the parser only see specs that still parse.
fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop_oneof![
        2 => proptest::collection::vec(mutation(), 1..=2),
        1 => proptest::collection::vec(mutation(), 1..=MAX_MUTATIONS),
    ]
}

fn piece_bytes(piece: &Piece) -> Vec<u8> {
    match piece {
        Piece::Token(i) => TOKENS[*i].to_vec(),
        Piece::Corpus { at, len } => {
            let corpus = corpus();
            let start = char_start(corpus, at.index(corpus.len()));
            let end = char_start(corpus, (start + len).min(corpus.len()));
            corpus[start..end].to_vec()
        }
        Piece::Word(at) => {
            let corpus = corpus();
            let (start, end) = word_at(corpus, at.index(corpus.len()));
            corpus[start..end].to_vec()
        }
        Piece::Bytes(b) => b.clone(),
        Piece::Long { len, byte } => vec![*byte; *len],
        Piece::Deep { len, open } => {
            let unit: &[u8] = match open {
                b'[' => b"[",
                b'{' => b"{a: ",
                _ => b"- ",
            };
            unit.repeat(*len)
        }
    }
}

/// `i`, moved back to the start of the character it is in.
fn char_start(text: &[u8], mut i: usize) -> usize {
    while i > 0 && i < text.len() && (text[i] & 0xc0) == 0x80 {
        i -= 1;
    }
    i
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'$' | b'%' | b'+')
}

/// The word around `i` (empty between words).
fn word_at(text: &[u8], i: usize) -> (usize, usize) {
    let start = text[..i]
        .iter()
        .rposition(|b| !is_word(*b))
        .map_or(0, |p| p + 1);
    let end = text[i..]
        .iter()
        .position(|b| !is_word(*b))
        .map_or(text.len(), |p| i + p);
    (start, end)
}

/// Byte offsets where lines start (0 always does).
fn line_starts(text: &[u8]) -> Vec<usize> {
    std::iter::once(0)
        .chain(memchr_all(text).map(|i| i + 1).filter(|&i| i < text.len()))
        .collect()
}

fn memchr_all(text: &[u8]) -> impl Iterator<Item = usize> + '_ {
    text.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i)
}

/// The line `at` picks: its start and its end (after its newline, or the end of the text).
fn line_span(text: &[u8], at: &Index) -> (usize, usize) {
    let starts = line_starts(text);
    let i = at.index(starts.len());
    let end = starts.get(i + 1).copied().unwrap_or(text.len());
    (starts[i], end)
}

fn apply(text: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut t = text.to_vec();
    for m in mutations {
        match m {
            Mutation::Insert { at, piece } => {
                let i = at.index(t.len() + 1);
                t.splice(i..i, piece_bytes(piece));
            }
            Mutation::InsertLine { at, indent, piece } => {
                let (start, _) = line_span(&t, at);
                let mut line = vec![b' '; *indent];
                line.extend(piece_bytes(piece));
                line.push(b'\n');
                t.splice(start..start, line);
            }
            Mutation::Delete { at, len } => {
                if !t.is_empty() {
                    let i = at.index(t.len());
                    t.drain(i..(i + len).min(t.len()));
                }
            }
            Mutation::DeleteLines { at, count } => {
                let (start, mut end) = line_span(&t, at);
                for _ in 1..*count {
                    end = t[end..]
                        .iter()
                        .position(|b| *b == b'\n')
                        .map_or(t.len(), |p| end + p + 1);
                }
                t.drain(start..end);
            }
            Mutation::DuplicateLine { at } => {
                let (start, end) = line_span(&t, at);
                let line = t[start..end].to_vec();
                t.splice(end..end, line);
            }
            Mutation::SwapLines { a, b } => {
                let (a, b) = (line_span(&t, a), line_span(&t, b));
                let (first, second) = if a.0 <= b.0 { (a, b) } else { (b, a) };
                if first != second && first.1 <= second.0 {
                    t = swap(&t, first, second);
                }
            }
            Mutation::SwapSpans { a, b, len } => {
                if !t.is_empty() {
                    let (a, b) = (a.index(t.len()), b.index(t.len()));
                    let (first, second) = (a.min(b), a.max(b));
                    let first_end = (first + len).min(second);
                    let second_end = (second + len).min(t.len());
                    t = swap(&t, (first, first_end), (second, second_end));
                }
            }
            Mutation::Replace { at, byte } => {
                if !t.is_empty() {
                    let i = at.index(t.len());
                    t[i] = *byte;
                }
            }
            Mutation::ReplaceWord { at, piece } => {
                let (start, end) = word_at(&t, at.index(t.len() + 1));
                t.splice(start..end, piece_bytes(piece));
            }
        }
    }
    t
}

/// `text` with the spans `a` and `b` (a before b, not overlapping) exchanged.
fn swap(text: &[u8], a: (usize, usize), b: (usize, usize)) -> Vec<u8> {
    [
        &text[..a.0],
        &text[b.0..b.1],
        &text[a.1..b.0],
        &text[a.0..a.1],
        &text[b.1..],
    ]
    .concat()
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// `f`'s result, or an error if it takes longer than `limit`: a hang (a parser or a plotting
/// loop that never ends) must fail the property rather than stall the suite.
fn in_time<T: Send + 'static>(
    limit: std::time::Duration,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).unwrap_or_else(|e| match e {
        std::sync::mpsc::RecvTimeoutError::Timeout => Err(format!("still running after {limit:?}")),
        std::sync::mpsc::RecvTimeoutError::Disconnected => Err("the check panicked".into()),
    })
}

/// A generous bound on one check: each takes milliseconds in a debug build.
const HUNG: std::time::Duration = std::time::Duration::from_secs(30);

/// A temp project root holding a seed's other files.
fn seed_root(seed: &Seed) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("experiments")).unwrap();
    for (rel, bytes) in &seed.others {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let target = dir.path().join(&seed.target);
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    dir
}

/// How many lines a YAML parser may count in `text`: it breaks lines at CR and at Unicode's
/// line separators as well as at LF.
fn max_line(text: &[u8]) -> usize {
    let lossy = String::from_utf8_lossy(text);
    1 + lossy
        .chars()
        .filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
        .count()
}

/// A rejection must say where: at least one error, and every error that names a file, with a
/// line and a column inside that file.
fn located(problems: &Diagnostics, target: &Path, text: &[u8]) -> Result<(), String> {
    let errors: Vec<&Diagnostic> = problems.0.iter().filter(|d| !d.warning).collect();
    if !errors
        .iter()
        .any(|d| d.file.is_some() && d.location.is_some())
    {
        return Err(format!("rejected without a file:line:column:\n{problems}"));
    }
    for d in errors.iter().filter(|d| d.file.is_some()) {
        let Some(loc) = d.location else {
            return Err(format!("an error without a line and column:\n{d}"));
        };
        let in_target = d.file.as_ref().is_some_and(|f| f.ends_with(target));
        if loc.line == 0 || loc.column == 0 || (in_target && loc.line > max_line(text)) {
            return Err(format!(
                "a location outside the file ({} lines):\n{d}",
                max_line(text)
            ));
        }
    }
    Ok(())
}

/// What `banterhearts validate` (a spec) or `audit` (the catalogue) concludes of the project,
/// in-process: no panic, no hang, and accepted or rejected with a located diagnostic.
fn check_in_process(seed: &'static Seed, root: &Path, text: &[u8]) -> Result<(), String> {
    let (root, text) = (root.to_path_buf(), text.to_vec());
    in_time(HUNG, move || check_now(seed, &root, &text))
}

fn check_now(seed: &Seed, root: &Path, text: &[u8]) -> Result<(), String> {
    std::fs::write(root.join(&seed.target), text).unwrap();
    let outcome = catch_unwind(AssertUnwindSafe(|| match seed.kind {
        SeedKind::Spec => {
            let (registry, problems) = Registry::load(root);
            if problems.is_empty() {
                // `validate` plans every valid spec to print its cells and runs.
                for loaded in registry.specs.values() {
                    let _ = banterhearts::plan::build(loaded);
                    let _ = registry.effective_status(&loaded.spec.id);
                }
            }
            problems
        }
        SeedKind::Catalogue => {
            static KNOWN: OnceLock<Vec<String>> = OnceLock::new();
            banterhearts::catalogue::load(root, KNOWN.get_or_init(spec_ids))
                .err()
                .unwrap_or_default()
        }
    }));
    let problems = outcome.map_err(|p| format!("panicked: {}", panic_message(&*p)))?;
    if problems.is_empty() {
        return Ok(());
    }
    located(&problems, &seed.target, text)
}

fn config(cases: u32, seed: u64) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        max_shrink_iters: 2_000,
        // A hung case takes `HUNG` per shrinking step: a minute of shrinking at most.
        max_shrink_time: 60_000,
        ..Config::default()
    }
}

/// Runs `CASES_PER_SEED` mutants of every seed `pick` takes, in-process; returns how many ran.
fn mutate_seeds(pick: impl Fn(&Seed) -> bool) -> usize {
    let ran = std::sync::atomic::AtomicUsize::new(0);
    for (i, seed) in seeds().iter().enumerate().filter(|(_, s)| pick(s)) {
        let root = seed_root(seed);
        // The seed itself: the repository's specs and the catalogue are valid, the corpus's
        // are rejected with their locations.
        check_in_process(seed, root.path(), &seed.text)
            .unwrap_or_else(|e| panic!("{} unmutated: {e}", seed.origin));
        let mut runner = TestRunner::new(config(CASES_PER_SEED, 0x5eed_0000 + i as u64));
        let result = runner.run(&mutations(), |ms| {
            ran.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let text = apply(&seed.text, &ms);
            check_in_process(seed, root.path(), &text).map_err(|e| {
                TestCaseError::fail(format!(
                    "{} mutated to {:?}:\n{e}",
                    seed.origin,
                    String::from_utf8_lossy(&text[..text.len().min(4000)])
                ))
            })
        });
        if let Err(e) = result {
            panic!("{e}");
        }
    }
    ran.into_inner()
}

#[test]
fn mutated_repository_specs_and_catalogue_are_accepted_or_rejected_at_a_location() {
    let started = std::time::Instant::now();
    let seeds_used = seeds()
        .iter()
        .filter(|s| !s.origin.starts_with("tests/"))
        .count();
    let ran = mutate_seeds(|s| !s.origin.starts_with("tests/"));
    assert_eq!(ran, seeds_used * CASES_PER_SEED as usize);
    eprintln!(
        "{ran} mutants of {seeds_used} seeds (the specs and the catalogue) in {:?}",
        started.elapsed()
    );
    common::reliability(
        &format!(
            "mutated specs: the {seeds_used} files of experiments/ (every spec and the catalogue), each mutated {CASES_PER_SEED} times (1 to {MAX_MUTATIONS} insertions, deletions and swaps)"
        ),
        ran,
        "no panic, no hang; each accepted or rejected with a file:line:column error",
        "-",
    );
}

#[test]
fn mutated_malformed_specs_are_rejected_or_accepted_at_a_location() {
    let started = std::time::Instant::now();
    let corpus = seeds()
        .iter()
        .filter(|s| s.origin.starts_with("tests/"))
        .count();
    let ran = mutate_seeds(|s| s.origin.starts_with("tests/"));
    assert_eq!(ran, corpus * CASES_PER_SEED as usize);
    eprintln!(
        "{ran} mutants of the malformed corpus in {:?}",
        started.elapsed()
    );
    common::reliability(
        &format!(
            "mutated specs: the {corpus} malformed specs of tests/specs/invalid, each mutated {CASES_PER_SEED} times"
        ),
        ran,
        "no panic, no hang; each accepted or rejected with a file:line:column error",
        "-",
    );
}

#[test]
fn the_mutation_count_is_at_least_ten_thousand() {
    let seeds = seeds();
    assert!(seeds.iter().any(|s| s.kind == SeedKind::Catalogue));
    assert!(seeds.len() >= 70, "{} seeds", seeds.len());
    let total = seeds.len() * CASES_PER_SEED as usize;
    assert!(total >= 10_000, "{total} mutants");
}

/// The `path:line:column` of each `  --> ` line the binary printed.
fn printed_places(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--> "))
        .filter(|place| {
            let mut parts = place.rsplitn(3, ':');
            let column = parts.next().unwrap_or_default();
            let line = parts.next().unwrap_or_default();
            let numbers = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            numbers(column) && numbers(line) && parts.next().is_some_and(|f| !f.is_empty())
        })
        .collect()
}

/// Mutated specs through `banterhearts validate`, as a user meets them: exit 0 or 2, every
/// rejection printed with `path:line:column`, no panic message.
#[test]
fn mutated_specs_through_the_binary_exit_0_or_2_with_a_location() {
    let started = std::time::Instant::now();
    let specs: Vec<&Seed> = seeds()
        .iter()
        .filter(|s| s.kind == SeedKind::Spec)
        .collect();
    let roots: Vec<tempfile::TempDir> = specs.iter().map(|s| seed_root(s)).collect();
    let (accepted, rejected) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    let mut runner = TestRunner::new(config(BINARY_CASES, 0xb1_0a27));
    let result = runner.run(&(0..specs.len(), mutations()), |(i, ms)| {
        let (seed, root) = (specs[i], roots[i].path());
        let text = apply(&seed.text, &ms);
        std::fs::write(root.join(&seed.target), &text).unwrap();
        let out = banterhearts(root, &["validate"]);
        let shown = || {
            format!(
                "{} mutated to {:?}:\nexit {}\n{}",
                seed.origin,
                String::from_utf8_lossy(&text[..text.len().min(4000)]),
                out.code,
                out.stderr
            )
        };
        prop_assert!(!out.stderr.contains("panicked"), "{}", shown());
        match out.code {
            0 => accepted.set(accepted.get() + 1),
            2 => {
                rejected.set(rejected.get() + 1);
                prop_assert!(!printed_places(&out.stderr).is_empty(), "{}", shown());
            }
            _ => prop_assert!(false, "{}", shown()),
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    assert_eq!(accepted.get() + rejected.get(), BINARY_CASES as usize);
    eprintln!(
        "{BINARY_CASES} mutants through the binary ({} accepted) in {:?}",
        accepted.get(),
        started.elapsed()
    );
    common::reliability(
        "mutated specs through `banterhearts validate`",
        BINARY_CASES as usize,
        &format!(
            "exit 0 ({} accepted) or 2 with `path:line:column`; never a panic message",
            accepted.get()
        ),
        "-",
    );
}

// ---------------------------------------------------------------------------------------------
// A journal cut at every byte.
// ---------------------------------------------------------------------------------------------

/// What LLMs write back, with what JSON must escape and characters of two to four bytes, so
/// that cuts fall inside escapes and inside characters.
const TEXTS: &[&str] = &[
    "\n\nWhen a user interacts with an agent, the first",
    " Caf\u{e9} cr\u{e8}me \u{2014} \u{201c}quoted\u{201d}",
    "\u{1f980} Rust \u{1f980}",
    "She said \"no\" \\ then left.\t",
    "\u{4e2d}\u{6587}\u{8f93}\u{51fa}\u{3002}",
    "",
    "{\"json\": [1, 2]}\n",
    "ok",
];

/// A 100-run journal in TR124's shape: its cells, its agents and timings (taken from its
/// committed records), with new run ids, short texts and some degraded runs.
fn hundred_runs() -> Vec<RunRecord> {
    let text = std::fs::read_to_string(repo_root().join("data/TR124/runs.jsonl")).unwrap();
    let base: Vec<RunRecord> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (0..100)
        .map(|i| {
            let mut r = base[i % base.len()].clone();
            r.run_id = format!(
                "{:016x}",
                0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i as u64 + 1)
            );
            r.repetition = (i / base.len()) as u32;
            r.session = 1 + (i / 40) as u32;
            for (j, a) in r.agents.iter_mut().enumerate() {
                a.text = TEXTS[(i + j) % TEXTS.len()].to_owned();
            }
            if i % 13 == 5 {
                r.status = RunStatus::Degraded;
                r.reason = Some(format!(
                    "agent 0: the server closed the stream after {i} chunks \u{2014} r\u{e9}essai"
                ));
                let a = &mut r.agents[0];
                a.status = RunStatus::Degraded;
                a.reason = r.reason.clone();
                (a.e2e_ms, a.decode_tok_s, a.itl_p99_ms, a.output_tokens) =
                    (None, None, None, None);
            }
            r
        })
        .collect()
}

/// The journal's bytes, and where each record's JSON ends (its closing brace; the newline
/// follows).
fn journal_bytes(records: &[RunRecord]) -> (Vec<u8>, Vec<usize>) {
    let (mut bytes, mut ends) = (Vec::new(), Vec::new());
    for r in records {
        bytes.extend(serde_json::to_vec(r).unwrap());
        ends.push(bytes.len());
        bytes.push(b'\n');
    }
    (bytes, ends)
}

/// How many records a journal cut at `k` holds: each one whose closing brace is in. A record
/// that lacks only its newline is whole JSON, and the runner and analysis count it.
fn complete_at(ends: &[usize], k: usize) -> usize {
    ends.partition_point(|&end| end <= k)
}

/// Bytes after the last newline that are no whole record: what the analysis leaves out.
fn torn_tail(cut: &[u8]) -> &[u8] {
    let tail = &cut[cut.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)..];
    let whole = serde_json::from_slice::<serde::de::IgnoredAny>(tail).is_ok();
    if whole || tail.trim_ascii().is_empty() {
        &[]
    } else {
        tail
    }
}

#[derive(Debug, Clone, Copy)]
enum Reader {
    Digests,
    Records,
    Frames,
}

/// What a reader gave back, in the terms it has.
#[derive(Debug, PartialEq)]
enum Got {
    /// Digests and records: each run's id, status and session, and (records) their agents.
    Runs(Vec<(String, RunStatus, u32)>, Option<usize>),
    /// Frames hold no run ids: a row per run, a row per agent, and the torn bytes left out.
    Rows {
        runs: usize,
        agents: usize,
        torn: usize,
    },
}

fn runs_of<'a>(records: impl IntoIterator<Item = &'a RunRecord>) -> Vec<(String, RunStatus, u32)> {
    records
        .into_iter()
        .map(|r| (r.run_id.clone(), r.status, r.session))
        .collect()
}

fn wanted(reader: Reader, records: &[RunRecord], torn: usize) -> Got {
    let agents = records.iter().map(|r| r.agents.len()).sum();
    match reader {
        Reader::Digests => Got::Runs(runs_of(records), None),
        Reader::Records => Got::Runs(runs_of(records), Some(agents)),
        Reader::Frames => Got::Rows {
            runs: records.len(),
            agents,
            torn,
        },
    }
}

fn read(reader: Reader, path: &Path) -> Result<Got, String> {
    use banterhearts::record::journal;
    let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<Got, String> {
        Ok(match reader {
            Reader::Digests => {
                let d = journal::read_digests(path).map_err(|e| e.to_string())?;
                let runs = d.runs.into_iter().map(|r| (r.run_id, r.status, r.session));
                Got::Runs(runs.collect(), None)
            }
            Reader::Records => {
                let records = journal::read_records(path).map_err(|e| e.to_string())?;
                wanted(reader, &records, 0)
            }
            Reader::Frames => {
                let f = banterhearts::analysis::frame::load(path).map_err(|e| e.to_string())?;
                Got::Rows {
                    runs: f.runs.height(),
                    agents: f.agents.height(),
                    torn: f.torn_bytes,
                }
            }
        })
    }));
    outcome.unwrap_or_else(|p| Err(format!("panicked: {}", panic_message(&*p))))
}

/// Each reader must give exactly `want` from the journal at `path`: no error, no panic, no
/// record lost or invented.
fn check_readers(readers: &[Reader], path: &Path, want: &[RunRecord], torn: usize, at: &str) {
    for &reader in readers {
        let got = read(reader, path).unwrap_or_else(|e| panic!("{reader:?}, {at}: {e}"));
        assert_eq!(got, wanted(reader, want, torn), "{reader:?}, {at}");
    }
}

/// The offsets where the real journal, whole prefix and all, is cut for the heavier readers:
/// every byte of the first record, two bytes either side of each record's closing brace and
/// of its newline, every 7th byte of the last record and every 997th byte of the rest (a prime
/// stride walks through the lines). The frames cost 4 ms a read in a debug build (a thread pool
/// and a polars frame of every metric), so every offset would take ten minutes.
fn full_prefix_offsets(bytes: &[u8], ends: &[usize]) -> Vec<usize> {
    let mut offsets: Vec<usize> = (0..=ends[0] + 1).collect();
    offsets.extend((ends[ends.len() - 2] + 1..=bytes.len()).step_by(7));
    for &end in ends {
        offsets.extend(end.saturating_sub(2)..=(end + 3).min(bytes.len()));
    }
    offsets.extend((0..=bytes.len()).step_by(997));
    offsets.push(bytes.len());
    offsets.sort_unstable();
    offsets.dedup();
    offsets
}

/// `readers` on the 100-run journal cut at each of `offsets`: one file, cut shorter and
/// shorter.
fn cut_whole_journal(readers: &[Reader], records: &[RunRecord], offsets: &[usize]) {
    let (bytes, ends) = journal_bytes(records);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.jsonl");
    std::fs::write(&path, &bytes).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    for &k in offsets.iter().rev() {
        file.set_len(k as u64).unwrap();
        let n = complete_at(&ends, k);
        let torn = torn_tail(&bytes[..k]).len();
        let at = format!("cut at byte {k} of {}", bytes.len());
        check_readers(readers, &path, &records[..n], torn, &at);
    }
}

/// `readers` at every byte offset of the journal, each cut line read after the complete line
/// before it; returns the number of cuts. Reading the whole prefix again at each of the
/// 150,000 offsets would take minutes in a debug build: the whole prefix is read at the
/// offsets of `full_prefix_offsets`.
fn cut_every_line(readers: &[Reader], records: &[RunRecord]) -> usize {
    let (bytes, ends) = journal_bytes(records);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.jsonl");
    let line_start = |i: usize| if i == 0 { 0 } else { ends[i - 1] + 1 };
    let mut cuts = 0;
    for i in 0..records.len() {
        let (context, start) = (line_start(i.saturating_sub(1)), line_start(i));
        std::fs::write(&path, &bytes[context..=ends[i]]).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        // Up to the closing brace; the cut after the newline is the next line's first.
        let last = if i + 1 == records.len() {
            bytes.len()
        } else {
            ends[i]
        };
        for k in (start..=last).rev() {
            file.set_len((k - context) as u64).unwrap();
            let n = complete_at(&ends, k);
            let torn = torn_tail(&bytes[context..k]).len();
            let at = format!("byte {} of record {i} (journal offset {k})", k - start);
            check_readers(readers, &path, &records[i.saturating_sub(1)..n], torn, &at);
            cuts += 1;
        }
    }
    assert_eq!(cuts, bytes.len() + 1, "every offset 0..=len is cut once");
    cuts
}

#[test]
fn a_journal_cut_at_any_byte_gives_back_exactly_its_complete_records() {
    let started = std::time::Instant::now();
    let cuts = cut_every_line(&[Reader::Digests], &hundred_runs());
    eprintln!("digests at all {cuts} offsets in {:?}", started.elapsed());
    common::reliability(
        "a 100-run journal cut at every byte offset, read as digests (what resuming and the audit read)",
        cuts,
        "exactly the complete records at every offset, a torn last line left out; never an error or a panic",
        "nothing",
    );
}

#[test]
fn the_whole_journal_cut_gives_back_exactly_its_complete_records_to_every_reader() {
    let records = hundred_runs();
    let (bytes, ends) = journal_bytes(&records);
    let started = std::time::Instant::now();
    let offsets = full_prefix_offsets(&bytes, &ends);
    cut_whole_journal(&[Reader::Digests, Reader::Frames], &records, &offsets);
    eprintln!(
        "digests and frames at {} offsets of the whole {}-byte journal in {:?}",
        offsets.len(),
        bytes.len(),
        started.elapsed()
    );
    common::reliability(
        "the journal cut at every byte of its first record, 2 bytes around every line end and every 997th byte, loaded whole by the analysis",
        offsets.len(),
        "the analysis frames hold exactly the complete runs",
        "nothing",
    );
}

/// `read_records` (the report and the serving analysis read load runs through it) fails on a
/// journal cut inside a multi-byte character (`read_to_string`) and drops a last record that
/// lacks only its newline, which the digests and the frames count: a load TR with such a
/// journal does not analyse ("lengths don't match"). The fix belongs in src/record/journal.rs.
#[test]
fn read_records_gives_back_exactly_the_complete_records_at_any_cut() {
    let records = hundred_runs();
    let (bytes, ends) = journal_bytes(&records);
    let cuts = cut_every_line(&[Reader::Records], &records);
    cut_whole_journal(
        &[Reader::Records],
        &records,
        &full_prefix_offsets(&bytes, &ends),
    );
    common::reliability(
        "the same journal cut at every byte offset, read as whole records (what the report and the serving analysis read)",
        cuts,
        "exactly the complete records at every offset, also when the cut falls inside a character or only the last newline is missing (both failed before this test)",
        "nothing",
    );
}

/// The smallest cuts that `read_records_gives_back_exactly_the_complete_records_at_any_cut`
/// finds: a whole last record without its newline (dropped), and a torn line ending inside a
/// character (`stream did not contain valid UTF-8`).
#[test]
fn read_records_keeps_a_record_without_its_newline_and_skips_a_torn_character() {
    let records = hundred_runs();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.jsonl");
    let first = serde_json::to_vec(&records[0]).unwrap();
    std::fs::write(&path, &first).unwrap();
    let read = banterhearts::record::journal::read_records(&path).unwrap();
    assert_eq!(read.len(), 1, "a record without its newline counts");
    // Record 1's text is "Caf\u{e9}...": cut between the two bytes of the e-acute.
    let second = serde_json::to_vec(&records[1]).unwrap();
    let e_acute = second.windows(2).position(|w| w == [0xc3, 0xa9]).unwrap();
    std::fs::write(&path, [&first[..], b"\n", &second[..=e_acute]].concat()).unwrap();
    let read = banterhearts::record::journal::read_records(&path).unwrap();
    assert_eq!(
        read.len(),
        1,
        "a torn line is no record, whatever byte it ends on"
    );
}

/// Analysis and the audit count a last record whose newline an editor dropped (docs/design.md,
/// Journal); a load TR's serving figures read the journal through `read_records`, which did
/// not, and its analysis failed with "lengths don't match" (11 runs against 12 rows).
#[test]
fn a_load_journal_without_its_last_newline_analyses_and_renders() {
    let shape = std::sync::Arc::new(shape("TR126"));
    let journal = std::fs::read(repo_root().join("data/TR126/runs.jsonl")).unwrap();
    let journal = journal.strip_suffix(b"\n").unwrap();
    analyse_and_render(&shape, journal).unwrap();
}

/// Opening for a resume sets a torn tail aside and cuts it off: the kept bytes and the bytes
/// set aside are the cut journal, and the journal then holds exactly the complete records.
#[test]
fn opening_a_cut_journal_keeps_every_byte_and_exactly_the_complete_records() {
    use banterhearts::record::Journal;
    use banterhearts::store::TrPaths;
    let records = hundred_runs();
    let (bytes, ends) = journal_bytes(&records);
    // It writes and fsyncs files: two bytes either side of every closing brace and newline,
    // every 499th byte and every 37th of the first record.
    let mut offsets: Vec<usize> = (0..=bytes.len()).step_by(499).collect();
    for &end in &ends {
        offsets.extend(end - 2..=(end + 3).min(bytes.len()));
    }
    offsets.extend((0..ends[0]).step_by(37));
    offsets.push(bytes.len());
    let dir = tempfile::tempdir().unwrap();
    let paths = TrPaths::new(dir.path(), "TR124");
    std::fs::create_dir_all(&paths.data_dir).unwrap();
    for &k in &offsets {
        let cut = &bytes[..k];
        std::fs::write(paths.runs(), cut).unwrap();
        let n = complete_at(&ends, k);
        let open = || {
            catch_unwind(|| Journal::open(&paths))
                .unwrap_or_else(|p| panic!("open at {k}: panicked: {}", panic_message(&*p)))
        };
        // The lock is an OS lock on the open file: a child another test is spawning holds a
        // copy of it from fork to exec, so it can outlive the journal dropped just before.
        let mut opened = open();
        for _ in 0..100 {
            if !matches!(opened, Err(banterhearts::record::JournalError::Locked(..))) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
            opened = open();
        }
        let (journal, digests, set_aside) = opened.unwrap_or_else(|e| panic!("open at {k}: {e}"));
        drop(journal);
        let ids: Vec<&str> = digests.runs.iter().map(|r| r.run_id.as_str()).collect();
        let want: Vec<&str> = records[..n].iter().map(|r| r.run_id.as_str()).collect();
        assert_eq!(ids, want, "open at {k}");
        let kept = std::fs::read(paths.runs()).unwrap();
        let aside = set_aside.map(|s| {
            let aside = std::fs::read(&s.to).unwrap();
            assert_eq!(aside.len(), s.bytes, "open at {k}");
            std::fs::remove_file(&s.to).unwrap();
            aside
        });
        let torn = torn_tail(cut);
        if torn.is_empty() {
            // A last record without its newline gets one; nothing is set aside.
            let mut want = cut.to_vec();
            if !cut.is_empty() && !cut.ends_with(b"\n") {
                want.push(b'\n');
            }
            assert_eq!(kept, want, "open at {k}");
            assert!(aside.is_none(), "open at {k} set aside a whole record");
        } else {
            assert_eq!(aside.as_deref(), Some(torn), "open at {k}");
            assert_eq!([kept.as_slice(), torn].concat(), cut, "open at {k}");
        }
        // Whatever was kept reads back as exactly the complete records.
        check_readers(
            &[Reader::Digests],
            &paths.runs(),
            &records[..n],
            0,
            &format!("after open at {k}"),
        );
        let left: Vec<String> = std::fs::read_dir(&paths.data_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name != "runs.jsonl" && !name.ends_with(".lock"))
            .collect();
        assert!(left.is_empty(), "open at {k} left {left:?}");
    }
    common::reliability(
        &format!(
            "the journal cut at {} offsets (around every line end, through the first record), then opened by the runner",
            offsets.len()
        ),
        offsets.len(),
        "it keeps exactly the complete records and sets a torn tail aside byte for byte",
        "nothing (the torn bytes are kept beside the journal)",
    );
}

// ---------------------------------------------------------------------------------------------
// Reports of random measurements.
// ---------------------------------------------------------------------------------------------

/// Random journals per spec shape.
const REPORT_CASES: u32 = 150;

/// splitmix64: the leaf values of a journal from one seed that proptest draws and shrinks.
struct Leaves(u64);

impl Leaves {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// How the measured values of a journal are drawn.
#[derive(Debug, Clone, Copy)]
enum Values {
    /// Each value on its own: realistic, zero, negative, huge, tiny, subnormal or missing.
    Random,
    /// Every run of a cell alike: no spread at all.
    Identical,
    /// Every run degraded.
    AllDegraded,
    /// One run in the whole journal.
    OneRun,
}

/// What JSON can carry of the floats that break arithmetic (it has no NaN or infinity).
fn hostile_float(original: f64, leaves: &mut Leaves) -> f64 {
    match leaves.below(14) {
        0..=3 => original * (0.5 + (leaves.next() % 1000) as f64 / 666.0),
        4 => 0.0,
        5 => -0.0,
        6 => -original.abs() - 1.0,
        7 => f64::MAX,
        8 => 1e300,
        9 => f64::MIN_POSITIVE,
        10 => 5e-324,
        11 => 1e-310,
        12 => -f64::MAX,
        _ => original,
    }
}

fn hostile_integer(original: u64, leaves: &mut Leaves) -> u64 {
    match leaves.below(6) {
        0 => 0,
        1 => 1,
        2 => u64::from(u32::MAX),
        _ => original,
    }
}

/// Record fields that say which run it is, not what it measured.
const IDENTITY: &[&str] = &[
    "tr",
    "run_id",
    "cell",
    "cell_id",
    "params",
    "repetition",
    "warmup",
    "status",
    "started_unix_ms",
    "session",
    "agent",
    "server",
    "seed",
    "requests_file",
    "requests_sha256",
    "pattern",
    "arrival",
    "rate",
    "pid",
];

/// Every measured number of `v` replaced, and some left out where the record allows it
/// (`nullable` says where: a path of object keys, array indices dropped).
fn randomize(v: &mut Value, path: &str, nullable: &dyn Fn(&str) -> bool, leaves: &mut Leaves) {
    match v {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                if IDENTITY.contains(&key.as_str()) {
                    continue;
                }
                let at = format!("{path}.{key}");
                if nullable(&at) && leaves.below(8) == 0 {
                    if leaves.below(2) == 0 {
                        map.remove(&key);
                    } else {
                        map.insert(key, Value::Null);
                    }
                    continue;
                }
                randomize(map.get_mut(&key).unwrap(), &at, nullable, leaves);
            }
        }
        Value::Array(items) => {
            for item in items {
                randomize(item, path, nullable, leaves);
            }
        }
        Value::Number(n) => {
            *v = if let Some(u) = n.as_u64() {
                json!(hostile_integer(u, leaves))
            } else {
                json!(hostile_float(n.as_f64().unwrap_or(1.0), leaves))
            };
        }
        Value::Null if nullable(path) && leaves.below(2) == 0 => {
            *v = json!(hostile_float(10.0, leaves));
        }
        _ => {}
    }
}

/// A TR whose committed data gives the shape of random journals.
struct Shape {
    tr: &'static str,
    root: tempfile::TempDir,
    records: Vec<Value>,
    /// Paths (`.agents.ttft_ms`) whose value may be null or missing.
    nullable: std::collections::HashSet<String>,
}

fn leaf_paths(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let at = format!("{path}.{k}");
                out.push(at.clone());
                leaf_paths(child, &at, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| leaf_paths(i, path, out)),
        _ => {}
    }
}

/// Sets the first value at `path` (array indices dropped) to null.
fn null_at(v: &mut Value, path: &[&str]) -> bool {
    match (v, path) {
        (v, []) => {
            *v = Value::Null;
            true
        }
        (Value::Object(map), [key, rest @ ..]) => {
            map.get_mut(*key).is_some_and(|c| null_at(c, rest))
        }
        (Value::Array(items), path) => items.iter_mut().any(|i| null_at(i, path)),
        _ => false,
    }
}

fn shape(tr: &'static str) -> Shape {
    let repo = repo_root();
    let root = tempfile::tempdir().unwrap();
    common::copy_templates(root.path());
    std::fs::create_dir_all(root.path().join("experiments/prompts")).unwrap();
    for file in [format!("{tr}.yaml"), "prompts/agent.yaml".into()] {
        std::fs::copy(
            repo.join("experiments").join(&file),
            root.path().join("experiments").join(&file),
        )
        .unwrap();
    }
    let loaded =
        banterhearts::spec::load(&root.path().join("experiments").join(format!("{tr}.yaml")))
            .unwrap();
    for id in loaded
        .spec
        .builds_on
        .iter()
        .chain(loaded.spec.supersedes.as_ref().map(|s| &s.id))
    {
        std::fs::write(root.path().join(format!("experiments/{id}.yaml")), stub(id)).unwrap();
    }
    std::fs::create_dir_all(root.path().join("data")).unwrap();
    std::fs::copy(
        repo.join("data/pricing.yaml"),
        root.path().join("data/pricing.yaml"),
    )
    .unwrap();
    common::copy_dir(
        &repo.join("data").join(tr),
        &root.path().join("data").join(tr),
    );
    let text = std::fs::read_to_string(repo.join("data").join(tr).join("runs.jsonl")).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Which fields a record can do without: those it still reads back without.
    let mut nullable = std::collections::HashSet::new();
    for r in &records {
        let mut paths = Vec::new();
        leaf_paths(r, "", &mut paths);
        for p in paths {
            if nullable.contains(&p) {
                continue;
            }
            let mut copy = r.clone();
            let parts: Vec<&str> = p.trim_start_matches('.').split('.').collect();
            if null_at(&mut copy, &parts) && serde_json::from_value::<RunRecord>(copy).is_ok() {
                nullable.insert(p);
            }
        }
    }
    Shape {
        tr,
        root,
        records,
        nullable,
    }
}

/// A journal of `shape`'s runs with hostile values: `keep` picks the runs (bit i, run i).
fn hostile_journal(shape: &Shape, values: Values, keep: u64, seed: u64) -> Vec<u8> {
    let mut leaves = Leaves(seed);
    let nullable = |p: &str| shape.nullable.contains(p);
    let mut firsts: std::collections::HashMap<String, Value> = Default::default();
    let mut out = Vec::new();
    let chosen: Vec<&Value> = match values {
        Values::OneRun => vec![&shape.records[leaves.below(shape.records.len())]],
        _ => shape
            .records
            .iter()
            .enumerate()
            .filter(|(i, _)| keep >> (i % 64) & 1 == 1)
            .map(|(_, r)| r)
            .collect(),
    };
    for base in chosen {
        let mut r = base.clone();
        let cell = r["cell_id"].as_str().unwrap_or_default().to_owned();
        match (values, firsts.get(&cell)) {
            (Values::Identical, Some(first)) => {
                let identity: Vec<(String, Value)> = IDENTITY
                    .iter()
                    .filter_map(|k| r.get(*k).map(|v| ((*k).to_owned(), v.clone())))
                    .collect();
                r = first.clone();
                for (k, v) in identity {
                    r[k] = v;
                }
            }
            _ => randomize(&mut r, "", &nullable, &mut leaves),
        }
        if matches!(values, Values::AllDegraded) || leaves.below(10) == 0 {
            r["status"] = json!("degraded");
            r["reason"] = json!("agent 0: the server closed the stream \u{2014} after 0 tokens");
            if let Some(agents) = r["agents"].as_array_mut() {
                for a in agents {
                    a["status"] = json!("degraded");
                    a["reason"] = json!("server closed the stream");
                }
            }
        }
        firsts.entry(cell).or_insert_with(|| r.clone());
        // Every journal line must read back: the property is about values, not syntax.
        serde_json::from_value::<RunRecord>(r.clone())
            .unwrap_or_else(|e| panic!("{} record does not read back ({e}): {r}", shape.tr));
        out.extend(serde_json::to_vec(&r).unwrap());
        out.push(b'\n');
    }
    out
}

/// Analyses and renders `shape`'s TR from `journal`, as `analyze` and `report` do, within
/// `HUNG`.
fn analyse_and_render(shape: &std::sync::Arc<Shape>, journal: &[u8]) -> Result<(), String> {
    let (shape, journal) = (shape.clone(), journal.to_vec());
    in_time(HUNG, move || render_now(&shape, &journal))
}

fn render_now(shape: &Shape, journal: &[u8]) -> Result<(), String> {
    let root = shape.root.path();
    let runs = root.join("data").join(shape.tr).join("runs.jsonl");
    std::fs::write(&runs, journal).unwrap();
    let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<(), String> {
        let (registry, problems) = Registry::load(root);
        assert!(problems.is_empty(), "{problems}");
        let loaded = &registry.specs[shape.tr];
        match banterhearts::analysis::analyze(root, loaded) {
            Ok(a) => {
                banterhearts::analysis::write(root, &a)
                    .map_err(|e| format!("analysis write: {e}"))?;
            }
            Err(banterhearts::analysis::AnalysisError::Input(d)) if journal.is_empty() => {
                // No runs: a clean error, with the journal's name.
                assert!(d.to_string().contains("runs"), "{d}");
            }
            Err(e) => return Err(format!("analysis: {e}")),
        }
        let rendered = banterhearts::report::render(root, &registry, loaded)
            .map_err(|e| format!("report: {e}"))?;
        assert!(
            rendered.markdown.contains(shape.tr),
            "a report without its TR"
        );
        for (name, svg) in &rendered.figures {
            assert!(
                svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
                "{name}"
            );
        }
        Ok(())
    }));
    outcome.unwrap_or_else(|p| Err(format!("panicked: {}", panic_message(&*p))))
}

fn values() -> impl Strategy<Value = Values> {
    prop_oneof![
        5 => Just(Values::Random),
        2 => Just(Values::Identical),
        1 => Just(Values::AllDegraded),
        1 => Just(Values::OneRun),
    ]
}

fn reports_render_from_random_values(tr: &'static str, seed: u64, what: &str) {
    let started = std::time::Instant::now();
    let shape = std::sync::Arc::new(shape(tr));
    let errors = std::cell::RefCell::new(Vec::new());
    // An empty journal and one run of every cell with no measured value at all.
    analyse_and_render(&shape, b"").unwrap_or_else(|e| panic!("{tr}, no runs: {e}"));
    let mut runner = TestRunner::new(config(REPORT_CASES, seed));
    let keep = prop_oneof![1 => Just(u64::MAX), 2 => any::<u64>()];
    let result = runner.run(&(values(), keep, any::<u64>()), |(values, keep, seed)| {
        let journal = hostile_journal(&shape, values, keep, seed);
        if let Err(e) = analyse_and_render(&shape, &journal) {
            errors.borrow_mut().push(e.clone());
            prop_assert!(
                !e.starts_with("panicked"),
                "{tr} {values:?}: {e}\n{}",
                String::from_utf8_lossy(&journal)
            );
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let errors = errors.into_inner();
    common::reliability(
        &format!(
            "reports rendered from random values: {what} ({tr}'s shape; zero, negative, f64::MAX, subnormal, missing; identical runs, all degraded, one run)"
        ),
        REPORT_CASES as usize + 1,
        &format!(
            "no panic, no hang; {} clean errors, every other report rendered",
            errors.len()
        ),
        "-",
    );
    eprintln!(
        "{tr}: {REPORT_CASES} random journals in {:?}, {} clean errors{}",
        started.elapsed(),
        errors.len(),
        errors
            .first()
            .map(|e| format!(", e.g. {e}"))
            .unwrap_or_default()
    );
}

#[test]
fn reports_of_random_concurrent_runs_render_without_a_panic() {
    reports_render_from_random_values("TR124", 0x7e_124, "concurrent agents");
}

#[test]
fn reports_of_random_load_runs_render_without_a_panic() {
    reports_render_from_random_values("TR126", 0x7e_126, "serving load");
}
