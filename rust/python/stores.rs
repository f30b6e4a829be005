//! Object stores at the Python boundary: `Stores` (the clients of a run
//! and how they reach the clouds), its listing with each object's change
//! key, and the download the pydicom fallback reads from.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;

use crate::pipeline::lock;
use crate::sources::objects::{self, Config, Url};
use crate::sources::{Entry, Found};

/// The object stores of a run (s3://, gs://, az://): credentials and
/// endpoints from each cloud's environment and config files.
/// `anonymous`: unsigned requests (public buckets); `first_bytes`: the
/// first ranged GET of each object; `retries`: of a failed request.
#[pyclass(frozen, module = "fastindex._native")]
pub struct Stores {
    pub inner: Arc<objects::Stores>,
}

/// (url, size, etag, last_modified) of one listed object.
pub type Listed = (String, u64, Option<String>, String);

fn os_error(e: std::io::Error) -> PyErr {
    PyOSError::new_err(e.to_string())
}

fn url(s: &str) -> PyResult<Url> {
    Url::parse(s).ok_or_else(|| {
        PyValueError::new_err(format!("not an object URL (s3://, gs://, az://): {s}"))
    })
}

impl Stores {
    /// The entries of objects listed before: (url, size, etag,
    /// last_modified) each.
    pub fn entries(&self, objects: Vec<Listed>) -> PyResult<Vec<Entry>> {
        objects
            .into_iter()
            .map(|(url, size, etag, modified)| {
                self.inner
                    .entry(&url, size, etag, modified)
                    .map_err(os_error)
            })
            .collect()
    }

    /// The listing of `urls`.
    pub fn listing(&self, urls: &[String]) -> PyResult<objects::Listing> {
        let urls = urls.iter().map(|u| url(u)).collect::<PyResult<Vec<_>>>()?;
        Ok(objects::Listing::new(self.inner.clone(), &urls))
    }
}

#[pymethods]
impl Stores {
    #[new]
    #[pyo3(signature = (*, anonymous = false, first_bytes = 65536, retries = 10))]
    fn new(anonymous: bool, first_bytes: u64, retries: usize) -> PyResult<Self> {
        if first_bytes == 0 {
            return Err(PyValueError::new_err("first_bytes must be at least 1"));
        }
        let config = Config {
            anonymous,
            first_bytes,
            retries,
        };
        Ok(Stores {
            inner: objects::Stores::new(config).map_err(os_error)?,
        })
    }

    /// The objects under `url` (or the one object it names), as listed:
    /// an iterator of (url, size, etag, last_modified), the change key of
    /// each. Raises OSError (with the server's message) when the URL
    /// cannot be listed, or names nothing.
    fn list(&self, url: String) -> PyResult<Listing> {
        Ok(Listing {
            inner: Mutex::new(self.listing(&[url])?),
        })
    }

    /// The objects under each of `urls` as a run lists them (a URL inside
    /// another one given is listed once, as part of it), what cannot be
    /// listed included: an iterator of (display, (url, size, etag,
    /// last_modified) or None, reason or None, message or None), an
    /// object or an entry listed with its reason (`unreadable`).
    fn entries_of(&self, urls: Vec<String>) -> PyResult<Entries> {
        Ok(Entries {
            inner: Mutex::new(self.listing(&urls)?),
        })
    }

    /// The first `limit` bytes of the object at `url` (all of it when
    /// smaller) written to the file `dest`; returns how many.
    fn download(&self, py: Python<'_>, url: String, dest: PathBuf, limit: u64) -> PyResult<u64> {
        let stores = self.inner.clone();
        super::release(py, move || stores.download(&url, &dest, limit)).map_err(os_error)
    }
}

/// See `Stores.list`.
#[pyclass(frozen, module = "fastindex._native")]
pub struct Listing {
    inner: Mutex<objects::Listing>,
}

#[pymethods]
impl Listing {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Listed>> {
        let next = super::release(py, || lock(&self.inner).next());
        let Some(entry) = next else { return Ok(None) };
        match (entry.found, entry.object) {
            (Found::File, Some(o)) => Ok(Some((
                entry.display.to_string_lossy().into_owned(),
                o.size,
                o.etag.clone(),
                o.last_modified.clone(),
            ))),
            (Found::Fail(_, message) | Found::Skip(_, message), _) => Err(PyOSError::new_err(
                format!("{}: {message}", entry.display.to_string_lossy()),
            )),
            (Found::File, None) => Err(PyOSError::new_err("a listed object without its key")),
        }
    }
}

/// See `Stores.entries_of`.
#[pyclass(frozen, module = "fastindex._native")]
pub struct Entries {
    inner: Mutex<objects::Listing>,
}

/// One entry of `Entries`: an object, or a URL listed with its reason.
type Given = (String, Option<Listed>, Option<&'static str>, Option<String>);

#[pymethods]
impl Entries {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Given>> {
        let next = super::release(py, || lock(&self.inner).next());
        let Some(entry) = next else { return Ok(None) };
        let display = entry.display.to_string_lossy().into_owned();
        match (entry.found, entry.object) {
            (Found::File, Some(o)) => {
                let listed = (
                    display.clone(),
                    o.size,
                    o.etag.clone(),
                    o.last_modified.clone(),
                );
                Ok(Some((display, Some(listed), None, None)))
            }
            (Found::Fail(reason, message) | Found::Skip(reason, message), _) => {
                Ok(Some((display, None, Some(reason), Some(message))))
            }
            (Found::File, None) => Err(PyOSError::new_err("a listed object without its key")),
        }
    }
}

/// Is `path` an object-store URL (s3://, gs://, az://)?
#[pyfunction]
pub fn is_url(path: &str) -> bool {
    objects::is_url(path)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Stores>()?;
    m.add_class::<Listing>()?;
    m.add_class::<Entries>()?;
    m.add_function(wrap_pyfunction!(is_url, m)?)?;
    Ok(())
}
