//! Reading an ONNX file's metadata without ONNX Runtime: I/O, weights, external data.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use bytes::Bytes as ByteBuf;
use masp_budget::Bytes;
use prost::Message;

use super::proto::{
    DataLocation, DataType, GraphProto, ModelProto, SparseTensorProto, TensorProto, ValueInfoProto,
    tensor_shape_proto::dimension, type_proto,
};
use super::wire::{self, ScanError, WireType};
use crate::{Error, Result};

/// What [`OnnxMetadata::read`] tells about a model file, without loading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxMetadata {
    /// The model file.
    pub path: PathBuf,
    /// Size of the model file (without external data).
    pub file_bytes: Bytes,
    /// ONNX IR version the file was written with.
    pub ir_version: i64,
    /// Tool that wrote the file, e.g. `pytorch`.
    pub producer_name: String,
    /// Version of that tool.
    pub producer_version: String,
    /// Operator sets the graph uses.
    pub opsets: Vec<Opset>,
    /// Graph inputs the caller feeds (inputs that are also initializers are excluded).
    pub inputs: Vec<TensorInfo>,
    /// Graph outputs.
    pub outputs: Vec<TensorInfo>,
    /// Number of initializers (dense and sparse) of the main graph.
    pub initializer_count: usize,
    /// Bytes of tensor data stored inside the model file: initializers, constant attributes
    /// and subgraphs' tensors.
    pub embedded_weight_bytes: Bytes,
    /// Tensors whose data lives in other files, in file order.
    pub external_data: Vec<ExternalDataRef>,
    /// Sum of the lengths of [`Self::external_data`].
    pub external_weight_bytes: Bytes,
}

/// An operator set import: a domain (`""` is the default ONNX domain) at a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opset {
    /// Operator domain, `""` for the default `ai.onnx`.
    pub domain: String,
    /// Operator set version.
    pub version: i64,
}

/// A graph input or output: name, element type and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Value name, as passed to ONNX Runtime.
    pub name: String,
    /// Element type; `None` for non-tensor values (sequences, maps) or an unknown type code.
    pub elem_type: Option<DataType>,
    /// One entry per axis; `None` when the rank itself is not declared.
    pub dims: Option<Vec<Dim>>,
}

/// One axis of a declared shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A named size bound at run time, e.g. `batch`.
    Symbolic(String),
    /// Neither a size nor a name.
    Unknown,
}

/// One tensor whose data lives in an external file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalDataRef {
    /// The tensor's name.
    pub tensor: String,
    /// The `location` entry, relative to the model's directory.
    pub location: String,
    /// `location` resolved against the model's directory.
    pub path: PathBuf,
    /// Byte offset of the data in the file.
    pub offset: u64,
    /// Byte length of the data.
    pub length: u64,
}

impl OnnxMetadata {
    /// Reads the metadata of the ONNX model at `path`, and checks that every external data file
    /// it refers to exists, is long enough and lies below the model's directory.
    ///
    /// The file is memory-mapped and decoded without copying tensor data, so reading the
    /// metadata of a model with gigabytes of embedded weights touches only the bytes of its
    /// graph structure.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be opened; [`Error::NotOnnx`] when it is not an ONNX
    /// model; [`Error::Truncated`] when it ends early; [`Error::ExternalDataOutsideModelDir`],
    /// [`Error::InvalidExternalData`] and [`Error::ExternalDataMissing`] for bad external data.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_model_registry::onnx::OnnxMetadata;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("notes.onnx");
    /// std::fs::write(&path, "not a model\n")?;
    /// let err = OnnxMetadata::read(&path).unwrap_err();
    /// assert!(matches!(err, masp_model_registry::Error::NotOnnx { .. }), "{err}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read(path: &Path) -> Result<OnnxMetadata> {
        let (model, file_bytes) = read_model_sized(path)?;
        Self::from_model(path, file_bytes, &model)
    }

    /// Weight bytes in the file plus in external files.
    #[must_use]
    pub fn total_weight_bytes(&self) -> Bytes {
        self.embedded_weight_bytes
            .saturating_add(self.external_weight_bytes)
    }

    pub(crate) fn from_model(
        path: &Path,
        file_bytes: u64,
        model: &ModelProto,
    ) -> Result<OnnxMetadata> {
        let graph = model
            .graph
            .as_ref()
            .ok_or_else(|| not_onnx(path, "no graph"))?;
        let mut embedded = 0u64;
        let mut external_data = Vec::new();
        let mut first_error = None;
        visit_model(model, &mut |tensor| {
            if first_error.is_some() {
                return;
            }
            match external_ref(path, tensor) {
                Ok(Some(reference)) => external_data.push(reference),
                Ok(None) => embedded = embedded.saturating_add(embedded_bytes(tensor)),
                Err(e) => first_error = Some(e),
            }
        });
        if let Some(e) = first_error {
            return Err(e);
        }
        for reference in &external_data {
            check_external_file(path, reference)?;
        }
        let initializers: HashSet<&str> =
            graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let external_total = external_data
            .iter()
            .fold(0u64, |sum, r| sum.saturating_add(r.length));
        Ok(OnnxMetadata {
            path: path.to_path_buf(),
            file_bytes: Bytes::new(file_bytes),
            ir_version: model.ir_version,
            producer_name: model.producer_name.clone(),
            producer_version: model.producer_version.clone(),
            opsets: model
                .opset_import
                .iter()
                .map(|o| Opset {
                    domain: o.domain.clone(),
                    version: o.version,
                })
                .collect(),
            inputs: graph
                .input
                .iter()
                .filter(|v| !initializers.contains(v.name.as_str()))
                .map(tensor_info)
                .collect(),
            outputs: graph.output.iter().map(tensor_info).collect(),
            initializer_count: graph.initializer.len() + graph.sparse_initializer.len(),
            embedded_weight_bytes: Bytes::new(embedded),
            external_data,
            external_weight_bytes: Bytes::new(external_total),
        })
    }
}

