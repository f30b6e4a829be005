//! The Python boundary, kept thin: the pipeline runs in Rust threads
//! (see `pipeline`); a `Pipeline` object hands its batches over with the
//! GIL released, and only records that are written (and problems) become
//! Python objects.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use pyo3::create_exception;
use pyo3::exceptions::{PyKeyError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple, PyType};

use crate::aggregate::{Aggregator as Core, Error as AggError, ExtraSig, Finished, Key};
use crate::dicom::elements::Collected;
use crate::extract::fields::FIELDS;
use crate::extract::record::{Outcome, Record, Value};
use crate::extract::schema::{Extra, Schema as CoreSchema};
use crate::output::{self, Cell, Subseries};
use crate::pipeline::{self, lock, Batch, Fold, Options, Stop};
use crate::sources::scan::{self, StatKey};
use crate::sources::walk::{Exclude, Filter, Root, Walk};
use crate::sources::{self, Entry, Fetch, Files, Found, Listing};

mod stores;

create_exception!(
    _native,
    RunFailed,
    PyRuntimeError,
    "A thread of the run failed: the index would be incomplete."
);

/// What to read: the field table plus the user's extra tags.
#[pyclass(frozen, module = "fastindex._native")]
struct Schema {
    inner: Arc<CoreSchema>,
    /// Field names as Python strings, made once.
    names: Vec<Py<PyString>>,
}

#[pymethods]
impl Schema {
    #[new]
    #[pyo3(signature = (extras = Vec::new()))]
    fn new(py: Python<'_>, extras: Vec<(String, u32, String, bool)>) -> PyResult<Self> {
        let extras: Vec<Extra> = extras
            .into_iter()
            .map(|(name, tag, vr, multi)| {
                let b = vr.as_bytes();
                let vr = if b.len() == 2 { [b[0], b[1]] } else { *b"UN" };
                Extra {
                    name,
                    tag,
                    vr,
                    multi,
                }
            })
            .collect();
        let inner = CoreSchema::new(extras).map_err(PyValueError::new_err)?;
        let names = FIELDS
            .iter()
            .map(|f| f.name)
            .chain(inner.extras.iter().map(|e| e.name.as_str()))
            .map(|n| PyString::intern(py, n).unbind())
            .collect();
        Ok(Schema {
            inner: Arc::new(inner),
            names,
        })
    }

    /// The last top-level tag the schema wants: reading stops past it (the
    /// fast path's stop rule, which the pydicom fallback uses too).
    #[getter]
    fn last_wanted(&self) -> u32 {
        self.inner.root.max_tag()
    }

    /// Pickled as its extras (an Aggregator pickles with its schema).
    #[allow(clippy::type_complexity)]
    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> (Bound<'py, PyType>, (Vec<(String, u32, String, bool)>,)) {
        let extras = slf
            .get()
            .inner
            .extras
            .iter()
            .map(|e| {
                let vr = String::from_utf8_lossy(&e.vr).into_owned();
                (e.name.clone(), e.tag, vr, e.multi)
            })
            .collect();
        (slf.get_type(), (extras,))
    }
}

/// (path, display prefix) per PATH: see `Root::given`.
#[pyfunction]
#[pyo3(signature = (paths, base = None))]
fn roots(paths: Vec<PathBuf>, base: Option<PathBuf>) -> Vec<(OsString, OsString)> {
    Root::given(&paths, base.as_deref())
        .into_iter()
        .map(|r| (r.path.into_os_string(), r.display))
        .collect()
}

/// Whether `pattern` is a valid --exclude glob (ValueError if not).
#[pyfunction]
fn check_exclude(patterns: Vec<String>) -> PyResult<()> {
    Exclude::new(&patterns)
        .map(|_| ())
        .map_err(PyValueError::new_err)
}

/// The walk of `roots` (path, display prefix) with the command's rules;
/// ValueError for a bad --exclude glob.
fn walk_of(
    roots: Vec<(PathBuf, PathBuf)>,
    follow_symlinks: bool,
    exclude: &[String],
    own: Vec<(u64, u64)>,
) -> PyResult<Walk> {
    let roots = roots
        .into_iter()
        .map(|(path, display)| Root {
            path,
            display: display.into_os_string(),
        })
        .collect();
    let filter = Filter {
        exclude: Exclude::new(exclude).map_err(PyValueError::new_err)?,
        own,
    };
    Ok(Walk::new(roots, follow_symlinks, filter))
}

/// Records folded into the Python-side aggregator by the reader threads.
struct PyFold(Py<Aggregator>);

