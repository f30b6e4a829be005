//! Objects of object stores (`s3://`, `gs://`, `az://`), read by ranged
//! GETs of their headers only.
//!
//! The HTTP, signing, retries (with backoff, on 5xx, 429, 503 SlowDown,
//! connection resets and bodies cut short) and each cloud's credential
//! chain are the arrow-rs `object_store` crate's; this module adds what an
//! index needs on top:
//!
//! - [`Stores`]: one client per bucket, built from the cloud's environment
//!   (`AWS_*`, `GOOGLE_*`, `AZURE_*`; `~/.aws` profiles, see [`profile`]),
//!   on a small tokio runtime owned by the run;
//! - [`Listing`]: the objects under each URL, streamed page by page (the
//!   crate paginates), each an [`Entry`] carrying its change key
//!   ([`Object`]: ETag, size, last-modified);
//! - [`Objects`] (in `fetch`): the [`Fetch`](super::Fetch) that serves
//!   an object's first bytes from one ranged GET started ahead of the
//!   readers, and more ranges only when the header goes on.
//!
//! Display paths are URLs: `s3://bucket/key`.

mod fetch;
pub mod profile;

pub use fetch::Objects;

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{BoxStream, StreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::path::Path;
use object_store::{BackoffConfig, ObjectMeta, ObjectStore, ObjectStoreExt, RetryConfig};

use super::{Entry, Found};
use crate::outcome;

/// The URL schemes read as object stores.
pub const SCHEMES: [&str; 3] = ["s3", "gs", "az"];

/// Is `path` an object-store URL (`s3://`, `gs://`, `az://`)?
pub fn is_url(path: &str) -> bool {
    Url::parse(path).is_some()
}

/// An object-store URL: scheme, bucket (container), key or prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub scheme: &'static str,
    pub bucket: String,
    /// Without leading or trailing slashes; "" for the whole bucket.
    pub key: String,
}

impl Url {
    pub fn parse(s: &str) -> Option<Url> {
        let (scheme, rest) = s.split_once("://")?;
        let scheme = SCHEMES.into_iter().find(|k| *k == scheme)?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return None;
        }
        let key: Vec<&str> = key.split('/').filter(|p| !p.is_empty()).collect();
        Some(Url {
            scheme,
            bucket: bucket.to_owned(),
            key: key.join("/"),
        })
    }

    /// `parse`, or an InvalidInput error naming what is not a URL.
    pub fn required(s: &str) -> io::Result<Url> {
        Url::parse(s).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not an object URL: {s}"),
            )
        })
    }

    /// The URL of an object of this bucket.
    fn of(&self, location: &Path) -> String {
        format!("{}://{}/{}", self.scheme, self.bucket, location)
    }

    /// Is `other` this URL or below it (whole path segments)?
    fn contains(&self, other: &Url) -> bool {
        self.scheme == other.scheme
            && self.bucket == other.bucket
            && (self.key.is_empty()
                || other.key == self.key
                || other.key.starts_with(&format!("{}/", self.key)))
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.bucket)?;
        if !self.key.is_empty() {
            write!(f, "/{}", self.key)?;
        }
        Ok(())
    }
}

/// How the stores are reached.
#[derive(Clone, Debug)]
pub struct Config {
    /// Unsigned requests (public buckets): `--no-sign-request`.
    pub anonymous: bool,
    /// Bytes asked for by the first ranged GET of each object.
    pub first_bytes: u64,
    /// Retries of a request that failed (5xx, 429, a reset connection, a
    /// body cut short) before the object is `unreadable`.
    pub retries: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            anonymous: false,
            first_bytes: 64 * 1024,
            retries: 10,
        }
    }
}

/// One listed object: where it is, and its change key (ETag, size,
/// last-modified) as the listing gave it.
pub struct Object {
    pub store: Arc<dyn ObjectStore>,
    pub location: Path,
    pub size: u64,
    pub etag: Option<String>,
    /// RFC 3339, UTC.
    pub last_modified: String,
    /// Its first range, when the ahead stage requested it: held by the
    /// object, so that an entry dropped unread (a stopped run) lets go of
    /// what its range holds.
    pub(crate) ahead: fetch::Requested,
}

impl fmt::Debug for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Object")
            .field("location", &self.location)
            .field("size", &self.size)
            .field("etag", &self.etag)
            .field("last_modified", &self.last_modified)
            .finish()
    }
}

impl Object {
    fn new(store: Arc<dyn ObjectStore>, meta: ObjectMeta) -> Object {
        Object {
            store,
            location: meta.location,
            size: meta.size,
            etag: meta.e_tag,
            last_modified: meta.last_modified.to_rfc3339(),
            ahead: Default::default(),
        }
    }
}

