//! A representative record as one compact byte string (a "blob"): its path,
//! the four key strings, then the other stored fields and the extras, each
//! value behind a LEB128 header `len << 3 | tag`. Strings of digits and dots
//! of two characters or more (UIDs, most AcquisitionNumbers and some
//! patient IDs) are packed two characters to the byte, in an order-preserving
//! code, so that two packed keys compare as their bytes do.
//!
//! The same encoding is the serialized form's, so everything here reads
//! untrusted bytes: every read is checked, nothing panics.

use std::cmp::Ordering;
use std::sync::OnceLock;

use crate::extract::fields::{Kind, Scope, FIELDS};
use crate::extract::record::{Record, Value};

/// Where the aggregator's fields sit in `FIELDS` (checked by a test).
pub const PATIENT: usize = 0;
pub const STUDY: usize = 1;
pub const SERIES: usize = 3;
pub const SUBSERIES: usize = 5;
pub const MODALITY: usize = 6;
pub const SOP: usize = 8;
pub const REFERENCES: [usize; 3] = [9, 10, 11];
pub const FRAME: usize = 12;
/// The record key, in sort order.
pub const KEY: [usize; 4] = [PATIENT, STUDY, SERIES, SUBSERIES];

const STR: u8 = 0;
const PACKED: u8 = 1;
const NUM: u8 = 2;
const NUMS: u8 = 3;
const INT: u8 = 4;
const INTS: u8 = 5;
const STRS: u8 = 6;
const NONE: u8 = 7;

/// The stored fields after the key, in table order: what a subseries record
/// shows that is read from its representative (not instance-only fields,
/// not the computed ones).
pub fn body_fields() -> &'static [usize] {
    static BODY: OnceLock<Vec<usize>> = OnceLock::new();
    BODY.get_or_init(|| {
        FIELDS
            .iter()
            .enumerate()
            .filter(|(i, f)| {
                f.scope != Scope::Instance
                    && !KEY.contains(i)
                    && !matches!(
                        f.kind,
                        Kind::Count
                            | Kind::Folder
                            | Kind::Path
                            | Kind::ReferenceSeries
                            | Kind::ReferenceModality
                    )
            })
            .map(|(i, _)| i)
            .collect()
    })
}

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A checked reader over untrusted bytes.
#[derive(Clone)]
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// A LEB128 value in its shortest form (one encoding per value).
    pub fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos)?;
            self.pos += 1;
            let part = u64::from(b & 0x7F);
            if shift == 63 && part > 1 {
                return None;
            }
            v |= part << shift;
            if b & 0x80 == 0 {
                return (b != 0 || shift == 0).then_some(v);
            }
        }
        None
    }

    pub fn take(&mut self, n: u64) -> Option<&'a [u8]> {
        let n = usize::try_from(n).ok().filter(|&n| n <= self.remaining())?;
        let out = self.buf.get(self.pos..self.pos + n)?;
        self.pos += n;
        Some(out)
    }

    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.varint()?;
        self.take(n)
    }

    pub fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N as u64)?.try_into().ok()
    }
}

// Packed digits: '.' is 1, '0'..'9' are 2..11, and an odd length ends on a
// 0 nibble. Every character codes above the pad, in ASCII order, so packed
// strings compare as their bytes.

const BAD: u8 = 0xFF;

fn nibble(c: u8) -> u8 {
    match c {
        b'.' => 1,
        b'0'..=b'9' => c - b'0' + 2,
        _ => BAD,
    }
}

fn unnibble(n: u8) -> Option<u8> {
    match n {
        1 => Some(b'.'),
        2..=11 => Some(n - 2 + b'0'),
        _ => None,
    }
}

fn packable(s: &[u8]) -> bool {
    s.len() >= 2 && s.iter().all(|&c| nibble(c) != BAD)
}

/// One byte of packed digits from one or two characters (BAD if either is
/// not a digit or a dot).
fn pack_pair(pair: &[u8]) -> u16 {
    let hi = pair.first().map_or(BAD, |&c| nibble(c));
    let lo = pair.get(1).map_or(0, |&c| nibble(c));
    if hi == BAD || lo == BAD {
        u16::MAX
    } else {
        u16::from(hi << 4 | lo)
    }
}

