//! The one table of fields (docs/dictionary.md), and what the reader
//! must collect to fill it. Python reads the same table through
//! `_native.FIELDS`, so the pydicom fallback fills exactly these fields.

/// A tag as `(group << 16) | element`.
pub type Tag = u32;

pub const fn tag(group: u16, element: u16) -> Tag {
    ((group as u32) << 16) | element as u32
}

pub const SPECIFIC_CHARACTER_SET: Tag = tag(0x0008, 0x0005);
pub const PIXEL_DATA: Tag = tag(0x7FE0, 0x0010);

/// How a field's value is read and what a blank looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Text decoded with the SpecificCharacterSet (LO, SH); "" when absent.
    Text,
    /// Code string, ASCII-ish, backslash-joined when multi-valued; "".
    Code,
    /// A UID; "".
    Uid,
    /// One DS number; null when absent or unparsable.
    Number,
    /// Several DS numbers; null when absent or any is unparsable.
    Numbers,
    /// AcquisitionNumber as text; `DEFAULT_SUBSERIES` when absent.
    Subseries,
    /// Distinct SOPInstanceUIDs in a subseries (computed, subseries only).
    Count,
    /// Directory of the file path (computed).
    Folder,
    /// Path of the file relative to the base (computed).
    Path,
    /// Transfer syntax of the file, from the meta group or as detected.
    TransferSyntax,
    /// Series this subseries refers to, resolved over the whole index.
    ReferenceSeries,
    /// Modalities of those series, in the same order.
    ReferenceModality,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Code => "code",
            Kind::Uid => "uid",
            Kind::Number => "number",
            Kind::Numbers => "numbers",
            Kind::Subseries => "subseries",
            Kind::Count => "count",
            Kind::Folder => "folder",
            Kind::Path => "path",
            Kind::TransferSyntax => "transfer_syntax",
            Kind::ReferenceSeries => "reference_series",
            Kind::ReferenceModality => "reference_modality",
        }
    }

    /// Filled in when a record is written, not read from the file.
    pub fn computed(self) -> bool {
        matches!(
            self,
            Kind::Count
                | Kind::Folder
                | Kind::Path
                | Kind::ReferenceSeries
                | Kind::ReferenceModality
        )
    }

    /// The VR the standard gives these tags: what implicit VR files mean.
    pub fn vr(self) -> [u8; 2] {
        match self {
            Kind::Text => *b"LO",
            Kind::Code => *b"CS",
            Kind::Uid => *b"UI",
            Kind::Number | Kind::Numbers => *b"DS",
            Kind::Subseries => *b"IS",
            _ => *b"UN",
        }
    }
}

/// Which records carry a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Both,
    Subseries,
    Instance,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Both => "both",
            Scope::Subseries => "subseries",
            Scope::Instance => "instance",
        }
    }
}

pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    /// Tag paths tried in order; the first non-empty value wins.
    /// A path of several tags descends the first item of each sequence;
    /// a path of one tag in group 0002 names a meta group element.
    pub sources: &'static [&'static [Tag]],
    pub scope: Scope,
}

const SOP_CLASS_UID: Tag = tag(0x0008, 0x0016);
pub const MEDIA_STORAGE_SOP_CLASS_UID: Tag = tag(0x0002, 0x0002);
const REFERENCED_SOP_INSTANCE_UID: Tag = tag(0x0008, 0x1155);
const SERIES_INSTANCE_UID: Tag = tag(0x0020, 0x000E);
const FRAME_OF_REFERENCE_UID: Tag = tag(0x0020, 0x0052);
const REFERENCED_FRAME_OF_REFERENCE_SEQUENCE: Tag = tag(0x3006, 0x0010);

macro_rules! field {
    ($name:literal, $kind:ident, $scope:ident, [$($src:expr),* $(,)?]) => {
        Field { name: $name, kind: Kind::$kind, scope: Scope::$scope, sources: &[$($src),*] }
    };
}

