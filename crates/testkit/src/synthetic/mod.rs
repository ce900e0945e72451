//! Synthetic ONNX models written by Rust code, deterministic and cached by their parameters.
//!
//! Every generator writes into `dir/<kind>-<hash of the parameters>/` and returns the model's
//! path; a second call with the same parameters reuses the files. Pass [`cache_dir`] to share
//! models between test runs, or a temporary directory for throw-away ones. Generated models use
//! IR version 8 and the default operator set 17, which ONNX Runtime 1.31 runs; the crate's
//! tests load each one in the real runtime and run it.

mod cache;
mod encode;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use masp_model_registry::onnx::{
    AttributeProto, AttributeType, DataLocation, DataType, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TypeProto, ValueInfoProto,
    proto::{tensor_shape_proto, type_proto},
    write_model,
};

pub use cache::cache_dir;

use crate::{Error, Result};

/// ONNX IR version of generated models.
pub const IR_VERSION: i64 = 8;
/// Default-domain operator set version of generated models.
pub const OPSET_VERSION: i64 = 17;
/// Protobuf messages are limited to 2 GiB, so embedded weights must stay below that.
const MAX_EMBEDDED_BYTES: u64 = (2 << 30) - (1 << 20);

/// Where a model keeps its weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// In the model file (`raw_data`): ONNX Runtime parses and copies them.
    Embedded,
    /// In `<model file name>.data` beside the model, at offset 0: ONNX Runtime can map them.
    External,
}

/// Parameters of [`weights_model`]: `y [1, M] = x [1, K] · W [K, M]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WeightsModel {
    /// Target size of the float32 weights `W`. The model holds the largest multiple of
    /// `4 · K` bytes not above it (at least one column), see [`WeightsModel::shape`].
    pub weight_bytes: u64,
    /// Where the weights are stored.
    pub layout: Layout,
    /// File stem of the model (`<name>.onnx`); letters, digits, `-`, `_`, `.`.
    pub name: String,
}

impl WeightsModel {
    /// Width `K` of the input `x [1, K]` (and rows of `W`) for models of at least 4 KiB.
    pub const INPUT_WIDTH: u64 = 1024;

    /// `(K, M)`: the input width and the number of output columns.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_testkit::synthetic::{Layout, WeightsModel};
    /// let spec = WeightsModel { weight_bytes: 64 << 20, layout: Layout::Embedded, name: "w".into() };
    /// assert_eq!(spec.shape(), (1024, 16384));
    /// assert_eq!(spec.actual_weight_bytes(), 64 << 20);
    /// ```
    #[must_use]
    pub fn shape(&self) -> (u64, u64) {
        let k = Self::INPUT_WIDTH.min((self.weight_bytes / 4).max(1));
        let m = (self.weight_bytes / (4 * k)).max(1);
        (k, m)
    }

    /// Bytes of weights the generated model holds: `4 · K · M`.
    #[must_use]
    pub fn actual_weight_bytes(&self) -> u64 {
        let (k, m) = self.shape();
        4 * k * m
    }
}

/// The weights of every [`weights_model`], row-major (`W[i][j]` is element `i · M + j`):
/// a fixed pseudo-random sequence in `[-0.5, 0.5)`, the same for every model.
///
/// # Examples
///
/// ```
/// let first: Vec<f32> = masp_testkit::synthetic::weight_values().take(3).collect();
/// assert!(first.iter().all(|w| (-0.5..0.5).contains(w)));
/// assert_eq!(first, masp_testkit::synthetic::weight_values().take(3).collect::<Vec<_>>());
/// ```
pub fn weight_values() -> impl Iterator<Item = f32> {
    // Knuth's MMIX LCG; the top 24 bits are exact in an f32.
    let mut state: u64 = 0x853c_49e6_748f_ea9b;
    std::iter::repeat_with(move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 40) as f32 / 16_777_216.0 - 0.5
    })
}

