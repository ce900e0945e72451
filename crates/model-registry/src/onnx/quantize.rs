//! Static int8 quantisation of a model's convolutions, written as ONNX's `QLinearConv`.
//!
//! A convolution whose weights are float constants becomes
//! `QuantizeLinear → QLinearConv → DequantizeLinear`: weights are int8 with one scale per output
//! channel, activations uint8 with one scale and zero point per tensor, the bias int32 at the
//! product of the two scales. The rest of the graph (recurrent layers, activations) stays in
//! float, so the model's inputs, outputs and state are unchanged and a caller cannot tell the
//! difference except by speed and by how close the results are.
//!
//! Activation ranges come from running the float model over real input ("calibration"): this
//! module says which tensors need a range ([`calibration_tensors`]), makes them observable
//! ([`with_outputs`]), turns observed values into ranges ([`RangeCollector`]) and rewrites the
//! graph ([`quantize_convs`]). Running the model is the orchestrator's job (it owns ONNX
//! Runtime); judging whether the result is good enough is the caller's (masp accepts a VAD only
//! when its segments agree with the float model's on ≥ 97% of 10 ms frames).

use std::collections::{HashMap, HashSet};

use bytes::Bytes as ByteBuf;

use super::proto::{
    AttributeProto, DataLocation, DataType, GraphProto, ModelProto, NodeProto, TensorProto,
    TypeProto, ValueInfoProto, type_proto,
};
use crate::{Error, Result};

/// An activation range, `min ≤ 0 ≤ max`, mapped onto the 256 levels of a uint8.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    /// The lowest value represented.
    pub min: f32,
    /// The highest value represented.
    pub max: f32,
}

impl Range {
    /// Scale and zero point of this range as uint8: `x ≈ (q − zero_point) · scale`.
    #[must_use]
    pub fn uint8_params(self) -> (f32, u8) {
        let (min, max) = (self.min.min(0.0), self.max.max(0.0));
        let span = max - min;
        if !(span.is_finite() && span > 0.0) {
            return (1.0, 0);
        }
        let scale = span / 255.0;
        let zero_point = (-min / scale).round().clamp(0.0, 255.0);
        // The clamp bounds the value to 0..=255, so the cast is exact.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        (scale, zero_point as u8)
    }
}

/// Collects the values a tensor takes during calibration and turns them into a [`Range`] that
/// ignores the rarest extremes (a percentile of `|x|`, clamped to what was seen).
///
/// Memory is fixed: a histogram of `|x|` over `[0, top)` whose upper bound doubles (merging
/// neighbouring bins) whenever a larger value arrives, so the percentile is resolved to
/// `top / BINS` whatever the number of values.
#[derive(Debug, Clone)]
pub struct RangeCollector {
    bins: Vec<u64>,
    top: f32,
    min: f32,
    max: f32,
    count: u64,
    non_finite: u64,
}

const BINS: usize = 4096;

impl Default for RangeCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl RangeCollector {
    /// An empty collector.
    #[must_use]
    pub fn new() -> Self {
        Self {
            bins: vec![0; BINS],
            top: 0.0,
            min: 0.0,
            max: 0.0,
            count: 0,
            non_finite: 0,
        }
    }

