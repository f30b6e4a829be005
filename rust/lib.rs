//! fastindex: a streaming DICOM header reader and archive indexer.
//!
//! The data path, one module each: `walk` finds files (and `prefetch`
//! asks for their headers ahead when the disk is slow), `reader` opens one
//! and drives `header` (preamble, meta, syntax) and `stream` (elements)
//! over a `source`, `record` turns the kept bytes into fields (`decode`),
//! `aggregate` folds records into subseries. `fields` is the one table
//! of fields; `schema` turns it into what the stream looks for. `py` is
//! the thin Python boundary. `testbytes` writes raw DICOM for the tests
//! and benchmarks.

pub mod aggregate;
pub mod decode;
pub mod error;
pub mod fields;
pub mod header;
pub mod prefetch;
pub mod reader;
pub mod record;
pub mod schema;
pub mod source;
pub mod stream;
pub mod testbytes;
pub mod walk;

#[cfg(feature = "python")]
mod py;

#[cfg(test)]
mod tests;
