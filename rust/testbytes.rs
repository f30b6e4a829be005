//! A writer of raw DICOM bytes for tests and benchmarks: the one shared by
//! the Rust tests, the Python tests (`fastindex._native.DataSetWriter`,
//! `fastindex._native.part10`) and the benchmark generator. It is not used
//! by the reader; it writes exactly what it is told (lengths may lie, values
//! may be garbage), so tests can build damaged files.
//!
//! Which VRs get the long explicit header (2 reserved bytes, 4-byte length)
//! is `stream::long_length`: the reader's own rule, in one place.

use crate::dicom::elements::{long_length, Encoding};

/// An undefined length (sequences and items ended by a delimiter).
pub const UNDEF: u32 = 0xFFFF_FFFF;

/// Appends elements in one encoding to a byte buffer; every method returns
/// the writer, so calls chain.
pub struct DataSetWriter {
    enc: Encoding,
    buf: Vec<u8>,
}

impl DataSetWriter {
    pub fn new(enc: Encoding) -> DataSetWriter {
        DataSetWriter {
            enc,
            buf: Vec::new(),
        }
    }

    pub fn u16(&mut self, v: u16) -> &mut Self {
        let b = if self.enc.little {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        };
        self.buf.extend_from_slice(&b);
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        let b = if self.enc.little {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        };
        self.buf.extend_from_slice(&b);
        self
    }

    /// An element header declaring `len` bytes (not checked: a short
    /// explicit length keeps its low 16 bits).
    pub fn head(&mut self, tag: u32, vr: &[u8; 2], len: u32) -> &mut Self {
        self.u16((tag >> 16) as u16).u16(tag as u16);
        if self.enc.explicit {
            self.buf.extend_from_slice(vr);
            if long_length(*vr) {
                self.u16(0).u32(len)
            } else {
                self.u16(len as u16)
            }
        } else {
            self.u32(len)
        }
    }

    /// A whole element, its value padded to even length (NUL for UI, a
    /// space otherwise).
    pub fn el(&mut self, tag: u32, vr: &[u8; 2], value: impl AsRef<[u8]>) -> &mut Self {
        let v = value.as_ref();
        let odd = v.len() % 2 == 1;
        self.head(tag, vr, (v.len() + odd as usize) as u32);
        self.buf.extend_from_slice(v);
        if odd {
            self.buf.push(if vr == b"UI" { 0 } else { b' ' });
        }
        self
    }

    /// A whole element, its value as given (odd lengths stay odd).
    pub fn el_unpadded(&mut self, tag: u32, vr: &[u8; 2], value: &[u8]) -> &mut Self {
        self.head(tag, vr, value.len() as u32).raw(value)
    }

    pub fn item(&mut self, len: u32) -> &mut Self {
        self.u16(0xFFFE).u16(0xE000).u32(len)
    }

    pub fn item_end(&mut self) -> &mut Self {
        self.u16(0xFFFE).u16(0xE00D).u32(0)
    }

    pub fn seq_end(&mut self) -> &mut Self {
        self.u16(0xFFFE).u16(0xE0DD).u32(0)
    }

    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// A Part 10 file: 128-byte preamble, "DICM", the meta group (explicit VR
/// little endian, its group length right) with the SOP class, the SOP
/// instance if given and the transfer syntax, then `body` as is.
pub fn part10(ts: &str, body: &[u8], sop_class: &str, sop_instance: Option<&str>) -> Vec<u8> {
    let mut m = DataSetWriter::new(Encoding::EXPLICIT_LE);
    m.el(0x0002_0002, b"UI", sop_class);
    if let Some(uid) = sop_instance {
        m.el(0x0002_0003, b"UI", uid);
    }
    m.el(0x0002_0010, b"UI", ts);
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    let mut g = DataSetWriter::new(Encoding::EXPLICIT_LE);
    g.head(0x0002_0000, b"UL", 4).u32(m.buf.len() as u32);
    out.extend_from_slice(&g.buf);
    out.extend_from_slice(&m.buf);
    out.extend_from_slice(body);
    out
}

#[cfg(feature = "python")]
pub use self::python::register;

#[cfg(feature = "python")]
mod python {
    use pyo3::exceptions::PyValueError;
    use pyo3::prelude::*;
    use pyo3::types::{PyBytes, PyString};

    use super::UNDEF;
    use crate::dicom::elements::{long_length, Encoding};

    /// Bytes as given, or text as latin-1 (one byte per character, so a
    /// test can write any byte; characters past U+00FF are an error).
    fn bytes_of(v: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
        if let Ok(b) = v.cast::<PyBytes>() {
            return Ok(b.as_bytes().to_vec());
        }
        if let Ok(s) = v.cast::<PyString>() {
            return s
                .to_cow()?
                .chars()
                .map(|c| u8::try_from(u32::from(c)).ok())
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| PyValueError::new_err("text past U+00FF: pass bytes"));
        }
        v.extract::<Vec<u8>>()
    }

