//! The Python boundary, kept thin: opaque batches and results move between
//! the walker, the readers and the aggregator without becoming Python
//! objects; only records that are written (and problems) cross over.
//! Every call that does I/O or parsing releases the GIL.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::exceptions::{PyKeyError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple, PyType};

use crate::aggregate::{Aggregator as Core, Error as AggError, ExtraSig, Finished, Key, Links};
use crate::error::Error;
use crate::fields::{Kind, Scope, FIELDS};
use crate::reader;
use crate::record::{Outcome, Record, Value};
use crate::schema::{Extra, Schema as CoreSchema};
use crate::stream::Collected;
use crate::walk::{Entry, Exclude, Filter, Found, Root, Walker as CoreWalker};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock is already turned into a file error;
    // the data behind it is still consistent enough to go on.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

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

#[pyclass(frozen, module = "fastindex._native")]
struct Walker {
    inner: CoreWalker,
}

#[pymethods]
impl Walker {
    /// Walk `roots`, a list of (path, display prefix), on a thread, with
    /// up to `concurrency` header reads requested ahead of the parsers.
    /// `exclude`: --exclude globs; `own`: (device, inode) of this run's
    /// outputs, never indexed.
    #[new]
    #[pyo3(signature = (roots, follow_symlinks = false, batch_size = 256, concurrency = 0, exclude = Vec::new(), own = Vec::new()))]
    fn new(
        roots: Vec<(PathBuf, PathBuf)>,
        follow_symlinks: bool,
        batch_size: usize,
        concurrency: usize,
        exclude: Vec<String>,
        own: Vec<(u64, u64)>,
    ) -> PyResult<Self> {
        let roots = roots
            .into_iter()
            .map(|(path, display)| Root {
                path,
                display: display.into_os_string(),
            })
            .collect();
        let filter = Filter {
            exclude: Exclude::new(&exclude).map_err(PyValueError::new_err)?,
            own,
        };
        Ok(Walker {
            inner: CoreWalker::start(roots, follow_symlinks, batch_size, concurrency, filter),
        })
    }
}

/// Whether `pattern` is a valid --exclude glob (ValueError if not).
#[pyfunction]
fn check_exclude(patterns: Vec<String>) -> PyResult<()> {
    Exclude::new(&patterns)
        .map(|_| ())
        .map_err(PyValueError::new_err)
}

fn problem<'py>(
    py: Python<'py>,
    e: &Entry,
    reason: &str,
    message: &str,
) -> PyResult<Bound<'py, PyTuple>> {
    (e.path.as_os_str(), e.display.as_os_str(), reason, message).into_pyobject(py)
}

fn read_guarded(schema: &CoreSchema, path: &Path, out: &mut Collected) -> Result<Outcome, Error> {
    // The reader is meant to be panic-free; should a bug prove otherwise,
    // it costs one file an error, not the run.
    match catch_unwind(AssertUnwindSafe(|| reader::read_path(schema, path, out))) {
        Ok(r) => r,
        Err(_) => Err(Error::Malformed(
            "internal error in the reader (please report this file)".into(),
        )),
    }
}

thread_local! {
    /// Each reading thread keeps its buffers from batch to batch.
    static SCRATCH: std::cell::RefCell<Collected> = std::cell::RefCell::new(Collected::default());
}