    /// Record `values`. Non-finite values are counted apart and do not move the range.
    pub fn add(&mut self, values: &[f32]) {
        for &v in values {
            if !v.is_finite() {
                self.non_finite += 1;
                continue;
            }
            self.min = self.min.min(v);
            self.max = self.max.max(v);
            let a = v.abs();
            if self.top == 0.0 && a > 0.0 {
                self.top = a * 2.0;
            }
            while a >= self.top && self.top > 0.0 {
                self.grow();
            }
            if self.top > 0.0 {
                #[allow(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    clippy::cast_precision_loss
                )]
                let bin = ((a / self.top) * BINS as f32) as usize;
                self.bins[bin.min(BINS - 1)] += 1;
            } else {
                self.bins[0] += 1;
            }
            self.count += 1;
        }
    }

    /// Doubles the histogram's upper bound: bin `i` of the new histogram holds bins `2i` and
    /// `2i + 1` of the old one.
    fn grow(&mut self) {
        for i in 0..BINS / 2 {
            self.bins[i] = self.bins[2 * i] + self.bins[2 * i + 1];
        }
        self.bins[BINS / 2..].fill(0);
        self.top *= 2.0;
    }

    /// Values recorded (finite ones).
    #[must_use]
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Non-finite values seen (NaN, ±inf); they are left out of the range.
    #[must_use]
    pub fn non_finite(&self) -> u64 {
        self.non_finite
    }

    /// The range holding `percentile` % of `|x|` (e.g. 99.999), clamped to the values seen and
    /// widened to include 0. `None` before any finite value.
    #[must_use]
    pub fn range(&self, percentile: f64) -> Option<Range> {
        if self.count == 0 {
            return None;
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let wanted = ((self.count as f64) * percentile.clamp(0.0, 100.0) / 100.0).ceil() as u64;
        let mut seen = 0u64;
        let mut edge = BINS;
        for (i, &n) in self.bins.iter().enumerate() {
            seen += n;
            if seen >= wanted.max(1) {
                edge = i + 1;
                break;
            }
        }
        #[allow(clippy::cast_precision_loss)]
        let threshold = self.top * edge as f32 / BINS as f32;
        Some(Range {
            min: self.min.max(-threshold).min(0.0),
            max: self.max.min(threshold).max(0.0),
        })
    }
}

/// Which convolutions [`quantize_convs`] rewrites.
#[derive(Debug, Clone, Default)]
pub struct QuantizeOptions {
    /// Node names to leave in float.
    pub exclude: Vec<String>,
}

/// What [`quantize_convs`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantizeReport {
    /// The convolutions now computed in int8, by node name.
    pub quantized: Vec<String>,
    /// Convolutions left in float, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Bytes of the float weights and biases replaced.
    pub float_weight_bytes: u64,
    /// Bytes of the int8 weights, int32 biases and scales that replaced them.
    pub quantized_weight_bytes: u64,
}

/// A convolution of the main graph that can be quantised, with its float constants.
struct ConvSite {
    index: usize,
    input: String,
    output: String,
    weight: String,
    weight_dims: Vec<i64>,
    weight_data: Vec<f32>,
    bias: Option<(String, Vec<f32>)>,
}

fn node_label(node: &NodeProto, index: usize) -> String {
    if node.name.is_empty() {
        format!("#{index} ({})", node.op_type)
    } else {
        node.name.clone()
    }
}

