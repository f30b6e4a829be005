//! A forward-only byte source over a file, a buffer or an inflated stream.
//!
//! The reader asks for a few bytes at a time (a tag, a length) and skips most
//! values. Reading the file in chunks keeps the common header in one `read`,
//! and skipping by seeking means a 60 KB private block costs no read at all.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use crate::dicom::elements::Scan;
use crate::dicom::error::{Error, Result};

/// The first read. Most headers fit; a larger one costs one more read.
pub const FIRST_READ: usize = 16 * 1024;
/// A read after a skip: what follows a skipped private block is usually
/// the short end of the header, not another 64 KiB worth copying.
const AFTER_SKIP_READ: usize = 4 * 1024;
/// Reads double while the header goes on, up to this.
const MAX_READ: usize = 256 * 1024;

/// Where bytes come from, and how to pass over bytes nobody needs.
pub trait Input {
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Pass over `n` bytes; returns how many were really there, or `n`
    /// when that is only known at the end (see `overran`).
    fn skip(&mut self, n: u64) -> io::Result<u64>;
    /// At the end of the data: did a skip go past it?
    fn overran(&mut self) -> io::Result<bool> {
        Ok(false)
    }
    /// The size of the data, when known (a file): where a cut file ends.
    fn size(&mut self) -> Option<u64> {
        None
    }
}

/// What an input that holds only part of an object (a ranged fetch)
/// answers when asked for bytes past it: the reader stops with the
/// `Error::Io` that carries it, and the driver fetches the bytes up to
/// this offset and reads again (`sources::read_entry`). Distinct from a
/// file that ends (`Truncated`); a file never answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeedBytes(pub u64);

impl NeedBytes {
    /// The offset an I/O error asks bytes up to, if it is a `NeedBytes`.
    pub fn of(e: &io::Error) -> Option<u64> {
        e.get_ref()?.downcast_ref::<NeedBytes>().map(|n| n.0)
    }
}

impl fmt::Display for NeedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "needs the bytes up to offset {}", self.0)
    }
}

impl std::error::Error for NeedBytes {}

impl From<NeedBytes> for io::Error {
    fn from(n: NeedBytes) -> io::Error {
        io::Error::other(n)
    }
}

/// A regular file read with pread: skipping moves the offset and costs no
/// system call. The size is asked only at the end of the data, to tell a
/// clean end from a skip that ran past it (truncation).
pub struct FileInput {
    file: File,
    pos: u64,
}

impl FileInput {
    pub fn new(file: File) -> Self {
        FileInput { file, pos: 0 }
    }
}

impl Input for FileInput {
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.file.read_at(buf, self.pos) {
                Ok(n) => {
                    self.pos += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn skip(&mut self, n: u64) -> io::Result<u64> {
        self.pos = self.pos.saturating_add(n);
        Ok(n)
    }

    fn overran(&mut self) -> io::Result<bool> {
        Ok(self.pos > self.file.metadata()?.len())
    }

    fn size(&mut self) -> Option<u64> {
        self.file.metadata().ok().map(|m| m.len())
    }
}

/// Anything readable; skipping reads and discards (memory, inflated data).
pub struct StreamInput<R: Read>(pub R);

impl<R: Read> Input for StreamInput<R> {
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    fn skip(&mut self, n: u64) -> io::Result<u64> {
        io::copy(&mut (&mut self.0).take(n), &mut io::sink())
    }
}

/// Buffered view of an `Input` with an absolute position.
pub struct Source<'a> {
    input: Box<dyn Input + 'a>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Stream offset of `buf[start]`.
    offset: u64,
    eof: bool,
    /// Size of the next read.
    next_read: usize,
    /// The bytes are inflated: a read error is damage, not I/O.
    inflated: bool,
}

impl<'a> Source<'a> {
    pub fn new(input: Box<dyn Input + 'a>) -> Self {
        Source::with_buffer(input, Vec::new())
    }

    /// Reuse a buffer from an earlier file: no allocation, no zeroing.
    pub fn with_buffer(input: Box<dyn Input + 'a>, buf: Vec<u8>) -> Self {
        Source {
            input,
            buf,
            start: 0,
            end: 0,
            offset: 0,
            eof: false,
            next_read: FIRST_READ,
            inflated: false,
        }
    }

    /// A source over an inflating reader: a deflate stream that ends early
    /// is a truncated file, one that does not inflate is a malformed one.
    pub fn inflated(input: Box<dyn Input + 'a>) -> Self {
        Source {
            inflated: true,
            ..Source::new(input)
        }
    }

