//! ONNX model files without ONNX Runtime: metadata, validation, writing and external data.
//!
//! masp decides whether a model may be loaded before ONNX Runtime sees it, so it must read a
//! model's inputs, outputs and weight sizes itself, and reject a corrupt or unsafe file with a
//! typed error. The protobuf messages are declared by hand in [`proto`] (no build script);
//! files are memory-mapped and decoded without copying tensor data, so reading the metadata of
//! a multi-gigabyte model costs memory in proportion to its graph, not its weights.
//!
//! - [`OnnxMetadata::read`]: I/O names and shapes, opsets, weight bytes, external data.
//! - [`read_model`] / [`write_model`]: the whole [`ModelProto`], zero-copy in, streamed out.
//! - [`externalize`]: move large initializers to an aligned external data file, which ONNX
//!   Runtime can memory-map instead of copying.
//! - [`quantize`]: static int8 quantisation of convolutions (`QLinearConv`), from calibrated
//!   activation ranges.

pub mod cost;
mod externalize;
mod metadata;
pub mod proto;
pub mod quantize;
mod wire;
mod write;

pub use externalize::{ExternalizeOptions, ExternalizeReport, externalize};
pub use metadata::{Dim, ExternalDataRef, OnnxMetadata, Opset, TensorInfo, read_model};
pub use proto::{
    AttributeProto, AttributeType, DataLocation, DataType, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TypeProto, ValueInfoProto,
};
pub use write::write_model;
