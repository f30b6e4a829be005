//! Reading objects: the first ranged GET of each object is started by the
//! ahead stage as its batch leaves the listing, with `concurrency`
//! requests in flight; a reader takes the bytes when it comes to the
//! object, and asks for a further range only when the header goes on past
//! them (the reader's `NeedBytes`).
//!
//! Memory stays bounded: a request holds a permit of a fair semaphore
//! from its start until a reader has taken its bytes, so at most
//! `concurrency` first ranges (`first_bytes` each) are in flight or held
//! at once; the requests waiting for a permit are those of the batches
//! queued in the pipeline (small, and bounded by its queue). Permits are
//! granted in listing order, the order the readers take the objects in,
//! so the oldest object holding one is always one a reader will take.
//!
//! The first GET asks for no particular version: its answer carries the
//! object's ETag and size as they are now (an object changed since the
//! listing is read as it is now). Each further range is pinned to that
//! ETag (If-Match): an object replaced while its header is read is
//! `unreadable`, with a message that says so, never a record made of two
//! versions.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use object_store::{GetOptions, ObjectStore};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::{io_error, Object, Stores};
use crate::dicom::input::Input;
use crate::pipeline::lock;
use crate::sources::{prefetch, Ahead, Entry, Fetch, Files, Found, Prefix};

/// The first range of an object, as a reader takes it.
struct First {
    bytes: Bytes,
    /// The object as the GET found it.
    size: u64,
    etag: Option<String>,
    /// Released once a reader has the bytes.
    _permit: Option<OwnedSemaphorePermit>,
}

type Pending = oneshot::Receiver<io::Result<First>>;

/// The fetch of a run whose PATHs may hold objects: objects by ranged
/// GETs, local files as [`Files`] reads them.
pub struct Objects {
    stores: Arc<Stores>,
    /// First ranges requested ahead, by URL, until a reader takes them.
    pending: Arc<Mutex<HashMap<PathBuf, Pending>>>,
}

impl Objects {
    pub fn new(stores: Arc<Stores>) -> Objects {
        Objects {
            stores,
            pending: Arc::default(),
        }
    }

    /// The first range of `object`: requested ahead, or now.
    fn first(&self, entry: &Entry, object: &Arc<Object>) -> io::Result<First> {
        let ahead = lock(&self.pending).remove(&entry.path);
        match ahead {
            Some(rx) => rx
                .blocking_recv()
                .unwrap_or_else(|_| Err(io::Error::other("the request was dropped"))),
            None => self
                .stores
                .block_on(first_range(object.clone(), self.stores.config.first_bytes, None)),
        }
    }
}

/// GET the first `n` bytes of `object` (all of it when smaller).
async fn first_range(
    object: Arc<Object>,
    n: u64,
    permit: Option<OwnedSemaphorePermit>,
) -> io::Result<First> {
    if object.size == 0 {
        // No range of an empty object can be asked for: nothing to read.
        return Ok(First {
            bytes: Bytes::new(),
            size: 0,
            etag: object.etag.clone(),
            _permit: permit,
        });
    }
    let got = get(&*object.store, &object, 0..n.min(object.size), None).await?;
    Ok(First {
        bytes: got.1,
        size: got.0.size,
        etag: got.0.e_tag,
        _permit: permit,
    })
}

/// One ranged GET, pinned to `etag` when given.
async fn get(
    store: &dyn ObjectStore,
    object: &Object,
    range: std::ops::Range<u64>,
    etag: Option<String>,
) -> io::Result<(object_store::ObjectMeta, Bytes)> {
    let options = GetOptions {
        range: Some(range.into()),
        if_match: etag,
        ..Default::default()
    };
    let got = store
        .get_opts(&object.location, options)
        .await
        .map_err(|e| match e {
            object_store::Error::Precondition { .. } => io::Error::other(format!(
                "the object changed while its header was read (its ETag is no longer the one read first): {e}"
            )),
            e => io_error(e),
        })?;
    let meta = got.meta.clone();
    let bytes = got.bytes().await.map_err(io_error)?;
    Ok((meta, bytes))
}