impl Fold for PyFold {
    fn fold(&self, records: Vec<(OsString, Record)>) {
        self.0.get().add_all(records);
    }
}

/// An entry that gave no record, or an indexed file with warnings (reason
/// "warning"): what the fallback and `--errors` need, by name.
#[pyclass(frozen, module = "fastindex._native")]
struct Problem {
    /// The path to open.
    #[pyo3(get)]
    path: Py<PyString>,
    /// The path as records write it.
    #[pyo3(get)]
    display: Py<PyString>,
    /// One of `REASONS`.
    #[pyo3(get)]
    reason: Py<PyString>,
    #[pyo3(get)]
    message: Py<PyString>,
}

#[pymethods]
impl Problem {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Problem({}, {}: {})",
            self.display.bind(py).repr()?,
            self.reason.bind(py),
            self.message.bind(py)
        ))
    }
}

type BatchResult<'py> = (Option<Bound<'py, PyList>>, Bound<'py, PyList>, usize, u64);

/// Every run alive in the process, by id, and how many Python threads are
/// in native code with the GIL released (`release`). `shutdown` (run as the
/// interpreter exits) stops the runs, waits for their threads and tasks and
/// for those Python threads to be back, and from then on nothing releases
/// the GIL: a thread still in native code when the interpreter finalises
/// would be ended by the interpreter as it asks for the GIL back, through
/// Rust frames (an abort), and a parse thread still folding into an
/// aggregator that finalisation frees would write into freed memory.
struct Live {
    runs: Mutex<HashMap<u64, Stop>>,
    /// (threads in `release`, shutting down)
    released: Mutex<(usize, bool)>,
    back: Condvar,
}

fn live() -> &'static Live {
    static LIVE: OnceLock<Live> = OnceLock::new();
    LIVE.get_or_init(|| Live {
        runs: Mutex::new(HashMap::new()),
        released: Mutex::new((0, false)),
        back: Condvar::new(),
    })
}

/// Counts a thread in `release` while it lives.
struct Released;

impl Released {
    /// None once the interpreter is exiting.
    fn enter() -> Option<Released> {
        let mut r = lock(&live().released);
        if r.1 {
            return None;
        }
        r.0 += 1;
        Some(Released)
    }
}

impl Drop for Released {
    fn drop(&mut self) {
        lock(&live().released).0 -= 1;
        live().back.notify_all();
    }
}

fn exiting() -> bool {
    lock(&live().released).1
}

