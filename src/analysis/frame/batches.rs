//! Reading a journal in batches on every core: each thread parses whole lines of a batch
//! into its own columns, and the merger appends the batches in file order, so every cell's
//! rows are in record order and sums come out the same on every analysis.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use indexmap::IndexMap;
use serde::Deserialize;

use super::columns::{Columns, LeanRecord};
use super::{CellInfo, CellRegistry, FrameError, Frames, mark_sorted};
use crate::record::journal::{RecordParams, is_whole_json, line_error};

pub(super) const BATCH_BYTES: usize = 1 << 20;

/// The 1-based line number at byte `offset` of the file (only computed for error messages).
pub(super) fn line_at(path: &Path, offset: usize) -> usize {
    std::fs::read(path).map_or(0, |bytes| {
        bytes[..offset.min(bytes.len())]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    })
}

/// One batch's rows, by the cells it touched only: a buffer per cell of the TR, appended and
/// cleared for every batch, made each batch cost time in the number of cells (100,000 cells
/// read 10x slower than 20,000).
#[derive(Default)]
pub(super) struct Batch {
    /// The cells touched, in first-seen order, and their rows (`columns[i]` is `cells[i]`'s).
    pub(super) cells: Vec<u32>,
    pub(super) columns: Vec<Columns>,
    slot_of: HashMap<u32, usize>,
}

impl Batch {
    /// The rows of `cell`, made on its first row in this batch (reusing an emptied buffer).
    pub(super) fn rows(&mut self, cell: u32) -> &mut Columns {
        let slot = *self.slot_of.entry(cell).or_insert_with(|| {
            self.cells.push(cell);
            self.cells.len() - 1
        });
        if self.columns.len() <= slot {
            self.columns.resize_with(slot + 1, Columns::new);
        }
        &mut self.columns[slot]
    }

    /// Empties the batch, keeping its buffers' capacity for the next one.
    fn clear(&mut self) {
        let used = self.cells.len();
        self.columns[..used].iter_mut().for_each(Columns::clear);
        self.cells.clear();
        self.slot_of.clear();
    }
}

/// A parsing thread's buffers, kept from one batch to the next.
#[derive(Default)]
pub(super) struct Parser {
    /// The batch's rows by cell.
    pub(super) by_cell: Batch,
    /// Cell ids already registered, so the shared registry is locked only for new ones.
    pub(super) known: HashMap<String, u32>,
    /// A hash of every run id this thread parsed, to find a run recorded twice.
    pub(super) run_ids: Vec<u64>,
}

