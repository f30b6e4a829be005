//! Why a file gave no record. Each variant maps to one documented reason.

use std::fmt;
use std::io;

use crate::outcome;

#[derive(Debug)]
pub enum Error {
    /// The file could not be opened or read (permissions, I/O, not regular).
    Io(io::Error),
    /// The bytes end inside the header, at this offset.
    Truncated(u64),
    /// The header does not follow the encoding rules.
    Malformed(String),
    /// Valid DICOM the fast path does not decode exactly (e.g. ISO 2022
    /// code extensions): pydicom reads it instead.
    Declined(String),
    /// Neither a Part 10 file nor a bare data set.
    NotDicom,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The reason as written in `--errors` (see `outcome`).
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Io(_) => outcome::UNREADABLE.name,
            Error::Truncated(_) => outcome::TRUNCATED.name,
            Error::Malformed(_) => outcome::MALFORMED.name,
            Error::Declined(_) => outcome::UNSUPPORTED.name,
            Error::NotDicom => outcome::NOT_DICOM.name,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "{e}"),
            Error::Truncated(at) => write!(f, "file ends inside the header at byte {at}"),
            Error::Malformed(m) => f.write_str(m),
            Error::Declined(m) => f.write_str(m),
            Error::NotDicom => f.write_str("neither a DICOM Part 10 file nor a bare data set"),
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}
