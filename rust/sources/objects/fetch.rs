//! Reading objects: the first ranged GET of each object is started by the
//! ahead stage as its batch leaves the listing, with `concurrency`
//! requests in flight; a reader takes the bytes when it comes to the
//! object, and asks for a further range only when the header goes on past
//! them (the reader's `NeedBytes`).
//!
//! Memory stays bounded: a request holds a permit from its start until a
//! reader has taken its bytes, so at most `concurrency` first ranges
//! (`first_bytes` each) are in flight or held at once; the requests
//! waiting for a permit are those of the batches queued in the pipeline
//! (small, and bounded by its queue). Permits are granted in listing
//! order (one task takes them, see `dispatch`), the order the readers
//! take the objects in, so the ranges held are always those of objects a
//! reader has taken or will take next: a reader waiting for its object's
//! range never waits for one that only a later object could give back.
//! A range belongs to its object (`Object::ahead`): an entry a stopped
//! run drops unread gives its permit back with it.
//!
//! The first GET asks for no particular version: its answer carries the
//! object's ETag and size as they are now (an object changed since the
//! listing is read as it is now). Each further range is pinned to that
//! ETag (If-Match): an object replaced while its header is read is
//! `unreadable`, with a message that says so, never a record made of two
//! versions.

use std::cell::RefCell;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex};

use bytes::Bytes;
use object_store::{GetOptions, ObjectStore};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

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

/// Where an object's first range stands.
enum State {
    /// Waiting for a permit.
    Waiting,
    /// Requested.
    InFlight,
    Done(io::Result<First>),
    /// Taken by its reader.
    Taken,
}

/// An object's first range, requested ahead: the ahead stage's request
/// and the reader meet here.
struct Slot {
    state: Mutex<State>,
    done: Condvar,
}

impl Slot {
    fn set(&self, state: State) {
        *lock(&self.state) = state;
        self.done.notify_all();
    }
}

/// Where an object's first range is, once requested ahead.
#[derive(Default)]
pub(crate) struct Requested(Mutex<Option<Arc<Slot>>>);

/// An object whose first range is wanted, and where it goes.
type Request = (Arc<Object>, Arc<Slot>);

/// The fetch of a run whose PATHs may hold objects: objects by ranged
/// GETs, local files as [`Files`] reads them.
pub struct Objects {
    stores: Arc<Stores>,
}

impl Objects {
    pub fn new(stores: Arc<Stores>) -> Objects {
        Objects { stores }
    }

    /// The first range of `object`: requested ahead (waited for), or
    /// now.
    fn first(&self, object: &Arc<Object>) -> io::Result<First> {
        let slot = lock(&object.ahead.0).take();
        if let Some(slot) = slot {
            let mut state = lock(&slot.state);
            loop {
                match std::mem::replace(&mut *state, State::Taken) {
                    State::Done(first) => return first,
                    waiting @ (State::Waiting | State::InFlight) => {
                        *state = waiting;
                        state = slot.done.wait(state).unwrap_or_else(|e| e.into_inner());
                    }
                    State::Taken => break,
                }
            }
        }
        self.stores.run(first_range(
            object.clone(),
            self.stores.config.first_bytes,
            None,
        ))
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
                let first = self.first(object)?;
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
                let (object, etag) = (object.clone(), h.etag.clone());
                let (_, more) = self
                    .stores
                    .run(async move { get(&*object.store, &object, have..end, etag).await })?;
                h.bytes.extend_from_slice(&more);
            }
            Ok(Box::new(Prefix::new(h.bytes.clone(), h.size)) as Box<dyn Input>)
        })
    }

    fn ahead(&self, concurrency: usize) -> Option<Box<dyn Ahead>> {
        let handle = self.stores.handle().clone();
        let requests = (concurrency > 0).then(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            handle.spawn(dispatch(
                rx,
                Arc::new(Semaphore::new(concurrency)),
                self.stores.config.first_bytes,
            ));
            tx
        });
        Some(Box::new(Requests {
            requests,
            concurrency,
            files: None,
        }))
    }
}

/// Start the first GET of each object sent, in the order sent, each once
/// a permit is free. One task takes the permits, so they go in listing
/// order (tasks of their own would take them in the order the runtime
/// happens to poll them, and a later object could hold the last permit
/// while a reader waits for an earlier one).
async fn dispatch(
    mut rx: mpsc::UnboundedReceiver<Request>,
    permits: Arc<Semaphore>,
    first_bytes: u64,
) {
    while let Some((object, slot)) = rx.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        if Arc::strong_count(&object) == 1 {
            continue; // its entry is gone unread (a stopped run)
        }
        slot.set(State::InFlight);
        tokio::spawn(async move {
            // The permit goes back when a reader takes the bytes, or when
            // the entry is dropped unread (and the object with its slot).
            let first = first_range(object, first_bytes, Some(permit)).await;
            slot.set(State::Done(first));
        });
    }
}