/// Run `f` with the GIL released, unless the interpreter is exiting (then
/// with it held: see `Live`).
fn release<T, F>(py: Python<'_>, f: F) -> T
where
    F: Send + FnOnce() -> T,
    T: Send,
{
    match Released::enter() {
        Some(_counted) => py.detach(f),
        None => f(),
    }
}

/// For the interpreter's exit: stop every run of the process, wait (at
/// most `timeout` seconds) for their threads and tasks to end and for every
/// thread in native code to be back; from then on nothing releases the GIL
/// and a run still pulled raises RunFailed. True when all that was done in
/// time.
#[pyfunction]
fn shutdown(py: Python<'_>, timeout: f64) -> bool {
    let deadline = Instant::now() + Duration::from_secs_f64(timeout.max(0.0));
    lock(&live().released).1 = true;
    let runs: Vec<Stop> = lock(&live().runs).values().cloned().collect();
    py.detach(|| {
        let quiet = runs.iter().all(|r| r.quiesce(deadline));
        let mut r = lock(&live().released);
        while r.0 > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            r = live()
                .back
                .wait_timeout(r, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        quiet
    })
}

/// Set the process-wide threads that every run shares: `threads` parse
/// threads, `prefetchers` header reads in flight ahead of them on a slow
/// disk. None leaves a setting as it is; returns both as they now are.
#[pyfunction]
#[pyo3(signature = (threads = None, prefetchers = None))]
fn configure(threads: Option<usize>, prefetchers: Option<usize>) -> (usize, usize) {
    (
        crate::pool::configure(threads),
        crate::sources::prefetch::configure(prefetchers),
    )
}

/// A run: walk `roots`, a list of (path, display prefix), read every file
/// on `jobs` threads and fold the records into `aggregator`; batches of
/// outcomes come out of `next_batch`. `concurrency`: header reads
/// requested ahead of the parsers when the disk is slow; `exclude`:
/// --exclude globs; `own`: (device, inode) of this run's outputs, never
/// indexed. With `records`, the per-file records come out too (as dicts),
/// and are folded once made. With `files`, a list of (path, display), those
/// files are read and nothing is walked (`roots` is then ignored).
/// Objects of object stores, through `stores`: `urls` are listed (after
/// the roots or files), `objects` are (url, size, etag, last_modified) as
/// `Stores.list` gave them, read without listing.
#[pyclass(frozen, module = "fastindex._native")]
struct Pipeline {
    inner: Mutex<pipeline::Pipeline>,
    stop: Stop,
    /// Its key in `live().runs`.
    id: u64,
    schema: Py<Schema>,
    aggregator: Py<Aggregator>,
    records: bool,
}

#[pymethods]
impl Pipeline {
    #[new]
    #[pyo3(signature = (schema, roots, aggregator, *, records = false, jobs = 1, batch_size = 256, concurrency = 0, follow_symlinks = false, exclude = Vec::new(), own = Vec::new(), files = None, stores = None, urls = Vec::new(), objects = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        schema: Py<Schema>,
        roots: Vec<(PathBuf, PathBuf)>,
        aggregator: Py<Aggregator>,
        records: bool,
        jobs: usize,
        batch_size: usize,
        concurrency: usize,
        follow_symlinks: bool,
        exclude: Vec<String>,
        own: Vec<(u64, u64)>,
        files: Option<Vec<(PathBuf, PathBuf)>>,
        stores: Option<Py<stores::Stores>>,
        urls: Vec<String>,
        objects: Option<Vec<stores::Listed>>,
    ) -> PyResult<Self> {
        let walk = walk_of(roots, follow_symlinks, &exclude, own)?;
        let options = Options {
            jobs,
            batch_size,
            concurrency,
            records,
        };
        let fold: Arc<dyn Fold> = Arc::new(PyFold(aggregator.clone_ref(py)));
        let listing: Box<dyn Listing> = match files {
            Some(files) => Box::new(sources::files(
                files
                    .into_iter()
                    .map(|(path, display)| (path, display.into_os_string()))
                    .collect::<Vec<_>>(),
            )),
            None => Box::new(walk),
        };
        let (listing, fetch): (Box<dyn Listing>, Arc<dyn Fetch>) = match &stores {
            None if urls.is_empty() && objects.is_none() => (listing, Arc::new(Files)),
            None => return Err(PyValueError::new_err("objects need stores")),
            Some(stores) => {
                let stores = stores.get();
                let listed = stores.listing(&urls)?;
                let given = stores.entries(objects.unwrap_or_default())?;
                let all = listing.chain(given).chain(listed);
                (
                    Box::new(all),
                    Arc::new(sources::objects::Objects::new(stores.inner.clone())),
                )
            }
        };
        let inner = pipeline::Pipeline::start(
            listing,
            fetch,
            schema.get().inner.clone(),
            Some(fold),
            &options,
        );
        let id = crate::pool::run_id();
        lock(&live().runs).insert(id, inner.stopper());
        Ok(Pipeline {
            stop: inner.stopper(),
            id,
            inner: Mutex::new(inner),
            schema,
            aggregator,
            records,
        })
    }

    /// The next batch's outcome, or None when the run is over: (dicts,
    /// problems, indexed, warnings), dicts the per-file records when asked
    /// for (else None), problems (path, display, reason, message) for every
    /// entry that gave no record; reason "unsupported" or "malformed" asks
    /// for the pydicom fallback, "warning" is an indexed file whose record
    /// has values written as null because they did not parse. Raises
    /// RunFailed when a thread of the run failed.
    fn next_batch<'py>(&self, py: Python<'py>) -> PyResult<Option<BatchResult<'py>>> {
        if exiting() {
            return Err(RunFailed::new_err(
                "the interpreter is exiting: the run was stopped before its end",
            ));
        }
        let Some(next) = release(py, || lock(&self.inner).next()) else {
            return Ok(None);
        };
        let mut batch: Batch = next.map_err(|f| RunFailed::new_err(f.to_string()))?;
        let problems = PyList::empty(py);
        for p in &batch.problems {
            let problem = Problem {
                path: p.path.as_os_str().into_pyobject(py)?.unbind(),
                display: p.display.as_os_str().into_pyobject(py)?.unbind(),
                reason: PyString::intern(py, p.reason).unbind(),
                message: PyString::new(py, &p.message).unbind(),
            };
            problems.append(Bound::new(py, problem)?)?;
        }
        let dicts = if self.records {
            let schema = self.schema.get();
            let list = PyList::empty(py);
            for (path, rec) in &batch.records {
                list.append(record_dict(py, schema, rec, path, None)?)?;
            }
            let fold = PyFold(self.aggregator.clone_ref(py));
            release(py, || batch.fold(&fold));
            Some(list)
        } else {
            None
        };
        Ok(Some((dicts, problems, batch.indexed, batch.warnings)))
    }

    /// Stop the run and wait for its threads and tasks (also when it is
    /// over). Another thread blocked in next_batch returns soon after.
    fn close(&self, py: Python<'_>) {
        self.stop.stop();
        // A failure not yet seen is dropped: closing abandons the run.
        release(py, || {
            let _ = lock(&self.inner).close();
        });
        lock(&live().runs).remove(&self.id);
    }

    /// Ask the run to stop, without waiting: next_batch then returns None
    /// within a file or so; close() waits for the rest.
    fn stop(&self) {
        self.stop.stop();
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        lock(&live().runs).remove(&self.id);
    }
}

