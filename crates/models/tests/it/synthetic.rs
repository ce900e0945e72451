//! Each generator's model loads in ONNX Runtime and computes what it promises.

use std::fs;

use masp_model_registry::onnx::{ExternalizeOptions, OnnxMetadata, externalize};
use masp_orchestrator::runtime::SessionOptions;
use masp_testkit::synthetic::{
    self, ActivationModel, Layout, WeightsModel, activation_model, corrupt_model, faulty_model,
    weight_values, weights_model,
};
use sha2::{Digest, Sha256};

use crate::sessions::{admitted, run_x, session};

fn spec(weight_bytes: u64, layout: Layout, name: &str) -> WeightsModel {
    WeightsModel {
        weight_bytes,
        layout,
        name: name.into(),
    }
}

/// `y` for the input `x = e_row` (one-hot): row `row` of `W`.
fn one_hot_output(path: &std::path::Path, k: u64, row: usize) -> Vec<f32> {
    let mut x = vec![0.0f32; k as usize];
    x[row] = 1.0;
    let (shape, y) = run_x(&mut session(path), [1, k as usize], &x);
    assert_eq!(shape.len(), 2);
    y
}

#[test]
fn weights_model_computes_with_its_weights_in_both_layouts() {
    let dir = tempfile::tempdir().unwrap();
    for layout in [Layout::Embedded, Layout::External] {
        let spec = spec(1 << 20, layout, "w1m");
        let (k, m) = spec.shape();
        assert_eq!((k, m), (1024, 256));
        let path = weights_model(dir.path(), spec).unwrap();
        let row = 3;
        let expected: Vec<f32> = weight_values()
            .skip(row * m as usize)
            .take(m as usize)
            .collect();
        assert_eq!(one_hot_output(&path, k, row), expected, "{layout:?}");
    }
}

#[test]
fn tiny_weights_model_runs() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(12, Layout::Embedded, "tiny");
    assert_eq!(spec.shape(), (3, 1));
    let path = weights_model(dir.path(), spec).unwrap();
    let (shape, y) = run_x(&mut session(&path), [1, 3], &[1.0, 1.0, 1.0]);
    assert_eq!(shape, [1, 1]);
    let sum: f32 = weight_values().take(3).sum();
    assert!((y[0] - sum).abs() < 1e-6, "{y:?} vs {sum}");
}

#[test]
fn external_layout_has_its_data_file_at_offset_zero() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(3 << 20, Layout::External, "ext");
    let bytes = spec.actual_weight_bytes();
    let path = weights_model(dir.path(), spec).unwrap();
    let data = path.with_file_name("ext.onnx.data");
    assert_eq!(fs::metadata(&data).unwrap().len(), bytes);
    let meta = OnnxMetadata::read(&path).unwrap();
    assert_eq!(meta.external_data.len(), 1);
    let reference = &meta.external_data[0];
    assert_eq!((reference.offset, reference.length), (0, bytes));
    assert_eq!(reference.path, data);
    assert_eq!(meta.external_weight_bytes.get(), bytes);
    assert_eq!(meta.embedded_weight_bytes.get(), 0);
    let first = fs::read(&data).unwrap();
    let expected: Vec<u8> = weight_values().take(4).flat_map(f32::to_le_bytes).collect();
    assert_eq!(&first[..16], &expected[..]);
}

#[test]
fn embedded_layout_reports_its_weight_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(3 << 20, Layout::Embedded, "emb");
    let bytes = spec.actual_weight_bytes();
    let meta = OnnxMetadata::read(&weights_model(dir.path(), spec).unwrap()).unwrap();
    assert_eq!(meta.embedded_weight_bytes.get(), bytes);
    assert!(meta.external_data.is_empty());
    assert!(meta.file_bytes.get() > bytes && meta.file_bytes.get() < bytes + 4096);
    assert_eq!(meta.opsets[0].version, synthetic::OPSET_VERSION);
}

