//! `masp_model_registry::onnx`: metadata of real and synthetic models, typed errors for bad
//! files, the memory cost of reading, and externalizing weights.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use masp_model_registry::Error;
use masp_model_registry::assets;
use masp_model_registry::onnx::{
    DataLocation, DataType, Dim, ExternalizeOptions, GraphProto, ModelProto, NodeProto,
    OnnxMetadata, OperatorSetIdProto, StringStringEntryProto, TensorProto, externalize, read_model,
    write_model,
};
use masp_testkit::synthetic::{self, Layout, WeightsModel};

/// Tests that measure this process's memory hold this lock, and so do tests that move many
/// megabytes, so the measurement sees only its own allocations.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn asset(asset: &assets::Asset) -> PathBuf {
    asset
        .locate()
        .unwrap_or_else(|e| panic!("{e} (run `cargo xtask setup`)"))
}

fn names(infos: &[masp_model_registry::onnx::TensorInfo]) -> Vec<&str> {
    infos.iter().map(|i| i.name.as_str()).collect()
}

#[test]
fn silero_vad_metadata() {
    let path = asset(&assets::SILERO_VAD);
    let meta = OnnxMetadata::read(&path).unwrap();
    assert_eq!(names(&meta.inputs), ["input", "state", "sr"]);
    assert_eq!(names(&meta.outputs), ["output", "stateN"]);
    assert_eq!(meta.inputs[0].elem_type, Some(DataType::Float));
    assert_eq!(meta.inputs[2].elem_type, Some(DataType::Int64));
    assert_eq!(meta.inputs[2].dims, Some(vec![]), "sr is a scalar");
    assert_eq!(
        meta.inputs[1].dims,
        Some(vec![Dim::Fixed(2), Dim::Unknown, Dim::Fixed(128)])
    );
    assert_eq!(meta.ir_version, 8);
    assert_eq!(meta.opsets.len(), 1);
    assert_eq!(
        (meta.opsets[0].domain.as_str(), meta.opsets[0].version),
        ("", 16)
    );
    assert_eq!(meta.file_bytes.get(), fs::metadata(&path).unwrap().len());
    // Silero keeps its weights in Constant nodes inside If branches, not in initializers.
    assert_eq!(meta.initializer_count, 0);
    let weights = meta.embedded_weight_bytes.get();
    assert!(
        weights > meta.file_bytes.get() * 9 / 10 && weights < meta.file_bytes.get(),
        "{weights} of {}",
        meta.file_bytes
    );
    assert!(meta.external_data.is_empty());
    assert_eq!(meta.total_weight_bytes(), meta.embedded_weight_bytes);
}

#[test]
fn speaker_embedder_metadata() {
    let meta = OnnxMetadata::read(&asset(&assets::SPEAKER_EMBEDDER)).unwrap();
    assert_eq!(names(&meta.inputs), ["mel_window"]);
    assert_eq!(
        meta.inputs[0].dims,
        Some(vec![
            Dim::Symbolic("batch".into()),
            Dim::Fixed(80),
            Dim::Fixed(40)
        ])
    );
    assert_eq!(names(&meta.outputs), ["embedding"]);
    assert_eq!(
        meta.outputs[0].dims,
        Some(vec![Dim::Symbolic("batch".into()), Dim::Fixed(256)])
    );
    assert_eq!(meta.outputs[0].elem_type, Some(DataType::Float));
    assert_eq!(meta.producer_name, "onnx.quantize");
    assert_eq!(meta.initializer_count, 37);
    assert!(meta.embedded_weight_bytes.get() > 11 << 20);
}

#[test]
fn text_file_is_not_onnx() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("readme.onnx");
    fs::write(&path, "This is a text file, not a model.\nSecond line.\n").unwrap();
    let err = OnnxMetadata::read(&path).unwrap_err();
    assert!(
        matches!(&err, Error::NotOnnx { path: p, .. } if *p == path),
        "{err}"
    );
    assert!(err.to_string().contains("is not an ONNX model"), "{err}");
}