/// Streams the first `count` weights as little-endian float32.
fn write_weights(out: &mut dyn Write, count: u64) -> io::Result<()> {
    const CHUNK: usize = 1 << 18; // floats per write: 1 MiB
    let mut values = weight_values();
    let mut buf = Vec::with_capacity(CHUNK * 4);
    let mut left = count;
    while left > 0 {
        let n = left.min(CHUNK as u64);
        buf.clear();
        for value in values.by_ref().take(n as usize) {
            buf.extend_from_slice(&value.to_le_bytes());
        }
        out.write_all(&buf)?;
        left -= n;
    }
    Ok(())
}

/// Writes a model whose computation really uses `spec.weight_bytes` of float32 weights, so
/// ONNX Runtime must hold them: input `x [1, K]` float, output `y [1, M] = x · W` with
/// `W [K, M]` from [`weight_values`] (see [`WeightsModel::shape`]).
///
/// Weights are written in 1 MiB chunks: generating a 1 GiB model needs no more memory than a
/// small one. [`Layout::External`] puts them in `<name>.onnx.data` beside the model.
///
/// # Errors
/// [`Error::InvalidSpec`] for a zero size, a bad name, or embedded weights of 2 GiB or more
/// (the protobuf limit); [`Error::Io`] when writing fails.
///
/// # Examples
///
/// ```
/// use masp_testkit::synthetic::{Layout, WeightsModel, weights_model};
///
/// let dir = tempfile::tempdir()?;
/// let spec = WeightsModel { weight_bytes: 1 << 20, layout: Layout::External, name: "w1m".into() };
/// let path = weights_model(dir.path(), spec)?;
/// let meta = masp_model_registry::onnx::OnnxMetadata::read(&path)?;
/// assert_eq!(meta.external_weight_bytes.get(), 1 << 20);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn weights_model(dir: &Path, spec: WeightsModel) -> Result<PathBuf> {
    const GENERATOR: &str = "weights_model";
    check_name(GENERATOR, &spec.name)?;
    if spec.weight_bytes == 0 {
        return Err(invalid(GENERATOR, "weight_bytes is zero".into()));
    }
    let (k, m) = spec.shape();
    let payload = spec.actual_weight_bytes();
    if spec.layout == Layout::Embedded && payload > MAX_EMBEDDED_BYTES {
        return Err(invalid(
            GENERATOR,
            format!(
                "{payload} bytes cannot be embedded (protobuf's 2 GiB limit): use Layout::External"
            ),
        ));
    }
    let file_name = format!("{}.onnx", spec.name);
    let params = format!("{:?}|{}|{k}x{m}", spec.layout, spec.name);
    cache::cached(dir, "weights", &params, &file_name, |tmp| {
        let path = tmp.join(&file_name);
        let graph = GraphProto {
            name: spec.name.clone(),
            node: vec![node("MatMul", &["x", "W"], &["y"], vec![])],
            input: vec![value_info("x", &[Dim::Fixed(1), Dim::Fixed(k as i64)])],
            output: vec![value_info("y", &[Dim::Fixed(1), Dim::Fixed(m as i64)])],
            ..Default::default()
        };
        let mut weights = TensorProto {
            name: "W".into(),
            dims: vec![k as i64, m as i64],
            data_type: DataType::Float as i32,
            ..Default::default()
        };
        match spec.layout {
            Layout::Embedded => encode::write_with_streamed_initializer(
                &path,
                &model(graph),
                &weights,
                payload,
                |out| write_weights(out, k * m),
            ),
            Layout::External => {
                let data_name = format!("{file_name}.data");
                let data_path = tmp.join(&data_name);
                let io_err = |source| Error::Io {
                    path: data_path.clone(),
                    source,
                };
                let mut out =
                    BufWriter::with_capacity(1 << 20, File::create(&data_path).map_err(io_err)?);
                write_weights(&mut out, k * m).map_err(io_err)?;
                out.flush().map_err(io_err)?;
                weights.data_location = DataLocation::External as i32;
                weights.external_data = [
                    ("location", data_name),
                    ("offset", "0".to_string()),
                    ("length", payload.to_string()),
                ]
                .into_iter()
                .map(|(key, value)| StringStringEntryProto {
                    key: key.into(),
                    value,
                })
                .collect();
                let mut model = model(graph);
                if let Some(graph) = model.graph.as_mut() {
                    graph.initializer.push(weights);
                }
                write_model(&path, &model)?;
                Ok(())
            }
        }
    })
}

