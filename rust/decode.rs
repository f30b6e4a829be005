//! Bytes to values: text in the file's character set, trimmed as the
//! dictionary says, and DS numbers. Where encoding_rs would not give exactly
//! what pydicom gives, the file is declined and pydicom reads it.

use encoding_rs::Encoding as Charset;

use crate::error::{Error, Result};

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

/// The codec for a SpecificCharacterSet value (raw bytes, as stored).
/// pydicom decodes a value without escape sequences with the first
/// character set listed, so that is the one that matters here.
pub fn codec_for(raw: Option<&[u8]>) -> Result<TextCodec> {
    let raw = raw.unwrap_or(b"");
    let text: String = raw.iter().map(|&b| b as char).collect();
    let mut terms = text.split('\\').map(|t| t.trim_matches([' ', '\0']));
    let first = terms.next().unwrap_or("");
    let whatwg = |label: &[u8]| Charset::for_label(label);
    let other = |label: &[u8], c1_differs: bool| -> Result<TextCodec> {
        whatwg(label)
            .map(|charset| TextCodec::Other {
                charset,
                c1_differs,
                gbk: false,
                sjis_single: false,
            })
            .ok_or_else(|| Error::Declined(format!("no decoder for character set {first:?}")))
    };
    match first {
        "" | "ISO_IR 6" | "ISO 2022 IR 6" | "ISO_IR 100" | "ISO 2022 IR 100" => {
            Ok(TextCodec::Latin1)
        }
        "ISO_IR 192" => Ok(TextCodec::Utf8),
        "ISO_IR 101" | "ISO 2022 IR 101" => other(b"iso-8859-2", false),
        "ISO_IR 109" | "ISO 2022 IR 109" => other(b"iso-8859-3", false),
        "ISO_IR 110" | "ISO 2022 IR 110" => other(b"iso-8859-4", false),
        "ISO_IR 144" | "ISO 2022 IR 144" => other(b"iso-8859-5", false),
        "ISO_IR 127" | "ISO 2022 IR 127" => other(b"iso-8859-6", false),
        "ISO_IR 126" | "ISO 2022 IR 126" => other(b"iso-8859-7", false),
        "ISO_IR 138" | "ISO 2022 IR 138" => other(b"iso-8859-8", false),
        // WHATWG reads these labels as windows-1254 / windows-874, which
        // agree with ISO 8859-9 / TIS-620 except in the C1 range.
        "ISO_IR 148" | "ISO 2022 IR 148" => other(b"iso-8859-9", true),
        "GB18030" => Ok(TextCodec::Other {
            charset: encoding_rs::GB18030,
            c1_differs: false,
            gbk: false,
            sjis_single: false,
        }),
        "GBK" | "ISO 2022 GBK" => Ok(TextCodec::Other {
            charset: encoding_rs::GBK,
            c1_differs: false,
            gbk: true,
            sjis_single: false,
        }),
        "ISO_IR 13" | "ISO 2022 IR 13" => Ok(TextCodec::Other {
            charset: encoding_rs::SHIFT_JIS,
            c1_differs: false,
            gbk: false,
            sjis_single: true,
        }),
        other => Err(Error::Declined(format!(
            "character set {other:?} is read by pydicom"
        ))),
    }
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
    Values(Vec<f64>),
}

pub fn parse_ds_values(text: &str) -> Numbers {
    let text = trim(text);
    if text.is_empty() {
        return Numbers::Absent;
    }
    let mut out = Vec::new();
    for part in text.split('\\') {
        match parse_ds(trim(part)) {
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
