//! What decoding an ONNX file's structure costs in memory, found by walking its wire format
//! before `prost` allocates anything.
//!
//! A protobuf message of two bytes (a key and a zero length) decodes into a whole Rust struct:
//! an empty `AttributeProto` is over a kilobyte, so a 2 MB file of empty attributes would cost
//! gigabytes to decode. The walk charges every message, string and number at the size it
//! takes once decoded, and [`decode_limit`] bounds that relative to the file's size.

use masp_budget::Bytes;

use super::proto::{
    AttributeProto, FunctionProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    SparseTensorProto, StringStringEntryProto, TensorProto, TensorShapeProto, TrainingInfoProto,
    TypeProto, ValueInfoProto, tensor_proto, tensor_shape_proto, type_proto,
};
use super::wire::{self, WireType};

/// Decoded structure may take at most this many times the file's bytes. Real models stay far
/// below (weights decode without copying; a node of a few dozen bytes on disk is a few hundred
/// in memory); a file built to amplify (empty messages of two bytes each) is far above.
pub const METADATA_DECODE_FACTOR: u64 = 64;

/// Whatever the file's size, decoding may take this much: small models decode unchecked.
pub const METADATA_DECODE_FLOOR: Bytes = Bytes::from_mib(4);

/// The most decoded structure masp accepts from any model file: 64 MiB, a graph of hundreds of
/// thousands of nodes. Metadata is read outside any model's reservation (before admission),
/// so this bound is what keeps `masp plan` and admission itself inside a small budget.
pub const MAX_METADATA_DECODE_BYTES: Bytes = Bytes::from_mib(64);

/// Nesting deeper than this is refused (`prost`'s own recursion limit).
const MAX_DEPTH: u32 = 100;

/// The most decoded structure accepted from a file of `file_bytes`:
/// [`METADATA_DECODE_FACTOR`] times its size, at least [`METADATA_DECODE_FLOOR`], at most
/// [`MAX_METADATA_DECODE_BYTES`].
pub fn decode_limit(file_bytes: u64) -> Bytes {
    let relative = Bytes::new(file_bytes.saturating_mul(METADATA_DECODE_FACTOR));
    relative.clamp(METADATA_DECODE_FLOOR, MAX_METADATA_DECODE_BYTES)
}

/// The messages of [`super::proto`], for the walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Msg {
    Model,
    Graph,
    Node,
    Attribute,
    Tensor,
    Segment,
    SparseTensor,
    ValueInfo,
    Type,
    TypeTensor,
    TypeSequence,
    TypeMap,
    TypeOptional,
    TypeSparse,
    Shape,
    Dim,
    Entry,
    Opset,
    Training,
    Function,
}

impl Msg {
    /// Its size once decoded (the struct; what it owns is charged field by field).
    fn size(self) -> u64 {
        use std::mem::size_of;
        (match self {
            Msg::Model => size_of::<ModelProto>(),
            Msg::Graph => size_of::<GraphProto>(),
            Msg::Node => size_of::<NodeProto>(),
            Msg::Attribute => size_of::<AttributeProto>(),
            Msg::Tensor => size_of::<TensorProto>(),
            Msg::Segment => size_of::<tensor_proto::Segment>(),
            Msg::SparseTensor => size_of::<SparseTensorProto>(),
            Msg::ValueInfo => size_of::<ValueInfoProto>(),
            Msg::Type => size_of::<TypeProto>(),
            Msg::TypeTensor => size_of::<type_proto::Tensor>(),
            Msg::TypeSequence => size_of::<type_proto::Sequence>(),
            Msg::TypeMap => size_of::<type_proto::Map>(),
            Msg::TypeOptional => size_of::<type_proto::Optional>(),
            Msg::TypeSparse => size_of::<type_proto::SparseTensor>(),
            Msg::Shape => size_of::<TensorShapeProto>(),
            Msg::Dim => size_of::<tensor_shape_proto::Dimension>(),
            Msg::Entry => size_of::<StringStringEntryProto>(),
            Msg::Opset => size_of::<OperatorSetIdProto>(),
            Msg::Training => size_of::<TrainingInfoProto>(),
            Msg::Function => size_of::<FunctionProto>(),
        }) as u64
    }

