//! The reader on arbitrary bytes: fields or an error, never a panic, a
//! hang or an allocation sized by a declared length.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::OnceLock;

use fastindex::dicom::reader::read_bytes;
use fastindex::extract::record::Outcome;
use fastindex::extract::schema::{Extra, Schema};
use fastindex::dicom::elements::Collected;
use libfuzzer_sys::fuzz_target;

/// No allocation may be sized by a declared length: the reader caps every
/// buffer far below this, so one larger than this is a bug. Checked here
/// rather than with -malloc_limit_mb, which needs a sanitizer runtime.
const MAX_ALLOCATION: usize = 16 << 20;

struct Capped;

unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOCATION {
            std::process::abort();
        }
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOCATION {
            std::process::abort();
        }
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > MAX_ALLOCATION {
            std::process::abort();
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Capped = Capped;

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        // The dictionary's fields plus a few typed extras, so that the
        // binary decoders of `--tags` are exercised too.
        let extra = |name: &str, tag: u32, vr: &[u8; 2], multi: bool| Extra { name: name.into(), tag, vr: *vr, multi };
        Schema::new(vec![
            extra("Rows", 0x0028_0010, b"US", false),
            extra("PixelSpacing", 0x0028_0030, b"DS", true),
            extra("SeriesNumber", 0x0020_0011, b"IS", false),
            extra("SliceThickness", 0x0018_0050, b"DS", false),
            extra("SmallestImagePixelValue", 0x0028_0106, b"SS", false),
            extra("FrameTime", 0x0018_1063, b"DS", false),
            extra("ImageType", 0x0008_0008, b"CS", true),
            extra("ReferencedFrameNumber", 0x0008_1160, b"IS", true),
            extra("RecommendedDisplayFrameRateInFloat", 0x0018_9520, b"FD", false),
            extra("ImagePositionPatient", 0x0020_0032, b"DS", true),
            extra("ImageComments", 0x0020_4000, b"LT", false),
            extra("SamplesPerPixel", 0x0028_0002, b"US", false),
            extra("LargestMonochromePixelValue", 0x0028_9099, b"US", false),
            extra("NumberOfFrames", 0x0028_0008, b"IS", false),
            extra("PixelAspectRatio", 0x0028_0034, b"IS", true),
            extra("ExposureInuAs", 0x0018_1153, b"IS", false),
            extra("SpacingBetweenSlices", 0x0018_0088, b"DS", false),
            extra("RealWorldValueLUTData", 0x0040_9212, b"FD", true),
            extra("ReferencePixelX0", 0x0018_6020, b"SL", false),
            extra("ReferencePixelPhysicalValueX", 0x0018_6028, b"FD", false),
            extra("ReferencedSegmentNumber", 0x0062_000B, b"US", true),
            extra("SimpleFrameList", 0x0008_1161, b"UL", true),
            extra("RescaleSlope", 0x0028_1053, b"DS", false),
            extra("FrameIncrementPointer", 0x0028_0009, b"AT", true),
            extra("Volumetric", 0x0008_9206, b"CS", false),
            extra("PrivateFL", 0x0019_1010, b"FL", false),
        ])
        .expect("valid schema")
    })
}

fuzz_target!(|data: &[u8]| {
    let mut out = Collected::default();
    match read_bytes(schema(), data, &mut out) {
        Ok(Outcome::Indexed(rec)) => {
            // Every field was produced; nothing panics formatting them.
            std::hint::black_box(format!("{:?}", rec.values));
        }
        Ok(Outcome::Skipped { reason, .. }) => assert!(!reason.is_empty()),
        Err(e) => {
            let _ = e.reason();
            std::hint::black_box(e.to_string());
        }
    }
});
