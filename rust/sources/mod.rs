//! Where entries come from and how their bytes are fetched, as two seams:
//!
//! - a [`Listing`] is any iterator of [`Entry`]s that can move to a thread:
//!   a walked tree ([`walk::Walk`]), an explicit list ([`files`]), an
//!   object-store listing ([`objects::Listing`]); later a watched folder;
//! - a [`Fetch`] opens an entry as an [`Input`] for the reader: local files
//!   with pread ([`Files`]); objects by ranged GETs ([`objects::Objects`]).
//!   A fetch may also offer an
//!   [`Ahead`] stage that asks for bytes before the readers need them
//!   (files: [`prefetch`]), which the pipeline runs between the listing and
//!   the readers.
//!
//! A ranged input may hold only part of an object: asked for bytes past
//! it, it answers [`NeedBytes`] (see `source.rs`), and [`read_entry`]
//! fetches more and reads again. A file never does.

pub mod objects;
pub mod prefetch;
pub mod scan;
pub mod walk;

use std::cell::Cell;
use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use crate::dicom::elements::Collected;
use crate::dicom::error::{Error, Result};
use crate::dicom::input::{FileInput, Input, NeedBytes};
use crate::dicom::reader;
use crate::extract::record::Outcome;
use crate::extract::schema::Schema;