    /// What field `number` of this message decodes into; `None` for what `prost` skips or
    /// holds inline without allocating (single numbers).
    fn field(self, number: u32) -> Option<Field> {
        use Field::{Bytes, Many, One, Scalars, Str, Strs};
        const I64: Field = Scalars { elem_bytes: 8 };
        const F32: Field = Scalars { elem_bytes: 4 };
        Some(match (self, number) {
            (Msg::Model, 8) => Many(Msg::Opset),
            (Msg::Model, 2 | 3 | 4 | 6) => Str,
            (Msg::Model, 7) => One(Msg::Graph),
            (Msg::Model, 14) => Many(Msg::Entry),
            (Msg::Model, 20) => Many(Msg::Training),
            (Msg::Model, 25) => Many(Msg::Function),
            (Msg::Entry, 1 | 2) | (Msg::Opset, 1) => Str,
            (Msg::Graph, 1) => Many(Msg::Node),
            (Msg::Graph, 2 | 10) => Str,
            (Msg::Graph, 5) => Many(Msg::Tensor),
            (Msg::Graph, 15) => Many(Msg::SparseTensor),
            (Msg::Graph, 11..=13) => Many(Msg::ValueInfo),
            (Msg::Graph, 16) => Many(Msg::Entry),
            (Msg::Node, 1 | 2) => Strs,
            (Msg::Node, 3 | 4 | 6 | 7 | 8) => Str,
            (Msg::Node, 5) => Many(Msg::Attribute),
            (Msg::Node, 9) => Many(Msg::Entry),
            (Msg::Attribute, 1 | 13 | 21) => Str,
            (Msg::Attribute, 4) => Bytes,
            (Msg::Attribute, 5) => One(Msg::Tensor),
            (Msg::Attribute, 6) => One(Msg::Graph),
            (Msg::Attribute, 22) => One(Msg::SparseTensor),
            (Msg::Attribute, 14) => One(Msg::Type),
            (Msg::Attribute, 7) => F32,
            (Msg::Attribute, 8) => I64,
            (Msg::Attribute, 9) => Field::ManyBytes,
            (Msg::Attribute, 10) => Many(Msg::Tensor),
            (Msg::Attribute, 11) => Many(Msg::Graph),
            (Msg::Attribute, 23) => Many(Msg::SparseTensor),
            (Msg::Attribute, 15) => Many(Msg::Type),
            (Msg::ValueInfo, 1 | 3) => Str,
            (Msg::ValueInfo, 2) => One(Msg::Type),
            (Msg::ValueInfo, 4) => Many(Msg::Entry),
            (Msg::Type, 1) => One(Msg::TypeTensor),
            (Msg::Type, 4) => One(Msg::TypeSequence),
            (Msg::Type, 5) => One(Msg::TypeMap),
            (Msg::Type, 9) => One(Msg::TypeOptional),
            (Msg::Type, 8) => One(Msg::TypeSparse),
            (Msg::Type, 6) => Str,
            (Msg::TypeTensor | Msg::TypeSparse, 2) => One(Msg::Shape),
            (Msg::TypeSequence | Msg::TypeOptional, 1) | (Msg::TypeMap, 2) => One(Msg::Type),
            (Msg::Shape, 1) => Many(Msg::Dim),
            (Msg::Dim, 2 | 3) => Str,
            (Msg::Tensor, 1 | 7 | 10 | 11) | (Msg::SparseTensor, 3) => I64,
            (Msg::Tensor, 4 | 5) => F32,
            (Msg::Tensor, 3) => One(Msg::Segment),
            (Msg::Tensor, 6) => Field::ManyBytes,
            (Msg::Tensor, 8 | 12) => Str,
            (Msg::Tensor, 9) => Bytes,
            (Msg::Tensor, 13 | 16) => Many(Msg::Entry),
            (Msg::SparseTensor, 1 | 2) => One(Msg::Tensor),
            (Msg::Training, 1 | 2) => One(Msg::Graph),
            (Msg::Training, 3 | 4) => Many(Msg::Entry),
            (Msg::Function, 1 | 8 | 10 | 13) => Str,
            (Msg::Function, 4..=6) => Strs,
            (Msg::Function, 11) => Many(Msg::Attribute),
            (Msg::Function, 7) => Many(Msg::Node),
            (Msg::Function, 9) => Many(Msg::Opset),
            (Msg::Function, 12) => Many(Msg::ValueInfo),
            (Msg::Function, 14) => Many(Msg::Entry),
            _ => return None,
        })
    }
}

