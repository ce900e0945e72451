//! Writing ONNX files: streaming protobuf encoding and all-or-nothing file replacement.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use bytes::BufMut;
use bytes::buf::UninitSlice;
use masp_budget::Bytes;
use prost::Message;

use super::proto::ModelProto;
use crate::{Error, Result};

/// Writes `model` to `path`, replacing any existing file only once the new one is complete.
///
/// The message is encoded straight into the file through a small buffer: writing a model with
/// large embedded tensors does not need a second, encoded copy of it in memory. Returns the
/// size of the written file.
///
/// # Errors
/// [`Error::Write`] when the file cannot be written.
///
/// # Examples
///
/// ```
/// use masp_model_registry::onnx::{ModelProto, read_model, write_model};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("empty-graph.onnx");
/// let model = ModelProto {
///     ir_version: 10,
///     graph: Some(Default::default()),
///     opset_import: vec![masp_model_registry::onnx::OperatorSetIdProto {
///         domain: String::new(),
///         version: 21,
///     }],
///     ..Default::default()
/// };
/// write_model(&path, &model)?;
/// assert_eq!(read_model(&path)?, model);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_model(path: &Path, model: &ModelProto) -> Result<Bytes> {
    write_atomically(path, |file| {
        let mut out = EncodeToWriter::new(file);
        // Cannot fail: `remaining_mut` is unbounded.
        model
            .encode(&mut out)
            .map_err(|e| io::Error::other(e.to_string()))?;
        out.finish()
    })
    .map(Bytes::new)
}

/// Writes a file through `write` with [`crate::atomic::write_atomic_with`] (temporary file,
/// sync, rename, directory sync), so readers never see a partial file and a power loss never
/// leaves one. `write` returns the number of bytes written.
pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<&File>) -> io::Result<u64>,
) -> Result<u64> {
    crate::atomic::write_atomic_with(path, write).map_err(|source| Error::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// A [`BufMut`] that forwards everything to a writer, so `prost` can encode a message of any
/// size with a bounded buffer. I/O errors cannot pass through `BufMut`; the first one is kept
/// and returned by [`EncodeToWriter::finish`], later bytes are dropped.
pub(crate) struct EncodeToWriter<W: Write> {
    out: W,
    buf: Vec<u8>,
    written: u64,
    error: Option<io::Error>,
}

const ENCODE_BUFFER_BYTES: usize = 64 << 10;

impl<W: Write> EncodeToWriter<W> {
    pub(crate) fn new(out: W) -> Self {
        Self {
            out,
            buf: Vec::with_capacity(ENCODE_BUFFER_BYTES),
            written: 0,
            error: None,
        }
    }

    fn write_through(&mut self, bytes: &[u8]) {
        if self.error.is_none() {
            match self.out.write_all(bytes) {
                Ok(()) => self.written += bytes.len() as u64,
                Err(e) => self.error = Some(e),
            }
        }
    }

    fn flush_buf(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        self.write_through(&buf);
        self.buf = buf;
        self.buf.clear();
    }

    /// Flushes the buffer; the total number of bytes written, or the first error.
    pub(crate) fn finish(mut self) -> io::Result<u64> {
        self.flush_buf();
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.written),
        }
    }
}

// SAFETY: `chunk_mut` returns the spare capacity of `buf` (never empty: it is flushed first
// when full), and `advance_mut` only extends `buf`'s length over bytes the caller initialised
// in that chunk, as the `BufMut` contract requires of callers.
unsafe impl<W: Write> BufMut for EncodeToWriter<W> {
    fn remaining_mut(&self) -> usize {
        // A file has no fixed capacity; `isize::MAX` is what `Vec<u8>` reports too.
        isize::MAX as usize
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        let len = self.buf.len() + cnt;
        assert!(len <= self.buf.capacity(), "advance_mut past the chunk");
        // SAFETY: the caller initialised `cnt` bytes of the chunk, i.e. of the spare capacity.
        unsafe { self.buf.set_len(len) };
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        if self.buf.len() == self.buf.capacity() {
            self.flush_buf();
        }
        UninitSlice::uninit(self.buf.spare_capacity_mut())
    }

    fn put_slice(&mut self, src: &[u8]) {
        if src.len() <= self.buf.capacity() - self.buf.len() {
            self.buf.extend_from_slice(src);
        } else {
            // Large payloads (tensor data) go straight to the writer, without a copy.
            self.flush_buf();
            self.write_through(src);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::{GraphProto, TensorProto};

    #[test]
    fn streaming_encoding_matches_prost() {
        let tensor = TensorProto {
            name: "w".into(),
            dims: vec![3, 100_000],
            data_type: 1,
            raw_data: vec![7u8; 1_200_000].into(),
            ..Default::default()
        };
        let model = ModelProto {
            ir_version: 10,
            producer_name: "test".into(),
            graph: Some(GraphProto {
                initializer: vec![tensor.clone(), tensor],
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut out = EncodeToWriter::new(Vec::new());
        model.encode(&mut out).unwrap();
        let len = out.finish().unwrap();
        let mut reference = Vec::new();
        model.encode(&mut reference).unwrap();
        assert_eq!(len, reference.len() as u64);

        let mut streamed = EncodeToWriter::new(Vec::new());
        model.encode(&mut streamed).unwrap();
        streamed.flush_buf();
        assert_eq!(streamed.out, reference);
    }
}
