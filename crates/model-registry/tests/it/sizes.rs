//! Sizes taken from untrusted files (issue #20, class 4): a manifest's window and an ONNX
//! file's structure are bounded where they are parsed, before anything is allocated for them.

use std::path::Path;

use masp_budget::Bytes;
use masp_model_registry::Error;
use masp_model_registry::assets;
use masp_model_registry::manifest::{MAX_WINDOW_SAMPLES, ManifestError, Registry};
use masp_model_registry::onnx::OnnxMetadata;
use masp_model_registry::onnx::cost::{MAX_METADATA_DECODE_BYTES, decode_limit, decoded_bytes};
use masp_testkit::hostile::len_field;

/// `n` copies of an empty length-delimited field `number`: two bytes each.
fn empties(number: u32, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 * n);
    for _ in 0..n {
        len_field(&mut out, number, &[]);
    }
    out
}

/// A model: ir_version 8, an opset, and `graph` as its graph.
fn model_with_graph(graph: &[u8]) -> Vec<u8> {
    let mut model = vec![0x08, 0x08];
    len_field(&mut model, 7, graph);
    let mut opset = Vec::new();
    opset.extend_from_slice(&[0x10, 0x11]); // version 17
    len_field(&mut model, 8, &opset);
    model
}

/// The hostile files: each about 2 MB of empty messages, named.
fn hostile_models() -> Vec<(&'static str, Vec<u8>)> {
    const N: usize = 1_000_000;
    let mut node_of_attributes = Vec::new();
    len_field(&mut node_of_attributes, 1, &empties(5, N)); // graph.node[0].attribute × N
    let mut sparse_attributes = Vec::new();
    let mut one_node = Vec::new();
    for _ in 0..N / 4 {
        let mut attr = Vec::new();
        len_field(&mut attr, 22, &[]); // an empty sparse tensor: two tensors inline
        len_field(&mut one_node, 5, &attr);
    }
    len_field(&mut sparse_attributes, 1, &one_node);
    let mut deep_dims = Vec::new();
    {
        // graph.input[0].type.tensor_type.shape.dim × N
        let shape = empties(1, N);
        let mut tensor_type = Vec::new();
        len_field(&mut tensor_type, 2, &shape);
        let mut ty = Vec::new();
        len_field(&mut ty, 1, &tensor_type);
        let mut info = Vec::new();
        len_field(&mut info, 2, &ty);
        len_field(&mut deep_dims, 11, &info);
    }
    vec![
        (
            "a node of 1 M empty attributes",
            model_with_graph(&node_of_attributes),
        ),
        (
            "250 k attributes of empty sparse tensors",
            model_with_graph(&sparse_attributes),
        ),
        ("1 M empty nodes", model_with_graph(&empties(1, N))),
        ("1 M empty initializers", model_with_graph(&empties(5, N))),
        ("1 M empty value infos", model_with_graph(&empties(13, N))),
        (
            "an input of 1 M empty dimensions",
            model_with_graph(&deep_dims),
        ),
    ]
}

#[test]
fn files_of_empty_messages_are_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    for (what, bytes) in hostile_models() {
        let path = dir.path().join("hostile.onnx");
        std::fs::write(&path, &bytes).unwrap();
        let cost = decoded_bytes(&bytes);
        assert!(
            Bytes::new(cost) > decode_limit(bytes.len() as u64),
            "{what}: {cost} for {} bytes",
            bytes.len()
        );
        println!(
            "{what}: {} bytes decode into {}",
            bytes.len(),
            Bytes::new(cost)
        );
        match OnnxMetadata::read(&path) {
            Err(Error::MetadataTooLarge {
                file_bytes,
                decoded_bytes,
                limit_bytes,
                ..
            }) => {
                assert_eq!(file_bytes, Bytes::new(bytes.len() as u64), "{what}");
                assert!(decoded_bytes > limit_bytes, "{what}");
                assert_eq!(limit_bytes, decode_limit(bytes.len() as u64), "{what}");
            }
            other => panic!("{what}: {other:?}"),
        }
        let message = OnnxMetadata::read(&path).unwrap_err().to_string();
        assert!(
            message.contains("hostile.onnx") && message.contains("limit"),
            "{message}"
        );
    }
}

#[test]
fn real_models_decode_well_inside_the_limit() {
    for asset in [
        &assets::SILERO_VAD,
        &assets::SILERO_VAD_SEQUENCE,
        &assets::SPEAKER_EMBEDDER,
    ] {
        let path = asset
            .locate()
            .unwrap_or_else(|e| panic!("{e} (run `cargo xtask setup`)"));
        let bytes = std::fs::read(&path).unwrap();
        let cost = decoded_bytes(&bytes);
        // A quarter of the limit: the margin a real model has.
        assert!(
            Bytes::new(cost * 4) < decode_limit(bytes.len() as u64),
            "{}: {cost} for {} bytes",
            asset.id,
            bytes.len()
        );
        println!(
            "{}: {} bytes decode into {}",
            asset.id,
            bytes.len(),
            Bytes::new(cost)
        );
        OnnxMetadata::read(&path).unwrap();
    }
    assert!(MAX_METADATA_DECODE_BYTES <= Bytes::from_mib(64));
}

fn manifest(dir: &Path, generic: &str, rate: u32) -> Result<Registry, ManifestError> {
    let path = dir.join("masp.toml");
    std::fs::write(
        &path,
        format!(
            "[[model]]\nname = \"g\"\nkind = \"generic\"\npath = \"g.onnx\"\n\
             sample_rate_hz = {rate}\n[model.generic]\ninput = \"x\"\n{generic}"
        ),
    )
    .unwrap();
    let mut registry = Registry::builtin();
    registry.add_manifest(&path).map(|()| registry)
}

#[test]
fn manifest_windows_are_bounded_in_samples_where_they_are_parsed() {
    let dir = tempfile::tempdir().unwrap();
    let limit_ms_16k = MAX_WINDOW_SAMPLES * 1000 / 16_000;
    let refused = [
        ("window_ms = 4294967295\n", 16_000),
        (&format!("window_ms = {}\n", limit_ms_16k + 1), 16_000),
        ("window_ms = 20000\n", 384_000),
        ("window_ms = 1000\nhop_ms = 4294967295\n", 16_000),
    ];
    for (generic, rate) in refused {
        let err = manifest(dir.path(), generic, rate).unwrap_err().to_string();
        assert!(
            err.contains("over the limit") && err.contains(&MAX_WINDOW_SAMPLES.to_string()),
            "{generic}: {err}"
        );
    }
    for (generic, rate) in [
        (format!("window_ms = {limit_ms_16k}\n"), 16_000),
        ("window_ms = 10000\n".to_owned(), 384_000),
        ("window_ms = 1000\nhop_ms = 500\n".to_owned(), 16_000),
    ] {
        let registry = manifest(dir.path(), &generic, rate).unwrap();
        let spec = registry.get("g").unwrap();
        let (window, hop) = spec.generic.as_ref().unwrap().window_and_hop(rate).unwrap();
        assert!(
            window as u64 <= MAX_WINDOW_SAMPLES && hop <= window,
            "{generic}"
        );
    }
}