#[test]
fn empty_file_is_not_onnx() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.onnx");
    fs::write(&path, b"").unwrap();
    let err = OnnxMetadata::read(&path).unwrap_err();
    assert!(
        matches!(err, Error::NotOnnx { ref reason, .. } if reason == "empty file"),
        "{err}"
    );
}

#[test]
fn random_bytes_are_not_onnx() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("noise.onnx");
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let noise: Vec<u8> = (0..64 << 10)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    fs::write(&path, noise).unwrap();
    let err = OnnxMetadata::read(&path).unwrap_err();
    assert!(matches!(err, Error::NotOnnx { .. }), "{err}");
}

#[test]
fn missing_file_is_an_io_error() {
    let err = OnnxMetadata::read(Path::new("/nonexistent/model.onnx")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}

#[test]
fn truncated_real_model_is_reported_as_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let full = fs::read(asset(&assets::SILERO_VAD)).unwrap();
    let path = dir.path().join("half.onnx");
    fs::write(&path, &full[..full.len() / 2]).unwrap();
    let err = OnnxMetadata::read(&path).unwrap_err();
    match &err {
        Error::Truncated {
            path: p,
            file_bytes,
            needed_bytes,
        } => {
            assert_eq!(p, &path);
            assert_eq!(file_bytes.get(), (full.len() / 2) as u64);
            assert!(needed_bytes.get() > file_bytes.get(), "{err}");
            assert!(needed_bytes.get() <= full.len() as u64, "{err}");
        }
        other => panic!("expected Truncated, got {other}"),
    }
    assert!(err.to_string().contains("truncated"), "{err}");
}

fn external_entries(location: &str, offset: u64, length: u64) -> Vec<StringStringEntryProto> {
    [
        ("location", location.to_string()),
        ("offset", offset.to_string()),
        ("length", length.to_string()),
    ]
    .into_iter()
    .map(|(key, value)| StringStringEntryProto {
        key: key.into(),
        value,
    })
    .collect()
}

/// A minimal model: `y = Identity(w)`, with the given initializers.
fn model_with(initializers: Vec<TensorProto>) -> ModelProto {
    ModelProto {
        ir_version: 8,
        producer_name: "registry-test".into(),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(GraphProto {
            name: "g".into(),
            node: vec![NodeProto {
                op_type: "Identity".into(),
                input: vec![initializers[0].name.clone()],
                output: vec!["y".into()],
                ..Default::default()
            }],
            initializer: initializers,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn float_tensor(name: &str, bytes: usize, fill: u8) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![(bytes / 4) as i64],
        data_type: DataType::Float as i32,
        raw_data: (0..bytes)
            .map(|i| fill.wrapping_add(i as u8))
            .collect::<Vec<u8>>()
            .into(),
        ..Default::default()
    }
}

fn external_tensor(name: &str, location: &str, length: u64) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![(length / 4) as i64],
        data_type: DataType::Float as i32,
        data_location: DataLocation::External as i32,
        external_data: external_entries(location, 0, length),
        ..Default::default()
    }
}

#[test]
fn external_location_outside_the_model_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    fs::create_dir(&models).unwrap();
    // The file exists: the refusal is about where it is, not whether it is there.
    fs::write(dir.path().join("outside.data"), [0u8; 64]).unwrap();
    let outside = dir.path().join("outside.data");
    for location in [
        "../outside.data",
        "sub/../../outside.data",
        outside.to_str().unwrap(),
    ] {
        let path = models.join("escape.onnx");
        write_model(&path, &model_with(vec![external_tensor("w", location, 64)])).unwrap();
        let err = OnnxMetadata::read(&path).unwrap_err();
        assert!(
            matches!(&err, Error::ExternalDataOutsideModelDir { location: l, .. } if l == location),
            "{location}: {err}"
        );
        assert!(err.to_string().contains("refused"), "{err}");
    }
}