/// Parameters of [`activation_model`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ActivationModel {
    /// Bytes of intermediate activation per input sample: the model's peak activation memory
    /// is about `T · bytes_per_input_sample` for an input of `T` samples. Rounded down to a
    /// multiple of 4 (float32), at least 4.
    pub bytes_per_input_sample: u64,
    /// File stem of the model (`<name>.onnx`); letters, digits, `-`, `_`, `.`.
    pub name: String,
}

impl ActivationModel {
    /// `F`: float32 activations per input sample.
    #[must_use]
    pub fn features(&self) -> u64 {
        (self.bytes_per_input_sample / 4).max(1)
    }
}

/// Writes a model whose activation memory grows linearly with its input's length:
/// input `x [1, T]` float (`T` symbolic), `h [T, F] = reshape(x, [T, 1]) · ones [1, F]`, output
/// `y [1, T] = Σ_F h`, i.e. `y = F · x`. The intermediate `h` takes `T · F · 4` bytes, with
/// `F` = [`ActivationModel::features`]; the weights are only `F · 4` bytes.
///
/// # Errors
/// [`Error::InvalidSpec`] for a bad name or a size above 1 GiB per sample; [`Error::Io`].
///
/// # Examples
///
/// ```
/// use masp_testkit::synthetic::{ActivationModel, activation_model};
///
/// let dir = tempfile::tempdir()?;
/// let spec = ActivationModel { bytes_per_input_sample: 4096, name: "act".into() };
/// let meta = masp_model_registry::onnx::OnnxMetadata::read(&activation_model(dir.path(), spec)?)?;
/// assert_eq!(meta.inputs[0].name, "x");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn activation_model(dir: &Path, spec: ActivationModel) -> Result<PathBuf> {
    const GENERATOR: &str = "activation_model";
    check_name(GENERATOR, &spec.name)?;
    if spec.bytes_per_input_sample > 1 << 30 {
        return Err(invalid(
            GENERATOR,
            "more than 1 GiB per input sample".into(),
        ));
    }
    let features = spec.features();
    let file_name = format!("{}.onnx", spec.name);
    let params = format!("{features}|{}", spec.name);
    cache::cached(dir, "activation", &params, &file_name, |tmp| {
        let ones: Vec<u8> = std::iter::repeat_n(1.0f32.to_le_bytes(), features as usize)
            .flatten()
            .collect();
        let graph = GraphProto {
            name: spec.name.clone(),
            node: vec![
                node("Reshape", &["x", "column_shape"], &["column"], vec![]),
                node("MatMul", &["column", "ones"], &["spread"], vec![]),
                node(
                    "ReduceSum",
                    &["spread", "feature_axis"],
                    &["sums"],
                    vec![int_attribute("keepdims", 0)],
                ),
                node("Reshape", &["sums", "row_shape"], &["y"], vec![]),
            ],
            initializer: vec![
                int64_tensor("column_shape", &[-1, 1]),
                int64_tensor("feature_axis", &[1]),
                int64_tensor("row_shape", &[1, -1]),
                TensorProto {
                    name: "ones".into(),
                    dims: vec![1, features as i64],
                    data_type: DataType::Float as i32,
                    raw_data: Bytes::from(ones),
                    ..Default::default()
                },
            ],
            input: vec![value_info("x", &[Dim::Fixed(1), Dim::Symbolic("T")])],
            output: vec![value_info("y", &[Dim::Fixed(1), Dim::Symbolic("T")])],
            ..Default::default()
        };
        write_model(&tmp.join(&file_name), &model(graph))?;
        Ok(())
    })
}

/// Parameters of [`growing_model`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GrowingModel {
    /// Nodes in the chain, each allocating its own tensor; 1 to 1024.
    pub nodes: u32,
    /// Bytes each node's tensor takes per input sample: node `i` outputs `T · F · 4` bytes
    /// for `T` input samples, with `F` = this / 4 (at least 1 float).
    pub bytes_per_sample_per_node: u64,
    /// File stem of the model (`<name>.onnx`); letters, digits, `-`, `_`, `.`.
    pub name: String,
}