/// The object stores of a run: a client per bucket, and the runtime their
/// requests run on.
pub struct Stores {
    runtime: tokio::runtime::Runtime,
    pub config: Config,
    buckets: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

/// An object store's error as an I/O error, with the server's message.
pub(crate) fn io_error(e: object_store::Error) -> io::Error {
    match e {
        object_store::Error::NotFound { .. } => io::Error::new(
            io::ErrorKind::NotFound,
            format!("not found (deleted since it was listed?): {e}"),
        ),
        e => io::Error::other(e.to_string()),
    }
}

impl Stores {
    pub fn new(config: Config) -> io::Result<Arc<Stores>> {
        // Two threads drive every request: they only wait on sockets.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fastindex-net")
            .enable_all()
            .build()?;
        Ok(Arc::new(Stores {
            runtime,
            config,
            buckets: Mutex::new(HashMap::new()),
        }))
    }

    /// Run a request to its end from a thread outside the runtime.
    pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// Run a request on the runtime's threads and wait for it here.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = io::Result<T>> + Send + 'static,
    ) -> io::Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv()
            .unwrap_or_else(|_| Err(io::Error::other("the request was dropped")))
    }

    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime.handle()
    }

    /// The client of `url`'s bucket, made once.
    pub fn bucket(&self, url: &Url) -> io::Result<Arc<dyn ObjectStore>> {
        let name = format!("{}://{}", url.scheme, url.bucket);
        let mut buckets = crate::pipeline::lock(&self.buckets);
        if let Some(store) = buckets.get(&name) {
            return Ok(store.clone());
        }
        let store = self
            .build(url)
            .map_err(|e| io::Error::other(format!("{name}: {e}")))?;
        buckets.insert(name, store.clone());
        Ok(store)
    }

    fn build(&self, url: &Url) -> Result<Arc<dyn ObjectStore>, String> {
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: self.config.retries,
            retry_timeout: Duration::from_secs(180),
        };
        let anonymous = self.config.anonymous;
        let store: Arc<dyn ObjectStore> = match url.scheme {
            "s3" => {
                let mut b = profile::apply(AmazonS3Builder::from_env())?;
                // An endpoint given as http:// (a local S3-compatible
                // server) is used as given: no separate allow-http flag.
                let endpoint = [AmazonS3ConfigKey::S3Endpoint, AmazonS3ConfigKey::Endpoint]
                    .iter()
                    .find_map(|k| b.get_config_value(k));
                let http = endpoint.is_some_and(|e| e.starts_with("http://"));
                if http {
                    b = b.with_allow_http(true);
                }
                b = b
                    .with_bucket_name(&url.bucket)
                    .with_retry(retry)
                    .with_skip_signature(anonymous);
                Arc::new(b.build().map_err(|e| e.to_string())?)
            }
            "gs" => Arc::new(
                GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(&url.bucket)
                    .with_retry(retry)
                    .with_skip_signature(anonymous)
                    .build()
                    .map_err(|e| e.to_string())?,
            ),
            _ => Arc::new(
                MicrosoftAzureBuilder::from_env()
                    .with_container_name(&url.bucket)
                    .with_retry(retry)
                    .with_skip_signature(anonymous)
                    .build()
                    .map_err(|e| e.to_string())?,
            ),
        };
        Ok(store)
    }

    /// The object at `url`, with its change key (a HEAD request).
    pub fn head(&self, url: &Url) -> io::Result<Object> {
        let store = self.bucket(url)?;
        let location = Path::from(url.key.as_str());
        let meta = self.block_on(store.head(&location)).map_err(io_error)?;
        Ok(Object::new(store, meta))
    }

    /// The entry of the object at `url`, as it is now (a HEAD request).
    pub fn object_entry(&self, url: &str) -> io::Result<Entry> {
        let parsed = Url::required(url)?;
        let object = self.head(&parsed)?;
        Ok(object_entry(parsed.of(&object.location), object))
    }

    /// The entry of an object listed before (by `Listing`, kept by the
    /// caller): (url, size, ETag, last-modified).
    pub fn entry(
        &self,
        url: &str,
        size: u64,
        etag: Option<String>,
        last_modified: String,
    ) -> io::Result<Entry> {
        let parsed = Url::required(url)?;
        let object = Object {
            store: self.bucket(&parsed)?,
            // The URL as listed: its key is the location as displayed
            // (percent-encoded), not a name to encode again.
            location: Path::parse(parsed.key.as_str())
                .unwrap_or_else(|_| Path::from(parsed.key.as_str())),
            size,
            etag,
            last_modified,
            ahead: Default::default(),
        };
        Ok(object_entry(parsed.of(&object.location), object))
    }

    /// The first `limit` bytes of the object at `url` (all of it when
    /// smaller) into the file `dest`, streamed: what the pydicom fallback
    /// reads. Returns the bytes written.
    pub fn download(&self, url: &str, dest: &std::path::Path, limit: u64) -> io::Result<u64> {
        use std::io::Write;
        let parsed = Url::required(url)?;
        let object = self.head(&parsed)?;
        let mut out = io::BufWriter::new(std::fs::File::create(dest)?);
        let n = object.size.min(limit);
        if n > 0 {
            let options = object_store::GetOptions {
                range: Some((0..n).into()),
                if_match: object.etag.clone(),
                ..Default::default()
            };
            self.block_on(async {
                let got = object
                    .store
                    .get_opts(&object.location, options)
                    .await
                    .map_err(io_error)?;
                let mut stream = got.into_stream();
                while let Some(chunk) = stream.next().await {
                    out.write_all(&chunk.map_err(io_error)?)?;
                }
                io::Result::Ok(())
            })?;
        }
        out.flush()?;
        Ok(n)
    }
}