    fn failed(&self, e: io::Error) -> Error {
        if !self.inflated {
            return Error::Io(e);
        }
        match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                Error::Truncated(self.offset + (self.end - self.start) as u64)
            }
            io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => {
                Error::Malformed(format!("deflated data set: {e}"))
            }
            _ => Error::Io(e),
        }
    }

    /// Give the buffer back for the next file.
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }

    pub fn from_slice(bytes: &'a [u8]) -> Self {
        Source::new(Box::new(StreamInput(bytes)))
    }

    pub fn position(&self) -> u64 {
        self.offset
    }

    /// Make `n` bytes available (fewer only at the end of the stream).
    #[inline]
    fn fill(&mut self, n: usize) -> Result<usize> {
        if self.end - self.start >= n {
            return Ok(self.end - self.start);
        }
        self.refill(n)
    }

    #[cold]
    fn refill(&mut self, n: usize) -> Result<usize> {
        while self.end - self.start < n && !self.eof {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let want = self.next_read.max(n - (self.end - self.start));
            self.next_read = (self.next_read * 2).min(MAX_READ);
            let target = self.end + want;
            if self.buf.len() < target {
                self.buf.resize(target, 0);
            }
            let got = match self.input.read_some(&mut self.buf[self.end..target]) {
                Ok(got) => got,
                Err(e) => return Err(self.failed(e)),
            };
            if got == 0 {
                self.eof = true;
            }
            self.end += got;
        }
        Ok(self.end - self.start)
    }

    /// Look at the next `n` bytes without consuming them; None at the end.
    pub fn peek(&mut self, n: usize) -> Result<Option<&[u8]>> {
        if self.fill(n)? < n {
            return Ok(None);
        }
        Ok(Some(&self.buf[self.start..self.start + n]))
    }

    /// Did a skip run past the end of the data? A file notices only when
    /// asked (its skips move an offset); a stream when it skips.
    pub fn overran(&mut self) -> Result<bool> {
        Ok(self.input.overran()?)
    }

    /// Where the data really ends, when that is known: a skip past the end
    /// of a file moves the position beyond it.
    pub fn real_end(&mut self, at: u64) -> u64 {
        self.input.size().map_or(at, |size| at.min(size))
    }

    /// True when nothing at all is left; a skip past the end is truncation.
    pub fn at_end(&mut self) -> Result<bool> {
        if self.fill(1)? > 0 {
            return Ok(false);
        }
        if self.input.overran()? {
            return Err(Error::Truncated(self.offset));
        }
        Ok(true)
    }

    /// Consume exactly `n` bytes (n is small: a tag, a length, a wanted value
    /// already checked against a cap by the caller).
    pub fn take(&mut self, n: usize) -> Result<&[u8]> {
        if self.fill(n)? < n {
            return Err(Error::Truncated(
                self.offset + (self.end - self.start) as u64,
            ));
        }
        let s = self.start;
        self.start += n;
        self.offset += n as u64;
        Ok(&self.buf[s..s + n])
    }

    pub fn take_array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Pass over `n` bytes without reading them when the input can seek.
    pub fn skip(&mut self, n: u64) -> Result<()> {
        let buffered = (self.end - self.start) as u64;
        if n <= buffered {
            self.start += n as usize;
            self.offset += n;
            return Ok(());
        }
        let rest = n - buffered;
        self.start = 0;
        self.end = 0;
        self.offset += buffered;
        self.next_read = AFTER_SKIP_READ;
        let skipped = match self.input.skip(rest) {
            Ok(skipped) => skipped,
            Err(e) => return Err(self.failed(e)),
        };
        self.offset += skipped;
        if skipped < rest {
            self.eof = true;
            return Err(Error::Truncated(self.offset));
        }
        Ok(())
    }

    /// Pass over `n` bytes reading them, each fed to `scan` (for the few
    /// values whose bytes decide how pydicom reads on: encapsulated data).
    pub fn skip_scanning(&mut self, mut n: u64, scan: &mut Scan) -> Result<()> {
        while n > 0 {
            let want = n.min(MAX_READ as u64) as usize;
            let got = self.fill(want)?.min(want);
            if got == 0 {
                return Err(Error::Truncated(self.offset));
            }
            scan.feed(&self.buf[self.start..self.start + got]);
            self.start += got;
            self.offset += got as u64;
            n -= got as u64;
        }
        Ok(())
    }

    /// Hand over what is left (buffered bytes first) as a plain reader, for
    /// a deflated data set that continues after the meta group.
    pub fn take_reader(&mut self) -> impl Read + 'a {
        let input = std::mem::replace(&mut self.input, Box::new(StreamInput(io::empty())));
        let rest = self.buf[self.start..self.end].to_vec();
        self.start = self.end;
        io::Cursor::new(rest).chain(InputReader(input))
    }
}

struct InputReader<'a>(Box<dyn Input + 'a>);

impl Read for InputReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read_some(buf)
    }
}
