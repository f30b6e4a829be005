//! Records as NDJSON lines, byte for byte as the `fastindex` command
//! writes them (Python's `write.dumps`): orjson's output, keys in column
//! order, no spaces; non-ASCII text as UTF-8; floats in the shortest form
//! that reads back, orjson's way (`1e-7`, `0.00001`, `1e+16`, `5.0`).
//!
//! A record whose path is not UTF-8 is written as Python's `json.dumps`
//! writes it (orjson refuses such strings): every string ASCII-escaped
//! (`\u00e9`, pairs of surrogates beyond the BMP), each byte of the path
//! that is not UTF-8 as `\udcXX` (the surrogate Python decodes it to, which
//! `json.loads` and `os.fsencode` turn back into the byte), and floats as
//! Python's `repr` writes them (`1e-07`, `1e-05`, `1e+16`).

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;

use super::{columns, names, Cell, Subseries};
use crate::extract::record::Record;
use crate::extract::schema::Schema;

/// Which encoder's bytes to match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    /// orjson: UTF-8 text, exponents from 1e-6 down and 1e16 up, unpadded.
    Orjson,
    /// Python's json with ensure_ascii: escaped text, `repr` floats.
    Python,
}

/// Append one record as one line (with its newline) to `out`: a per-file
/// record when `sub` is None, else a subseries record. `path` is the
/// display path.
pub fn write_record(
    out: &mut Vec<u8>,
    schema: &Schema,
    rec: &Record,
    path: &OsStr,
    sub: Option<Subseries<'_>>,
) {
    let style = if std::str::from_utf8(path.as_bytes()).is_ok() {
        Style::Orjson
    } else {
        Style::Python
    };
    let names: Vec<&str> = names(schema).collect();
    out.push(b'{');
    for (n, (i, cell)) in columns(rec, path, sub).enumerate() {
        if n > 0 {
            out.push(b',');
        }
        string(
            out,
            names.get(i).copied().unwrap_or_default().as_bytes(),
            style,
        );
        out.push(b':');
        value(out, cell, style);
    }
    out.extend_from_slice(b"}\n");
}

fn value(out: &mut Vec<u8>, cell: Cell<'_>, style: Style) {
    match cell {
        Cell::Null => out.extend_from_slice(b"null"),
        Cell::Str(s) => string(out, s.as_bytes(), style),
        Cell::Path(p) => string(out, p.as_bytes(), style),
        Cell::Int(n) => integer(out, n),
        Cell::Count(n) => integer(out, n),
        Cell::Num(x) => float(out, x, style),
        Cell::Nums(v) => list(out, v, |out, x| float(out, *x, style)),
        Cell::Ints(v) => list(out, v, |out, n| integer(out, *n)),
        Cell::Strs(v) => list(out, v, |out, s| string(out, s.as_bytes(), style)),
    }
}

fn list<T>(out: &mut Vec<u8>, items: &[T], mut each: impl FnMut(&mut Vec<u8>, &T)) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        each(out, item);
    }
    out.push(b']');
}

fn integer(out: &mut Vec<u8>, n: impl std::fmt::Display) {
    let mut s = String::new();
    let _ = write!(s, "{n}");
    out.extend_from_slice(s.as_bytes());
}