/// What the listing found at one path.
#[derive(Debug)]
pub enum Found {
    /// A file: to be read.
    File,
    /// Not read, by design (reason, message): FIFOs, sockets, devices,
    /// symlinks when not followed, symlink loops, excluded entries.
    Skip(&'static str, String),
    /// Could not be looked at (reason, message).
    Fail(&'static str, String),
}

#[derive(Debug)]
pub struct Entry {
    /// The path to open (or the object's name, for a fetch that is not
    /// the file system).
    pub path: PathBuf,
    /// The path as written in records: relative to the base, '/'-separated.
    pub display: OsString,
    pub found: Found,
    /// An object of an object store (listed, with its change key): read
    /// by ranged GETs, see [`objects`]. None for a local file.
    pub object: Option<std::sync::Arc<objects::Object>>,
}

impl Entry {
    /// A file to read, written as `display` in records.
    pub fn file(path: impl Into<PathBuf>, display: impl Into<OsString>) -> Entry {
        Entry {
            path: path.into(),
            display: display.into(),
            found: Found::File,
            object: None,
        }
    }
}

/// Where entries come from. Anything that iterates entries and can move
/// to the pipeline's listing thread is one.
pub trait Listing: Iterator<Item = Entry> + Send {}

impl<T: Iterator<Item = Entry> + Send> Listing for T {}

/// An explicit list of files, (path, display) each: nothing is walked.
pub fn files<I>(paths: I) -> impl Listing
where
    I: IntoIterator<Item = (PathBuf, OsString)>,
    I::IntoIter: Send,
{
    paths
        .into_iter()
        .map(|(path, display)| Entry::file(path, display))
}

/// How an entry's bytes are had.
pub trait Fetch: Send + Sync {
    /// The entry's bytes from offset 0. `upto` is 0 on the first try; a
    /// ranged fetch serves what it chooses, answers reads past that with
    /// [`NeedBytes`], and is asked again with the offset the reader needs
    /// bytes up to. A fetch that holds everything ignores it.
    fn open(&self, entry: &Entry, upto: u64) -> io::Result<Box<dyn Input>>;

    /// A stage that requests entries' bytes ahead of `open`, with up to
    /// `concurrency` requests in flight; None when there is nothing to
    /// gain.
    fn ahead(&self, concurrency: usize) -> Option<Box<dyn Ahead>> {
        let _ = concurrency;
        None
    }
}

/// Requests bytes ahead of the readers; the pipeline hands it every batch
/// on its way from the listing to the readers.
pub trait Ahead: Send {
    /// A batch about to reach the readers. Returns early once `stop` is
    /// set; Err when the stage failed (one of its threads died).
    fn batch(&mut self, entries: &[Entry], stop: &AtomicBool) -> std::result::Result<(), String>;
    /// Stop, and join whatever threads the stage runs; Err when one failed.
    fn finish(self: Box<Self>) -> std::result::Result<(), String>;
}

/// Local files: opened without blocking, read with pread; prefetched
/// (Linux) when the disk is slow.
#[derive(Clone, Copy, Debug, Default)]
pub struct Files;

impl Fetch for Files {
    fn open(&self, entry: &Entry, _upto: u64) -> io::Result<Box<dyn Input>> {
        Ok(Box::new(FileInput::new(reader::open(&entry.path)?)))
    }

    fn ahead(&self, concurrency: usize) -> Option<Box<dyn Ahead>> {
        prefetch::Prefetcher::start(concurrency).map(|p| Box::new(p) as Box<dyn Ahead>)
    }
}

/// Ranged reads of one header stop after this many: each must need bytes
/// further on than the one before, and a header of thousands of elements
/// spread over a large object is not worth more.
pub const MAX_FETCHES: usize = 64;

/// Read one entry through `fetch`, fetching more while its input runs
/// short. An attempt whose input ran short is void whatever the reader
/// made of it (it may have taken the short read for the end of a bare
/// data set), and the next starts again from the first byte with more.
pub fn read_entry(
    fetch: &dyn Fetch,
    schema: &Schema,
    entry: &Entry,
    out: &mut Collected,
) -> Result<Outcome> {
    let mut upto = 0;
    for _ in 0..MAX_FETCHES {
        let short = Cell::new(None);
        let input = Watched {
            inner: fetch.open(entry, upto)?,
            short: &short,
        };
        let result = reader::read_input(schema, Box::new(input), out);
        match short.get() {
            None => return result,
            Some(n) if n > upto => upto = n,
            Some(n) => {
                return Err(Error::Io(io::Error::other(format!(
                    "the source did not serve the bytes up to offset {n}"
                ))))
            }
        }
    }
    Err(Error::Io(io::Error::other(format!(
        "the header needed more than {MAX_FETCHES} ranged reads"
    ))))
}

/// An input that remembers whether it ran short (answered `NeedBytes`).
struct Watched<'a> {
    inner: Box<dyn Input>,
    short: &'a Cell<Option<u64>>,
}

impl Input for Watched<'_> {
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.inner.read_some(buf);
        if let Err(e) = &r {
            if let Some(n) = NeedBytes::of(e) {
                self.short
                    .set(Some(self.short.get().map_or(n, |m: u64| m.max(n))));
            }
        }
        r
    }

    fn skip(&mut self, n: u64) -> io::Result<u64> {
        self.inner.skip(n)
    }

    fn overran(&mut self) -> io::Result<bool> {
        self.inner.overran()
    }

    fn size(&mut self) -> Option<u64> {
        self.inner.size()
    }
}

/// The first bytes of a larger object (what a ranged fetch has so far):
/// reads past them answer `NeedBytes`, skips cost nothing, and the end is
/// the object's end.
pub struct Prefix {
    bytes: Vec<u8>,
    /// The whole object's size.
    size: u64,
    pos: u64,
}

impl Prefix {
    pub fn new(bytes: Vec<u8>, size: u64) -> Prefix {
        Prefix {
            bytes,
            size,
            pos: 0,
        }
    }
}

impl Input for Prefix {
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let held = self.bytes.len() as u64;
        if self.pos >= held {
            let want = self.pos.saturating_add(buf.len() as u64).min(self.size);
            return Err(NeedBytes(want).into());
        }
        let start = self.pos as usize;
        let n = buf.len().min(self.bytes.len() - start);
        buf[..n].copy_from_slice(&self.bytes[start..start + n]);
        self.pos += n as u64;
        Ok(n)
    }

    fn skip(&mut self, n: u64) -> io::Result<u64> {
        self.pos = self.pos.saturating_add(n);
        Ok(n)
    }

    fn overran(&mut self) -> io::Result<bool> {
        Ok(self.pos > self.size)
    }

    fn size(&mut self) -> Option<u64> {
        Some(self.size)
    }
}
