//! Bytes to values: text in the file's character set, trimmed as the
//! dictionary says, and DS numbers. Where encoding_rs would not give exactly
//! what pydicom gives, the file is declined and pydicom reads it.

use encoding_rs::Encoding as Charset;

use crate::dicom::error::{Error, Result};

/// How text values of one file are decoded.
#[derive(Clone, Copy, Debug)]
pub enum TextCodec {
    /// ISO 8859-1, pydicom's default when no character set is given.
    Latin1,
    Utf8,
    /// A WHATWG encoding identical to pydicom's codec for these bytes,
    /// except where `c1_differs` (bytes 0x80-0x9F) or `multibyte_check`.
    Other {
        charset: &'static Charset,
        c1_differs: bool,
        gbk: bool,
        sjis_single: bool,
    },
}

/// The character set value as pydicom sees it: ISO 8859-1 text with
/// trailing spaces and NULs removed, split on backslashes.
fn charset_text(raw: &[u8]) -> String {
    latin1(raw).trim_end_matches([' ', '\0']).to_owned()
}

/// Would pydicom fail on this SpecificCharacterSet value? It looks each
/// term up as a Python codec name, and a NUL inside one raises (where the
/// stream meets it, pydicom fails to read the file or the item).
pub fn charset_raises(raw: &[u8]) -> bool {
    charset_text(raw).split('\\').any(|t| t.contains('\0'))
}

/// The codec for a SpecificCharacterSet value (raw bytes, as stored).
/// pydicom decodes a value without escape sequences with the first
/// character set listed, so that is the one that matters here; it fixes
/// two common misspellings (`ISO-IR 100`, `ISO2022 IR 87`) and takes a
/// known but misspelled name for its default, ISO 8859-1.
pub fn codec_for(raw: Option<&[u8]>) -> Result<TextCodec> {
    let text = charset_text(raw.unwrap_or(b""));
    let first = text.split('\\').next().unwrap_or("");
    if let Some(codec) = known_charset(first)? {
        return Ok(codec);
    }
    // pydicom's two regular expressions, on characters.
    let c: Vec<char> = first.chars().collect();
    let at = |i: usize, s: &str| {
        c.get(i..i + s.len())
            .is_some_and(|w| w.iter().copied().eq(s.chars()))
    };
    let rest = |i: usize| c.get(i..).map_or(String::new(), |r| r.iter().collect());
    let patched = if at(0, "ISO") && c.get(3).is_some_and(|&x| x != '_') && at(4, "IR") {
        Some(format!("ISO_IR{}", rest(6)))
    } else if at(0, "ISO")
        && at(4, "2022")
        && at(9, "IR")
        && [3, 8, 11]
            .iter()
            .all(|&i| c.get(i).is_some_and(|&x| x != '\n'))
        && !first.starts_with("ISO 2022 IR ")
    {
        Some(format!("ISO 2022 IR {}", rest(12)))
    } else {
        None
    };
    match patched {
        Some(p) => Ok(known_charset(&p)?.unwrap_or(TextCodec::Latin1)),
        // Perhaps a Python codec name (pydicom tries those), perhaps junk
        // (then ISO 8859-1): only pydicom knows.
        None => Err(Error::Declined(format!(
            "character set {first:?} is read by pydicom"
        ))),
    }
}