/// One listed entry: (path, display, reason, message), reason and message
/// None for a file to read.
type Listed = (OsString, OsString, Option<&'static str>, Option<String>);

/// The walk a run over `roots` would make, as pages of entries, without
/// reading any file: for a caller that shares the reading out (Dask
/// shards). The same rules as `Pipeline` (--exclude, own outputs, links),
/// and the same order; entries that are skipped or could not be looked at
/// come with the reason and message a run gives them.
#[pyclass(module = "fastindex._native")]
struct Walker {
    walk: Option<Walk>,
}

#[pymethods]
impl Walker {
    #[new]
    #[pyo3(signature = (roots, *, follow_symlinks = false, exclude = Vec::new(), own = Vec::new()))]
    fn new(
        roots: Vec<(PathBuf, PathBuf)>,
        follow_symlinks: bool,
        exclude: Vec<String>,
        own: Vec<(u64, u64)>,
    ) -> PyResult<Self> {
        Ok(Walker {
            walk: Some(walk_of(roots, follow_symlinks, &exclude, own)?),
        })
    }

    /// The next `size` entries at most (walked with the GIL released);
    /// an empty list once the walk is over.
    fn page(&mut self, py: Python<'_>, size: usize) -> Vec<Listed> {
        let Some(walk) = self.walk.as_mut() else {
            return Vec::new();
        };
        let page: Vec<Entry> = release(py, || walk.by_ref().take(size.max(1)).collect());
        if page.is_empty() {
            self.walk = None;
        }
        page.into_iter()
            .map(|e| {
                let (reason, message) = match e.found {
                    Found::File => (None, None),
                    Found::Skip(r, m) | Found::Fail(r, m) => (Some(r), Some(m)),
                };
                (e.path.into_os_string(), e.display, reason, message)
            })
            .collect()
    }
}

/// A stat key as Python sees it: (dev, ino, size, mtime_ns, ctime_ns).
type PyKey = (u64, u64, u64, i64, i64);

/// What `scan` gives: (changed, others, vanished, unchanged); changed:
/// (path, display, key, known) per file to read; others: a Problem per
/// entry the walk left out or could not look at; vanished: displays.
type Scanned = (
    Vec<(OsString, OsString, PyKey, bool)>,
    Vec<Problem>,
    Vec<OsString>,
    usize,
);

/// Walk `roots` as `Pipeline` does and compare each file's stat key with
/// `known`, the last run's keys packed (`pack_keys`), reading nothing
/// (see `sources::scan`). `moved`: same size and mtime is unchanged,
/// whatever the device, inode and ctime.
#[pyfunction]
#[pyo3(signature = (roots, known, *, moved = false, follow_symlinks = false, exclude = Vec::new(), own = Vec::new()))]
#[allow(clippy::too_many_arguments)]
fn scan_changes(
    py: Python<'_>,
    roots: Vec<(PathBuf, PathBuf)>,
    known: &[u8],
    moved: bool,
    follow_symlinks: bool,
    exclude: Vec<String>,
    own: Vec<(u64, u64)>,
) -> PyResult<Scanned> {
    let walk = walk_of(roots, follow_symlinks, &exclude, own)?;
    let found = release(py, || {
        let known = scan::Packed::unpack(known)?;
        let known = known.map();
        Ok::<_, String>(scan::scan(walk, known, moved))
    });
    let found = found.map_err(PyValueError::new_err)?;
    let changed = found
        .changed
        .into_iter()
        .map(|c| {
            let k = c.key;
            let key = (k.dev, k.ino, k.size, k.mtime_ns, k.ctime_ns);
            (c.entry.path.into_os_string(), c.entry.display, key, c.known)
        })
        .collect();
    let mut others = Vec::with_capacity(found.others.len());
    for e in found.others {
        let (reason, message) = match &e.found {
            sources::Found::Skip(r, m) | sources::Found::Fail(r, m) => (*r, m.clone()),
            sources::Found::File => continue,
        };
        others.push(Problem {
            path: e.path.as_os_str().into_pyobject(py)?.unbind(),
            display: e.display.as_os_str().into_pyobject(py)?.unbind(),
            reason: PyString::intern(py, reason).unbind(),
            message: PyString::new(py, &message).unbind(),
        });
    }
    Ok((changed, others, found.vanished, found.unchanged))
}

/// The packed stat keys (`scan_changes`'s `known`) of `known` without
/// the files in `remove`, with those of `add` (display, key) put in.
#[pyfunction]
#[pyo3(signature = (known, remove = Vec::new(), add = Vec::new()))]
fn pack_keys<'py>(
    py: Python<'py>,
    known: &[u8],
    remove: Vec<PathBuf>,
    add: Vec<(PathBuf, PyKey)>,
) -> PyResult<Bound<'py, PyBytes>> {
    use std::os::unix::ffi::OsStrExt;
    let known = scan::Packed::unpack(known).map_err(PyValueError::new_err)?;
    let mut keys = known.map();
    for path in &remove {
        keys.remove(path.as_os_str().as_bytes());
    }
    for (path, (dev, ino, size, mtime_ns, ctime_ns)) in &add {
        let key = StatKey {
            dev: *dev,
            ino: *ino,
            size: *size,
            mtime_ns: *mtime_ns,
            ctime_ns: *ctime_ns,
        };
        keys.insert(path.as_os_str().as_bytes(), key);
    }
    Ok(PyBytes::new(py, &scan::pack(&keys)))
}

