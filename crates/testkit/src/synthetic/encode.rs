//! Writing an ONNX file whose one large initializer is streamed, not held in memory.
//!
//! `prost` encodes whole messages from memory. A model with a 1 GiB embedded initializer is
//! instead written as: the model's other fields, the graph field's header, the graph's other
//! fields, the initializer field's header, the tensor's other fields, and finally the
//! `raw_data` field's header followed by the payload, produced in chunks by the caller. Every
//! length prefix is known in advance because the payload's length is.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use masp_model_registry::onnx::{ModelProto, TensorProto};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint};

use crate::{Error, Result};

/// Field numbers of `onnx.proto3`.
const MODEL_GRAPH: u32 = 7;
const GRAPH_INITIALIZER: u32 = 5;
const TENSOR_RAW_DATA: u32 = 9;

fn len_header(tag: u32, len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(11);
    encode_key(tag, WireType::LengthDelimited, &mut out);
    encode_varint(len, &mut out);
    out
}

/// Writes `model` to `path` with one more initializer in its graph: `tensor` (whose
/// `raw_data` must be empty) with `payload_len` bytes of `raw_data` written by `fill`.
pub(crate) fn write_with_streamed_initializer(
    path: &Path,
    model: &ModelProto,
    tensor: &TensorProto,
    payload_len: u64,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<()> {
    let mut head = model.clone();
    let graph = head.graph.take().unwrap_or_default();
    let model_head = head.encode_to_vec();
    let graph_head = graph.encode_to_vec();
    let tensor_head = tensor.encode_to_vec();
    let raw_header = len_header(TENSOR_RAW_DATA, payload_len);
    let tensor_len = (tensor_head.len() + raw_header.len()) as u64 + payload_len;
    let initializer_header = len_header(GRAPH_INITIALIZER, tensor_len);
    let graph_len = (graph_head.len() + initializer_header.len()) as u64 + tensor_len;
    let graph_header = len_header(MODEL_GRAPH, graph_len);

    let io_err = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::create(path).map_err(io_err)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    for part in [
        &model_head,
        &graph_header,
        &graph_head,
        &initializer_header,
        &tensor_head,
        &raw_header,
    ] {
        out.write_all(part).map_err(io_err)?;
    }
    let mut counted = Counted {
        inner: &mut out,
        written: 0,
    };
    fill(&mut counted).map_err(io_err)?;
    if counted.written != payload_len {
        return Err(io_err(io::Error::other(format!(
            "payload has {} bytes, {payload_len} were announced",
            counted.written
        ))));
    }
    out.into_inner().map_err(|e| io_err(e.into_error()))?;
    Ok(())
}

/// A writer that counts what passes through it.
struct Counted<'a, W: Write> {
    inner: &'a mut W,
    written: u64,
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use masp_model_registry::onnx::GraphProto;

    #[test]
    fn streamed_file_equals_prost_encoding() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.onnx");
        let model = ModelProto {
            ir_version: 8,
            graph: Some(GraphProto {
                name: "g".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let tensor = TensorProto {
            name: "w".into(),
            dims: vec![300],
            data_type: 2,
            ..Default::default()
        };
        let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        write_with_streamed_initializer(&path, &model, &tensor, 300, |out| out.write_all(&payload))
            .unwrap();

        let decoded = ModelProto::decode(std::fs::read(&path).unwrap().as_slice()).unwrap();
        let mut expected = model.clone();
        let mut full = tensor.clone();
        full.raw_data = payload.into();
        expected.graph.as_mut().unwrap().initializer.push(full);
        assert_eq!(decoded, expected);
    }
}