/// What one field decodes into.
#[derive(Debug, Clone, Copy)]
enum Field {
    /// An element of a `Vec` of messages.
    Many(Msg),
    /// A single (optional or boxed) message.
    One(Msg),
    /// A `String`: its bytes are copied.
    Str,
    /// An element of a `Vec<String>`.
    Strs,
    /// A `Bytes` slice of the mapping: not copied.
    Bytes,
    /// An element of a `Vec<Bytes>`.
    ManyBytes,
    /// Repeated numbers, packed or not: each takes at least one byte on the wire.
    Scalars { elem_bytes: u64 },
}

/// A `Vec` may hold up to twice its length while it grows.
const GROWTH: u64 = 2;

/// What decoding `buf` as a `ModelProto` would allocate, in bytes. Malformed parts are not
/// charged beyond where they break: the decoder stops there too.
///
/// # Examples
///
/// ```
/// use masp_model_registry::onnx::cost::{decode_limit, decoded_bytes};
///
/// // ir_version 7, then a graph holding one node of 100 000 empty attributes (2 bytes each).
/// let mut node = Vec::new();
/// for _ in 0..100_000 {
///     node.extend_from_slice(&[0x2a, 0x00]);
/// }
/// let mut graph = vec![0x0a, 0xc0, 0x9a, 0x0c]; // field 1, length 200 000
/// graph.extend_from_slice(&node);
/// let mut model = vec![0x08, 0x07, 0x3a, 0xc4, 0x9a, 0x0c]; // field 7, length 200 004
/// model.extend_from_slice(&graph);
/// assert!(masp_budget::Bytes::new(decoded_bytes(&model)) > decode_limit(model.len() as u64));
/// ```
pub fn decoded_bytes(buf: &[u8]) -> u64 {
    Msg::Model.size() + walk(buf, Msg::Model, 0)
}

fn walk(buf: &[u8], msg: Msg, depth: u32) -> u64 {
    if depth > MAX_DEPTH {
        // prost refuses this nesting before allocating more.
        return 0;
    }
    let mut cost = 0u64;
    for field in wire::fields(buf) {
        let Ok(field) = field else { break };
        let Some(kind) = msg.field(field.number) else {
            continue;
        };
        let len = field.value.len() as u64;
        let is_len = field.wire_type == WireType::Len;
        cost = cost.saturating_add(match kind {
            Field::Many(child) | Field::One(child) if is_len => {
                let growth = if matches!(kind, Field::Many(_)) {
                    GROWTH
                } else {
                    1
                };
                let inner = walk(&buf[field.value.clone()], child, depth + 1);
                (child.size() * growth).saturating_add(inner)
            }
            Field::Str if is_len => len,
            Field::Strs if is_len => GROWTH * std::mem::size_of::<String>() as u64 + len,
            Field::ManyBytes if is_len => GROWTH * std::mem::size_of::<bytes::Bytes>() as u64,
            // Packed: at most one number per byte; unpacked: one per field.
            Field::Scalars { elem_bytes } => GROWTH * elem_bytes * len.max(1),
            _ => 0,
        });
    }
    cost
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::wire::put_len_header;

    /// A model whose graph holds one node with `n` empty attributes.
    fn empty_attributes(n: usize) -> Vec<u8> {
        let mut node = Vec::new();
        for _ in 0..n {
            put_len_header(&mut node, 5, 0);
        }
        let mut graph = Vec::new();
        put_len_header(&mut graph, 1, node.len() as u64);
        graph.extend_from_slice(&node);
        let mut model = vec![0x08, 0x07];
        put_len_header(&mut model, 7, graph.len() as u64);
        model.extend_from_slice(&graph);
        model
    }

    #[test]
    fn empty_attributes_are_charged_their_decoded_size() {
        let file = empty_attributes(1000);
        let cost = decoded_bytes(&file);
        assert!(
            cost >= 1000 * Msg::Attribute.size(),
            "{cost} for {} bytes",
            file.len()
        );
        assert!(cost > METADATA_DECODE_FACTOR * file.len() as u64, "{cost}");
    }

    #[test]
    fn the_limit_is_relative_with_a_floor_and_a_ceiling() {
        assert_eq!(decode_limit(0), METADATA_DECODE_FLOOR);
        assert_eq!(
            decode_limit(1 << 20),
            Bytes::new((1 << 20) * METADATA_DECODE_FACTOR)
        );
        assert_eq!(decode_limit(u64::MAX), MAX_METADATA_DECODE_BYTES);
    }
}