/// Read one file: ("indexed", record) or (reason, message). An object
/// (`path` a URL) is read through `stores`.
#[pyfunction]
#[pyo3(signature = (schema, path, display, stores = None))]
fn read_file<'py>(
    py: Python<'py>,
    schema: Py<Schema>,
    path: PathBuf,
    display: PathBuf,
    stores: Option<Py<stores::Stores>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let core = schema.get().inner.clone();
    let (entry, fetch): (Entry, Box<dyn Fetch>) = match &stores {
        Some(stores) => {
            let inner = stores.get().inner.clone();
            let entry = release(py, || inner.object_entry(&path.to_string_lossy()));
            let entry = entry.map_err(|e| pyo3::exceptions::PyOSError::new_err(e.to_string()))?;
            (entry, Box::new(sources::objects::Objects::new(inner)))
        }
        None => (Entry::file(path, display.into_os_string()), Box::new(Files)),
    };
    let r = release(py, || {
        pipeline::read_guarded(&*fetch, &core, &entry, &mut Collected::default())
    });
    outcome_tuple(py, schema.get(), r, &entry.display)
}

/// Read one file's bytes (in memory) as the file would be read: the same
/// answers as `read_file`, `display` written as its path.
#[pyfunction]
fn read_bytes<'py>(
    py: Python<'py>,
    schema: Py<Schema>,
    data: &[u8],
    display: PathBuf,
) -> PyResult<Bound<'py, PyTuple>> {
    let core = schema.get().inner.clone();
    let r = release(py, || {
        catch_unwind(AssertUnwindSafe(|| {
            crate::dicom::reader::read_bytes(&core, data, &mut Collected::default())
        }))
        .unwrap_or_else(|_| Err(pipeline::internal_error()))
    });
    outcome_tuple(py, schema.get(), r, display.as_os_str())
}

/// ("indexed", record dict, warnings) or (reason, message, 0).
fn outcome_tuple<'py>(
    py: Python<'py>,
    schema: &Schema,
    r: crate::dicom::error::Result<Outcome>,
    display: &OsStr,
) -> PyResult<Bound<'py, PyTuple>> {
    match r {
        Ok(Outcome::Indexed(rec)) => {
            let d = record_dict(py, schema, &rec, display, None)?;
            ("indexed", d, rec.warnings).into_pyobject(py)
        }
        Ok(Outcome::Skipped { reason, message }) => (reason, message, 0u32).into_pyobject(py),
        Err(e) => (e.reason(), e.to_string(), 0u32).into_pyobject(py),
    }
}