/// The float values of an embedded tensor, `None` when it is not a float tensor held in the file.
fn float_values(tensor: &TensorProto) -> Option<Vec<f32>> {
    if tensor.data_type != DataType::Float as i32
        || tensor.data_location == DataLocation::External as i32
    {
        return None;
    }
    let expected: i64 = tensor.dims.iter().product();
    let values: Vec<f32> = if tensor.raw_data.is_empty() {
        tensor.float_data.clone()
    } else {
        tensor
            .raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    (i64::try_from(values.len()).ok() == Some(expected)).then_some(values)
}

fn default_opset(model: &ModelProto) -> Option<i64> {
    model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
}

/// Finds the convolutions to quantise; the others go to `skipped`.
fn conv_sites(
    model: &ModelProto,
    options: &QuantizeOptions,
    skipped: &mut Vec<(String, String)>,
) -> Result<Vec<ConvSite>> {
    let graph = model.graph.as_ref().ok_or_else(|| Error::CannotQuantize {
        reason: "the model has no graph".into(),
    })?;
    match default_opset(model) {
        Some(v) if v >= 10 => {}
        other => {
            return Err(Error::CannotQuantize {
                reason: format!(
                    "QLinearConv needs operator set 10 or later; the model imports {}",
                    other.map_or("none".into(), |v| v.to_string())
                ),
            });
        }
    }
    let initializers: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let mut sites = Vec::new();
    for (index, node) in graph.node.iter().enumerate() {
        let is_conv =
            node.op_type == "Conv" && (node.domain.is_empty() || node.domain == "ai.onnx");
        if !is_conv {
            continue;
        }
        let label = node_label(node, index);
        if options.exclude.contains(&node.name) {
            skipped.push((label, "excluded".into()));
            continue;
        }
        let (Some(input), Some(weight), Some(output)) =
            (node.input.first(), node.input.get(1), node.output.first())
        else {
            skipped.push((label, "missing input or output".into()));
            continue;
        };
        let Some(w) = initializers.get(weight.as_str()) else {
            skipped.push((label, format!("weight {weight:?} is not a constant")));
            continue;
        };
        let Some(weight_data) = float_values(w).filter(|_| w.dims.len() >= 3) else {
            skipped.push((
                label,
                format!("weight {weight:?} is not an embedded float tensor"),
            ));
            continue;
        };
        let bias = match node.input.get(2).filter(|b| !b.is_empty()) {
            None => None,
            Some(b) => match initializers.get(b.as_str()).and_then(|t| float_values(t)) {
                Some(values) if i64::try_from(values.len()).ok() == w.dims.first().copied() => {
                    Some((b.clone(), values))
                }
                _ => {
                    skipped.push((label, format!("bias {b:?} is not a float constant")));
                    continue;
                }
            },
        };
        sites.push(ConvSite {
            index,
            input: input.clone(),
            output: output.clone(),
            weight: weight.clone(),
            weight_dims: w.dims.clone(),
            weight_data,
            bias,
        });
    }
    Ok(sites)
}

/// The tensors whose ranges [`quantize_convs`] needs: each quantisable convolution's input and
/// output, in graph order, without repeats.
///
/// # Errors
/// [`Error::CannotQuantize`] when the model has no graph, an operator set older than 10, or no
/// convolution that can be quantised.
pub fn calibration_tensors(model: &ModelProto, options: &QuantizeOptions) -> Result<Vec<String>> {
    let mut skipped = Vec::new();
    let sites = conv_sites(model, options, &mut skipped)?;
    if sites.is_empty() {
        return Err(no_conv(&skipped));
    }
    let mut names = Vec::new();
    for site in &sites {
        for name in [&site.input, &site.output] {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    Ok(names)
}

fn no_conv(skipped: &[(String, String)]) -> Error {
    Error::CannotQuantize {
        reason: if skipped.is_empty() {
            "the main graph has no convolution (those inside control-flow subgraphs, such as silero's per-frame export keeps, are not quantised)".into()
        } else {
            let why: Vec<String> = skipped.iter().map(|(n, r)| format!("{n}: {r}")).collect();
            format!("no convolution can be quantised ({})", why.join("; "))
        },
    }
}

/// A copy of `model` that also outputs the float tensors `names`, for calibration.
#[must_use]
pub fn with_outputs(model: &ModelProto, names: &[String]) -> ModelProto {
    let mut out = model.clone();
    if let Some(graph) = out.graph.as_mut() {
        for name in names {
            if graph.output.iter().any(|o| &o.name == name) {
                continue;
            }
            graph.output.push(ValueInfoProto {
                name: name.clone(),
                r#type: Some(TypeProto {
                    value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                        elem_type: DataType::Float as i32,
                        shape: None,
                    })),
                    denotation: String::new(),
                }),
                doc_string: String::new(),
                metadata_props: Vec::new(),
            });
        }
    }
    out
}

fn tensor(name: String, data_type: DataType, dims: Vec<i64>, raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name,
        data_type: data_type as i32,
        dims,
        raw_data: ByteBuf::from(raw),
        ..Default::default()
    }
}

fn node(op: &str, name: String, input: Vec<String>, output: Vec<String>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name,
        input,
        output,
        ..Default::default()
    }
}

/// Every tensor name a graph's nodes read, subgraphs included (they may read the outer
/// graph's initializers).
fn names_read(graph: &GraphProto, into: &mut HashSet<String>) {
    for node in &graph.node {
        into.extend(node.input.iter().cloned());
        for attr in &node.attribute {
            for g in attr.g.iter().chain(attr.graphs.iter()) {
                names_read(g, into);
            }
        }
    }
}