/// The ahead stage: the first GET of each object of a batch, and the
/// local files' prefetch for the rest.
struct Requests {
    /// To the dispatching task; None: concurrency 0, nothing requested
    /// ahead.
    requests: Option<mpsc::UnboundedSender<Request>>,
    concurrency: usize,
    /// The local files' prefetch, started with the first local file.
    files: Option<Box<dyn Ahead>>,
}

impl Ahead for Requests {
    fn batch(&mut self, entries: &[Entry], stop: &AtomicBool) -> Result<(), String> {
        if self.files.is_none() && entries.iter().any(|e| e.object.is_none()) {
            self.files = prefetch::Prefetcher::start(self.concurrency)
                .map(|p| Box::new(p) as Box<dyn Ahead>);
        }
        if let Some(files) = self.files.as_mut() {
            files.batch(entries, stop)?;
        }
        let Some(requests) = &self.requests else {
            return Ok(());
        };
        for e in entries {
            let (Found::File, Some(object)) = (&e.found, &e.object) else {
                continue;
            };
            let slot = Arc::new(Slot {
                state: Mutex::new(State::Waiting),
                done: Condvar::new(),
            });
            *lock(&object.ahead.0) = Some(slot.clone());
            if requests.send((object.clone(), slot)).is_err() {
                return Err("the object requests' task is gone".into());
            }
        }
        Ok(())
    }

    /// The listing is over, not the reading: the requests go on, and end
    /// with the fetch (a request whose reader is gone drops its bytes).
    fn finish(self: Box<Self>) -> Result<(), String> {
        self.files.map_or(Ok(()), |f| f.finish())
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{ObjectStoreExt, PutPayload};

    use super::*;
    use crate::aggregate::Aggregator;
    use crate::dicom::elements::Encoding;
    use crate::extract::schema::Schema;
    use crate::pipeline::{Options, Pipeline};
    use crate::sources::objects::{Config, Object};
    use crate::tests::{ct, part10};

    /// `n` objects in memory, each a small CT header, as listed entries.
    fn objects(stores: &Stores, n: usize) -> Vec<Entry> {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let bytes = part10("1.2.840.10008.1.2.1", &ct(Encoding::EXPLICIT_LE));
        (0..n)
            .map(|i| {
                let location = Path::from(format!("p/{i}.dcm"));
                let meta = stores.block_on(async {
                    store
                        .put(&location, PutPayload::from(bytes.clone()))
                        .await
                        .expect("put");
                    store.head(&location).await.expect("head")
                });
                let object = Object::new(store.clone(), meta);
                let url = format!("s3://b/{}", object.location);
                Entry {
                    path: PathBuf::from(&url),
                    display: OsString::from(url),
                    found: Found::File,
                    object: Some(Arc::new(object)),
                }
            })
            .collect()
    }

    #[test]
    fn every_object_is_read_whatever_the_concurrency_and_the_readers() {
        // Fewer permits than a batch holds, one reader or several: a
        // reader never waits for a permit that only a later object holds.
        for (concurrency, jobs) in [(1, 1), (3, 2), (64, 2), (0, 1)] {
            let stores = Stores::new(Config::default()).expect("a runtime");
            let entries = objects(&stores, 300);
            let agg = Arc::new(Mutex::new(Aggregator::default()));
            let options = Options {
                jobs,
                batch_size: 256,
                concurrency,
                records: false,
            };
            let run = Pipeline::start(
                Box::new(entries.into_iter()),
                Arc::new(Objects::new(stores)),
                Arc::new(Schema::new(Vec::new()).expect("schema")),
                Some(agg.clone()),
                &options,
            );
            let indexed = AtomicUsize::new(0);
            for b in run {
                let b = b.expect("complete");
                assert!(b.problems.is_empty(), "{:?}", b.problems);
                indexed.fetch_add(b.indexed, Ordering::Relaxed);
            }
            assert_eq!(
                indexed.load(Ordering::Relaxed),
                300,
                "concurrency {concurrency}, jobs {jobs}"
            );
        }
    }

    #[test]
    fn stopping_mid_run_leaves_no_reader_waiting() {
        // One permit, two readers: when the run stops, the ranges no
        // reader will take keep their permits; a reader still going must
        // not wait for one.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for _ in 0..20 {
                let stores = Stores::new(Config::default()).expect("a runtime");
                let entries = objects(&stores, 2000);
                let options = Options {
                    jobs: 2,
                    batch_size: 16,
                    concurrency: 1,
                    records: false,
                };
                let mut run = Pipeline::start(
                    Box::new(entries.into_iter()),
                    Arc::new(Objects::new(stores)),
                    Arc::new(Schema::new(Vec::new()).expect("schema")),
                    Some(Arc::new(Mutex::new(Aggregator::default()))),
                    &options,
                );
                let _ = run.next();
                drop(run); // stops and joins every thread
            }
            let _ = done_tx.send(());
        });
        assert!(
            done_rx
                .recv_timeout(std::time::Duration::from_secs(120))
                .is_ok(),
            "a stopped run did not end"
        );
    }
}