#[test]
fn external_data_through_a_symlink_out_of_the_model_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    fs::create_dir_all(models.join("real")).unwrap();
    fs::write(dir.path().join("outside.data"), [0u8; 64]).unwrap();
    fs::write(models.join("real/inside.data"), [0u8; 64]).unwrap();
    // A file link out, a directory link out, and a link to the directory above.
    std::os::unix::fs::symlink("../outside.data", models.join("link.data")).unwrap();
    std::os::unix::fs::symlink(dir.path(), models.join("up")).unwrap();
    std::os::unix::fs::symlink("..", models.join("parent")).unwrap();
    let path = models.join("escape.onnx");
    for location in ["link.data", "up/outside.data", "parent/outside.data"] {
        write_model(&path, &model_with(vec![external_tensor("w", location, 64)])).unwrap();
        let err = OnnxMetadata::read(&path).unwrap_err();
        assert!(
            matches!(&err, Error::ExternalDataOutsideModelDir { location: l, .. } if l == location),
            "{location}: {err}"
        );
    }
    // Links that stay inside are fine.
    std::os::unix::fs::symlink("real/inside.data", models.join("ok.data")).unwrap();
    for location in [
        "ok.data",
        "real/inside.data",
        "parent/models/real/inside.data",
    ] {
        write_model(&path, &model_with(vec![external_tensor("w", location, 64)])).unwrap();
        OnnxMetadata::read(&path).unwrap_or_else(|e| panic!("{location}: {e}"));
    }
}

#[test]
fn a_bare_model_file_name_is_confined_to_the_current_directory() {
    // `model.onnx` has the empty path as its parent; the check must still resolve links.
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    fs::create_dir(&work).unwrap();
    fs::write(dir.path().join("outside.data"), [0u8; 64]).unwrap();
    std::os::unix::fs::symlink("../outside.data", work.join("link.data")).unwrap();
    write_model(
        &work.join("bare.onnx"),
        &model_with(vec![external_tensor("w", "link.data", 64)]),
    )
    .unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "onnx::bare_model_read_in_cwd",
            "--test-threads=1",
        ])
        .env("MASP_BARE_MODEL_CWD", &work)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The child must have run that one test, and it must have passed.
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run by the test above in a child, so that changing the directory affects no other test.
#[test]
fn bare_model_read_in_cwd() {
    let Some(cwd) = std::env::var_os("MASP_BARE_MODEL_CWD") else {
        return;
    };
    std::env::set_current_dir(cwd).unwrap();
    let err = OnnxMetadata::read(std::path::Path::new("bare.onnx")).unwrap_err();
    assert!(
        matches!(&err, Error::ExternalDataOutsideModelDir { .. }),
        "{err}"
    );
}

