//! Why a file gave no record: the one table of reasons. Each has a name (as
//! written in `--errors`), a category (how the summary counts it), whether
//! the pydicom fallback gets a try, and what it means (the README's table
//! is tested against this one). Python reads it as `_native.REASONS`.

/// How the summary counts a reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    /// Not an instance, by design (DICOMDIR, FIFO, excluded...).
    Skipped,
    NotDicom,
    Error,
    /// Not a reason a file gave no record: an indexed file with warnings.
    Warning,
}

impl Category {
    /// As the summary line and the README name it.
    pub fn name(self) -> &'static str {
        match self {
            Category::Skipped => "skipped",
            Category::NotDicom => "not DICOM",
            Category::Error => "errors",
            Category::Warning => "warning",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reason {
    pub name: &'static str,
    pub category: Category,
    /// The fast path gave up: pydicom reads the file instead.
    pub falls_back: bool,
    /// The fallback hit one of its limits (its verdict stands whatever the
    /// fast path said).
    pub limit: bool,
    pub meaning: &'static str,
}

const fn reason(name: &'static str, category: Category, meaning: &'static str) -> Reason {
    Reason {
        name,
        category,
        falls_back: false,
        limit: false,
        meaning,
    }
}

pub const NO_SERIES_UID: Reason = reason(
    "no_series_uid",
    Category::Skipped,
    "a DICOM object without SeriesInstanceUID (not an instance)",
);
pub const DICOMDIR: Reason = reason(
    "dicomdir",
    Category::Skipped,
    "a DICOMDIR (named by the meta header or by SOPClassUID)",
);
pub const NOT_REGULAR: Reason = reason(
    "not_regular",
    Category::Skipped,
    "FIFO, socket or device: never opened",
);
pub const SYMLINK: Reason = reason(
    "symlink",
    Category::Skipped,
    "a symbolic link met inside a PATH, not followed (see --follow-symlinks)",
);
pub const SYMLINK_LOOP: Reason = reason(
    "symlink_loop",
    Category::Skipped,
    "a link back to a directory above it",
);
pub const EXCLUDED: Reason = reason(
    "excluded",
    Category::Skipped,
    "matched an --exclude pattern (a directory counts once)",
);
pub const NOT_DICOM: Reason = reason(
    "not_dicom",
    Category::NotDicom,
    "neither a Part 10 file nor a bare data set",
);
pub const TRUNCATED: Reason = reason(
    "truncated",
    Category::Error,
    "the file ends inside the header: the bytes stop inside an element or item whose declared lengths agree with everything around them",
);
pub const MALFORMED: Reason = Reason {
    falls_back: true,
    ..reason(
        "malformed",
        Category::Error,
        "the header breaks the encoding rules (a length past the item or sequence holding it, a wanted value far longer than any such value running past the end of the file, tags out of order), and pydicom could not read it either",
    )
};
pub const UNREADABLE: Reason = reason(
    "unreadable",
    Category::Error,
    "could not be opened or read (permissions, I/O, dangling link); an object the store would not serve after retries, or a URL that could not be listed (the server's message says why)",
);
pub const UNSUPPORTED: Reason = Reason {
    falls_back: true,
    ..reason(
        "unsupported",
        Category::Error,
        "declined by the fast path (DICOM it does not read exactly as pydicom would: a wanted value with a VR its tag does not allow, white space pydicom strips, a character set pydicom cannot read), and pydicom could not read it either",
    )
};
pub const TOO_LARGE: Reason = Reason {
    limit: true,
    ..reason("too_large", Category::Error, "the fallback hit a limit: the header runs past 64 MiB, or reading it needs more than --fallback-memory")
};
pub const TIMEOUT: Reason = Reason {
    limit: true,
    ..reason(
        "timeout",
        Category::Error,
        "the fallback took longer than --fallback-timeout",
    )
};
pub const WARNING: Reason = reason(
    "warning",
    Category::Warning,
    "an indexed file with values that did not parse, or warnings from pydicom",
);

/// Every reason, in the README's order.
pub const REASONS: [Reason; 14] = [
    NO_SERIES_UID,
    DICOMDIR,
    NOT_REGULAR,
    SYMLINK,
    SYMLINK_LOOP,
    EXCLUDED,
    NOT_DICOM,
    TRUNCATED,
    MALFORMED,
    UNREADABLE,
    UNSUPPORTED,
    TOO_LARGE,
    TIMEOUT,
    WARNING,
];

/// The reason of that name, if it is one.
pub fn named(name: &str) -> Option<&'static Reason> {
    REASONS.iter().find(|r| r.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_snake_case() {
        for (i, r) in REASONS.iter().enumerate() {
            assert!(
                r.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{}",
                r.name
            );
            assert_eq!(named(r.name).map(|f| f.name), Some(r.name));
            assert!(REASONS[..i].iter().all(|o| o.name != r.name));
        }
    }

    #[test]
    fn only_errors_fall_back_or_are_limits() {
        for r in REASONS {
            if r.falls_back || r.limit {
                assert_eq!(r.category, Category::Error, "{}", r.name);
            }
        }
    }
}
