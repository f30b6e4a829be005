//! From the first byte to the data set: preamble, meta group, transfer
//! syntax (inflating a deflated data set), or a bare data set whose
//! encoding is told from its first element, as pydicom does.

use std::io::{self, Read};

use flate2::read::DeflateDecoder;

use crate::decode::{latin1, trim};
use crate::error::{Error, Result};
use crate::schema::Schema;
use crate::source::{Source, StreamInput};
use crate::stream::{long_length, valid_vr, Collected, Encoding, Stream};

pub const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
pub const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
pub const DEFLATED_LE: &str = "1.2.840.10008.1.2.1.99";
pub const EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";
pub const MEDIA_STORAGE_DIRECTORY: &str = "1.2.840.10008.1.3.10";

/// A deflated data set is inflated at most this far: a wanted tag beyond
/// it is not in any real file, and a small file must not cost minutes of
/// inflating (a deflate stream of zeros grows a thousandfold).
pub const MAX_INFLATED: u64 = 256 << 20;

/// What the file says about itself outside the data set proper.
#[derive(Debug, Default, Clone)]
pub struct FileInfo {
    /// From the meta group, or the syntax the bytes were read in.
    pub transfer_syntax: String,
    /// MediaStorageSOPClassUID from the meta group ("" without one).
    pub media_sop_class: String,
    /// Byte order of the data set (for binary extra tags).
    pub little: bool,
}

/// Read the header of one DICOM file from `src` into `out`.
pub fn read(src: &mut Source<'_>, schema: &Schema, out: &mut Collected) -> Result<FileInfo> {
    out.reset(schema.slots);
    let part10 = matches!(src.peek(132)?, Some(b) if &b[128..132] == b"DICM");
    if part10 {
        src.skip(132)?;
    }
    let mut info = FileInfo {
        little: true,
        ..FileInfo::default()
    };
    let has_meta = read_meta(src, &mut info)?;
    if !part10 && !has_meta && !plausible_start(src)? {
        return Err(Error::NotDicom);
    }
    let mut result = read_dataset(src, schema, out, &mut info);
    // A file's skips are checked only at its end: damage met after a skip
    // that ran past the end is the truncation's doing, as it is in memory.
    if matches!(result, Err(Error::Malformed(_))) && src.overran()? {
        result = Err(Error::Truncated(src.position()));
    }
    // A bare data set that yielded nothing, whether it then failed or not,
    // was never shown to be DICOM.
    if !part10 && !has_meta && !out.found_any {
        return Err(Error::NotDicom);
    }
    result.map(|()| info)
}

/// The meta group: explicit VR little endian elements of group 0002.
fn read_meta(src: &mut Source<'_>, info: &mut FileInfo) -> Result<bool> {
    let mut any = false;
    while let Some(b) = src.peek(6)? {
        if u16::from_le_bytes([b[0], b[1]]) != 0x0002 {
            break;
        }
        if !valid_vr([b[4], b[5]]) {
            return Err(Error::Malformed("the meta group is not explicit VR".into()));
        }
        let h: [u8; 8] = src.take_array()?;
        let element = u16::from_le_bytes([h[2], h[3]]);
        let vr = [h[4], h[5]];
        let len = if long_length(vr) {
            u32::from_le_bytes(src.take_array()?)
        } else {
            u16::from_le_bytes([h[6], h[7]]) as u32
        };
        any = true;
        let keep = match element {
            0x0002 => Some(&mut info.media_sop_class),
            0x0010 => Some(&mut info.transfer_syntax),
            _ => None,
        };
        match keep {
            Some(dest) if len <= 1024 => *dest = trim(&latin1(src.take(len as usize)?)).to_owned(),
            _ if len == 0xFFFF_FFFF => {
                return Err(Error::Malformed(
                    "undefined length in the meta group".into(),
                ))
            }
            _ => src.skip(len as u64)?,
        }
    }
    Ok(any)
}

/// A bare data set must start like one: a small even group in one byte
/// order. Text, images and archives do not.
fn plausible_start(src: &mut Source<'_>) -> Result<bool> {
    let Some(b) = src.peek(8)? else {
        return Ok(false);
    };
    let le = u16::from_le_bytes([b[0], b[1]]);
    let be = u16::from_be_bytes([b[0], b[1]]);
    let small = |g: u16| g <= 0x0010 && g % 2 == 0;
    Ok(small(le) || (small(be) && valid_vr([b[4], b[5]])))
}

/// Pick the data set's encoding and read it.
fn read_dataset(
    src: &mut Source<'_>,
    schema: &Schema,
    out: &mut Collected,
    info: &mut FileInfo,
) -> Result<()> {
    let ts = info.transfer_syntax.as_str();
    if ts == DEFLATED_LE {
        let inflated = Capped(DeflateDecoder::new(src.take_reader()).take(MAX_INFLATED));
        let mut src = Source::inflated(Box::new(StreamInput(inflated)));
        return Stream {
            src: &mut src,
            schema,
            out,
        }
        .top(Encoding::EXPLICIT_LE);
    }
    let Some(first) = src.peek(6)?.map(|b| [b[0], b[1], b[4], b[5]]) else {
        // An empty data set: only the meta group was there. Unless a skip
        // in the meta group ran past the end, or a few bytes are left over:
        // that is a file cut short.
        if src.at_end()? {
            return Ok(());
        }
        return Err(Error::Truncated(src.position()));
    };
    let looks_explicit = valid_vr([first[2], first[3]]);
    let enc = match ts {
        "" => {
            let enc = if !looks_explicit {
                Encoding::IMPLICIT_LE
            } else if u16::from_le_bytes([first[0], first[1]]) >= 1024 {
                Encoding::EXPLICIT_BE
            } else {
                Encoding::EXPLICIT_LE
            };
            info.transfer_syntax = match enc {
                Encoding::IMPLICIT_LE => IMPLICIT_LE,
                Encoding::EXPLICIT_BE => EXPLICIT_BE,
                _ => EXPLICIT_LE,
            }
            .to_string();
            enc
        }
        IMPLICIT_LE => Encoding {
            explicit: looks_explicit,
            little: true,
        },
        EXPLICIT_BE => Encoding {
            explicit: looks_explicit,
            little: false,
        },
        // Every other syntax, encapsulated ones included, is explicit VR
        // little endian up to the pixel data; like pydicom, believe the bytes
        // when they disagree with the declared VR mode.
        _ => Encoding {
            explicit: looks_explicit,
            little: true,
        },
    };
    info.little = enc.little;
    Stream { src, schema, out }.top(enc)
}

/// An inflating reader that fails, rather than ends, at MAX_INFLATED.
struct Capped<R: Read>(io::Take<R>);

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.read(buf)?;
        if n == 0 && !buf.is_empty() && self.0.limit() == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "inflates past {} MiB before the wanted tags",
                    MAX_INFLATED >> 20
                ),
            ));
        }
        Ok(n)
    }
}