pub fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    if packable(s) {
        put_varint(out, (s.len() as u64) << 3 | u64::from(PACKED));
        out.extend(s.chunks(2).map(|p| pack_pair(p) as u8));
    } else {
        put_varint(out, (s.len() as u64) << 3 | u64::from(STR));
        out.extend_from_slice(s);
    }
}

fn put_head(out: &mut Vec<u8>, n: u64, tag: u8) {
    put_varint(out, n << 3 | u64::from(tag));
}

fn put_list<T>(out: &mut Vec<u8>, v: &Option<Vec<T>>, tag: u8, each: impl Fn(&mut Vec<u8>, &T)) {
    match v {
        None => put_head(out, 0, tag),
        Some(v) => {
            put_head(out, v.len() as u64 + 1, tag);
            for x in v {
                each(out, x);
            }
        }
    }
}

/// A single number: n is 0 (null) or 1.
fn put_one(out: &mut Vec<u8>, v: Option<[u8; 8]>, tag: u8) {
    put_head(out, u64::from(v.is_some()), tag);
    out.extend(v.into_iter().flatten());
}

pub fn put_value(out: &mut Vec<u8>, v: &Value) {
    let f64s = |out: &mut Vec<u8>, x: &f64| out.extend_from_slice(&x.to_le_bytes());
    let i64s = |out: &mut Vec<u8>, x: &i64| out.extend_from_slice(&x.to_le_bytes());
    match v {
        Value::Str(s) => put_str(out, s.as_bytes()),
        Value::Num(n) => put_one(out, n.map(f64::to_le_bytes), NUM),
        Value::Nums(n) => put_list(out, n, NUMS, f64s),
        Value::Int(n) => put_one(out, n.map(i64::to_le_bytes), INT),
        Value::Ints(n) => put_list(out, n, INTS, i64s),
        Value::Strs(n) => put_list(out, n, STRS, |out, s: &String| put_str(out, s.as_bytes())),
        Value::Computed => put_head(out, 0, NONE),
    }
}

/// A record's field as text ("" when absent or not text).
pub fn text_of(record: &Record, field: usize) -> &str {
    record.values.get(field).map_or("", Value::as_str)
}

/// The blob of `record` found at `path`, with `extras` extra values.
pub fn encode(out: &mut Vec<u8>, record: &Record, path: &[u8], extras: usize) {
    out.clear();
    put_bytes(out, path);
    for i in KEY {
        put_str(out, text_of(record, i).as_bytes());
    }
    for &i in body_fields() {
        put_value(out, record.values.get(i).unwrap_or(&Value::Computed));
    }
    for j in 0..extras {
        put_value(out, record.extras.get(j).unwrap_or(&Value::Computed));
    }
}