fn cell_py<'py>(py: Python<'py>, cell: Cell<'_>) -> PyResult<Bound<'py, PyAny>> {
    Ok(match cell {
        Cell::Null => py.None().into_bound(py),
        Cell::Str(s) => PyString::new(py, s).into_any(),
        Cell::Path(p) => p.into_pyobject(py)?.into_any(),
        Cell::Int(n) => n.into_pyobject(py)?.into_any(),
        Cell::Count(n) => n.into_pyobject(py)?.into_any(),
        Cell::Num(n) => n.into_pyobject(py)?.into_any(),
        Cell::Nums(n) => n.into_pyobject(py)?.into_any(),
        Cell::Ints(n) => n.into_pyobject(py)?.into_any(),
        Cell::Strs(n) => n.into_pyobject(py)?.into_any(),
    })
}

/// A record as a dict (see `output::columns`): per-file when `sub` is
/// None, else subseries.
fn record_dict<'py>(
    py: Python<'py>,
    schema: &Schema,
    rec: &Record,
    path: &OsStr,
    sub: Option<Subseries<'_>>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (i, cell) in output::columns(rec, path, sub) {
        d.set_item(schema.names[i].bind(py), cell_py(py, cell)?)?;
    }
    Ok(d)
}

/// A per-file record made by the pydicom fallback, back into a Record,
/// each column typed as `output::blank` says.
fn record_from_dict(schema: &CoreSchema, d: &Bound<'_, PyDict>) -> PyResult<Record> {
    let mut values = Vec::with_capacity(FIELDS.len());
    let mut extras = Vec::with_capacity(schema.extras.len());
    for (i, name) in output::names(schema).enumerate() {
        let value = match output::blank(schema, i) {
            None => Value::Computed,
            Some(blank) => match d.get_item(name)?.filter(|v| !v.is_none()) {
                None => blank,
                Some(v) => match blank {
                    Value::Str(_) => Value::Str(v.extract()?),
                    Value::Num(_) => Value::Num(Some(v.extract()?)),
                    Value::Nums(_) => Value::Nums(Some(v.extract()?)),
                    Value::Int(_) => Value::Int(Some(v.extract()?)),
                    Value::Ints(_) => Value::Ints(Some(v.extract()?)),
                    Value::Strs(_) => Value::Strs(Some(v.extract()?)),
                    Value::Computed => Value::Computed,
                },
            },
        };
        if i < FIELDS.len() {
            values.push(value);
        } else {
            extras.push(value);
        }
    }
    Ok(Record {
        values,
        extras,
        warnings: 0,
    })
}

/// An aggregate error as the Python exception that says it.
fn agg_err(e: AggError) -> PyErr {
    match e {
        AggError::NotAdded(_) => PyKeyError::new_err(e.to_string()),
        AggError::NeedsRepresentative(_) => PyRuntimeError::new_err(e.to_string()),
        AggError::Schema(_) | AggError::Bytes(_) => PyValueError::new_err(e.to_string()),
    }
}

/// The schema's extra tags as an aggregate records them.
fn extra_sigs(schema: &CoreSchema) -> Vec<ExtraSig> {
    schema
        .extras
        .iter()
        .map(|e| ExtraSig {
            name: e.name.clone(),
            tag: e.tag,
            vr: e.vr,
            multi: e.multi,
        })
        .collect()
}

