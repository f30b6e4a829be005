//! From kept bytes to a record: `fields` is the one table of fields (and
//! the one VR-to-type rule lives with the values in `record`), `schema`
//! turns it and the user's extra tags into what the element stream looks
//! for, `record` builds a per-file record or says why there is none.

pub mod fields;
pub mod record;
pub mod schema;