/// A string of a blob, plain or packed.
#[derive(Clone, Copy, Debug)]
pub enum Text<'a> {
    Plain(&'a [u8]),
    /// Packed bytes and the number of characters.
    Packed(&'a [u8], usize),
}

impl<'a> Text<'a> {
    pub fn len(&self) -> usize {
        match *self {
            Text::Plain(b) => b.len(),
            Text::Packed(_, n) => n,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn chars(self) -> impl Iterator<Item = u8> + 'a {
        let (plain, packed, n) = match self {
            Text::Plain(b) => (b, &[][..], 0),
            Text::Packed(b, n) => (&[][..], b, n),
        };
        plain.iter().copied().chain(
            packed
                .iter()
                .flat_map(|&b| [b >> 4, b & 0xF])
                .take(n)
                .map(|x| unnibble(x).unwrap_or(b'?')),
        )
    }

    /// Whether this is the text `s`.
    pub fn is(&self, s: &[u8]) -> bool {
        match *self {
            Text::Plain(b) => b == s,
            Text::Packed(b, n) => {
                n == s.len()
                    && b.len() == n.div_ceil(2)
                    && b.iter()
                        .zip(s.chunks(2))
                        .all(|(&x, p)| pack_pair(p) == u16::from(x))
            }
        }
    }

    pub fn push_to(self, out: &mut Vec<u8>) {
        match self {
            Text::Plain(b) => out.extend_from_slice(b),
            Text::Packed(..) => out.extend(self.chars()),
        }
    }

    pub fn to_string_lossy(self) -> String {
        let mut v = Vec::with_capacity(self.len());
        self.push_to(&mut v);
        match String::from_utf8(v) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    /// Byte-wise order of the texts.
    pub fn compare(&self, other: &Text<'_>) -> Ordering {
        match (self, other) {
            (Text::Plain(a), Text::Plain(b)) => a.cmp(b),
            (Text::Packed(a, _), Text::Packed(b, _)) => a.cmp(b),
            _ => self.chars().cmp(other.chars()),
        }
    }
}

/// One value of a blob, undecoded.
#[derive(Clone, Copy, Debug)]
pub struct Raw<'a> {
    tag: u8,
    n: u64,
    body: &'a [u8],
}

impl<'a> Raw<'a> {
    pub fn read(c: &mut Cursor<'a>) -> Option<Raw<'a>> {
        let head = c.varint()?;
        let (tag, n) = ((head & 7) as u8, head >> 3);
        let body = match tag {
            STR => c.take(n)?,
            PACKED => c.take(n.div_ceil(2))?,
            NUM | INT => c.take(match n {
                0 => 0,
                1 => 8,
                _ => return None,
            })?,
            NUMS | INTS => c.take(n.saturating_sub(1).checked_mul(8)?)?,
            STRS => {
                let start = c.clone();
                // Each string takes a byte at least: the loop ends with the
                // bytes.
                for _ in 1..n {
                    let s = Raw::read(c)?;
                    if s.tag > PACKED {
                        return None;
                    }
                }
                let mut s = start;
                s.take((s.remaining() - c.remaining()) as u64)?
            }
            _ if n == 0 => &[][..],
            _ => return None,
        };
        Some(Raw { tag, n, body })
    }

    pub fn text(&self) -> Option<Text<'a>> {
        match self.tag {
            STR => Some(Text::Plain(self.body)),
            PACKED => Some(Text::Packed(self.body, usize::try_from(self.n).ok()?)),
            _ => None,
        }
    }

    /// The text of a string value, "" for any other.
    pub fn text_or_empty(&self) -> Text<'a> {
        self.text().unwrap_or(Text::Plain(&[]))
    }

    fn words(&self) -> impl Iterator<Item = [u8; 8]> + 'a {
        self.body.chunks_exact(8).filter_map(|w| w.try_into().ok())
    }

    fn strings(&self) -> impl Iterator<Item = Text<'a>> + 'a {
        let mut c = Cursor::new(self.body);
        std::iter::from_fn(move || Raw::read(&mut c)?.text())
    }

    fn list<T>(&self, one: impl Fn([u8; 8]) -> T) -> Option<Vec<T>> {
        (self.n > 0).then(|| self.words().map(one).collect())
    }

    pub fn value(&self) -> Value {
        match self.tag {
            STR | PACKED => Value::Str(self.text_or_empty().to_string_lossy()),
            NUM => Value::Num(self.words().next().map(f64::from_le_bytes)),
            NUMS => Value::Nums(self.list(f64::from_le_bytes)),
            INT => Value::Int(self.words().next().map(i64::from_le_bytes)),
            INTS => Value::Ints(self.list(i64::from_le_bytes)),
            STRS => Value::Strs(
                (self.n > 0).then(|| self.strings().map(Text::to_string_lossy).collect()),
            ),
            _ => Value::Computed,
        }
    }

    /// Whether the value is as this module writes it: text in UTF-8 and
    /// packed exactly when packable, numbers finite.
    pub fn canonical(&self) -> bool {
        let text_ok = |t: Text<'_>| match t {
            Text::Plain(b) => !packable(b) && std::str::from_utf8(b).is_ok(),
            Text::Packed(b, n) => {
                n >= 2
                    && b.iter().enumerate().all(|(i, &x)| {
                        let lo_is_pad = 2 * i + 1 == n;
                        unnibble(x >> 4).is_some()
                            && (if lo_is_pad {
                                x & 0xF == 0
                            } else {
                                unnibble(x & 0xF).is_some()
                            })
                    })
            }
        };
        match self.tag {
            STR | PACKED => self.text().is_some_and(text_ok),
            NUM | NUMS => self.words().all(|w| f64::from_le_bytes(w).is_finite()),
            STRS => {
                self.strings().count() as u64 + 1 == self.n.max(1) && self.strings().all(text_ok)
            }
            _ => true,
        }
    }
}

