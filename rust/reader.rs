//! One path in, one outcome out: open without blocking, check it is a
//! regular file, read its header, build its record.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::header;
use crate::record::{self, Outcome};
use crate::schema::Schema;
use crate::source::{FileInput, Source};
use crate::stream::Collected;

/// Open for reading without blocking: a FIFO swapped in after the walk
/// must not hang the worker. O_NONBLOCK changes nothing for regular files.
fn open(path: &Path) -> Result<(File, u64)> {
    let file = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(Error::Io(io::Error::new(io::ErrorKind::Other, "not a regular file")));
    }
    Ok((file, meta.len()))
}

pub fn read_path(schema: &Schema, path: &Path, out: &mut Collected) -> Result<Outcome> {
    let (file, len) = open(path)?;
    let src = Source::new(Box::new(FileInput::new(file, len)));
    let info = header::read(src, schema, out)?;
    record::build(schema, out, &info)
}

/// The same for bytes in memory (tests, fuzzing).
pub fn read_bytes(schema: &Schema, bytes: &[u8], out: &mut Collected) -> Result<Outcome> {
    let info = header::read(Source::from_slice(bytes), schema, out)?;
    record::build(schema, out, &info)
}