#[test]
fn missing_or_short_external_data_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let spec = WeightsModel {
        weight_bytes: 256 << 10,
        layout: Layout::External,
        name: "ext".into(),
    };
    let model = synthetic::weights_model(dir.path(), spec).unwrap();
    let data = model.with_file_name("ext.onnx.data");
    OnnxMetadata::read(&model).unwrap();

    fs::OpenOptions::new()
        .write(true)
        .open(&data)
        .unwrap()
        .set_len(1000)
        .unwrap();
    let err = OnnxMetadata::read(&model).unwrap_err();
    match &err {
        Error::ExternalDataMissing {
            location,
            path,
            needed_bytes,
            found_bytes,
            ..
        } => {
            assert_eq!(location, "ext.onnx.data");
            assert_eq!(path, &data);
            assert_eq!(needed_bytes.get(), 256 << 10);
            assert_eq!(found_bytes.map(|b| b.get()), Some(1000));
        }
        other => panic!("expected ExternalDataMissing, got {other}"),
    }
    assert!(err.to_string().contains("has only 1000 B"), "{err}");

    fs::remove_file(&data).unwrap();
    let err = OnnxMetadata::read(&model).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ExternalDataMissing {
                found_bytes: None,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[test]
fn synthetic_models_report_their_weight_bytes() {
    let _heavy = heavy();
    let dir = tempfile::tempdir().unwrap();
    for layout in [Layout::Embedded, Layout::External] {
        let spec = WeightsModel {
            weight_bytes: 8 << 20,
            layout,
            name: "w8m".into(),
        };
        let meta =
            OnnxMetadata::read(&synthetic::weights_model(dir.path(), spec).unwrap()).unwrap();
        assert_eq!(meta.total_weight_bytes().get(), 8 << 20, "{layout:?}");
        assert_eq!(meta.initializer_count, 1);
        assert_eq!(
            names(&meta.inputs),
            ["x"],
            "the initializer is not an input"
        );
        match layout {
            Layout::Embedded => {
                assert_eq!(meta.embedded_weight_bytes.get(), 8 << 20);
                assert!(meta.file_bytes.get() > 8 << 20);
            }
            Layout::External => {
                assert_eq!(meta.embedded_weight_bytes.get(), 0);
                assert_eq!(meta.external_data.len(), 1);
                let reference = &meta.external_data[0];
                assert_eq!((reference.tensor.as_str(), reference.offset), ("W", 0));
                assert_eq!(reference.length, 8 << 20);
                assert!(meta.file_bytes.get() < 4096);
            }
        }
    }
}

#[test]
fn reading_metadata_does_not_load_the_weights() {
    let _heavy = heavy();
    let spec = WeightsModel {
        weight_bytes: 256 << 20,
        layout: Layout::Embedded,
        name: "registry-rss-256m".into(),
    };
    let path = synthetic::weights_model(&synthetic::cache_dir(), spec).unwrap();
    let file_bytes = fs::metadata(&path).unwrap().len();
    assert!(file_bytes >= 256 << 20);

    let (meta, memory) = masp_testkit::memory::measure(|| OnnxMetadata::read(&path).unwrap());
    assert_eq!(meta.embedded_weight_bytes.get(), 256 << 20);
    assert!(memory.peak_is_phase_local, "cannot reset the peak RSS here");
    // Decoding slices the mapped file: only the graph's few pages become resident.
    assert!(
        memory.peak_growth().get() < file_bytes / 32,
        "reading metadata of a {file_bytes}-byte model raised RSS by {} (peak)",
        memory.peak_growth()
    );
}

/// Reads `length` bytes at `offset` of `path`.
fn read_at(path: &Path, offset: u64, length: u64) -> Vec<u8> {
    let all = fs::read(path).unwrap();
    all[offset as usize..(offset + length) as usize].to_vec()
}

fn entry<'a>(tensor: &'a TensorProto, key: &str) -> &'a str {
    tensor
        .external_data
        .iter()
        .find(|e| e.key == key)
        .map(|e| e.value.as_str())
        .unwrap()
}

#[test]
fn externalize_moves_large_initializers_to_aligned_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.onnx");
    let mut model = model_with(vec![
        float_tensor("a", 5000, 1),
        float_tensor("small", 100, 2),
        float_tensor("c", 7004, 3),
        float_tensor("d", 4096, 4),
    ]);
    model.doc_string = "kept".into();
    model.metadata_props = external_entries("not", 1, 2);
    write_model(&src, &model).unwrap();

    let dst = dir.path().join("out").join("dst.onnx");
    fs::create_dir(dst.parent().unwrap()).unwrap();
    let report = externalize(&src, &dst, ExternalizeOptions::default()).unwrap();
    let data = dir.path().join("out/dst.onnx.data");
    assert_eq!(report.tensors_moved, 3);
    assert_eq!(report.bytes_moved.get(), 5000 + 7004 + 4096);
    assert_eq!(report.data_path.as_deref(), Some(data.as_path()));
    assert_eq!(report.data_file_bytes.get(), 16384 + 4096);
    assert_eq!(
        report.data_file_bytes.get(),
        fs::metadata(&data).unwrap().len()
    );
    assert_eq!(
        report.model_file_bytes.get(),
        fs::metadata(&dst).unwrap().len()
    );
    assert_eq!(
        report.source_file_bytes.get(),
        fs::metadata(&src).unwrap().len()
    );

    let out = read_model(&dst).unwrap();
    let graph = out.graph.as_ref().unwrap();
    let mut offsets = Vec::new();
    for (before, after) in model
        .graph
        .as_ref()
        .unwrap()
        .initializer
        .iter()
        .zip(&graph.initializer)
    {
        assert_eq!((&before.name, &before.dims), (&after.name, &after.dims));
        if before.name == "small" {
            assert_eq!(before, after);
            continue;
        }
        assert_eq!(after.data_location, DataLocation::External as i32);
        assert!(after.raw_data.is_empty());
        assert_eq!(entry(after, "location"), "dst.onnx.data");
        let offset: u64 = entry(after, "offset").parse().unwrap();
        let length: u64 = entry(after, "length").parse().unwrap();
        assert_eq!(offset % 4096, 0, "{} at {offset}", after.name);
        assert_eq!(length, before.raw_data.len() as u64);
        assert_eq!(read_at(&data, offset, length), before.raw_data.as_ref());
        offsets.push(offset);
    }
    assert_eq!(offsets, [0, 8192, 16384]);
    // Everything but the moved data is unchanged.
    assert_eq!(
        (out.doc_string.as_str(), &out.metadata_props),
        ("kept", &model.metadata_props)
    );
    assert_eq!(graph.node, model.graph.as_ref().unwrap().node);

    let meta = OnnxMetadata::read(&dst).unwrap();
    assert_eq!(meta.embedded_weight_bytes.get(), 100);
    assert_eq!(meta.external_weight_bytes, report.bytes_moved);
}

