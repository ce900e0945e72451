//! What `masp-model-registry` knows about an ONNX file before anything loads it: inputs,
//! outputs, weights, and the memory masp would reserve for it — without ONNX Runtime.
//!
//! `cargo run -p masp-model-registry --example inspect_model -- model.onnx`

use std::path::PathBuf;
use std::process::ExitCode;

use masp_model_registry::estimate;
use masp_model_registry::onnx::OnnxMetadata;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: inspect_model MODEL.onnx");
        return ExitCode::from(1);
    };
    // Bounds-checked parsing of the protobuf: a corrupt or hostile file is a typed error.
    let meta = match OnnxMetadata::read(&path) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "{}: {} (IR {}, producer {} {})",
        path.display(),
        meta.file_bytes,
        meta.ir_version,
        meta.producer_name,
        meta.producer_version
    );
    for input in &meta.inputs {
        println!("  input  {input:?}");
    }
    for output in &meta.outputs {
        println!("  output {output:?}");
    }
    println!(
        "  weights: {} embedded in {} initializers, {} in external files",
        meta.embedded_weight_bytes, meta.initializer_count, meta.external_weight_bytes
    );
    for prepacking in [true, false] {
        let e = estimate::from_metadata(&meta, prepacking);
        println!(
            "  estimate (pre-packing {}): load peak {}, resident {}",
            if prepacking { "on" } else { "off" },
            e.load_peak,
            e.resident
        );
    }
    ExitCode::SUCCESS
}
