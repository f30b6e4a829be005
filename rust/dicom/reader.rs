//! One path in, one outcome out: open without blocking, check it is a
//! regular file, read its header, build its record.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::dicom::elements::Collected;
use crate::dicom::error::Result;
use crate::dicom::input::{FileInput, Input, Source};
use crate::dicom::preamble;
use crate::extract::record::{self, Outcome};
use crate::extract::schema::Schema;

/// Open for reading without blocking: the walker only hands over regular
/// files, but one swapped for a FIFO since must not hang the worker
/// (O_NONBLOCK changes nothing for regular files, and pread on a FIFO,
/// socket or directory fails at once).
pub fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

pub fn read_path(schema: &Schema, path: &Path, out: &mut Collected) -> Result<Outcome> {
    read_input(schema, Box::new(FileInput::new(open(path)?)), out)
}

/// The same from any input (a file, a ranged fetch: see `sources`), with
/// `out`'s read buffer.
pub fn read_input<'a>(
    schema: &Schema,
    input: Box<dyn Input + 'a>,
    out: &mut Collected,
) -> Result<Outcome> {
    let mut src = Source::with_buffer(input, std::mem::take(&mut out.buffer));
    let info = preamble::read(&mut src, schema, out);
    out.buffer = src.into_buffer();
    record::build(schema, out, &info?)
}

/// The same for bytes in memory (tests, fuzzing).
pub fn read_bytes(schema: &Schema, bytes: &[u8], out: &mut Collected) -> Result<Outcome> {
    let info = preamble::read(&mut Source::from_slice(bytes), schema, out)?;
    record::build(schema, out, &info)
}