/// A defined term pydicom knows: its codec here, or an error when only
/// pydicom decodes it as pydicom does; None for a name it does not know.
fn known_charset(term: &str) -> Result<Option<TextCodec>> {
    let whatwg = |label: &[u8], c1_differs: bool| -> Result<Option<TextCodec>> {
        Charset::for_label(label)
            .map(|charset| {
                Some(TextCodec::Other {
                    charset,
                    c1_differs,
                    gbk: false,
                    sjis_single: false,
                })
            })
            .ok_or_else(|| Error::Declined(format!("no decoder for character set {term:?}")))
    };
    Ok(Some(match term {
        "" | "ISO_IR 6" | "ISO 2022 IR 6" | "ISO_IR 100" | "ISO 2022 IR 100" => TextCodec::Latin1,
        "ISO_IR 192" => TextCodec::Utf8,
        "ISO_IR 101" | "ISO 2022 IR 101" => return whatwg(b"iso-8859-2", false),
        "ISO_IR 109" | "ISO 2022 IR 109" => return whatwg(b"iso-8859-3", false),
        "ISO_IR 110" | "ISO 2022 IR 110" => return whatwg(b"iso-8859-4", false),
        "ISO_IR 144" | "ISO 2022 IR 144" => return whatwg(b"iso-8859-5", false),
        "ISO_IR 127" | "ISO 2022 IR 127" => return whatwg(b"iso-8859-6", false),
        "ISO_IR 126" | "ISO 2022 IR 126" => return whatwg(b"iso-8859-7", false),
        "ISO_IR 138" | "ISO 2022 IR 138" => return whatwg(b"iso-8859-8", false),
        // WHATWG reads these labels as windows-1254 / windows-874, which
        // agree with ISO 8859-9 / TIS-620 except in the C1 range.
        "ISO_IR 148" | "ISO 2022 IR 148" => return whatwg(b"iso-8859-9", true),
        "GB18030" => TextCodec::Other {
            charset: encoding_rs::GB18030,
            c1_differs: false,
            gbk: false,
            sjis_single: false,
        },
        "GBK" | "ISO 2022 GBK" => TextCodec::Other {
            charset: encoding_rs::GBK,
            c1_differs: false,
            gbk: true,
            sjis_single: false,
        },
        "ISO_IR 13" | "ISO 2022 IR 13" => TextCodec::Other {
            charset: encoding_rs::SHIFT_JIS,
            c1_differs: false,
            gbk: false,
            sjis_single: true,
        },
        // Known to pydicom, decoded only by it here (ISO 2022 code
        // extensions, Thai, Korean, Japanese kanji sets).
        "ISO_IR 166" | "ISO 2022 IR 166" | "ISO 2022 IR 87" | "ISO 2022 IR 159"
        | "ISO 2022 IR 149" | "ISO 2022 IR 58" | "ISO 2022 58" => {
            return Err(Error::Declined(format!(
                "character set {term:?} is read by pydicom"
            )))
        }
        _ => return Ok(None),
    }))
}

/// Decode text as pydicom would, or decline.
pub fn decode_text(bytes: &[u8], codec: TextCodec) -> Result<String> {
    if bytes.contains(&0x1B) {
        return Err(Error::Declined(
            "text with ISO 2022 escape sequences".into(),
        ));
    }
    match codec {
        TextCodec::Latin1 => Ok(latin1(bytes)),
        TextCodec::Utf8 => match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(Error::Declined("text that is not valid UTF-8".into())),
        },
        TextCodec::Other {
            charset,
            c1_differs,
            gbk,
            sjis_single,
        } => {
            if c1_differs && bytes.iter().any(|b| (0x80..0xA0).contains(b)) {
                return Err(Error::Declined(
                    "C1 control bytes in single-byte text".into(),
                ));
            }
            // Python's GBK has no four-byte sequences (a digit second byte).
            if gbk
                && bytes
                    .windows(2)
                    .any(|w| w[0] >= 0x81 && w[1].is_ascii_digit())
            {
                return Err(Error::Declined("GB18030 sequences in GBK text".into()));
            }
            // ISO_IR 13 is single-byte JIS X 0201: half-width katakana only.
            if sjis_single
                && bytes
                    .iter()
                    .any(|&b| b >= 0x80 && !(0xA1..=0xDF).contains(&b))
            {
                return Err(Error::Declined(
                    "double-byte characters in ISO_IR 13 text".into(),
                ));
            }
            charset
                .decode_without_bom_handling_and_without_replacement(bytes)
                .map(|s| s.into_owned())
                .ok_or_else(|| Error::Declined(format!("text not decodable as {}", charset.name())))
        }
    }
}

pub fn latin1(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(ascii) if bytes.is_ascii() => ascii.to_owned(),
        _ => bytes.iter().map(|&b| b as char).collect(),
    }
}