/// A float in the shortest digits that read back (as both orjson and
/// Python's repr choose them), laid out as `style` does. JSON has no NaN
/// or infinity: records never hold them (they do not parse); null if one
/// came.
fn float(out: &mut Vec<u8>, x: f64, style: Style) {
    if !x.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    // "{:e}": the shortest round-trip digits, as d[.ddd]e[-]x.
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if negative {
        out.push(b'-');
    }
    let lowest = match style {
        Style::Orjson => -5,
        Style::Python => -4,
    };
    if (lowest..16).contains(&exp) {
        if exp >= 0 {
            let point = exp as usize + 1;
            if digits.len() <= point {
                out.extend_from_slice(digits.as_bytes());
                out.extend(std::iter::repeat_n(b'0', point - digits.len()));
                out.extend_from_slice(b".0");
            } else {
                out.extend_from_slice(&digits.as_bytes()[..point]);
                out.push(b'.');
                out.extend_from_slice(&digits.as_bytes()[point..]);
            }
        } else {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', (-exp - 1) as usize));
            out.extend_from_slice(digits.as_bytes());
        }
        return;
    }
    let (first, rest) = digits.split_at(1);
    out.extend_from_slice(first.as_bytes());
    if !rest.is_empty() {
        out.push(b'.');
        out.extend_from_slice(rest.as_bytes());
    }
    out.push(b'e');
    out.push(if exp < 0 { b'-' } else { b'+' });
    let mut e = String::new();
    match style {
        Style::Orjson => {
            let _ = write!(e, "{}", exp.unsigned_abs());
        }
        Style::Python => {
            let _ = write!(e, "{:02}", exp.unsigned_abs());
        }
    }
    out.extend_from_slice(e.as_bytes());
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn escape_u(out: &mut Vec<u8>, unit: u32) {
    out.extend_from_slice(b"\\u");
    for shift in [12, 8, 4, 0] {
        out.push(HEX[((unit >> shift) & 0xF) as usize]);
    }
}

/// A JSON string of `bytes`: UTF-8, but for a path that may not be (then
/// `style` is Python, and each byte that is not UTF-8 is a `\udcXX`).
fn string(out: &mut Vec<u8>, bytes: &[u8], style: Style) {
    out.push(b'"');
    let mut rest = bytes;
    loop {
        let (valid, bad) = match std::str::from_utf8(rest) {
            Ok(s) => (s, 0),
            Err(e) => {
                let (ok, after) = rest.split_at(e.valid_up_to());
                let bad = e.error_len().unwrap_or(after.len());
                (std::str::from_utf8(ok).unwrap_or_default(), bad)
            }
        };
        text(out, valid, style);
        let start = valid.len();
        for &b in &rest[start..start + bad] {
            escape_u(out, 0xDC00 | u32::from(b));
        }
        rest = &rest[start + bad..];
        if rest.is_empty() {
            break;
        }
    }
    out.push(b'"');
}

fn text(out: &mut Vec<u8>, s: &str, style: Style) {
    // The common case: nothing to escape.
    let plain =
        |b: u8| b >= 0x20 && b != b'"' && b != b'\\' && (b < 0x7F || style == Style::Orjson);
    if s.bytes().all(plain) {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            c if (c as u32) < 0x20 => escape_u(out, c as u32),
            c if style == Style::Python && (c as u32) >= 0x7F => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    escape_u(out, u32::from(*unit));
                }
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(x: f64, style: Style) -> String {
        let mut out = Vec::new();
        float(&mut out, x, style);
        String::from_utf8(out).expect("ASCII")
    }

    fn s(bytes: &[u8], style: Style) -> String {
        let mut out = Vec::new();
        string(&mut out, bytes, style);
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn floats_as_orjson_writes_them() {
        // orjson 3.13's output for each.
        let cases: &[(f64, &str)] = &[
            (0.5, "0.5"),
            (1e-7, "1e-7"),
            (1.5e20, "1.5e+20"),
            (123456789.0, "123456789.0"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (1.0, "1.0"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (9.999e15, "9999000000000000.0"),
            (1.2345e16, "1.2345e+16"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (1e-5, "0.00001"),
            (1.25e-5, "0.0000125"),
            (9.875e-5, "0.00009875"),
            (1e-6, "1e-6"),
            (1.2499999999999999e-6, "1.2499999999999999e-6"),
            (0.0001, "0.0001"),
            (1.5e-7, "1.5e-7"),
            (2.5e-300, "2.5e-300"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (100.0, "100.0"),
            (1e21, "1e+21"),
            (1e23, "1e+23"),
            (2.75, "2.75"),
            (1234567.125, "1234567.125"),
            (0.1 + 0.2, "0.30000000000000004"),
            (-9.875e-12, "-9.875e-12"),
            (-98750.0, "-98750.0"),
        ];
        for &(x, want) in cases {
            assert_eq!(f(x, Style::Orjson), want, "{x:e}");
        }
    }

    #[test]
    fn floats_as_python_repr_writes_them() {
        let cases: &[(f64, &str)] = &[
            (1e-7, "1e-07"),
            (1e-5, "1e-05"),
            (1.25e-5, "1.25e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (1.5e20, "1.5e+20"),
            (2.5e-300, "2.5e-300"),
            (-0.0, "-0.0"),
            (123456789.0, "123456789.0"),
            (1e15, "1000000000000000.0"),
        ];
        for &(x, want) in cases {
            assert_eq!(f(x, Style::Python), want, "{x:e}");
        }
    }

    #[test]
    fn strings_as_orjson_and_python_write_them() {
        let raw = "a\"b\\c\u{0}\u{1}\u{8}\t\n\u{c}\r\u{1f}\u{7f} é \u{2028} 😀 /";
        assert_eq!(
            s(raw.as_bytes(), Style::Orjson),
            "\"a\\\"b\\\\c\\u0000\\u0001\\b\\t\\n\\f\\r\\u001f\u{7f} é \u{2028} 😀 /\""
        );
        let mut bytes = raw.as_bytes().to_vec();
        bytes.push(0xE9);
        assert_eq!(
            s(&bytes, Style::Python),
            "\"a\\\"b\\\\c\\u0000\\u0001\\b\\t\\n\\f\\r\\u001f\\u007f \\u00e9 \\u2028 \\ud83d\\ude00 /\\udce9\""
        );
        // A cut sequence, then more text: each byte of it escaped.
        assert_eq!(
            s(b"x\xf0\x9f\x98y", Style::Python),
            "\"x\\udcf0\\udc9f\\udc98y\""
        );
    }
}