/// A blob read far enough for the aggregator: its path and key, then the
/// other values on demand.
pub struct View<'a> {
    pub path: &'a [u8],
    pub key: [Text<'a>; 4],
    rest: Cursor<'a>,
}

impl<'a> View<'a> {
    pub fn of(blob: &'a [u8]) -> Option<View<'a>> {
        let mut c = Cursor::new(blob);
        let path = c.bytes()?;
        let mut key = [Text::Plain(&[]); 4];
        for k in &mut key {
            *k = Raw::read(&mut c)?.text()?;
        }
        Some(View { path, key, rest: c })
    }

    /// The values after the key: the body fields (with their index in
    /// `FIELDS`), then the extras (with `None`).
    pub fn values(&self) -> impl Iterator<Item = (Option<usize>, Raw<'a>)> + 'a {
        let mut c = self.rest.clone();
        let mut fields = body_fields().iter().map(|&i| Some(i));
        std::iter::from_fn(move || {
            let raw = Raw::read(&mut c)?;
            Some((fields.next().flatten(), raw))
        })
    }

    /// The key region's bytes (the blob after its path).
    fn key_bytes(blob: &'a [u8]) -> Option<&'a [u8]> {
        let mut c = Cursor::new(blob);
        c.bytes()?;
        let start = blob.len() - c.remaining();
        for _ in KEY {
            Raw::read(&mut c)?;
        }
        blob.get(start..blob.len() - c.remaining())
    }
}

/// A blob of the key alone with another path: what a group whose
/// representative is gone keeps (the path is the floor, see `Rep`).
pub fn key_only(blob: &[u8], path: &[u8]) -> Box<[u8]> {
    let mut out = Vec::with_capacity(path.len() + blob.len());
    put_bytes(&mut out, path);
    out.extend_from_slice(View::key_bytes(blob).unwrap_or_default());
    out.into_boxed_slice()
}

/// A blob's path ("" if damaged: blobs are checked when they come in).
pub fn path_of(blob: &[u8]) -> &[u8] {
    Cursor::new(blob).bytes().unwrap_or_default()
}

/// Whether a blob is whole and canonical: the path, the key, then exactly
/// `values` more values (or none, for a key-only blob), and nothing after.
pub fn check(blob: &[u8], values: usize) -> bool {
    let mut c = Cursor::new(blob);
    if c.bytes().is_none() {
        return false;
    }
    for i in 0..KEY.len() + values {
        match Raw::read(&mut c) {
            Some(r) if r.canonical() && (i >= KEY.len() || r.text().is_some()) => {}
            _ => return false,
        }
    }
    c.is_empty()
}

/// The record a blob holds, and its path. Fields the blob does not store
/// are `Value::Computed` (as the reader leaves them).
pub fn decode(blob: &[u8], extras: usize) -> Option<(Record, Vec<u8>)> {
    let v = View::of(blob)?;
    let mut values = vec![Value::Computed; FIELDS.len()];
    let mut extra = Vec::with_capacity(extras);
    for (i, t) in KEY.iter().zip(v.key) {
        if let Some(slot) = values.get_mut(*i) {
            *slot = Value::Str(t.to_string_lossy());
        }
    }
    for (field, raw) in v.values() {
        match field.and_then(|i| values.get_mut(i)) {
            Some(slot) => *slot = raw.value(),
            None => extra.push(raw.value()),
        }
    }
    Some((
        Record {
            values,
            extras: extra,
            warnings: 0,
        },
        v.path.to_vec(),
    ))
}