type Failure = (Entry, &'static str, String);

type BatchResult<'py> = (Option<Bound<'py, PyList>>, Bound<'py, PyList>, usize, u64);

/// Take the walker's next batch, read every file of it and fold its
/// records into `aggregator`: one call, one hand-off to a worker thread.
/// Returns None when the walk is over, else (dicts, problems, indexed,
/// warnings): the per-file records as dicts when `dicts` is true (else
/// None), and (path, display, reason, message) for every entry that gave
/// no record; reason "unsupported" or "malformed" asks for the pydicom
/// fallback. Reason "warning" is an indexed file whose record has values
/// written as null because they did not parse.
#[pyfunction]
#[pyo3(signature = (schema, walker, aggregator, dicts = false))]
fn read_batch<'py>(
    py: Python<'py>,
    schema: Py<Schema>,
    walker: &Bound<'py, Walker>,
    aggregator: &Bound<'py, Aggregator>,
    dicts: bool,
) -> PyResult<Option<BatchResult<'py>>> {
    let core = schema.get().inner.clone();
    let agg = aggregator.get();
    let walker = walker.get();
    let Some((items, failures, indexed, warnings)) = py.detach(move || {
        let entries = walker.inner.next_batch()?;
        let mut items: Vec<(OsString, Record)> = Vec::with_capacity(entries.len());
        let mut failures: Vec<Failure> = Vec::new();
        let mut warnings = 0u64;
        SCRATCH.with(|scratch| {
            let out = &mut *scratch.borrow_mut();
            for e in entries {
                let r = match &e.found {
                    Found::File => read_guarded(&core, &e.path, out),
                    Found::Skip(reason, msg) | Found::Fail(reason, msg) => {
                        let (reason, msg) = (*reason, msg.clone());
                        failures.push((e, reason, msg));
                        continue;
                    }
                };
                match r {
                    Ok(Outcome::Indexed(rec)) => {
                        if rec.warnings > 0 {
                            // Indexed, and listed too: the user can see which file.
                            warnings += rec.warnings as u64;
                            let message = format!(
                                "{} value(s) present but not parsable, written as null",
                                rec.warnings
                            );
                            let listed = Entry {
                                path: e.path.clone(),
                                display: e.display.clone(),
                                found: Found::File,
                            };
                            failures.push((listed, "warning", message));
                        }
                        items.push((e.display, rec));
                    }
                    Ok(Outcome::Skipped { reason, message }) => failures.push((e, reason, message)),
                    Err(err) => {
                        let reason = err.reason();
                        failures.push((e, reason, err.to_string()));
                    }
                }
            }
        });
        let indexed = items.len();
        if !dicts {
            agg.add_all(std::mem::take(&mut items));
        }
        Some((items, failures, indexed, warnings))
    }) else {
        return Ok(None);
    };
    let problems = PyList::empty(py);
    for (e, reason, message) in &failures {
        problems.append(problem(py, e, reason, message)?)?;
    }
    let out = if dicts {
        let schema = schema.get();
        let list = PyList::empty(py);
        for (path, rec) in &items {
            list.append(record_dict(py, schema, rec, path, None)?)?;
        }
        py.detach(|| agg.add_all(items));
        Some(list)
    } else {
        None
    };
    Ok(Some((out, problems, indexed, warnings)))
}

/// Read one file: ("indexed", record) or (reason, message).
#[pyfunction]
fn read_file<'py>(
    py: Python<'py>,
    schema: Py<Schema>,
    path: PathBuf,
    display: PathBuf,
) -> PyResult<Bound<'py, PyTuple>> {
    let core = schema.get().inner.clone();
    let r = py.detach(|| read_guarded(&core, &path, &mut Collected::default()));
    match r {
        Ok(Outcome::Indexed(rec)) => {
            let d = record_dict(py, schema.get(), &rec, display.as_os_str(), None)?;
            ("indexed", d, rec.warnings).into_pyobject(py)
        }
        Ok(Outcome::Skipped { reason, message }) => (reason, message, 0u32).into_pyobject(py),
        Err(e) => (e.reason(), e.to_string(), 0u32).into_pyobject(py),
    }
}

fn value_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Str(s) => PyString::new(py, s).into_any(),
        Value::Num(n) => n.into_pyobject(py)?.into_any(),
        Value::Nums(n) => n.into_pyobject(py)?.into_any(),
        Value::Int(n) => n.into_pyobject(py)?.into_any(),
        Value::Ints(n) => n.into_pyobject(py)?.into_any(),
        Value::Strs(n) => n.into_pyobject(py)?.into_any(),
        Value::Computed => py.None().into_bound(py),
    })
}

fn folder_of(path: &OsStr) -> &OsStr {
    let b = path.as_bytes();
    match b.iter().rposition(|&c| c == b'/') {
        Some(0) => OsStr::new("/"),
        Some(i) => OsStr::from_bytes(&b[..i]),
        None => OsStr::new("."),
    }
}

/// What only a subseries record has.
struct Subseries<'a> {
    instances: u64,
    links: &'a Links,
}