impl GrowingModel {
    /// `F`: float32 values each node keeps per input sample.
    #[must_use]
    pub fn features(&self) -> u64 {
        (self.bytes_per_sample_per_node / 4).max(1)
    }

    /// What one node allocates for an input of `samples` samples.
    #[must_use]
    pub fn node_bytes(&self, samples: u64) -> u64 {
        samples * self.features() * 4
    }

    /// What a call on `samples` samples holds at once at its peak: every node's tensor, alive
    /// until the last node, plus that node's output.
    #[must_use]
    pub fn peak_bytes(&self, samples: u64) -> u64 {
        (u64::from(self.nodes) + 1) * self.node_bytes(samples)
    }
}

/// Writes a model whose memory grows node by node with its input's length, as a deep network's
/// activations do: input `x [1, T]` float (`T` symbolic), `column = reshape(x, [T, 1])`, then
/// `nodes` independent nodes `h_i = column · w_i` (`w_i [1, F]` filled with `i + 1`, so no two
/// are alike and none can be merged), each `[T, F]` and all alive until the last node sums
/// them: `y [1, T] = Σ_F Σ_i h_i = x · F · n(n+1)/2`. A call thus allocates one `T · F · 4`-byte
/// tensor per node, one node after the other, and ONNX Runtime can be stopped between any two
/// of them.
///
/// # Errors
/// [`Error::InvalidSpec`] for a bad name, no nodes or more than 1024, or more than 1 GiB per
/// sample per node; [`Error::Io`].
///
/// # Examples
///
/// ```
/// use masp_testkit::synthetic::{GrowingModel, growing_model};
///
/// let dir = tempfile::tempdir()?;
/// let spec = GrowingModel { nodes: 4, bytes_per_sample_per_node: 64, name: "grow".into() };
/// assert_eq!(spec.peak_bytes(1000), 5 * 1000 * 64);
/// let meta = masp_model_registry::onnx::OnnxMetadata::read(&growing_model(dir.path(), spec)?)?;
/// assert_eq!(meta.inputs[0].name, "x");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn growing_model(dir: &Path, spec: GrowingModel) -> Result<PathBuf> {
    const GENERATOR: &str = "growing_model";
    check_name(GENERATOR, &spec.name)?;
    if spec.nodes == 0 || spec.nodes > 1024 {
        return Err(invalid(
            GENERATOR,
            format!("{} nodes: 1 to 1024", spec.nodes),
        ));
    }
    if spec.bytes_per_sample_per_node > 1 << 30 {
        return Err(invalid(
            GENERATOR,
            "more than 1 GiB per input sample per node".into(),
        ));
    }
    let features = spec.features();
    let file_name = format!("{}.onnx", spec.name);
    let params = format!("{}|{features}|{}", spec.nodes, spec.name);
    cache::cached(dir, "growing", &params, &file_name, |tmp| {
        let mut nodes = vec![node("Reshape", &["x", "column_shape"], &["column"], vec![])];
        let mut initializer = vec![
            int64_tensor("column_shape", &[-1, 1]),
            int64_tensor("feature_axis", &[1]),
            int64_tensor("row_shape", &[1, -1]),
        ];
        let names: Vec<(String, String)> = (0..spec.nodes)
            .map(|i| (format!("w{i}"), format!("h{i}")))
            .collect();
        for (i, (weight, out)) in names.iter().enumerate() {
            let value = (i + 1) as f32;
            let raw: Vec<u8> = std::iter::repeat_n(value.to_le_bytes(), features as usize)
                .flatten()
                .collect();
            initializer.push(TensorProto {
                name: weight.clone(),
                dims: vec![1, features as i64],
                data_type: DataType::Float as i32,
                raw_data: Bytes::from(raw),
                ..Default::default()
            });
            nodes.push(node("MatMul", &["column", weight], &[out], vec![]));
        }
        let outs: Vec<&str> = names.iter().map(|(_, out)| out.as_str()).collect();
        nodes.push(node("Sum", &outs, &["total"], vec![]));
        nodes.push(node(
            "ReduceSum",
            &["total", "feature_axis"],
            &["sums"],
            vec![int_attribute("keepdims", 0)],
        ));
        nodes.push(node("Reshape", &["sums", "row_shape"], &["y"], vec![]));
        let graph = GraphProto {
            name: spec.name.clone(),
            node: nodes,
            initializer,
            input: vec![value_info("x", &[Dim::Fixed(1), Dim::Symbolic("T")])],
            output: vec![value_info("y", &[Dim::Fixed(1), Dim::Symbolic("T")])],
            ..Default::default()
        };
        write_model(&tmp.join(&file_name), &model(graph))?;
        Ok(())
    })
}