#[test]
fn externalized_weights_model_gives_the_same_output() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(2 << 20, Layout::Embedded, "to-externalize");
    let (k, _) = spec.shape();
    let embedded = weights_model(dir.path(), spec).unwrap();
    let external = dir.path().join("externalized.onnx");
    let report = externalize(&embedded, &external, ExternalizeOptions::default()).unwrap();
    assert_eq!(
        (report.tensors_moved, report.bytes_moved.get()),
        (1, 2 << 20)
    );
    assert_eq!(
        one_hot_output(&external, k, 7),
        one_hot_output(&embedded, k, 7)
    );
}

#[test]
fn activation_model_output_scales_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ActivationModel {
        bytes_per_input_sample: 4096,
        name: "act4k".into(),
    };
    let features = spec.features();
    assert_eq!(features, 1024);
    let path = activation_model(dir.path(), spec).unwrap();
    let meta = OnnxMetadata::read(&path).unwrap();
    assert_eq!(
        meta.inputs[0].dims,
        Some(vec![
            masp_model_registry::onnx::Dim::Fixed(1),
            masp_model_registry::onnx::Dim::Symbolic("T".into())
        ])
    );
    let mut session = session(&path);
    for samples in [1usize, 1000] {
        let x: Vec<f32> = (0..samples).map(|i| (i % 7) as f32 - 3.0).collect();
        let (shape, y) = run_x(&mut session, [1, samples], &x);
        assert_eq!(shape, [1, samples as i64]);
        for (xi, yi) in x.iter().zip(&y) {
            assert_eq!(*yi, xi * features as f32);
        }
    }
}

#[test]
fn faulty_model_passes_metadata_but_fails_in_onnx_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let path = faulty_model(dir.path()).unwrap();
    let meta = OnnxMetadata::read(&path).unwrap();
    assert_eq!(meta.inputs.len(), 1);
    let err = admitted()
        .session("faulty", &path, SessionOptions::default())
        .unwrap_err();
    assert!(
        matches!(err, masp_orchestrator::Error::Load { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("undefined_value"), "{err}");
}

#[test]
fn corrupt_model_is_a_typed_error_before_onnx_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let path = corrupt_model(dir.path()).unwrap();
    let err = OnnxMetadata::read(&path).unwrap_err();
    assert!(
        matches!(err, masp_model_registry::Error::NotOnnx { .. }),
        "{err}"
    );
    // ONNX Runtime rejects it too, but only as an untyped message.
    assert!(
        admitted()
            .session("corrupt", &path, SessionOptions::default())
            .is_err()
    );
}

fn sha256(path: &std::path::Path) -> String {
    hex::encode(Sha256::digest(fs::read(path).unwrap()))
}

#[test]
fn generators_are_deterministic_and_cached() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let generate = |dir: &std::path::Path| {
        [
            weights_model(dir, spec(64 << 10, Layout::Embedded, "d")).unwrap(),
            weights_model(dir, spec(64 << 10, Layout::External, "d")).unwrap(),
            activation_model(
                dir,
                ActivationModel {
                    bytes_per_input_sample: 64,
                    name: "d".into(),
                },
            )
            .unwrap(),
            faulty_model(dir).unwrap(),
            corrupt_model(dir).unwrap(),
        ]
    };
    let first = generate(a.path());
    let modified: Vec<_> = first
        .iter()
        .map(|p| fs::metadata(p).unwrap().modified().unwrap())
        .collect();
    assert_eq!(generate(a.path()), first, "same parameters, same files");
    let again: Vec<_> = first
        .iter()
        .map(|p| fs::metadata(p).unwrap().modified().unwrap())
        .collect();
    assert_eq!(again, modified, "cached files are not rewritten");
    let unique: std::collections::HashSet<_> = first.iter().map(|p| p.parent().unwrap()).collect();
    assert_eq!(unique.len(), first.len(), "one directory per parameter set");
    for (x, y) in first.iter().zip(generate(b.path())) {
        assert_eq!(sha256(x), sha256(&y), "{}", x.display());
    }
}

#[test]
fn invalid_parameters_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        spec(0, Layout::Embedded, "zero"),
        spec(1 << 20, Layout::Embedded, "../escape"),
        spec(3 << 30, Layout::Embedded, "too-big-to-embed"),
    ] {
        let err = weights_model(dir.path(), bad.clone()).unwrap_err();
        assert!(
            matches!(err, masp_testkit::Error::InvalidSpec { .. }),
            "{bad:?}: {err}"
        );
    }
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
}