/// Parses one batch of complete journal lines into `parser.by_cell`. Run numbers are
/// `batch << 32 | line`, unique without counting the lines of earlier batches. A new cell's
/// parameters are parsed from its first line only; every other line skips them.
pub(super) fn parse_batch(
    path: &Path,
    (batch, start, bytes): (u64, usize, &[u8]),
    cells: &CellRegistry,
    parser: &mut Parser,
) -> Result<(), FrameError> {
    let Parser {
        by_cell,
        known,
        run_ids,
    } = parser;
    let mut line_start = 0;
    // memchr finds line ends with SIMD: splitting byte by byte cost a second per gigabyte.
    for (i, line_end) in memchr::memchr_iter(b'\n', bytes).enumerate() {
        let begin = line_start;
        let at = start + begin;
        let line = &bytes[begin..line_end];
        line_start = line_end + 1;
        let unreadable = |message: String| FrameError::Record {
            path: path.display().to_string(),
            line: line_at(path, at),
            message,
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        // One UTF-8 check per line (while the line is in cache) lets serde_json read it as a
        // str, which it parses without re-checking every string; an invalid line is read as
        // bytes, so that the error says what is wrong with it.
        let record: LeanRecord = match std::str::from_utf8(line) {
            Ok(text) => serde_json::from_str(text),
            Err(_) => serde_json::from_slice(line),
        }
        .map_err(|e| unreadable(line_error(&e)))?;
        let cell = match known.get(record.cell_id.as_ref()) {
            Some(&cell) => cell,
            None => {
                let mut registry = cells.lock().unwrap_or_else(|p| p.into_inner());
                let cell = match registry.get_index_of(record.cell_id.as_ref()) {
                    Some(cell) => cell,
                    None => {
                        let RecordParams { params, model } =
                            serde_json::from_slice(line).map_err(|e| unreadable(line_error(&e)))?;
                        let cell_id = record.cell_id.to_string();
                        let info = CellInfo {
                            cell_id: cell_id.clone(),
                            params,
                            model,
                            agents: record.agents.len(),
                        };
                        registry.insert_full(cell_id, info).0
                    }
                } as u32;
                known.insert(record.cell_id.to_string(), cell);
                cell
            }
        };
        by_cell.rows(cell).push(batch << 32 | i as u64, &record);
        run_ids.push(std::hash::BuildHasher::hash_one(
            &std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default(),
            record.run_id.as_ref(),
        ));
    }
    Ok(())
}

/// Appends parsed batches to each cell's rows in file order, whatever order the threads
/// finish them in, so that every cell's rows are in record order and sums come out the same
/// on every analysis.
#[derive(Default)]
pub(super) struct Merger {
    /// The next batch to append.
    pub(super) next: u64,
    /// Batches parsed before their turn.
    pub(super) waiting: BTreeMap<u64, (Result<(), FrameError>, Batch)>,
    pub(super) by_cell: Vec<Columns>,
    /// Emptied buffers, for threads that left theirs in `waiting`.
    pub(super) spare: Vec<Batch>,
    /// The first unreadable record in file order; later batches are not appended.
    pub(super) error: Option<FrameError>,
}

impl Merger {
    /// Takes a thread's parsed batch and gives back (empty) buffers for its next one.
    pub(super) fn hand_in(
        &mut self,
        batch: u64,
        parsed: Result<(), FrameError>,
        mut buffers: Batch,
    ) -> Batch {
        if batch != self.next {
            self.waiting.insert(batch, (parsed, buffers));
            return self.spare.pop().unwrap_or_default();
        }
        self.append(parsed, &mut buffers);
        while let Some((parsed, mut waited)) = self.waiting.remove(&self.next) {
            self.append(parsed, &mut waited);
            self.spare.push(waited);
        }
        buffers
    }

    pub(super) fn append(&mut self, parsed: Result<(), FrameError>, buffers: &mut Batch) {
        self.next += 1;
        match parsed {
            Err(e) if self.error.is_none() => self.error = Some(e),
            Ok(()) if self.error.is_none() => {
                for (&cell, rows) in buffers.cells.iter().zip(&buffers.columns) {
                    let cell = cell as usize;
                    if self.by_cell.len() <= cell {
                        self.by_cell.resize_with(cell + 1, Columns::new);
                    }
                    self.by_cell[cell].append(rows);
                }
            }
            _ => {}
        }
        buffers.clear();
    }

    /// The frames, each cell's rows contiguous, cells in index order, with the cell column
    /// marked sorted: polars then groups by slices instead of gathering every group. One chunk
    /// per column, not one per cell: a slice walks the chunks, so with one chunk per cell
    /// every per-cell slice cost time in the number of cells (5,000 cells took 9 s).
    pub(super) fn into_frames(self, cells: Vec<CellInfo>) -> Result<Frames, FrameError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        // All cells' rows appended into one set of columns and framed once: a frame per cell
        // stacked cost time and memory per cell (100,000 cells took 3.7 GB).
        let mut all = Columns::new();
        let (mut agent_rows, mut run_rows) = (Vec::new(), Vec::new());
        let (mut agent_cells, mut run_cells) = (Vec::new(), Vec::new());
        let mut by_cell = self.by_cell;
        by_cell.resize_with(cells.len(), Columns::new);
        all.reserve_for(&by_cell);
        for (cell, columns) in by_cell.into_iter().enumerate() {
            let (a, r) = (all.agent_run.len(), all.run_ok.len());
            let (na, nr) = (columns.agent_run.len(), columns.run_ok.len());
            agent_rows.push(a..a + na);
            run_rows.push(r..r + nr);
            agent_cells.extend(std::iter::repeat_n(cell as u32, na));
            run_cells.extend(std::iter::repeat_n(cell as u32, nr));
            all.append(&columns);
        }
        let (mut agents, mut runs) = all.into_frames_of(agent_cells, run_cells)?;
        mark_sorted(&mut agents, "cell")?;
        mark_sorted(&mut runs, "cell")?;
        Ok(Frames {
            agents,
            runs,
            cells,
            agent_rows,
            run_rows,
            selections: Default::default(),
            torn_bytes: 0,
        })
    }
}

