//! The encoding primitives every message is built from: little-endian integers and floats, f32
//! arrays, length-prefixed strings and paths, options — and a decoder that checks each count
//! against the bytes left before it allocates.

use std::path::PathBuf;

use super::ProtocolError;
use crate::task::{EMBEDDING_DIM, Embedding};

/// Builds a message body.
#[derive(Default)]
pub(super) struct Encoder {
    pub(super) buf: Vec<u8>,
}

impl Encoder {
    pub(super) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub(super) fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }
    pub(super) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(super) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(super) fn f64(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v);
    }
    pub(super) fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    pub(super) fn path(&mut self, v: &std::path::Path) {
        use std::os::unix::ffi::OsStrExt;
        self.bytes(v.as_os_str().as_bytes());
    }
    pub(super) fn f32s(&mut self, v: &[f32]) {
        self.u32(v.len() as u32);
        for x in v {
            self.buf.extend_from_slice(&x.to_le_bytes());
        }
    }
    pub(super) fn opt<T>(&mut self, v: Option<&T>, f: impl FnOnce(&mut Self, &T)) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                f(self, v);
            }
        }
    }
}

/// Reads a message body; errors name the message being decoded.
pub(super) struct Decoder<'a> {
    rest: &'a [u8],
    pub(super) message: &'static str,
}

impl<'a> Decoder<'a> {
    pub(super) fn new(body: &'a [u8]) -> Self {
        Self {
            rest: body,
            message: "frame",
        }
    }

    pub(super) fn malformed(&self, reason: &str) -> ProtocolError {
        ProtocolError::Malformed {
            message: self.message,
            reason: reason.to_owned(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if n > self.rest.len() {
            return Err(self.malformed(&format!("needs {n} more bytes, {} left", self.rest.len())));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(super) fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.array::<1>()?[0])
    }
    pub(super) fn bool(&mut self) -> Result<bool, ProtocolError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.malformed("boolean neither 0 nor 1")),
        }
    }
    pub(super) fn u32(&mut self) -> Result<u32, ProtocolError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub(super) fn u64(&mut self) -> Result<u64, ProtocolError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub(super) fn f64(&mut self) -> Result<f64, ProtocolError> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    /// A count of items at least `min_item_bytes` each: never more than the bytes left allow.
    pub(super) fn count(&mut self, min_item_bytes: usize) -> Result<usize, ProtocolError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item_bytes.max(1)) > self.rest.len() {
            return Err(self.malformed(&format!(
                "{n} items cannot fit in the {} bytes left",
                self.rest.len()
            )));
        }
        Ok(n)
    }

    /// A count as [`Decoder::count`], and at most `max`: for items that cost more in memory
    /// than on the wire (a 13-byte tensor entry decodes to ~104 bytes), so that a frame cannot
    /// decode to a multiple of itself.
    pub(super) fn count_at_most(
        &mut self,
        min_item_bytes: usize,
        max: usize,
    ) -> Result<usize, ProtocolError> {
        let n = self.count(min_item_bytes)?;
        if n > max {
            return Err(self.malformed(&format!("{n} items, at most {max} allowed")));
        }
        Ok(n)
    }

    fn bytes(&mut self) -> Result<&'a [u8], ProtocolError> {
        let n = self.count(1)?;
        self.take(n)
    }
    pub(super) fn string(&mut self) -> Result<String, ProtocolError> {
        let raw = self.bytes()?;
        String::from_utf8(raw.to_vec()).map_err(|_| self.malformed("string is not UTF-8"))
    }
    pub(super) fn path(&mut self) -> Result<PathBuf, ProtocolError> {
        use std::os::unix::ffi::OsStrExt;
        let raw = self.bytes()?;
        if raw.is_empty() || raw.contains(&0) {
            return Err(self.malformed("empty path or NUL in path"));
        }
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(raw)))
    }
    pub(super) fn embedding(&mut self) -> Result<Embedding, ProtocolError> {
        let n = self.count(4)?;
        if n != EMBEDDING_DIM {
            return Err(self.malformed(&format!(
                "embedding of {n} values, expected {EMBEDDING_DIM}"
            )));
        }
        let mut out = [0f32; EMBEDDING_DIM];
        for (o, raw) in out.iter_mut().zip(self.take(4 * n)?.chunks_exact(4)) {
            let mut b = [0u8; 4];
            b.copy_from_slice(raw);
            *o = f32::from_le_bytes(b);
        }
        Ok(out)
    }
    pub(super) fn opt<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, ProtocolError>,
    ) -> Result<Option<T>, ProtocolError> {
        match self.u8()? {
            0 => Ok(None),
            1 => f(self).map(Some),
            _ => Err(self.malformed("option tag neither 0 nor 1")),
        }
    }
    pub(super) fn end(&self) -> Result<(), ProtocolError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.malformed(&format!("{} bytes left over", self.rest.len())))
        }
    }
}
