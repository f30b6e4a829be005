//! The driver: listing → (ahead) → readers → batches, as an iterator.
//!
//! One thread of the run's own runs the listing (a walk, a list of
//! paths), gathers its entries into batches, lets the fetch's `Ahead` stage
//! (prefetch) see each batch, and queues it as a task in the process-wide
//! pool of parse threads (`pool`), at most `jobs` at a time and never more
//! than `QUEUE` batches ahead of the caller. A parse thread reads every
//! file of a task through the fetch with scratch buffers made once per
//! thread and each file under `catch_unwind` (a bug in the reader costs
//! that file an error, not the run), folds the records into an aggregator
//! when one is given, and leaves the batch's outcome for the caller, who
//! pulls those outcomes from `Pipeline`, an iterator.
//!
//! Lifecycle: dropping the iterator, or `close()`, stops the listing and
//! the ahead stage, takes the run's queued tasks back from the pool, waits
//! for those being read (each checks for the stop between files) and
//! joins the listing thread. A thread or task that fails (panics, outside
//! the per-file guard, or loses its ahead stage) stops the run, and the
//! iterator then yields `Err(Failure)`: a run never ends as if complete
//! with part of the archive missing.
//!
//! For tests of that, `FASTINDEX_TEST_PANIC=walk` (or `read`) makes the
//! listing thread (or a reader thread) panic on its first batch.

use std::any::Any;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};

use crate::aggregate::Aggregator;
use crate::dicom::elements::Collected;
use crate::dicom::error::{Error, Result};
use crate::extract::record::{Outcome, Record};
use crate::extract::schema::Schema;
use crate::outcome;
use crate::pool;
use crate::sources::{read_entry, Ahead, Entry, Fetch, Found, Listing};

/// Batches read but not yet taken by the caller, at most (beyond one per
/// job): how much a slow caller holds.
const QUEUE: usize = 8;

/// Entries listed (and asked for ahead) but not yet handed to the parse
/// threads, at most: how far ahead of the parsers the ahead stage reads on
/// a cold disk, whatever the batch size.
const AHEAD: usize = 2048;

/// The knobs of one run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Batches of this run read at once, at most (at least 1): the
    /// process-wide pool has `pool::threads()` parse threads for all runs.
    pub jobs: usize,
    /// Entries per batch.
    pub batch_size: usize,
    /// Requests in flight in the fetch's ahead stage (prefetch); 0: none.
    pub concurrency: usize,
    /// Hand the per-file records out in the batches. Then the readers do
    /// not fold them: the caller does (`Batch::fold`), once done with them.
    pub records: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            jobs: pool::cores(),
            batch_size: 256,
            concurrency: 16,
            records: false,
        }
    }
}

/// An entry that gave no record, or an indexed file with warnings.
#[derive(Debug)]
pub struct Problem {
    pub path: PathBuf,
    pub display: OsString,
    /// One of the documented reasons, or "warning" for an indexed file
    /// whose record has values written as null because they did not parse.
    pub reason: &'static str,
    pub message: String,
}

/// Whether the pydicom fallback gets a try after the fast path gave this.
pub fn falls_back(reason: &str) -> bool {
    outcome::named(reason).is_some_and(|r| r.falls_back)
}

/// The outcome of one batch of entries.
#[derive(Debug, Default)]
pub struct Batch {
    /// (display path, record) per indexed file, when `Options::records`.
    pub records: Vec<(OsString, Record)>,
    /// Every entry that gave no record, and indexed files with warnings.
    pub problems: Vec<Problem>,
    /// Files indexed.
    pub indexed: usize,
    /// Values present but not parsable, over the indexed files.
    pub warnings: u64,
}

impl Batch {
    /// Fold the records (taken out of the batch) into `into`.
    pub fn fold(&mut self, into: &dyn Fold) {
        if !self.records.is_empty() {
            into.fold(std::mem::take(&mut self.records));
        }
    }
}

/// Where records are folded: an aggregator shared by the reader threads.
pub trait Fold: Send + Sync {
    fn fold(&self, records: Vec<(OsString, Record)>);
}

impl Fold for Mutex<Aggregator> {
    fn fold(&self, records: Vec<(OsString, Record)>) {
        let mut agg = lock(self);
        for (path, rec) in &records {
            agg.add(rec, path);
        }
    }
}