#[test]
fn externalize_options_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.onnx");
    write_model(
        &src,
        &model_with(vec![float_tensor("a", 100, 1), float_tensor("b", 8, 2)]),
    )
    .unwrap();
    let dst = dir.path().join("all.onnx");
    let options = ExternalizeOptions {
        min_tensor_bytes: 0,
        alignment: 64,
    };
    let report = externalize(&src, &dst, options).unwrap();
    assert_eq!(report.tensors_moved, 2);
    assert_eq!(report.data_file_bytes.get(), 128 + 8);

    let none = dir.path().join("none.onnx");
    let options = ExternalizeOptions {
        min_tensor_bytes: 1 << 20,
        ..ExternalizeOptions::default()
    };
    let report = externalize(&src, &none, options).unwrap();
    assert_eq!((report.tensors_moved, report.data_path), (0, None));
    assert_eq!(read_model(&none).unwrap(), read_model(&src).unwrap());

    for alignment in [0, 3, 4095] {
        let options = ExternalizeOptions {
            alignment,
            ..ExternalizeOptions::default()
        };
        let err = externalize(&src, &dst, options).unwrap_err();
        assert!(
            matches!(err, Error::InvalidAlignment { alignment: a } if a == alignment),
            "{err}"
        );
    }
}

#[test]
fn externalize_keeps_fields_it_does_not_know() {
    use prost::Message;
    use prost::encoding::{WireType, encode_key, encode_varint};

    let dir = tempfile::tempdir().unwrap();
    // A tensor with an unknown field 50, in a graph and a model with unknown fields 99.
    let mut tensor = float_tensor("w", 4096, 9).encode_to_vec();
    encode_key(50, WireType::LengthDelimited, &mut tensor);
    encode_varint(11, &mut tensor);
    tensor.extend_from_slice(b"tensor-mark");
    let mut model = model_with(vec![float_tensor("w", 4, 0)]);
    model.graph.as_mut().unwrap().initializer.clear();
    let mut graph = model.graph.take().unwrap().encode_to_vec();
    encode_key(5, WireType::LengthDelimited, &mut graph);
    encode_varint(tensor.len() as u64, &mut graph);
    graph.extend_from_slice(&tensor);
    let mut file = model.encode_to_vec();
    encode_key(7, WireType::LengthDelimited, &mut file);
    encode_varint(graph.len() as u64, &mut file);
    file.extend_from_slice(&graph);
    encode_key(99, WireType::LengthDelimited, &mut file);
    encode_varint(10, &mut file);
    file.extend_from_slice(b"model-mark");
    let src = dir.path().join("unknown.onnx");
    fs::write(&src, &file).unwrap();

    let dst = dir.path().join("unknown.ext.onnx");
    let report = externalize(&src, &dst, ExternalizeOptions::default()).unwrap();
    assert_eq!(report.tensors_moved, 1);
    let out = fs::read(&dst).unwrap();
    for mark in [&b"tensor-mark"[..], b"model-mark"] {
        assert!(out.windows(mark.len()).any(|w| w == mark), "lost {mark:?}");
    }
    let meta = OnnxMetadata::read(&dst).unwrap();
    assert_eq!(meta.external_weight_bytes.get(), 4096);
}

