//! Records as written: the columns of a per-file or a subseries record in
//! order, each with its value ([`Cell`]), the computed ones (`folder`,
//! `file_path`, `instances`, the resolved references) filled in. Every
//! writer goes through [`columns`]: the NDJSON writer here ([`ndjson`]),
//! the Python boundary (dicts). [`blank`] gives each column's type for
//! records made elsewhere (the pydicom fallback's dicts).

pub mod ndjson;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use crate::aggregate::Links;
use crate::extract::fields::{Kind, Scope, FIELDS};
use crate::extract::record::{Record, Value};
use crate::extract::schema::Schema;

/// One column's value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cell<'a> {
    Null,
    Str(&'a str),
    /// A path (file_path, folder): bytes, not always UTF-8.
    Path(&'a OsStr),
    Int(i64),
    Count(u64),
    Num(f64),
    Nums(&'a [f64]),
    Ints(&'a [i64]),
    Strs(&'a [String]),
}

/// What only a subseries record has.
#[derive(Clone, Copy)]
pub struct Subseries<'a> {
    pub instances: u64,
    pub links: &'a Links,
}

/// The column names of `schema`'s records: the field table's, then the
/// extra tags'. `columns` yields indexes into this order.
pub fn names(schema: &Schema) -> impl Iterator<Item = &str> {
    FIELDS
        .iter()
        .map(|f| f.name)
        .chain(schema.extras.iter().map(|e| e.name.as_str()))
}

/// The directory of a display path: "." for a bare name, "/" at the root.
pub fn folder_of(path: &OsStr) -> &OsStr {
    let b = path.as_bytes();
    match b.iter().rposition(|&c| c == b'/') {
        Some(0) => OsStr::new("/"),
        Some(i) => OsStr::from_bytes(&b[..i]),
        None => OsStr::new("."),
    }
}

/// Does a record of this level carry the field?
pub fn carried(scope: Scope, subseries: bool) -> bool {
    match scope {
        Scope::Both => true,
        Scope::Subseries => subseries,
        Scope::Instance => !subseries,
    }
}

/// The columns of a record, in order, as (index into `names`, value): a
/// per-file record when `sub` is None, else a subseries record (whose
/// `path` is its representative's). `path` is the display path.
pub fn columns<'a>(
    rec: &'a Record,
    path: &'a OsStr,
    sub: Option<Subseries<'a>>,
) -> impl Iterator<Item = (usize, Cell<'a>)> + 'a {
    let fields = FIELDS
        .iter()
        .enumerate()
        .filter(move |(_, f)| carried(f.scope, sub.is_some()))
        .map(move |(i, f)| {
            let cell = match f.kind {
                Kind::Count => sub.map_or(Cell::Null, |s| Cell::Count(s.instances)),
                Kind::ReferenceSeries => sub.map_or(Cell::Null, |s| Cell::Strs(&s.links.series)),
                Kind::ReferenceModality => {
                    sub.map_or(Cell::Null, |s| Cell::Strs(&s.links.modalities))
                }
                Kind::Path => Cell::Path(path),
                Kind::Folder => Cell::Path(folder_of(path)),
                _ => rec.values.get(i).map_or(Cell::Null, cell),
            };
            (i, cell)
        });
    let extras = rec
        .extras
        .iter()
        .enumerate()
        .map(|(j, v)| (FIELDS.len() + j, cell(v)));
    fields.chain(extras)
}

fn cell(v: &Value) -> Cell<'_> {
    match v {
        Value::Str(s) => Cell::Str(s),
        Value::Num(Some(n)) => Cell::Num(*n),
        Value::Nums(Some(n)) => Cell::Nums(n),
        Value::Int(Some(n)) => Cell::Int(*n),
        Value::Ints(Some(n)) => Cell::Ints(n),
        Value::Strs(Some(n)) => Cell::Strs(n),
        Value::Num(None)
        | Value::Nums(None)
        | Value::Int(None)
        | Value::Ints(None)
        | Value::Strs(None)
        | Value::Computed => Cell::Null,
    }
}

/// The value a column of a per-file record holds when absent, which is
/// also its type; None for the computed columns (never read back). Index
/// as in `names`.
pub fn blank(schema: &Schema, column: usize) -> Option<Value> {
    if let Some(f) = FIELDS.get(column) {
        return match f.kind {
            k if k.computed() => None,
            Kind::Number => Some(Value::Num(None)),
            Kind::Numbers => Some(Value::Nums(None)),
            _ => Some(Value::Str(String::new())),
        };
    }
    let e = schema.extras.get(column - FIELDS.len())?;
    Some(Value::extra_blank(&e.vr, e.multi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders() {
        let f = |p: &str| folder_of(OsStr::new(p)).to_str().map(str::to_owned);
        assert_eq!(f("a/b/c.dcm").as_deref(), Some("a/b"));
        assert_eq!(f("c.dcm").as_deref(), Some("."));
        assert_eq!(f("/c.dcm").as_deref(), Some("/"));
        assert_eq!(f("/x/c.dcm").as_deref(), Some("/x"));
    }
}