/// Rewrites each quantisable convolution of `model` as int8 `QLinearConv`, with the activation
/// ranges in `ranges` (from [`RangeCollector::range`], keyed by the names
/// [`calibration_tensors`] gave). Float weights no longer read by any node are removed.
///
/// # Errors
/// [`Error::CannotQuantize`] when nothing can be quantised or a needed range is missing.
pub fn quantize_convs(
    model: &ModelProto,
    ranges: &HashMap<String, Range>,
    options: &QuantizeOptions,
) -> Result<(ModelProto, QuantizeReport)> {
    let mut skipped = Vec::new();
    let sites = conv_sites(model, options, &mut skipped)?;
    if sites.is_empty() {
        return Err(no_conv(&skipped));
    }
    for site in &sites {
        for name in [&site.input, &site.output] {
            if !ranges.contains_key(name) {
                return Err(Error::CannotQuantize {
                    reason: format!("no calibration range for tensor {name:?}"),
                });
            }
        }
    }
    let mut out = model.clone();
    let Some(graph) = out.graph.as_mut() else {
        return Err(Error::CannotQuantize {
            reason: "the model has no graph".into(),
        });
    };
    let mut report = QuantizeReport {
        quantized: Vec::new(),
        skipped,
        float_weight_bytes: 0,
        quantized_weight_bytes: 0,
    };
    let prefix = "masp_q/";
    // Activation parameters, once per tensor: inputs shared by several convolutions are
    // quantised once.
    let mut activation_params: HashMap<String, (String, String)> = HashMap::new();
    let mut quantized_inputs: HashMap<String, String> = HashMap::new();
    let mut new_initializers = Vec::new();
    let mut activation = |name: &str, inits: &mut Vec<TensorProto>| -> (String, String) {
        if let Some(p) = activation_params.get(name) {
            return p.clone();
        }
        let (scale, zero_point) = ranges[name].uint8_params();
        let s = format!("{prefix}{name}/scale");
        let z = format!("{prefix}{name}/zero_point");
        inits.push(tensor(
            s.clone(),
            DataType::Float,
            vec![],
            scale.to_le_bytes().to_vec(),
        ));
        inits.push(tensor(z.clone(), DataType::Uint8, vec![], vec![zero_point]));
        activation_params.insert(name.to_string(), (s.clone(), z.clone()));
        (s, z)
    };
    let by_index: HashMap<usize, &ConvSite> = sites.iter().map(|s| (s.index, s)).collect();
    let mut nodes = Vec::with_capacity(graph.node.len() + 2 * sites.len());
    let mut replaced: HashSet<String> = HashSet::new();
    for (index, original) in std::mem::take(&mut graph.node).into_iter().enumerate() {
        let Some(site) = by_index.get(&index) else {
            nodes.push(original);
            continue;
        };
        let label = node_label(&original, index);
        let (x_scale, x_zero) = activation(&site.input, &mut new_initializers);
        let (y_scale, y_zero) = activation(&site.output, &mut new_initializers);
        let x_q = if let Some(q) = quantized_inputs.get(&site.input) {
            q.clone()
        } else {
            let q = format!("{prefix}{}/quantized", site.input);
            nodes.push(node(
                "QuantizeLinear",
                format!("{prefix}{label}/quantize_input"),
                vec![site.input.clone(), x_scale.clone(), x_zero.clone()],
                vec![q.clone()],
            ));
            quantized_inputs.insert(site.input.clone(), q.clone());
            q
        };
        // Weights: int8, symmetric, one scale per output channel.
        let channels = usize::try_from(site.weight_dims[0]).unwrap_or(0).max(1);
        let per_channel = site.weight_data.len() / channels;
        let mut w_q = Vec::with_capacity(site.weight_data.len());
        let mut w_scales = Vec::with_capacity(channels);
        for c in site.weight_data.chunks(per_channel.max(1)) {
            let peak = c.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let scale = if peak > 0.0 { peak / 127.0 } else { 1.0 };
            w_scales.push(scale);
            #[allow(clippy::cast_possible_truncation)]
            w_q.extend(
                c.iter()
                    .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8 as u8),
            );
        }
        let w_name = format!("{prefix}{}/int8", site.weight);
        let ws_name = format!("{prefix}{}/scale", site.weight);
        let wz_name = format!("{prefix}{}/zero_point", site.weight);
        let c_dims = vec![i64::try_from(channels).unwrap_or(1)];
        report.float_weight_bytes += 4 * site.weight_data.len() as u64;
        report.quantized_weight_bytes += (w_q.len() + 5 * channels) as u64;
        new_initializers.push(tensor(
            w_name.clone(),
            DataType::Int8,
            site.weight_dims.clone(),
            w_q,
        ));
        new_initializers.push(tensor(
            ws_name.clone(),
            DataType::Float,
            c_dims.clone(),
            w_scales.iter().flat_map(|s| s.to_le_bytes()).collect(),
        ));
        new_initializers.push(tensor(
            wz_name.clone(),
            DataType::Int8,
            c_dims.clone(),
            vec![0; channels],
        ));
        let mut inputs = vec![
            x_q,
            x_scale.clone(),
            x_zero,
            w_name,
            ws_name,
            wz_name,
            y_scale.clone(),
            y_zero.clone(),
        ];
        replaced.insert(site.weight.clone());
        if let Some((b_name, values)) = &site.bias {
            let (x_s, _) = ranges[&site.input].uint8_params();
            #[allow(clippy::cast_possible_truncation)]
            let b_q: Vec<u8> = values
                .iter()
                .zip(&w_scales)
                .flat_map(|(b, ws)| {
                    let q = (f64::from(*b) / (f64::from(x_s) * f64::from(*ws)))
                        .round()
                        .clamp(f64::from(i32::MIN), f64::from(i32::MAX))
                        as i32;
                    q.to_le_bytes()
                })
                .collect();
            let name = format!("{prefix}{b_name}/int32");
            report.float_weight_bytes += 4 * values.len() as u64;
            report.quantized_weight_bytes += b_q.len() as u64;
            new_initializers.push(tensor(name.clone(), DataType::Int32, c_dims, b_q));
            inputs.push(name);
            replaced.insert(b_name.clone());
        }
        let y_q = format!("{prefix}{}/quantized", site.output);
        let attribute: Vec<AttributeProto> = original.attribute.clone();
        nodes.push(NodeProto {
            attribute,
            ..node(
                "QLinearConv",
                format!("{prefix}{label}"),
                inputs,
                vec![y_q.clone()],
            )
        });
        nodes.push(node(
            "DequantizeLinear",
            format!("{prefix}{label}/dequantize_output"),
            vec![y_q, y_scale, y_zero],
            vec![site.output.clone()],
        ));
        report.quantized.push(label);
    }
    graph.node = nodes;
    // Drop float weights nothing reads any more (a weight shared with an unquantised node stays).
    let mut read = HashSet::new();
    names_read(graph, &mut read);
    let outputs: HashSet<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    let kept: Vec<TensorProto> = std::mem::take(&mut graph.initializer)
        .into_iter()
        .filter(|t| {
            !replaced.contains(&t.name)
                || read.contains(&t.name)
                || outputs.contains(t.name.as_str())
        })
        .collect();
    graph.initializer = kept;
    graph.initializer.extend(new_initializers);
    Ok((out, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::{AttributeType, OperatorSetIdProto};

    fn f32_tensor(name: &str, dims: Vec<i64>, values: &[f32]) -> TensorProto {
        tensor(
            name.into(),
            DataType::Float,
            dims,
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        )
    }

    /// `x [1, 2, 8] → Conv(w [3, 2, 3], b [3]) → Relu → y`.
    fn one_conv(opset: i64) -> ModelProto {
        let w: Vec<f32> = (0..18).map(|i| (i as f32 - 9.0) / 10.0).collect();
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: opset,
            }],
            graph: Some(GraphProto {
                node: vec![
                    NodeProto {
                        attribute: vec![AttributeProto {
                            name: "kernel_shape".into(),
                            r#type: AttributeType::Ints as i32,
                            ints: vec![3],
                            ..Default::default()
                        }],
                        ..node(
                            "Conv",
                            "conv".into(),
                            vec!["x".into(), "w".into(), "b".into()],
                            vec!["c".into()],
                        )
                    },
                    node("Relu", "relu".into(), vec!["c".into()], vec!["y".into()]),
                ],
                initializer: vec![
                    f32_tensor("w", vec![3, 2, 3], &w),
                    f32_tensor("b", vec![3], &[0.5, -0.25, 0.0]),
                ],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn ranges() -> HashMap<String, Range> {
        HashMap::from([
            (
                "x".to_string(),
                Range {
                    min: -1.0,
                    max: 1.0,
                },
            ),
            (
                "c".to_string(),
                Range {
                    min: -4.0,
                    max: 8.0,
                },
            ),
        ])
    }

    #[test]
    fn a_conv_becomes_quantize_qlinearconv_dequantize() {
        let model = one_conv(16);
        let names = calibration_tensors(&model, &QuantizeOptions::default()).unwrap();
        assert_eq!(names, ["x", "c"]);
        let (q, report) = quantize_convs(&model, &ranges(), &QuantizeOptions::default()).unwrap();
        assert_eq!(report.quantized, ["conv"]);
        let graph = q.graph.unwrap();
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(
            ops,
            ["QuantizeLinear", "QLinearConv", "DequantizeLinear", "Relu"]
        );
        let conv = &graph.node[1];
        assert_eq!(conv.input.len(), 9);
        assert_eq!(conv.attribute[0].name, "kernel_shape");
        // The dequantised output keeps the original name, so the Relu reads it unchanged.
        assert_eq!(graph.node[2].output, ["c"]);
        // The float weight and bias are gone; int8 weights, per-channel scales and an int32
        // bias took their place.
        let names: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        assert!(!names.contains(&"w") && !names.contains(&"b"), "{names:?}");
        let w = graph
            .initializer
            .iter()
            .find(|t| t.name == "masp_q/w/int8")
            .unwrap();
        assert_eq!(w.data_type, DataType::Int8 as i32);
        // Channel 0 holds -0.9 ..= -0.4: its largest magnitude maps to -127.
        assert_eq!(w.raw_data[0] as i8, -127);
        let b = graph
            .initializer
            .iter()
            .find(|t| t.name == "masp_q/b/int32")
            .unwrap();
        let b0 = i32::from_le_bytes([b.raw_data[0], b.raw_data[1], b.raw_data[2], b.raw_data[3]]);
        // 0.5 / (x_scale · w_scale[0]) = 0.5 / ((2 / 255) · (0.9 / 127)).
        let expected = (0.5f64 / ((2.0 / 255.0) * (0.9 / 127.0))).round() as i32;
        assert!((b0 - expected).abs() <= 1, "{b0} vs {expected}");
        assert!(report.quantized_weight_bytes < report.float_weight_bytes);
    }

    #[test]
    fn missing_ranges_old_opsets_and_graphs_without_convs_are_refused() {
        let model = one_conv(16);
        let mut partial = ranges();
        partial.remove("c");
        let err = quantize_convs(&model, &partial, &QuantizeOptions::default()).unwrap_err();
        assert!(err.to_string().contains("\"c\""), "{err}");
        let err = calibration_tensors(&one_conv(9), &QuantizeOptions::default()).unwrap_err();
        assert!(err.to_string().contains("operator set 10"), "{err}");
        let options = QuantizeOptions {
            exclude: vec!["conv".into()],
        };
        let err = calibration_tensors(&model, &options).unwrap_err();
        assert!(err.to_string().contains("conv: excluded"), "{err}");
    }

    #[test]
    fn extra_outputs_are_float_tensors_added_once() {
        let model = with_outputs(&one_conv(16), &["c".into(), "c".into()]);
        let outputs = &model.graph.unwrap().output;
        assert_eq!(outputs.len(), 1);
        assert_eq!(outputs[0].name, "c");
    }

    #[test]
    fn uint8_params_put_zero_on_a_level() {
        let (scale, zero) = Range {
            min: -1.0,
            max: 1.0,
        }
        .uint8_params();
        assert!((scale - 2.0 / 255.0).abs() < 1e-7);
        // 0 lies halfway between levels 127 and 128.
        assert!(zero == 127 || zero == 128, "{zero}");
        assert_eq!(Range { min: 0.0, max: 3.0 }.uint8_params().1, 0);
        assert_eq!(Range { min: 0.0, max: 0.0 }.uint8_params(), (1.0, 0));
    }

    #[test]
    fn the_percentile_ignores_rare_outliers_and_the_range_includes_zero() {
        let mut c = RangeCollector::new();
        let values: Vec<f32> = (0..100_000).map(|i| (i % 1000) as f32 / 1000.0).collect();
        c.add(&values);
        c.add(&[1000.0, f32::NAN, f32::INFINITY]);
        assert_eq!(c.non_finite(), 2);
        let all = c.range(100.0).unwrap();
        assert_eq!((all.min, all.max), (0.0, 1000.0));
        let most = c.range(99.9).unwrap();
        assert!(most.max > 0.99 && most.max < 1.1, "{most:?}");
        assert_eq!(most.min, 0.0);
        // Negative values: the range is symmetric in |x| but clamped to what was seen.
        let mut n = RangeCollector::new();
        n.add(&[-0.5, 0.25, 0.1]);
        let r = n.range(100.0).unwrap();
        assert!(
            r.min <= -0.5 && r.min > -0.51 && r.max >= 0.25 && r.max <= 0.26,
            "{r:?}"
        );
        assert!(RangeCollector::new().range(99.0).is_none());
    }
}