/// Writes `faulty.onnx`: a well-formed ONNX file (it passes
/// [`OnnxMetadata::read`](masp_model_registry::onnx::OnnxMetadata::read)) that ONNX Runtime
/// rejects when creating a session, because its only node reads a value nothing defines.
///
/// # Errors
/// [`Error::Io`] when writing fails.
pub fn faulty_model(dir: &Path) -> Result<PathBuf> {
    cache::cached(dir, "faulty", "", "faulty.onnx", |tmp| {
        let graph = GraphProto {
            name: "faulty".into(),
            node: vec![node("Relu", &["undefined_value"], &["y"], vec![])],
            input: vec![value_info("x", &[Dim::Fixed(1), Dim::Fixed(4)])],
            output: vec![value_info("y", &[Dim::Fixed(1), Dim::Fixed(4)])],
            ..Default::default()
        };
        write_model(&tmp.join("faulty.onnx"), &model(graph))?;
        Ok(())
    })
}

/// Writes `corrupt.onnx`: text, not an ONNX file.
///
/// # Errors
/// [`Error::Io`] when writing fails.
pub fn corrupt_model(dir: &Path) -> Result<PathBuf> {
    cache::cached(dir, "corrupt", "", "corrupt.onnx", |tmp| {
        let path = tmp.join("corrupt.onnx");
        std::fs::write(
            &path,
            "This is not an ONNX model: it is a masp-testkit fixture.\n",
        )
        .map_err(|source| Error::Io { path, source })
    })
}

fn invalid(generator: &'static str, reason: String) -> Error {
    Error::InvalidSpec { generator, reason }
}

fn check_name(generator: &'static str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            generator,
            format!(
                "name {name:?} must be 1-100 letters, digits, '-', '_' or '.', not starting with '.'"
            ),
        ))
    }
}

/// A dimension of a declared shape.
enum Dim {
    Fixed(i64),
    Symbolic(&'static str),
}

fn model(graph: GraphProto) -> ModelProto {
    ModelProto {
        ir_version: IR_VERSION,
        producer_name: "masp-testkit".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET_VERSION,
        }],
        graph: Some(graph),
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[Dim]) -> ValueInfoProto {
    use tensor_shape_proto::{Dimension, dimension::Value};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(n) => Value::DimValue(*n),
                Dim::Symbolic(s) => Value::DimParam((*s).into()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(masp_model_registry::onnx::proto::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(
    op_type: &str,
    inputs: &[&str],
    outputs: &[&str],
    attribute: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        name: format!("{op_type}_{}", outputs.join("_")),
        op_type: op_type.into(),
        input: inputs.iter().map(|s| (*s).into()).collect(),
        output: outputs.iter().map(|s| (*s).into()).collect(),
        attribute,
        ..Default::default()
    }
}

fn int_attribute(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

fn int64_tensor(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![values.len() as i64],
        data_type: DataType::Int64 as i32,
        raw_data: values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>()
            .into(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_follow_the_requested_size() {
        let spec = |weight_bytes| WeightsModel {
            weight_bytes,
            layout: Layout::Embedded,
            name: "w".into(),
        };
        assert_eq!(spec(1).shape(), (1, 1));
        assert_eq!(spec(4096).shape(), (1024, 1));
        assert_eq!(spec(500_000_000).shape(), (1024, 122_070));
        assert!(spec(500_000_000).actual_weight_bytes() <= 500_000_000);
    }

    #[test]
    fn names_are_checked() {
        for bad in ["", ".hidden", "a/b", "x y"] {
            assert!(check_name("t", bad).is_err(), "{bad:?}");
        }
        check_name("t", "model-1_v2.0").unwrap();
    }
}