/// What `Aggregator.__reduce__` gives pickle: from_bytes, (schema, bytes).
type Reduced<'py> = (Bound<'py, PyAny>, (Py<Schema>, Bound<'py, PyBytes>));

/// Subseries aggregates, shared by the worker tasks. Mergeable (partial
/// results of other processes), picklable, and `to_bytes`/`from_bytes`.
/// The mutex is only ever waited for with the GIL held by code that does
/// not release it, or taken and let go inside `detach`: never both.
#[pyclass(frozen, module = "fastindex._native")]
struct Aggregator {
    inner: Mutex<Core>,
    schema: Py<Schema>,
    /// The output order and reference tables, made once the adding is
    /// over, so that records can be written a chunk at a time.
    finished: Mutex<Option<Finished>>,
}

impl Aggregator {
    fn with_core(schema: Py<Schema>, core: Core) -> Self {
        Aggregator {
            inner: Mutex::new(core),
            schema,
            finished: Mutex::new(None),
        }
    }

    /// Change the aggregate; the output made so far is stale.
    fn change<T>(&self, f: impl FnOnce(&mut Core) -> T) -> T {
        let mut core = lock(&self.inner);
        *lock(&self.finished) = None;
        f(&mut core)
    }

    /// Fold records in; called with the GIL released.
    fn add_all(&self, items: Vec<(OsString, Record)>) {
        self.change(|core| {
            for (path, rec) in &items {
                core.add(rec, path);
            }
        })
    }

    fn record(&self, record: &Bound<'_, PyDict>) -> PyResult<Record> {
        record_from_dict(&self.schema.get().inner, record)
    }

    /// Sort and resolve, if not done since the last change (GIL released).
    fn finish(&self, py: Python<'_>) -> PyResult<()> {
        release(py, || {
            let core = lock(&self.inner);
            let mut finished = lock(&self.finished);
            if finished.is_none() {
                *finished = Some(core.finish()?);
            }
            Ok(())
        })
        .map_err(agg_err)
    }
}

#[pymethods]
impl Aggregator {
    #[new]
    fn new(schema: Py<Schema>) -> Self {
        let core = Core::new(extra_sigs(&schema.get().inner));
        Aggregator::with_core(schema, core)
    }

    /// Fold in one per-file record made in Python (the pydicom fallback).
    fn add_dict(&self, record: &Bound<'_, PyDict>, path: PathBuf) -> PyResult<()> {
        let rec = self.record(record)?;
        self.change(|core| core.add(&rec, path.as_os_str()));
        Ok(())
    }

    /// Take out a file added before (it changed or vanished), given the
    /// record and path it was added with. KeyError if it is not counted.
    /// If it was its subseries' representative, that subseries needs one
    /// again (see `needs_representative`).
    fn remove_dict(&self, record: &Bound<'_, PyDict>, path: PathBuf) -> PyResult<()> {
        let rec = self.record(record)?;
        self.change(|core| core.remove(&rec, path.as_os_str()))
            .map_err(agg_err)
    }

    /// Offer a file already added as its subseries' representative: the
    /// smallest path of what remains of a subseries whose representative
    /// was removed (offering all its files also does). KeyError if the file
    /// is not counted.
    fn offer_dict(&self, record: &Bound<'_, PyDict>, path: PathBuf) -> PyResult<()> {
        let rec = self.record(record)?;
        self.change(|core| core.offer(&rec, path.as_os_str()))
            .map_err(agg_err)
    }

    /// (patient_ID, study, series, subseries) of each subseries whose
    /// representative was removed and not replaced: until each gets one,
    /// `dicts` and `unresolved` raise RuntimeError.
    fn needs_representative(&self, py: Python<'_>) -> Vec<Key> {
        release(py, || lock(&self.inner).needs_representative())
    }

    /// Fold in another aggregate of the same schema (which is left as it
    /// was): the result is the same whatever the split and the order.
    fn merge(&self, py: Python<'_>, other: &Bound<'_, Aggregator>) -> PyResult<()> {
        let other = other.get();
        release(py, || {
            let theirs = lock(&other.inner).clone();
            self.change(|core| core.merge(theirs))
        })
        .map_err(agg_err)
    }

    /// The aggregate as bytes (canonical: equal aggregates give equal
    /// bytes), for `from_bytes`.
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let data = release(py, || lock(&self.inner).to_bytes());
        PyBytes::new(py, &data)
    }

    /// The aggregate `to_bytes` gave, made with the same schema. ValueError
    /// for bytes that are not that (damaged, foreign, another version).
    #[classmethod]
    fn from_bytes(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        schema: Py<Schema>,
        data: &[u8],
    ) -> PyResult<Self> {
        let sigs = extra_sigs(&schema.get().inner);
        let core = release(py, || Core::from_bytes(sigs, data)).map_err(agg_err)?;
        Ok(Aggregator::with_core(schema, core))
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Reduced<'py>> {
        let py = slf.py();
        let this = slf.get();
        Ok((
            slf.get_type().getattr("from_bytes")?,
            (this.schema.clone_ref(py), this.to_bytes(py)),
        ))
    }

    #[getter]
    fn duplicates(&self) -> u64 {
        lock(&self.inner).duplicates()
    }

    /// References (reference_ct/rs/pl) that point outside the archive.
    #[getter]
    fn unresolved(&self, py: Python<'_>) -> PyResult<u64> {
        self.finish(py)?;
        Ok(lock(&self.finished).as_ref().map_or(0, |f| f.unresolved))
    }

    fn __len__(&self) -> usize {
        lock(&self.inner).len()
    }

    /// The subseries records, sorted: all, or those from `start` to `stop`.
    #[pyo3(signature = (start = 0, stop = None))]
    fn dicts<'py>(
        &self,
        py: Python<'py>,
        start: usize,
        stop: Option<usize>,
    ) -> PyResult<Bound<'py, PyList>> {
        self.finish(py)?;
        let schema = self.schema.get();
        let core = lock(&self.inner);
        let mut finished = lock(&self.finished);
        if finished.is_none() {
            // Changed by another thread since: again, with the GIL held.
            *finished = Some(core.finish().map_err(agg_err)?);
        }
        let out = PyList::empty(py);
        let Some(f) = finished.as_ref() else {
            return Ok(out);
        };
        let stop = stop.unwrap_or(f.len()).min(f.len());
        for i in start..stop {
            if let Some(s) = core.subseries(f, i) {
                let sub = Subseries {
                    instances: s.instances,
                    links: &s.links,
                };
                out.append(record_dict(py, schema, &s.record, &s.path, Some(sub))?)?;
            }
        }
        Ok(out)
    }
}