/// A record as a dict: per-file when `sub` is None, else subseries.
fn record_dict<'py>(
    py: Python<'py>,
    schema: &Schema,
    rec: &Record,
    path: &OsStr,
    sub: Option<Subseries<'_>>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (i, f) in FIELDS.iter().enumerate() {
        let skip = match f.scope {
            Scope::Subseries => sub.is_none(),
            Scope::Instance => sub.is_some(),
            Scope::Both => false,
        };
        if skip {
            continue;
        }
        let key = schema.names[i].bind(py);
        match f.kind {
            Kind::Count => d.set_item(key, sub.as_ref().map(|s| s.instances))?,
            Kind::ReferenceSeries => d.set_item(key, sub.as_ref().map(|s| &s.links.series))?,
            Kind::ReferenceModality => {
                d.set_item(key, sub.as_ref().map(|s| &s.links.modalities))?
            }
            Kind::Path => d.set_item(key, path)?,
            Kind::Folder => d.set_item(key, folder_of(path))?,
            _ => d.set_item(key, value_py(py, &rec.values[i])?)?,
        }
    }
    for (j, v) in rec.extras.iter().enumerate() {
        d.set_item(schema.names[FIELDS.len() + j].bind(py), value_py(py, v)?)?;
    }
    Ok(d)
}

/// A per-file record made by the pydicom fallback, back into a Record.
fn record_from_dict(schema: &CoreSchema, d: &Bound<'_, PyDict>) -> PyResult<Record> {
    let get = |name: &str| -> PyResult<Option<Bound<'_, PyAny>>> { d.get_item(name) };
    let typed = |v: Option<Bound<'_, PyAny>>, like: &Value| -> PyResult<Value> {
        let Some(v) = v.filter(|v| !v.is_none()) else {
            return Ok(match like {
                Value::Str(_) => Value::Str(String::new()),
                Value::Num(_) => Value::Num(None),
                Value::Nums(_) => Value::Nums(None),
                Value::Int(_) => Value::Int(None),
                Value::Ints(_) => Value::Ints(None),
                Value::Strs(_) => Value::Strs(None),
                Value::Computed => Value::Computed,
            });
        };
        Ok(match like {
            Value::Str(_) => Value::Str(v.extract()?),
            Value::Num(_) => Value::Num(Some(v.extract()?)),
            Value::Nums(_) => Value::Nums(Some(v.extract()?)),
            Value::Int(_) => Value::Int(Some(v.extract()?)),
            Value::Ints(_) => Value::Ints(Some(v.extract()?)),
            Value::Strs(_) => Value::Strs(Some(v.extract()?)),
            Value::Computed => Value::Computed,
        })
    };
    let mut values = Vec::with_capacity(FIELDS.len());
    for f in FIELDS {
        let like = match f.kind {
            Kind::Number => Value::Num(None),
            Kind::Numbers => Value::Nums(None),
            Kind::Count
            | Kind::Folder
            | Kind::Path
            | Kind::ReferenceSeries
            | Kind::ReferenceModality => Value::Computed,
            _ => Value::Str(String::new()),
        };
        values.push(if matches!(like, Value::Computed) {
            like
        } else {
            typed(get(f.name)?, &like)?
        });
    }
    let mut extras = Vec::with_capacity(schema.extras.len());
    for e in &schema.extras {
        extras.push(typed(get(&e.name)?, &Value::extra_blank(&e.vr, e.multi))?);
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
        py.detach(|| {
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
        py.detach(|| lock(&self.inner).needs_representative())
    }

    /// Fold in another aggregate of the same schema (which is left as it
    /// was): the result is the same whatever the split and the order.
    fn merge(&self, py: Python<'_>, other: &Bound<'_, Aggregator>) -> PyResult<()> {
        let other = other.get();
        py.detach(|| {
            let theirs = lock(&other.inner).clone();
            self.change(|core| core.merge(theirs))
        })
        .map_err(agg_err)
    }

    /// The aggregate as bytes (canonical: equal aggregates give equal
    /// bytes), for `from_bytes`.
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let data = py.detach(|| lock(&self.inner).to_bytes());
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
        let core = py
            .detach(|| Core::from_bytes(sigs, data))
            .map_err(agg_err)?;
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

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Schema>()?;
    m.add_class::<Walker>()?;
    m.add_class::<Aggregator>()?;
    m.add_function(wrap_pyfunction!(read_batch, m)?)?;
    m.add_function(wrap_pyfunction!(read_file, m)?)?;
    m.add_function(wrap_pyfunction!(check_exclude, m)?)?;
    m.add("FIELDS", field_table(m.py())?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    crate::testbytes::register(m)?;
    Ok(())
}