/// Trim each backslash-separated value: leading spaces, trailing spaces
/// and NULs (the dictionary's rule, and what pydicom's strings come to).
pub fn trim_values(text: &str) -> String {
    if !text.contains('\\') {
        return trim(text).to_owned();
    }
    let parts: Vec<&str> = text.split('\\').map(trim).collect();
    parts.join("\\")
}

/// Python's `str.strip()` white space, in ISO 8859-1 (pydicom strips it
/// from UIDs and numbers, where the dictionary trims spaces and NULs).
pub fn python_space_byte(b: u8) -> bool {
    matches!(b, 0x09..=0x0D | 0x1C..=0x20 | 0x85 | 0xA0)
}

/// Would Python strip more than spaces from the ends of this trimmed
/// value (ISO 8859-1 text as UTF-8: NEL and NBSP start with 0xC2)?
pub fn python_strips(value: &str) -> bool {
    let b = value.as_bytes();
    b.first()
        .is_some_and(|&c| python_space_byte(c) || c == 0xC2)
        || b.last().is_some_and(|&c| python_space_byte(c))
}

/// A value as text, trimmed value by value: ISO 8859-1 (UIDs and codes).
pub fn text_value(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(ascii) if bytes.is_ascii() => trim_values(ascii),
        _ => trim_values(&latin1(bytes)),
    }
}

pub fn trim(s: &str) -> &str {
    s.trim_end_matches([' ', '\0']).trim_start_matches(' ')
}

/// A DS value: optional sign, digits with an optional point, optional
/// exponent. Anything else (including inf and nan) is not a number.
pub fn parse_ds(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let mut digits = i - int_start;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        digits += i - frac_start;
    }
    if digits == 0 {
        return None;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let exp_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp_start {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Several DS values: None when empty or when any one does not parse.
pub enum Numbers {
    Absent,
    Bad,
    /// White space around a value that Python strips and the dictionary's
    /// trimming keeps: pydicom reads it, not the fast path.
    Foreign,
    Values(Vec<f64>),
}

pub fn parse_ds_values(text: &str) -> Numbers {
    let text = trim(text);
    if text.is_empty() {
        return Numbers::Absent;
    }
    let mut out = Vec::new();
    for part in text.split('\\') {
        // The pydicom path strips NULs from both ends of a number.
        let part = part.trim_matches([' ', '\0']);
        if python_strips(part) {
            return Numbers::Foreign;
        }
        match parse_ds(part) {
            Some(v) => out.push(v),
            None => return Numbers::Bad,
        }
    }
    Numbers::Values(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ds_grammar() {
        assert_eq!(parse_ds("1.5"), Some(1.5));
        assert_eq!(parse_ds("-.5"), Some(-0.5));
        assert_eq!(parse_ds("5."), Some(5.0));
        assert_eq!(parse_ds("1e3"), Some(1000.0));
        assert_eq!(parse_ds("inf"), None);
        assert_eq!(parse_ds("nan"), None);
        assert_eq!(parse_ds("1_0"), None);
        assert_eq!(parse_ds("abc"), None);
        assert_eq!(parse_ds(""), None);
        assert_eq!(parse_ds("1e999"), None);
    }

    #[test]
    fn trims_each_value() {
        assert_eq!(trim_values(" SE \\IR\0"), "SE\\IR");
        assert_eq!(trim_values("ABC  \0\0"), "ABC");
    }

    #[test]
    fn charsets() {
        assert!(matches!(codec_for(None), Ok(TextCodec::Latin1)));
        assert!(matches!(
            codec_for(Some(b"ISO_IR 192")),
            Ok(TextCodec::Utf8)
        ));
        assert!(codec_for(Some(b"ISO 2022 IR 87")).is_err());
        // The first term decides values without escapes, as in pydicom.
        assert!(matches!(
            codec_for(Some(b"\\ISO 2022 IR 87")),
            Ok(TextCodec::Latin1)
        ));
        let c = codec_for(Some(b"ISO_IR 100")).unwrap();
        assert_eq!(decode_text(b"Caf\xe9", c).unwrap(), "Café");
        assert!(decode_text(b"a\x1b$B", c).is_err());
    }
}