/// Decodes the ONNX model at `path` from a memory map: tensor payloads (`raw_data`) in the
/// returned message are slices of the mapping, not copies, and the mapping lives as long as
/// any of them.
///
/// The structure is checked (protobuf well-formed, not truncated, IR version, graph and
/// operator set imports present); external data is not (see [`OnnxMetadata::read`]).
///
/// # Errors
/// [`Error::Io`], [`Error::NotOnnx`], [`Error::Truncated`].
///
/// # Examples
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("empty.onnx");
/// std::fs::write(&path, b"")?;
/// assert!(masp_model_registry::onnx::read_model(&path).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_model(path: &Path) -> Result<ModelProto> {
    read_model_sized(path).map(|(model, _)| model)
}

/// [`read_model`] plus the file's size.
pub(crate) fn read_model_sized(path: &Path) -> Result<(ModelProto, u64)> {
    let bytes = map_file(path)?;
    let file_bytes = bytes.len() as u64;
    Ok((decode_checked(path, bytes)?, file_bytes))
}

/// Decodes a model from the content of the file at `path`, checking its structure.
pub(crate) fn decode_checked(path: &Path, bytes: ByteBuf) -> Result<ModelProto> {
    check_structure(path, &bytes)?;
    // Before prost allocates: its cost is bounded by the file's size, not by what it claims.
    let decoded_bytes = Bytes::new(super::cost::decoded_bytes(&bytes));
    let limit_bytes = super::cost::decode_limit(bytes.len() as u64);
    if decoded_bytes > limit_bytes {
        return Err(Error::MetadataTooLarge {
            path: path.to_path_buf(),
            file_bytes: Bytes::new(bytes.len() as u64),
            decoded_bytes,
            limit_bytes,
        });
    }
    let model =
        ModelProto::decode(bytes).map_err(|e| not_onnx(path, &format!("invalid protobuf: {e}")))?;
    if model.ir_version < 1 {
        return Err(not_onnx(path, "no IR version"));
    }
    if model.graph.is_none() {
        return Err(not_onnx(path, "no graph"));
    }
    if model.opset_import.is_empty() {
        return Err(not_onnx(path, "no operator set import"));
    }
    Ok(model)
}

/// The file's bytes, memory-mapped read-only and owned by the returned buffer.
pub(crate) fn map_file(path: &Path) -> Result<ByteBuf> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = crate::file::open_regular(path, crate::file::Links::Follow).map_err(io)?;
    if file.metadata().map_err(io)?.len() == 0 {
        // mmap rejects empty files; an empty file is not a model either way.
        return Err(not_onnx(path, "empty file"));
    }
    // SAFETY: the mapping is read-only and private to this buffer. If another process truncates
    // the file while it is mapped, reading the lost pages raises SIGBUS, and a concurrent writer
    // changes the bytes under us; masp reads model files from its own cache, and ONNX Runtime
    // maps external data files the same way.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    Ok(ByteBuf::from_owner(map))
}