fn object_entry(url: String, object: Object) -> Entry {
    Entry {
        path: PathBuf::from(&url),
        display: OsString::from(url),
        found: Found::File,
        object: Some(Arc::new(object)),
    }
}

fn failed(url: &Url, message: String) -> Entry {
    let shown = url.to_string();
    Entry {
        path: PathBuf::from(&shown),
        display: OsString::from(shown),
        found: Found::Fail(outcome::UNREADABLE.name, message),
        object: None,
    }
}

/// The objects under each of the URLs, listed page by page as the readers
/// need them. A URL that names one object lists that object. What cannot
/// be listed (no such bucket, access denied, the listing cut off past its
/// retries) is an entry of its own, `unreadable` with the server's
/// message: the run goes on with the rest. A URL inside another one given
/// is listed once, as part of it.
pub struct Listing {
    stores: Arc<Stores>,
    roots: VecDeque<Url>,
    current: Option<Current>,
}

struct Current {
    url: Url,
    store: Arc<dyn ObjectStore>,
    stream: BoxStream<'static, object_store::Result<ObjectMeta>>,
    listed: u64,
}

impl Listing {
    pub fn new(stores: Arc<Stores>, urls: &[Url]) -> Listing {
        let mut roots: Vec<Url> = Vec::new();
        for (i, u) in urls.iter().enumerate() {
            // Inside another URL (the first given among equals wins).
            let covered = urls
                .iter()
                .enumerate()
                .any(|(j, other)| j != i && other.contains(u) && (other != u || j < i));
            if !covered {
                roots.push(u.clone());
            }
        }
        Listing {
            stores,
            roots: roots.into(),
            current: None,
        }
    }

    /// The URL names no prefix with objects: one object, or nothing.
    fn single(&self, url: &Url, store: &Arc<dyn ObjectStore>) -> Entry {
        if url.key.is_empty() {
            return failed(url, "the bucket holds no objects".into());
        }
        let location = Path::from(url.key.as_str());
        match self.stores.block_on(store.head(&location)) {
            Ok(meta) => object_entry(url.of(&meta.location), Object::new(store.clone(), meta)),
            Err(object_store::Error::NotFound { .. }) => {
                failed(url, "no object at or under this URL".into())
            }
            Err(e) => failed(url, e.to_string()),
        }
    }
}

impl Iterator for Listing {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        loop {
            let Some(cur) = self.current.as_mut() else {
                let url = self.roots.pop_front()?;
                let store = match self.stores.bucket(&url) {
                    Ok(store) => store,
                    Err(e) => return Some(failed(&url, e.to_string())),
                };
                let prefix = (!url.key.is_empty()).then(|| Path::from(url.key.as_str()));
                let stream = store.list(prefix.as_ref());
                self.current = Some(Current {
                    url,
                    store,
                    stream,
                    listed: 0,
                });
                continue;
            };
            match self.stores.block_on(cur.stream.next()) {
                Some(Ok(meta)) => {
                    cur.listed += 1;
                    let url = cur.url.of(&meta.location);
                    return Some(object_entry(url, Object::new(cur.store.clone(), meta)));
                }
                Some(Err(e)) => {
                    let cur = self.current.take()?;
                    let message = if cur.listed == 0 {
                        format!("could not be listed: {e}")
                    } else {
                        format!("the listing failed after {} objects: {e}", cur.listed)
                    };
                    return Some(failed(&cur.url, message));
                }
                None => {
                    let cur = self.current.take()?;
                    if cur.listed == 0 {
                        return Some(self.single(&cur.url, &cur.store));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_to_scheme_bucket_and_key() {
        let u = Url::parse("s3://b/a//c/").expect("a URL");
        assert_eq!(
            (u.scheme, u.bucket.as_str(), u.key.as_str()),
            ("s3", "b", "a/c")
        );
        assert_eq!(u.to_string(), "s3://b/a/c");
        assert_eq!(Url::parse("gs://b").expect("a URL").key, "");
        assert!(Url::parse("az://c/x").is_some());
        for not in ["http://b/x", "s3://", "s3:///x", "/data/s3://x", "archive"] {
            assert!(Url::parse(not).is_none(), "{not}");
        }
    }

    #[test]
    fn a_url_inside_another_is_listed_once() {
        let urls: Vec<Url> = [
            "s3://b/a/x",
            "s3://b/a",
            "s3://b/ab",
            "s3://b/a",
            "gs://b/a/x",
        ]
        .iter()
        .map(|u| Url::parse(u).expect("a URL"))
        .collect();
        let stores = Stores::new(Config::default()).expect("a runtime");
        let listing = Listing::new(stores, &urls);
        let kept: Vec<String> = listing.roots.iter().map(|u| u.to_string()).collect();
        assert_eq!(kept, ["s3://b/a", "s3://b/ab", "gs://b/a/x"]);
    }
}