/// What a reader thread holds of the object it is reading: the header's
/// bytes so far, to be extended by the next range.
struct Held {
    url: PathBuf,
    bytes: Vec<u8>,
    size: u64,
    etag: Option<String>,
}

thread_local! {
    static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
}

impl Fetch for Objects {
    fn open(&self, entry: &Entry, upto: u64) -> io::Result<Box<dyn Input>> {
        let Some(object) = &entry.object else {
            return Files.open(entry, upto);
        };
        HELD.with(|held| {
            let mut held = held.borrow_mut();
            let same = held.as_ref().is_some_and(|h| h.url == entry.path);
            if upto == 0 || !same {
                // A new object: drop the last one's bytes first.
                *held = None;
                let first = self.first(entry, object)?;
                *held = Some(Held {
                    url: entry.path.clone(),
                    bytes: first.bytes.to_vec(),
                    size: first.size,
                    etag: first.etag,
                });
            }
            let Some(h) = held.as_mut() else {
                return Err(io::Error::other("no bytes held"));
            };
            let have = h.bytes.len() as u64;
            if upto > have && have < h.size {
                // Twice as much as held at least: a long header takes few
                // requests.
                let end = upto.max(have.saturating_mul(2)).min(h.size);
                let (_, more) = self.stores.block_on(get(
                    &*object.store,
                    object,
                    have..end,
                    h.etag.clone(),
                ))?;
                h.bytes.extend_from_slice(&more);
            }
            Ok(Box::new(Prefix::new(h.bytes.clone(), h.size)) as Box<dyn Input>)
        })
    }

    fn ahead(&self, concurrency: usize) -> Option<Box<dyn Ahead>> {
        Some(Box::new(Requests {
            handle: self.stores.handle().clone(),
            permits: (concurrency > 0).then(|| Arc::new(Semaphore::new(concurrency))),
            first_bytes: self.stores.config.first_bytes,
            pending: self.pending.clone(),
            concurrency,
            files: None,
        }))
    }
}

/// The ahead stage: the first GET of each object of a batch, and the
/// local files' prefetch for the rest.
struct Requests {
    handle: tokio::runtime::Handle,
    /// None: concurrency 0, nothing requested ahead.
    permits: Option<Arc<Semaphore>>,
    first_bytes: u64,
    pending: Arc<Mutex<HashMap<PathBuf, Pending>>>,
    concurrency: usize,
    /// The local files' prefetch, started with the first local file.
    files: Option<Box<dyn Ahead>>,
}

impl Ahead for Requests {
    fn batch(&mut self, entries: &[Entry], stop: &AtomicBool) -> Result<(), String> {
        if self.files.is_none() && entries.iter().any(|e| e.object.is_none()) {
            self.files = prefetch::Prefetcher::start(self.concurrency).map(|p| Box::new(p) as Box<dyn Ahead>);
        }
        if let Some(files) = self.files.as_mut() {
            files.batch(entries, stop)?;
        }
        let Some(permits) = &self.permits else {
            return Ok(());
        };
        for e in entries {
            let (Found::File, Some(object)) = (&e.found, &e.object) else {
                continue;
            };
            let (tx, rx) = oneshot::channel();
            lock(&self.pending).insert(e.path.clone(), rx);
            let (permits, object, n) = (permits.clone(), object.clone(), self.first_bytes);
            self.handle.spawn(async move {
                let Ok(permit) = permits.acquire_owned().await else {
                    return;
                };
                if tx.is_closed() {
                    return; // nobody will read it: the run stopped
                }
                // A reader that gave up drops the bytes, and the permit.
                let _ = tx.send(first_range(object, n, Some(permit)).await);
            });
        }
        Ok(())
    }

    /// The listing is over, not the reading: the requests go on, and end
    /// with the fetch (a request whose reader is gone drops its bytes).
    fn finish(self: Box<Self>) -> Result<(), String> {
        self.files.map_or(Ok(()), |f| f.finish())
    }
}