#[test]
fn externalize_gathers_existing_external_data() {
    let _heavy = heavy();
    let dir = tempfile::tempdir().unwrap();
    let spec = WeightsModel {
        weight_bytes: 1 << 20,
        layout: Layout::External,
        name: "w1m".into(),
    };
    let src = synthetic::weights_model(dir.path(), spec).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let dst = elsewhere.path().join("copy.onnx");
    let report = externalize(&src, &dst, ExternalizeOptions::default()).unwrap();
    assert_eq!(
        (report.tensors_moved, report.bytes_moved.get()),
        (1, 1 << 20)
    );
    assert_eq!(
        fs::read(src.with_file_name("w1m.onnx.data")).unwrap(),
        fs::read(elsewhere.path().join("copy.onnx.data")).unwrap()
    );
    drop(dir); // The copy no longer depends on the source's files.
    let meta = OnnxMetadata::read(&dst).unwrap();
    assert_eq!(meta.external_data[0].location, "copy.onnx.data");
}

#[test]
fn externalize_in_place_and_of_a_corrupt_file() {
    let _heavy = heavy();
    let dir = tempfile::tempdir().unwrap();
    let spec = WeightsModel {
        weight_bytes: 1 << 20,
        layout: Layout::Embedded,
        name: "inplace".into(),
    };
    let generated = synthetic::weights_model(dir.path(), spec).unwrap();
    let path = dir.path().join("inplace.onnx");
    fs::copy(&generated, &path).unwrap();
    let report = externalize(&path, &path, ExternalizeOptions::default()).unwrap();
    assert_eq!(report.tensors_moved, 1);
    let meta = OnnxMetadata::read(&path).unwrap();
    assert_eq!(
        (
            meta.embedded_weight_bytes.get(),
            meta.external_weight_bytes.get()
        ),
        (0, 1 << 20)
    );

    let corrupt = masp_testkit::synthetic::corrupt_model(dir.path()).unwrap();
    let err = externalize(
        &corrupt,
        &dir.path().join("x.onnx"),
        ExternalizeOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::NotOnnx { .. }), "{err}");
    assert!(!dir.path().join("x.onnx").exists());
}

#[test]
fn externalizing_streams_instead_of_loading_the_weights() {
    let _heavy = heavy();
    let spec = WeightsModel {
        weight_bytes: 256 << 20,
        layout: Layout::Embedded,
        name: "registry-rss-256m".into(),
    };
    let src = synthetic::weights_model(&synthetic::cache_dir(), spec).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("external.onnx");

    let (report, memory) = masp_testkit::memory::measure(|| {
        externalize(&src, &dst, ExternalizeOptions::default()).unwrap()
    });
    assert_eq!(report.bytes_moved.get(), 256 << 20);
    assert!(memory.peak_is_phase_local, "cannot reset the peak RSS here");
    assert!(
        memory.peak_growth().get() < report.bytes_moved.get() / 16,
        "externalizing {} raised RSS by {} (peak)",
        report.bytes_moved,
        memory.peak_growth()
    );
    let meta = OnnxMetadata::read(&dst).unwrap();
    assert_eq!(meta.external_weight_bytes.get(), 256 << 20);
}

/// Found by `cargo fuzz` (onnx_metadata): an external tensor whose `data_location` was mutated to
/// an unknown value had its shape's 64 MiB counted as embedded weights of a 193-byte file.
#[test]
fn fuzz_regression_unknown_data_location_is_refused_not_counted() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz-unknown-data-location.onnx");
    let len = std::fs::metadata(&path).unwrap().len();
    match masp_model_registry::onnx::OnnxMetadata::read(&path) {
        Ok(meta) => assert!(meta.embedded_weight_bytes.get() <= len, "{meta:?}"),
        Err(e) => assert!(e.to_string().contains("data_location"), "{e}"),
    }
}