    fn vr_of(v: &Bound<'_, PyAny>) -> PyResult<[u8; 2]> {
        <[u8; 2]>::try_from(bytes_of(v)?.as_slice())
            .map_err(|_| PyValueError::new_err("a VR is two bytes"))
    }

    /// A raw DICOM element writer for tests and benchmarks (see
    /// rust/testbytes.rs): `DataSetWriter(explicit=True, little=True)`,
    /// chained `.el(tag, vr, value, pad=True)`, `.head(tag, vr, length)`,
    /// `.item(length=UNDEF)`, `.item_end()`, `.seq_end()`, `.raw(b)`,
    /// `.u16(v)`, `.u32(v)`; `.buf` is the bytes so far. Values and VRs are
    /// bytes or latin-1 text.
    #[pyclass(name = "DataSetWriter", module = "fastindex._native")]
    pub struct PyWriter(super::DataSetWriter);

    type Chain<'py> = PyRefMut<'py, PyWriter>;

    #[pymethods]
    impl PyWriter {
        #[new]
        #[pyo3(signature = (explicit = true, little = true))]
        fn new(explicit: bool, little: bool) -> Self {
            PyWriter(super::DataSetWriter::new(Encoding { explicit, little }))
        }

        /// Masked to 16 bits.
        fn u16(mut slf: Chain<'_>, v: u64) -> Chain<'_> {
            slf.0.u16(v as u16);
            slf
        }

        /// Masked to 32 bits.
        fn u32(mut slf: Chain<'_>, v: u64) -> Chain<'_> {
            slf.0.u32(v as u32);
            slf
        }

        fn head<'py>(
            mut slf: Chain<'py>,
            tag: u32,
            vr: &Bound<'_, PyAny>,
            length: u64,
        ) -> PyResult<Chain<'py>> {
            slf.0.head(tag, &vr_of(vr)?, length as u32);
            Ok(slf)
        }

        #[pyo3(signature = (tag, vr, value, *, pad = true))]
        fn el<'py>(
            mut slf: Chain<'py>,
            tag: u32,
            vr: &Bound<'_, PyAny>,
            value: &Bound<'_, PyAny>,
            pad: bool,
        ) -> PyResult<Chain<'py>> {
            let (vr, value) = (vr_of(vr)?, bytes_of(value)?);
            if pad {
                slf.0.el(tag, &vr, value);
            } else {
                slf.0.el_unpadded(tag, &vr, &value);
            }
            Ok(slf)
        }

        #[pyo3(signature = (length = UNDEF as u64))]
        fn item(mut slf: Chain<'_>, length: u64) -> Chain<'_> {
            slf.0.item(length as u32);
            slf
        }

        fn item_end(mut slf: Chain<'_>) -> Chain<'_> {
            slf.0.item_end();
            slf
        }

        fn seq_end(mut slf: Chain<'_>) -> Chain<'_> {
            slf.0.seq_end();
            slf
        }

        fn raw<'py>(mut slf: Chain<'py>, b: &Bound<'_, PyAny>) -> PyResult<Chain<'py>> {
            slf.0.raw(&bytes_of(b)?);
            Ok(slf)
        }

        #[getter]
        fn buf<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
            PyBytes::new(py, self.0.bytes())
        }

        fn __len__(&self) -> usize {
            self.0.bytes().len()
        }
    }

    /// A Part 10 file (preamble, DICM, meta group) around `body`: test and
    /// benchmark helper, see rust/testbytes.rs.
    #[pyfunction]
    #[pyo3(signature = (transfer_syntax_uid, body, sop_class_uid, sop_instance_uid = None))]
    fn part10<'py>(
        py: Python<'py>,
        transfer_syntax_uid: &str,
        body: &Bound<'_, PyAny>,
        sop_class_uid: &str,
        sop_instance_uid: Option<&str>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let body = bytes_of(body)?;
        Ok(PyBytes::new(
            py,
            &super::part10(transfer_syntax_uid, &body, sop_class_uid, sop_instance_uid),
        ))
    }

    /// Does an explicit VR `vr` take the long header (the reader's rule)?
    #[pyfunction(name = "long_length")]
    fn py_long_length(vr: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(long_length(vr_of(vr)?))
    }

    /// Adds the writer to the native module.
    pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add_class::<PyWriter>()?;
        m.add_function(wrap_pyfunction!(part10, m)?)?;
        m.add_function(wrap_pyfunction!(py_long_length, m)?)?;
        m.add("UNDEF", UNDEF)?;
        Ok(())
    }
}
