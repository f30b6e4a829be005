//! Reading DICOM: one input's bytes to the values a schema wants.
//! `input` is the byte source (files, memory, inflated streams; a ranged
//! input says when it needs more), `preamble` the preamble, meta group and
//! transfer syntax, `elements` the element stream with its stop rule,
//! `text` character sets, trimming and the number grammar, `reader` one
//! input end to end, `error` why a file gave no record.

pub mod elements;
pub mod error;
pub mod input;
pub mod preamble;
pub mod reader;
pub mod text;