/// Reads a journal into frames. A pool of threads (one per core) each reads a block of whole
/// lines and parses it in place. Blocks and column buffers are reused, so a gigabyte is read
/// through a handful of buffers instead of fresh (zeroed, faulted-in) memory, and each value
/// is copied once, from a batch's buffer to its cell's column.
pub(super) fn load_in_batches(path: &Path, batch_bytes: usize) -> Result<Frames, FrameError> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let io = |source| FrameError::Io {
        path: path.display().to_string(),
        source,
    };
    let reader = std::sync::Mutex::new(BatchReader {
        file: std::fs::File::open(path).map_err(io)?,
        carry: Vec::new(),
        next: 0,
        consumed: 0,
        batch_bytes,
        torn: 0,
    });
    let cells: CellRegistry = std::sync::Mutex::new(IndexMap::new());
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let merger = std::sync::Mutex::new(Merger::default());
    let run_ids = std::sync::Mutex::new(Vec::new());
    let read_error = std::sync::Mutex::new(None);
    // Set at the first unreadable record or read error: the rest of the file need not be read.
    let failed = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let (reader, merger, cells, failed, read_error, run_ids) =
                (&reader, &merger, &cells, &failed, &read_error, &run_ids);
            scope.spawn(move || {
                let (mut parser, mut block) = (Parser::default(), Vec::new());
                while !failed.load(Ordering::Relaxed) {
                    // Each thread reads its own batch, so the text is in its core's cache
                    // when it parses it.
                    let next = reader
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .next_batch(&mut block);
                    let (index, start, len) = match next {
                        Ok(Some(batch)) => batch,
                        Ok(None) => break,
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            *read_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                            break;
                        }
                    };
                    let parsed =
                        parse_batch(path, (index, start, &block[..len]), cells, &mut parser);
                    if parsed.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    let buffers = std::mem::take(&mut parser.by_cell);
                    parser.by_cell = merger
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .hand_in(index, parsed, buffers);
                }
                run_ids
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .append(&mut parser.run_ids);
            });
        }
    });
    if let Some(e) = read_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(io(e));
    }
    let cells = cells
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_values()
        .collect();
    let torn = reader.into_inner().unwrap_or_else(|p| p.into_inner()).torn;
    let mut frames = merger
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_frames(cells)?;
    frames.torn_bytes = torn;
    let mut run_ids = run_ids.into_inner().unwrap_or_else(|p| p.into_inner());
    run_ids.sort_unstable();
    if run_ids.windows(2).any(|w| w[0] == w[1]) {
        check_run_ids_once(path)?;
    }
    Ok(frames)
}

/// Finds a run recorded twice (its id hashed alike on two lines: read again to be sure, and to
/// name the lines). Counting it twice would weigh it double; which copy is right is the user's
/// call.
pub(super) fn check_run_ids_once(path: &Path) -> Result<(), FrameError> {
    #[derive(Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        run_id: std::borrow::Cow<'a, str>,
    }
    let text = std::fs::read(path).map_err(|source| FrameError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let mut first_line: HashMap<String, usize> = HashMap::new();
    for (i, line) in text.split(|b| *b == b'\n').enumerate() {
        let Ok(Id { run_id }) = serde_json::from_slice(line) else {
            continue;
        };
        if let Some(&first) = first_line.get(run_id.as_ref()) {
            return Err(FrameError::DuplicateRun {
                path: path.display().to_string(),
                run_id: run_id.into_owned(),
                lines: (first, i + 1),
            });
        }
        first_line.insert(run_id.into_owned(), i + 1);
    }
    Ok(())
}

/// Cuts a journal into batches of whole lines, read by whichever thread asks next.
pub(super) struct BatchReader {
    pub(super) file: std::fs::File,
    /// Bytes after the last newline read so far: the start of the next batch.
    pub(super) carry: Vec<u8>,
    pub(super) next: u64,
    /// Bytes handed out so far (the file offset of the next batch).
    pub(super) consumed: usize,
    pub(super) batch_bytes: usize,
    /// Bytes of a torn last line, left out.
    pub(super) torn: usize,
}

impl BatchReader {
    /// At the end of the file, what follows the last newline (`block[..filled]`): a last
    /// batch if it is whole JSON (a record that only lacks its newline, as the runner keeps it
    /// too); otherwise a line still being written or torn by a crash, which is no finished
    /// run, and is counted in `torn` and left out.
    pub(super) fn last_line(
        &mut self,
        block: &mut Vec<u8>,
        filled: usize,
    ) -> Option<(u64, usize, usize)> {
        let rest = &block[..filled];
        self.carry.clear();
        if rest.trim_ascii().is_empty() {
            return None;
        }
        if !is_whole_json(rest) {
            self.torn = filled;
            return None;
        }
        block.truncate(filled);
        block.push(b'\n');
        let batch = (self.next, self.consumed, filled + 1);
        self.next += 1;
        self.consumed += filled;
        Some(batch)
    }

    /// Reads the next batch into `block`: (batch index, its offset in the file, bytes of
    /// whole lines), or None at the end.
    pub(super) fn next_batch(
        &mut self,
        block: &mut Vec<u8>,
    ) -> std::io::Result<Option<(u64, usize, usize)>> {
        use std::io::Read;
        let mut filled = self.carry.len();
        if block.len() < filled + self.batch_bytes {
            block.resize(filled + self.batch_bytes, 0);
        }
        block[..filled].copy_from_slice(&self.carry);
        loop {
            // A line longer than a block (never written by the runner, but possible) grows it.
            if block.len() < filled + self.batch_bytes / 2 {
                block.resize(filled + self.batch_bytes, 0);
            }
            let n = self.file.read(&mut block[filled..])?;
            filled += n;
            if let Some(last) = memchr::memrchr(b'\n', &block[..filled]) {
                self.carry.clear();
                self.carry.extend_from_slice(&block[last + 1..filled]);
                let batch = (self.next, self.consumed, last + 1);
                self.next += 1;
                self.consumed += last + 1;
                return Ok(Some(batch));
            }
            if n == 0 {
                return Ok(self.last_line(block, filled));
            }
        }
    }
}