/// Checks the top level of the ModelProto by its wire format, to tell a truncated model (the
/// graph field runs past the end of the file) from a file that is not protobuf at all.
fn check_structure(path: &Path, buf: &[u8]) -> Result<()> {
    // Every ONNX writer emits fields in number order, so a model starts with ir_version
    // (field 1, varint). Only then is a cut field evidence of truncation rather than noise.
    let mut starts_like_onnx = false;
    for (index, field) in wire::fields(buf).enumerate() {
        match field {
            Ok(field) => {
                if index == 0 {
                    starts_like_onnx = field.number == 1 && field.wire_type == WireType::Varint;
                }
                if let Some(expected) = model_field_wire_type(field.number)
                    && expected != field.wire_type
                {
                    return Err(not_onnx(
                        path,
                        &format!(
                            "field {} at byte {} has wire type {:?}, expected {expected:?}",
                            field.number, field.span.start, field.wire_type
                        ),
                    ));
                }
            }
            Err(ScanError::Truncated { needed_len, .. }) if starts_like_onnx => {
                return Err(Error::Truncated {
                    path: path.to_path_buf(),
                    file_bytes: Bytes::new(buf.len() as u64),
                    needed_bytes: Bytes::new(needed_len),
                });
            }
            Err(ScanError::Truncated { field_start, .. }) => {
                return Err(not_onnx(
                    path,
                    &format!("not protobuf: the field at byte {field_start} runs past the end"),
                ));
            }
            Err(ScanError::Malformed { at, reason }) => {
                return Err(not_onnx(
                    path,
                    &format!("not protobuf: {reason} at byte {at}"),
                ));
            }
        }
    }
    Ok(())
}

/// The wire type of a ModelProto field masp knows, `None` for others (skipped).
fn model_field_wire_type(number: u32) -> Option<WireType> {
    match number {
        1 | 5 => Some(WireType::Varint),
        2 | 3 | 4 | 6 | 7 | 8 | 14 | 20 | 25 => Some(WireType::Len),
        _ => None,
    }
}