/// A thread of the run failed: the run is not complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// "walk" (the listing thread and its ahead stage) or "read".
    pub stage: &'static str,
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.stage {
            "walk" => "finding files",
            _ => "reading files",
        };
        write!(
            f,
            "the run failed while {what}: {}; the index would be incomplete",
            self.message
        )
    }
}

impl std::error::Error for Failure {}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock fails the run (or, in the reader,
    // one file); the data behind it is still consistent enough to go on.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A panic's message, when it has one.
pub fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

/// State the listing thread, the run's tasks and the iterator share.
struct Shared {
    /// This run's tasks in the shared pool.
    id: u64,
    /// Set to end the run early: closed, dropped, or a thread failed.
    stop: AtomicBool,
    /// The first failure.
    failure: Mutex<Option<Failure>>,
    state: Mutex<State>,
    /// Signalled on every change of `state` (and on stop).
    changed: Condvar,
}

/// Where the run's batches are.
#[derive(Default)]
struct State {
    /// Read, waiting for the iterator.
    done: VecDeque<Batch>,
    /// Tasks queued or being read in the pool.
    in_flight: usize,
    /// The listing has handed over its last batch (or stopped).
    listed: bool,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn fail(&self, stage: &'static str, message: String) {
        lock(&self.failure).get_or_insert(Failure { stage, message });
        self.halt();
    }

    /// Wait (until `deadline`, when given) for the listing to be over and
    /// no task of the run to be queued or running; false when the deadline
    /// came first.
    fn idle(&self, deadline: Option<std::time::Instant>) -> bool {
        let mut state = lock(&self.state);
        while !(state.listed && state.in_flight == 0) {
            state = match deadline {
                None => wait(&self.changed, state),
                Some(d) => {
                    let left = d.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    self.changed
                        .wait_timeout(state, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        true
    }

    fn halt(&self) {
        self.stop.store(true, Ordering::Relaxed);
        // Taken so that no waiter misses the news between its check and
        // its wait.
        let _state = lock(&self.state);
        self.changed.notify_all();
    }
}

/// A running pipeline: an iterator of batch outcomes. See the module.
pub struct Pipeline {
    shared: Arc<Shared>,
    listing: Option<JoinHandle<()>>,
    /// The failure has been yielded (or the run is over).
    done: bool,
}

/// A handle that stops a pipeline from another thread (`Pipeline::stop`):
/// the iterator then ends soon (it may still yield a batch).
#[derive(Clone)]
pub struct Stop(Arc<Shared>);

impl Stop {
    pub fn stop(&self) {
        self.0.halt();
    }

    /// Stop, take the run's queued tasks back, and wait (until `deadline`)
    /// for its listing and running tasks to end: then nothing of the run
    /// runs or holds what it was lent, though the iterator is still open.
    /// False when the deadline came first.
    pub fn quiesce(&self, deadline: std::time::Instant) -> bool {
        self.0.halt();
        pool::purge(self.0.id);
        self.0.idle(Some(deadline))
    }
}

/// Marks the run's listing over when dropped: nothing more will be queued.
struct ListingOver<'a>(&'a Shared);

impl Drop for ListingOver<'_> {
    fn drop(&mut self) {
        lock(&self.0.state).listed = true;
        self.0.changed.notify_all();
    }
}

/// What the listing thread needs to hand batches to the shared pool.
struct Feed {
    shared: Arc<Shared>,
    fetch: Arc<dyn Fetch>,
    schema: Arc<Schema>,
    fold: Option<Arc<dyn Fold>>,
    records: bool,
    /// Batches of this run read at once, at most.
    jobs: usize,
    panic_read: bool,
}

impl Pipeline {
    /// Start reading what `listing` lists through `fetch`. Records are
    /// folded into `fold` by the readers (unless `options.records`).
    pub fn start(
        listing: Box<dyn Listing>,
        fetch: Arc<dyn Fetch>,
        schema: Arc<Schema>,
        fold: Option<Arc<dyn Fold>>,
        options: &Options,
    ) -> Pipeline {
        let shared = Arc::new(Shared {
            id: pool::run_id(),
            stop: AtomicBool::new(false),
            failure: Mutex::new(None),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let inject = std::env::var("FASTINDEX_TEST_PANIC").ok();
        let feed = Feed {
            shared: shared.clone(),
            fetch: fetch.clone(),
            schema,
            fold: if options.records { None } else { fold },
            records: options.records,
            jobs: options.jobs.max(1),
            panic_read: inject.as_deref() == Some("read"),
        };
        let ahead = fetch.ahead(options.concurrency);
        let batch_size = options.batch_size.max(1);
        let panic_walk = inject.as_deref() == Some("walk");
        let listing = spawn("walk", &shared, move |shared| {
            // Dropped last, whether the listing returns or panics, after
            // the feed (and what it lends the run's tasks).
            let _over = ListingOver(shared);
            let feed = feed;
            list(listing, ahead, &feed, batch_size, shared, panic_walk)
        });
        if listing.is_none() {
            lock(&shared.state).listed = true; // nothing will list
            shared.fail("walk", "could not start the threads of the run".into());
        }
        Pipeline {
            shared,
            listing,
            done: false,
        }
    }

    /// A handle to stop the run from elsewhere.
    pub fn stopper(&self) -> Stop {
        Stop(self.shared.clone())
    }

    /// Stop everything: take the run's queued batches back from the pool,
    /// wait for those being read and join the listing thread. Err when a
    /// thread had failed and the iterator has not yielded that yet.
    pub fn close(&mut self) -> std::result::Result<(), Failure> {
        self.shared.halt();
        self.finish()
    }

    /// Wait for the run's threads and tasks (they are ending) and report a
    /// failure once.
    fn finish(&mut self) -> std::result::Result<(), Failure> {
        pool::purge(self.shared.id);
        if let Some(t) = self.listing.take() {
            if t.join().is_err() {
                // The guard in `spawn` catches panics; a join that fails is
                // the guard's own.
                self.shared
                    .fail("walk", "a thread of the run ended abnormally".into());
            }
        }
        self.shared.idle(None);
        lock(&self.shared.state).done.clear();
        if std::mem::replace(&mut self.done, true) {
            return Ok(());
        }
        match lock(&self.shared.failure).clone() {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }
}

fn wait<'a, T>(c: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    c.wait(guard).unwrap_or_else(|e| e.into_inner())
}

impl Iterator for Pipeline {
    type Item = std::result::Result<Batch, Failure>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        {
            let shared = &self.shared;
            let mut state = lock(&shared.state);
            loop {
                if shared.stopped() {
                    break;
                }
                if let Some(batch) = state.done.pop_front() {
                    drop(state);
                    shared.changed.notify_all(); // room for the listing
                    return Some(Ok(batch));
                }
                if state.listed && state.in_flight == 0 {
                    break;
                }
                state = wait(&shared.changed, state);
            }
        }
        // Over, stopped or failed.
        self.shared.halt();
        self.finish().err().map(Err)
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Spawn a thread of the run whose failure (a panic, or Err) is recorded
/// and stops the run. None when no thread could be made.
fn spawn<F>(stage: &'static str, shared: &Arc<Shared>, body: F) -> Option<JoinHandle<()>>
where
    F: FnOnce(&Shared) -> std::result::Result<(), String> + Send + 'static,
{
    let shared = shared.clone();
    thread::Builder::new()
        .name(format!("fastindex-{stage}"))
        .spawn(move || guarded(stage, &shared, body))
        .ok()
}

/// Run `body`; a panic or an Err fails the run.
fn guarded<F>(stage: &'static str, shared: &Shared, body: F)
where
    F: FnOnce(&Shared) -> std::result::Result<(), String>,
{
    let failed = match catch_unwind(AssertUnwindSafe(|| body(shared))) {
        Ok(Ok(())) => return,
        Ok(Err(message)) => message,
        Err(panic) => format!("a thread panicked: {}", panic_message(&*panic)),
    };
    shared.fail(stage, failed);
}

/// The listing thread: entries into batches, through the ahead stage
/// (which may run up to `AHEAD` entries ahead of the readers), to the pool.
fn list(
    listing: Box<dyn Listing>,
    mut ahead: Option<Box<dyn Ahead>>,
    feed: &Feed,
    batch_size: usize,
    shared: &Shared,
    panic: bool,
) -> std::result::Result<(), String> {
    let mut listing = listing.fuse();
    let mut ready: VecDeque<Vec<Entry>> = VecDeque::new();
    let mut ahead_of_readers = 0; // entries in `ready`
    let listed = (|| loop {
        if shared.stopped() {
            return Ok(());
        }
        // Hand over what the run may have in flight now.
        while feed.room() {
            let Some(batch) = ready.pop_front() else {
                break;
            };
            ahead_of_readers -= batch.len();
            feed.submit(batch)?;
        }
        if ahead_of_readers < AHEAD {
            let batch: Vec<Entry> = listing.by_ref().take(batch_size).collect();
            if !batch.is_empty() {
                if let Some(a) = ahead.as_mut() {
                    a.batch(&batch, &shared.stop)?;
                }
                if panic {
                    panic!("FASTINDEX_TEST_PANIC=walk");
                }
                ahead_of_readers += batch.len();
                ready.push_back(batch);
                continue;
            }
            if ready.is_empty() {
                return Ok(()); // all handed over
            }
        }
        let state = lock(&shared.state);
        if !shared.stopped() && !feed.room_in(&state) {
            drop(wait(&shared.changed, state));
        }
    })();
    let finished = ahead.take().map_or(Ok(()), |a| a.finish());
    listed.and(finished)
}

impl Feed {
    /// Whether the run may have one more batch in flight.
    fn room(&self) -> bool {
        self.room_in(&lock(&self.shared.state))
    }

    fn room_in(&self, state: &State) -> bool {
        // At most `jobs` being read, and no more read than the iterator
        // can be behind by.
        state.in_flight < self.jobs && state.in_flight + state.done.len() < self.jobs + QUEUE
    }

    /// Queue one batch in the shared pool.
    fn submit(&self, entries: Vec<Entry>) -> std::result::Result<(), String> {
        lock(&self.shared.state).in_flight += 1;
        let task = Task {
            job: Some(Job {
                entries,
                fetch: self.fetch.clone(),
                schema: self.schema.clone(),
                fold: self.fold.clone(),
                records: self.records,
                panic: self.panic_read,
            }),
            shared: self.shared.clone(),
        };
        // On Err the task was dropped, and has counted itself out.
        pool::submit(self.shared.id, Box::new(move || task.run()))
    }
}

/// One batch to read, in the shared pool. Dropped, run or not, it counts
/// itself out of its run's `in_flight`, after dropping what it holds: once
/// `in_flight` says 0, the run may take every reference it lent as back.
struct Task {
    job: Option<Job>,
    shared: Arc<Shared>,
}

struct Job {
    entries: Vec<Entry>,
    fetch: Arc<dyn Fetch>,
    schema: Arc<Schema>,
    fold: Option<Arc<dyn Fold>>,
    records: bool,
    panic: bool,
}

thread_local! {
    /// Buffers made once per parse thread, kept from file to file.
    static SCRATCH: RefCell<Collected> = RefCell::new(Collected::default());
}

impl Task {
    fn run(mut self) {
        let Some(job) = self.job.take() else { return };
        guarded("read", &self.shared, |shared| job.run(shared));
    }
}

impl Job {
    fn run(self, shared: &Shared) -> std::result::Result<(), String> {
        if shared.stopped() {
            return Ok(());
        }
        if self.panic {
            panic!("FASTINDEX_TEST_PANIC=read");
        }
        let mut batch = Batch::default();
        SCRATCH.with_borrow_mut(|scratch| {
            for e in self.entries {
                if shared.stopped() {
                    return;
                }
                read_one(&*self.fetch, &self.schema, e, scratch, &mut batch);
            }
        });
        if shared.stopped() {
            return Ok(());
        }
        batch.indexed = batch.records.len();
        if !self.records {
            match &self.fold {
                Some(fold) => batch.fold(&**fold),
                None => batch.records.clear(),
            }
        }
        lock(&shared.state).done.push_back(batch);
        Ok(())
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.job = None;
        lock(&self.shared.state).in_flight -= 1;
        self.shared.changed.notify_all();
    }
}

/// Read one entry into `batch`: its record, or the problem it gave.
fn read_one(
    fetch: &dyn Fetch,
    schema: &Schema,
    e: Entry,
    scratch: &mut Collected,
    batch: &mut Batch,
) {
    let problem = |e: Entry, reason: &'static str, message: String| Problem {
        path: e.path,
        display: e.display,
        reason,
        message,
    };
    let r = match &e.found {
        Found::File => read_guarded(fetch, schema, &e, scratch),
        Found::Skip(reason, message) | Found::Fail(reason, message) => {
            let (reason, message) = (*reason, message.clone());
            batch.problems.push(problem(e, reason, message));
            return;
        }
    };
    match r {
        Ok(Outcome::Indexed(rec)) => {
            if rec.warnings > 0 {
                // Indexed, and listed too: the user can see which file.
                batch.warnings += u64::from(rec.warnings);
                batch.problems.push(Problem {
                    path: e.path.clone(),
                    display: e.display.clone(),
                    reason: outcome::WARNING.name,
                    message: format!(
                        "{} value(s) present but not parsable, written as null",
                        rec.warnings
                    ),
                });
            }
            batch.records.push((e.display, rec));
        }
        Ok(Outcome::Skipped { reason, message }) => {
            batch.problems.push(problem(e, reason, message))
        }
        Err(err) => {
            let reason = err.reason();
            batch.problems.push(problem(e, reason, err.to_string()));
        }
    }
}

/// Read one entry; a panic in the reader (a bug) is that file's error.
pub fn read_guarded(
    fetch: &dyn Fetch,
    schema: &Schema,
    entry: &Entry,
    out: &mut Collected,
) -> Result<Outcome> {
    catch_unwind(AssertUnwindSafe(|| read_entry(fetch, schema, entry, out)))
        .unwrap_or_else(|_| Err(internal_error()))
}

/// What a panic in the reader (a bug) makes of the file it was reading.
pub fn internal_error() -> Error {
    Error::Malformed("internal error in the reader (please report this file)".into())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io;
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::dicom::elements::Encoding;
    use crate::dicom::input::Input;
    use crate::sources::{files, Prefix};
    use crate::testbytes::DataSetWriter as W;
    use crate::tests::{ct, deflate, part10, read, t};

    /// A header with a private block to skip between wanted values.
    fn spread() -> Vec<u8> {
        let mut w = W::new(Encoding::EXPLICIT_LE);
        w.el(t(0x0008, 0x0018), b"UI", "1.2.3.4.5")
            .el(t(0x0008, 0x0060), b"CS", "MR")
            .el(t(0x0009, 0x0010), b"LO", "PRIVATE");
        w.head(t(0x0009, 0x1010), b"OB", 40_000)
            .raw(&vec![0x5A; 40_000]);
        w.el(t(0x0010, 0x0020), b"LO", "PAT")
            .el(t(0x0020, 0x000D), b"UI", "1.2.3")
            .el(t(0x0020, 0x000E), b"UI", "1.2.3.4");
        part10("1.2.840.10008.1.2.1", w.bytes())
    }

    /// An object store in memory: each request serves a prefix of the
    /// object, K bytes or the bytes up to what the reader asked for,
    /// rounded up to K.
    struct Ranged {
        objects: HashMap<PathBuf, Vec<u8>>,
        k: u64,
        requests: AtomicUsize,
    }

    impl Fetch for Ranged {
        fn open(&self, entry: &Entry, upto: u64) -> io::Result<Box<dyn Input>> {
            self.requests.fetch_add(1, Ordering::Relaxed);
            let data = self
                .objects
                .get(&entry.path)
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
            let size = data.len() as u64;
            let served = upto.max(1).div_ceil(self.k) * self.k;
            let served = served.min(size) as usize;
            Ok(Box::new(Prefix::new(data[..served].to_vec(), size)))
        }
    }

    fn ranged(objects: &[(&str, Vec<u8>)], k: u64) -> Ranged {
        Ranged {
            objects: objects
                .iter()
                .map(|(n, b)| (PathBuf::from(n), b.clone()))
                .collect(),
            k,
            requests: AtomicUsize::new(0),
        }
    }

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(Vec::new()).expect("the field table"))
    }

    #[test]
    fn a_ranged_source_fetches_more_and_reads_the_same_record() {
        let cases = [
            ("spread", spread()),
            (
                "explicit",
                part10("1.2.840.10008.1.2.1", &ct(Encoding::EXPLICIT_LE)),
            ),
            (
                "deflated",
                part10(
                    "1.2.840.10008.1.2.1.99",
                    &deflate(&ct(Encoding::EXPLICIT_LE)),
                ),
            ),
            // Bare: a read cut short must not be taken for the end of it.
            ("bare", ct(Encoding::IMPLICIT_LE)),
        ];
        for (name, bytes) in &cases {
            let whole = read(bytes).expect("reads whole");
            for k in [7, 100, 4096] {
                let fetch = ranged(&[(name, bytes.clone())], k);
                let got = read_guarded(
                    &fetch,
                    &schema(),
                    &Entry::file(name, *name),
                    &mut Collected::default(),
                );
                let Ok(Outcome::Indexed(rec)) = got else {
                    panic!("{name}, K={k}: {got:?}", got = got.err());
                };
                assert_eq!(rec.values, whole.values, "{name}, K={k}");
                let requests = fetch.requests.load(Ordering::Relaxed);
                let needed = if bytes.len() as u64 > k { 2 } else { 1 };
                assert!(requests >= needed, "{name}, K={k}: {requests} request(s)");
            }
        }
    }

    /// A fetch that never serves more than its first K bytes.
    struct Stingy;

    impl Fetch for Stingy {
        fn open(&self, _entry: &Entry, _upto: u64) -> io::Result<Box<dyn Input>> {
            Ok(Box::new(Prefix::new(spread()[..300].to_vec(), 1 << 20)))
        }
    }

    #[test]
    fn a_source_that_serves_no_more_is_an_error_not_a_loop() {
        let got = read_guarded(
            &Stingy,
            &schema(),
            &Entry::file("x", "x"),
            &mut Collected::default(),
        );
        let Err(Error::Io(e)) = got else {
            panic!("an I/O error")
        };
        assert!(e.to_string().contains("did not serve"), "{e}");
    }

    fn run_dir(dir: &std::path::Path, jobs: usize) -> (Vec<Batch>, Arc<Mutex<Aggregator>>) {
        let agg = Arc::new(Mutex::new(Aggregator::default()));
        let walk = crate::sources::walk::Walk::new(
            crate::sources::walk::Root::given(&[dir], None),
            false,
            Default::default(),
        );
        let options = Options {
            jobs,
            batch_size: 3,
            ..Options::default()
        };
        let run = Pipeline::start(
            Box::new(walk),
            Arc::new(crate::sources::Files),
            schema(),
            Some(agg.clone()),
            &options,
        );
        let batches = run
            .collect::<std::result::Result<Vec<_>, _>>()
            .expect("complete");
        (batches, agg)
    }

    #[test]
    fn a_walked_tree_is_read_and_folded() {
        let dir = std::env::temp_dir().join(format!("fastindex-pipeline-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
        for i in 0..10 {
            std::fs::write(dir.join("sub").join(format!("{i}.dcm")), spread()).expect("write");
        }
        std::fs::write(dir.join("junk.txt"), b"hello").expect("write");
        let (batches, agg) = run_dir(&dir, 2);
        let _ = std::fs::remove_dir_all(&dir);
        let indexed: usize = batches.iter().map(|b| b.indexed).sum();
        let problems: Vec<&Problem> = batches.iter().flat_map(|b| &b.problems).collect();
        assert_eq!(indexed, 10);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].reason, "not_dicom");
        let agg = lock(&agg);
        assert_eq!(agg.len(), 1);
        // Every file holds the same SOP instance: one instance, 9 duplicates.
        assert_eq!(agg.duplicates(), 9);
    }

    /// A listing of `n` entries (forever when None) that panics at `panic_at`,
    /// holding a token whose count says whether it was dropped.
    fn listing(n: Option<usize>, panic_at: Option<usize>, token: Arc<()>) -> Box<dyn Listing> {
        let mut i = 0usize;
        Box::new(std::iter::from_fn(move || {
            let _held = &token;
            i += 1;
            if Some(i) == panic_at {
                panic!("the listing broke");
            }
            if n.is_some_and(|n| i > n) {
                return None;
            }
            Some(Entry::file(format!("{i}"), format!("{i}")))
        }))
    }

    /// Serves every entry as the same small file, in memory.
    struct Same;

    impl Fetch for Same {
        fn open(&self, _entry: &Entry, _upto: u64) -> io::Result<Box<dyn Input>> {
            let bytes = part10("1.2.840.10008.1.2.1", &ct(Encoding::EXPLICIT_LE));
            let size = bytes.len() as u64;
            Ok(Box::new(Prefix::new(bytes, size)))
        }
    }

    fn start(listing: Box<dyn Listing>, fetch: Arc<dyn Fetch>, fold: Arc<dyn Fold>) -> Pipeline {
        let options = Options {
            jobs: 2,
            batch_size: 4,
            concurrency: 2,
            records: false,
        };
        Pipeline::start(listing, fetch, schema(), Some(fold), &options)
    }

    fn agg() -> Arc<dyn Fold> {
        Arc::new(Mutex::new(Aggregator::default()))
    }

    #[test]
    fn a_panic_in_the_listing_fails_the_run() {
        let token = Arc::new(());
        let fetch: Arc<dyn Fetch> = Arc::new(Same);
        let run = start(listing(None, Some(50), token.clone()), fetch.clone(), agg());
        let results: Vec<_> = run.collect();
        let failure = results
            .iter()
            .find_map(|r| r.as_ref().err())
            .expect("the run fails");
        assert_eq!(failure.stage, "walk");
        assert!(failure.message.contains("the listing broke"), "{failure}");
        assert!(
            results.last().is_some_and(|r| r.is_err()),
            "the failure comes last"
        );
        // Every thread is gone with what it held.
        assert_eq!(Arc::strong_count(&token), 1);
        assert_eq!(Arc::strong_count(&fetch), 1);
    }

    struct Broken;

    impl Fold for Broken {
        fn fold(&self, _records: Vec<(OsString, Record)>) {
            panic!("the aggregator broke");
        }
    }

    #[test]
    fn a_panic_in_a_reader_thread_fails_the_run() {
        let token = Arc::new(());
        let run = start(
            listing(None, None, token.clone()),
            Arc::new(Same),
            Arc::new(Broken),
        );
        let failure = run.filter_map(|r| r.err()).next().expect("the run fails");
        assert_eq!(failure.stage, "read");
        assert!(
            failure.message.contains("the aggregator broke"),
            "{failure}"
        );
        assert_eq!(Arc::strong_count(&token), 1);
    }

    /// A fetch whose ahead stage fails on its second batch.
    struct FailingAhead;

    struct Fails(usize);

    impl Ahead for Fails {
        fn batch(&mut self, _: &[Entry], _: &AtomicBool) -> std::result::Result<(), String> {
            self.0 += 1;
            if self.0 == 2 {
                return Err("the prefetch threads are gone".into());
            }
            Ok(())
        }

        fn finish(self: Box<Self>) -> std::result::Result<(), String> {
            Ok(())
        }
    }

    impl Fetch for FailingAhead {
        fn open(&self, e: &Entry, upto: u64) -> io::Result<Box<dyn Input>> {
            Same.open(e, upto)
        }

        fn ahead(&self, _: usize) -> Option<Box<dyn Ahead>> {
            Some(Box::new(Fails(0)))
        }
    }

    #[test]
    fn a_failed_ahead_stage_fails_the_run() {
        let run = start(
            listing(Some(100), None, Arc::new(())),
            Arc::new(FailingAhead),
            agg(),
        );
        let failure = run.filter_map(|r| r.err()).next().expect("the run fails");
        assert_eq!(failure.stage, "walk");
        assert!(failure.message.contains("prefetch"), "{failure}");
    }

    #[test]
    fn dropping_the_iterator_mid_run_stops_and_joins_everything() {
        let token = Arc::new(());
        let fetch: Arc<dyn Fetch> = Arc::new(Same);
        let fold = agg();
        let mut run = start(
            listing(None, None, token.clone()),
            fetch.clone(),
            fold.clone(),
        );
        for _ in 0..3 {
            assert!(run.next().expect("a batch").is_ok());
        }
        drop(run);
        assert_eq!(Arc::strong_count(&token), 1);
        assert_eq!(Arc::strong_count(&fetch), 1);
        assert_eq!(Arc::strong_count(&fold), 1);
    }

    #[test]
    fn close_is_quiet_when_nothing_failed_and_the_run_ends() {
        let mut run = start(listing(Some(10), None, Arc::new(())), Arc::new(Same), agg());
        let indexed: usize = run.by_ref().map(|b| b.expect("complete").indexed).sum();
        assert_eq!(indexed, 10);
        assert!(run.close().is_ok());
        assert!(run.next().is_none());
    }

    #[test]
    fn an_explicit_list_is_a_listing() {
        let fold: Arc<Mutex<Aggregator>> = Arc::new(Mutex::new(Aggregator::default()));
        let list = files(vec![(
            PathBuf::from("/nonexistent/a.dcm"),
            OsString::from("a.dcm"),
        )]);
        let run = start(
            Box::new(list),
            Arc::new(crate::sources::Files),
            fold.clone(),
        );
        let batches: Vec<Batch> = run.map(|b| b.expect("complete")).collect();
        let problems: Vec<&Problem> = batches.iter().flat_map(|b| &b.problems).collect();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].reason, "unreadable");
        assert_eq!(problems[0].display, OsString::from("a.dcm"));
    }
}