/// The field table: (name, kind, sources, scope) per field, sources as
/// lists of tag paths (ints).
fn field_table(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let out = PyList::empty(py);
    for f in FIELDS {
        let sources: Vec<Vec<u32>> = f.sources.iter().map(|p| p.to_vec()).collect();
        out.append((f.name, f.kind.name(), sources, f.scope.name()))?;
    }
    Ok(out)
}

/// Text trimmed as the dictionary says: each value's leading spaces and
/// trailing spaces and NULs.
#[pyfunction]
fn trim_values(text: &str) -> String {
    crate::dicom::text::trim_values(text)
}

/// One DS/IS-like number by the reader's grammar, or None.
#[pyfunction]
fn parse_ds(text: &str) -> Option<f64> {
    crate::dicom::text::parse_ds(text)
}

/// The column type of an extra tag, by the one VR-to-type rule
/// (`Value::extra_blank`): str, int, float, strings, ints or floats.
#[pyfunction]
fn extra_type(vr: &str, multi: bool) -> PyResult<&'static str> {
    let vr: [u8; 2] = vr
        .as_bytes()
        .try_into()
        .map_err(|_| PyValueError::new_err(format!("not a VR: {vr:?}")))?;
    Ok(match Value::extra_blank(&vr, multi) {
        Value::Num(_) => "float",
        Value::Nums(_) => "floats",
        Value::Int(_) => "int",
        Value::Ints(_) => "ints",
        Value::Strs(_) => "strings",
        Value::Str(_) | Value::Computed => "str",
    })
}

/// The `folder` of a display path.
#[pyfunction]
fn folder_of(display: PathBuf) -> OsString {
    output::folder_of(display.as_os_str()).to_owned()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Schema>()?;
    m.add_class::<Problem>()?;
    m.add_class::<Pipeline>()?;
    m.add_class::<Walker>()?;
    m.add_class::<Aggregator>()?;
    m.add("RunFailed", m.py().get_type::<RunFailed>())?;
    m.add_function(wrap_pyfunction!(read_file, m)?)?;
    m.add_function(wrap_pyfunction!(read_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(configure, m)?)?;
    m.add_function(wrap_pyfunction!(shutdown, m)?)?;
    m.add_function(wrap_pyfunction!(check_exclude, m)?)?;
    m.add_function(wrap_pyfunction!(roots, m)?)?;
    m.add_function(wrap_pyfunction!(scan_changes, m)?)?;
    m.add_function(wrap_pyfunction!(pack_keys, m)?)?;
    m.add("FIELDS", field_table(m.py())?)?;
    let reasons = PyList::empty(m.py());
    for r in crate::outcome::REASONS {
        reasons.append((r.name, r.category.name(), r.falls_back, r.limit, r.meaning))?;
    }
    m.add("REASONS", reasons)?;
    // The rules the pydicom fallback shares with the fast path.
    m.add(
        "DEFAULT_SUBSERIES",
        crate::extract::fields::DEFAULT_SUBSERIES,
    )?;
    m.add("MAX_INFLATED", crate::dicom::preamble::MAX_INFLATED)?;
    m.add(
        "MEDIA_STORAGE_DIRECTORY",
        crate::dicom::preamble::MEDIA_STORAGE_DIRECTORY,
    )?;
    m.add_function(wrap_pyfunction!(trim_values, m)?)?;
    m.add_function(wrap_pyfunction!(parse_ds, m)?)?;
    m.add_function(wrap_pyfunction!(folder_of, m)?)?;
    m.add_function(wrap_pyfunction!(extra_type, m)?)?;
    stores::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    crate::testbytes::register(m)?;
    Ok(())
}