fn not_onnx(path: &Path, reason: &str) -> Error {
    Error::NotOnnx {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Calls `f` for every tensor stored in the model: initializers, sparse initializers,
/// constant attributes, and those of subgraphs, training graphs and functions.
pub(crate) fn visit_model<'a>(model: &'a ModelProto, f: &mut impl FnMut(&'a TensorProto)) {
    if let Some(graph) = &model.graph {
        visit_graph(graph, f);
    }
    for info in &model.training_info {
        for graph in info.initialization.iter().chain(&info.algorithm) {
            visit_graph(graph, f);
        }
    }
    for function in &model.functions {
        for node in &function.node {
            visit_attributes(&node.attribute, f);
        }
        visit_attributes(&function.attribute_proto, f);
    }
}

fn visit_graph<'a>(graph: &'a GraphProto, f: &mut impl FnMut(&'a TensorProto)) {
    graph.initializer.iter().for_each(&mut *f);
    for sparse in &graph.sparse_initializer {
        visit_sparse(sparse, f);
    }
    for node in &graph.node {
        visit_attributes(&node.attribute, f);
    }
}

fn visit_sparse<'a>(sparse: &'a SparseTensorProto, f: &mut impl FnMut(&'a TensorProto)) {
    sparse.values.iter().chain(&sparse.indices).for_each(f);
}

fn visit_attributes<'a>(
    attributes: &'a [super::proto::AttributeProto],
    f: &mut impl FnMut(&'a TensorProto),
) {
    for attribute in attributes {
        attribute
            .t
            .iter()
            .chain(&attribute.tensors)
            .for_each(&mut *f);
        for sparse in attribute
            .sparse_tensor
            .iter()
            .chain(&attribute.sparse_tensors)
        {
            visit_sparse(sparse, f);
        }
        for graph in attribute.g.iter().chain(&attribute.graphs) {
            visit_graph(graph, f);
        }
    }
}

/// Number of elements of a tensor, `None` if a dimension is negative or the product overflows.
pub(crate) fn element_count(dims: &[i64]) -> Option<u64> {
    dims.iter()
        .try_fold(1u64, |n, &d| n.checked_mul(u64::try_from(d).ok()?))
}

/// Bytes the tensor's data occupies when stored densely, from its shape and element type.
pub(crate) fn dense_bytes(tensor: &TensorProto) -> Option<u64> {
    let bits = DataType::try_from(tensor.data_type).ok()?.bits()?;
    Some(element_count(&tensor.dims)?.checked_mul(bits)?.div_ceil(8))
}

/// Bytes of data a non-external tensor really holds in the file: `raw_data`, or the typed
/// fields as decoded. Never the shape's claim — a 193-byte file whose tensor says 64 MiB (found
/// by fuzzing) holds 0 bytes of weights, and estimating 64 MiB from it would mislead the budget.
fn embedded_bytes(tensor: &TensorProto) -> u64 {
    if !tensor.raw_data.is_empty() {
        return tensor.raw_data.len() as u64;
    }
    let n = |len: usize, size: u64| (len as u64).saturating_mul(size);
    n(tensor.float_data.len(), 4)
        .saturating_add(n(tensor.int32_data.len(), 4))
        .saturating_add(n(tensor.int64_data.len(), 8))
        .saturating_add(n(tensor.double_data.len(), 8))
        .saturating_add(n(tensor.uint64_data.len(), 8))
        .saturating_add(tensor.string_data.iter().map(|s| s.len() as u64).sum())
}

/// The external data reference of `tensor`, `None` if its data is in the model file.
pub(crate) fn external_ref(model: &Path, tensor: &TensorProto) -> Result<Option<ExternalDataRef>> {
    let invalid = |reason: String| Error::InvalidExternalData {
        model: model.to_path_buf(),
        tensor: tensor.name.clone(),
        reason,
    };
    if tensor.data_location == DataLocation::Default as i32 {
        return Ok(None);
    }
    if tensor.data_location != DataLocation::External as i32 {
        return Err(invalid(format!(
            "unknown data_location {}",
            tensor.data_location
        )));
    }
    let number = |key: &str, value: &str| {
        value
            .parse::<u64>()
            .map_err(|_| invalid(format!("{key} {value:?} is not a byte count")))
    };
    let (mut location, mut offset, mut length) = (None, 0, None);
    for entry in &tensor.external_data {
        match entry.key.as_str() {
            "location" => location = Some(entry.value.clone()),
            "offset" => offset = number("offset", &entry.value)?,
            "length" => length = Some(number("length", &entry.value)?),
            _ => {}
        }
    }
    let location = location
        .filter(|l| !l.is_empty())
        .ok_or_else(|| invalid("no location".to_string()))?;
    let inside = Path::new(&location)
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !inside {
        return Err(Error::ExternalDataOutsideModelDir {
            model: model.to_path_buf(),
            location,
        });
    }
    let length = match length {
        Some(length) => length,
        None => dense_bytes(tensor)
            .ok_or_else(|| invalid("no length and no computable size".to_string()))?,
    };
    let dir = model.parent().unwrap_or(Path::new(""));
    let path = dir.join(&location);
    // Every reader of external data comes through here: a symbolic link on the way must not
    // lead out of the model's directory either.
    if !crate::path::is_inside(crate::path::dir_of(model), &path) {
        return Err(Error::ExternalDataOutsideModelDir {
            model: model.to_path_buf(),
            location,
        });
    }
    Ok(Some(ExternalDataRef {
        tensor: tensor.name.clone(),
        path,
        location,
        offset,
        length,
    }))
}

/// Checks that the data of `reference` is inside its file.
pub(crate) fn check_external_file(model: &Path, reference: &ExternalDataRef) -> Result<()> {
    let needed = reference.offset.saturating_add(reference.length);
    let found = std::fs::metadata(&reference.path)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    if found.is_some_and(|len| len >= needed) {
        return Ok(());
    }
    Err(Error::ExternalDataMissing {
        model: model.to_path_buf(),
        location: reference.location.clone(),
        path: reference.path.clone(),
        needed_bytes: Bytes::new(needed),
        found_bytes: found.map(Bytes::new),
    })
}

fn tensor_info(value: &ValueInfoProto) -> TensorInfo {
    let tensor = match value.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(tensor)) => Some(tensor),
        _ => None,
    };
    TensorInfo {
        name: value.name.clone(),
        elem_type: tensor
            .and_then(|t| DataType::try_from(t.elem_type).ok())
            .filter(|t| *t != DataType::Undefined),
        dims: tensor.and_then(|t| t.shape.as_ref()).map(|shape| {
            shape
                .dim
                .iter()
                .map(|d| match &d.value {
                    Some(dimension::Value::DimValue(n)) => Dim::Fixed(*n),
                    Some(dimension::Value::DimParam(name)) => Dim::Symbolic(name.clone()),
                    None => Dim::Unknown,
                })
                .collect()
        }),
    }
}
