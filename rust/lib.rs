//! fastindex: a streaming DICOM header reader and archive indexer.
//!
//! The data path, one module each: `sources` says where entries come from
//! (`walk`: a walked tree; an explicit list) and how their bytes are had
//! (`Files`, with `prefetch` asking for headers ahead when the disk is
//! slow); `pipeline` drives them: a listing thread, reader threads, and
//! batches out through an iterator. `reader` reads one input, driving
//! `header` (preamble, meta, syntax) and `stream` (elements) over a
//! `source`; `record` turns the kept bytes into fields (`decode`);
//! `aggregate` folds records into subseries; `output` writes records
//! (`output::ndjson`). `fields` is the one table of fields; `schema` turns
//! it into what the stream looks for. `py` is the thin Python boundary.
//! `testbytes` writes raw DICOM for the tests and benchmarks.
//!
//! Without Python (see `examples/index.rs`):
//!
//! ```no_run
//! use std::sync::{Arc, Mutex};
//! use fastindex::aggregate::Aggregator;
//! use fastindex::pipeline::{Options, Pipeline};
//! use fastindex::extract::schema::Schema;
//! use fastindex::sources::{walk::{Filter, Root, Walk}, Files};
//!
//! let schema = Arc::new(Schema::new(Vec::new()).expect("the field table"));
//! let agg = Arc::new(Mutex::new(Aggregator::default()));
//! let walk = Walk::new(Root::given(&["archive"], None), false, Filter::default());
//! let run = Pipeline::start(Box::new(walk), Arc::new(Files), schema, Some(agg.clone()), &Options::default());
//! for batch in run {
//!     let batch = batch.expect("a complete run");
//!     for p in &batch.problems {
//!         eprintln!("{}: {} ({})", p.display.to_string_lossy(), p.reason, p.message);
//!     }
//! }
//! let subseries = agg.lock().expect("no panic").len();
//! ```

pub mod aggregate;
pub mod dicom;
pub mod extract;
pub mod outcome;
pub mod output;
pub mod pipeline;
pub mod pool;
pub mod sources;
pub mod testbytes;

#[cfg(feature = "python")]
mod python;

#[cfg(test)]
mod tests;