/// The dictionary's 22 fields in order, then the extensions, then what
/// only per-file records carry.
pub static FIELDS: &[Field] = &[
    field!("patient_ID", Text, Both, [&[tag(0x0010, 0x0020)]]),
    field!("study", Uid, Both, [&[tag(0x0020, 0x000D)]]),
    field!("study_description", Text, Both, [&[tag(0x0008, 0x1030)]]),
    field!("series", Uid, Both, [&[SERIES_INSTANCE_UID]]),
    field!("series_description", Text, Both, [&[tag(0x0008, 0x103E)]]),
    field!("subseries", Subseries, Both, [&[tag(0x0020, 0x0012)]]),
    field!("modality", Code, Both, [&[tag(0x0008, 0x0060)]]),
    field!("instances", Count, Subseries, []),
    field!("instance_uid", Uid, Both, [&[tag(0x0008, 0x0018)]]),
    field!(
        "reference_ct",
        Uid,
        Both,
        [
            // RTSTRUCT: the series its contours were drawn on.
            &[
                REFERENCED_FRAME_OF_REFERENCE_SEQUENCE,
                tag(0x3006, 0x0012),
                tag(0x3006, 0x0014),
                SERIES_INSTANCE_UID
            ],
            // SEG: the segmented series.
            &[tag(0x0008, 0x1115), SERIES_INSTANCE_UID],
            // Anything else: the first referenced image.
            &[tag(0x0008, 0x1140), REFERENCED_SOP_INSTANCE_UID],
        ]
    ),
    field!(
        "reference_rs",
        Uid,
        Both,
        [&[tag(0x300C, 0x0060), REFERENCED_SOP_INSTANCE_UID]]
    ),
    field!(
        "reference_pl",
        Uid,
        Both,
        [&[tag(0x300C, 0x0002), REFERENCED_SOP_INSTANCE_UID]]
    ),
    field!(
        "reference_frame",
        Uid,
        Both,
        [
            &[FRAME_OF_REFERENCE_UID],
            &[
                REFERENCED_FRAME_OF_REFERENCE_SEQUENCE,
                FRAME_OF_REFERENCE_UID
            ],
        ]
    ),
    field!("folder", Folder, Both, []),
    field!("file_path", Path, Both, []),
    field!("orientation", Numbers, Both, [&[tag(0x0020, 0x0037)]]),
    field!("orientation_type", Code, Both, [&[tag(0x0010, 0x2210)]]),
    field!("MR_repetition_time", Number, Both, [&[tag(0x0018, 0x0080)]]),
    field!("MR_echo_time", Number, Both, [&[tag(0x0018, 0x0081)]]),
    field!("MR_scan_sequence", Code, Both, [&[tag(0x0018, 0x0020)]]),
    field!(
        "MR_magnetic_field_strength",
        Number,
        Both,
        [&[tag(0x0018, 0x0087)]]
    ),
    field!("MR_imaged_nucleus", Text, Both, [&[tag(0x0018, 0x0085)]]),
    // Extensions after the dictionary's 22: references resolved to series.
    field!("reference_series", ReferenceSeries, Subseries, []),
    field!("reference_modality", ReferenceModality, Subseries, []),
    // SOPClassUID, else the meta group's MediaStorageSOPClassUID (a path
    // in group 0002 is read from the meta group, not the data set).
    field!(
        "sop_class_uid",
        Uid,
        Instance,
        [&[SOP_CLASS_UID], &[MEDIA_STORAGE_SOP_CLASS_UID]]
    ),
    field!("transfer_syntax", TransferSyntax, Instance, []),
];

/// The subseries of a file without an AcquisitionNumber (the dictionary).
pub const DEFAULT_SUBSERIES: &str = "default";

/// Index of a field by name; the table is static, so a miss is a bug in
/// this crate, caught by the unit test below rather than at run time.
pub fn index_of(name: &str) -> Option<usize> {
    FIELDS.iter().position(|f| f.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_order_and_count() {
        let subseries: Vec<_> = FIELDS
            .iter()
            .filter(|f| f.scope != Scope::Instance)
            .map(|f| f.name)
            .collect();
        assert_eq!(subseries.len(), 24);
        assert_eq!(subseries[0], "patient_ID");
        assert_eq!(subseries[21], "MR_imaged_nucleus");
        assert_eq!(subseries[22], "reference_series");
        for name in ["series", "instance_uid", "file_path", "folder", "instances"] {
            assert!(index_of(name).is_some());
        }
    }
}
