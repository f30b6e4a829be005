//! The reader on a real file against the reader on the same bytes in
//! memory: reads through pread (skips unchecked until the end) must come
//! to the same outcome as reads from a slice (skips checked at once).
#![no_main]

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use fastindex::dicom::reader::{read_bytes, read_path};
use fastindex::extract::record::Outcome;
use fastindex::extract::schema::Schema;
use fastindex::dicom::elements::Collected;
use libfuzzer_sys::fuzz_target;

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| Schema::new(Vec::new()).expect("valid schema"))
}

fn scratch() -> &'static (PathBuf, File) {
    static FILE: OnceLock<(PathBuf, File)> = OnceLock::new();
    FILE.get_or_init(|| {
        // In memory when the machine has a tmpfs there: three times faster.
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
        let path = dir.join(format!("fastindex-fuzz-{}.dcm", std::process::id()));
        let file = File::create(&path).expect("scratch file");
        (path, file)
    })
}

fn summary(r: fastindex::dicom::error::Result<Outcome>) -> String {
    match r {
        Ok(Outcome::Indexed(rec)) => format!("indexed {:?} {:?} {}", rec.values, rec.extras, rec.warnings),
        Ok(Outcome::Skipped { reason, .. }) => format!("skipped {reason}"),
        Err(e) => format!("error {}", e.reason()),
    }
}

fuzz_target!(|data: &[u8]| {
    let (path, file) = scratch();
    file.set_len(0).unwrap();
    file.write_all_at(data, 0).unwrap();
    let from_file = summary(read_path(schema(), path, &mut Collected::default()));
    let from_memory = summary(read_bytes(schema(), data, &mut Collected::default()));
    assert_eq!(from_file, from_memory);
});
