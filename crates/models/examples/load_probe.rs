//! Measures what loading an ONNX model costs: session creation time and resident memory, in a
//! fresh process per measurement.
//!
//! ```text
//! cargo run --release -p masp-models --example load_probe -- MODEL [OPTIONS]
//!     --no-prepacking                 session.disable_prepacking=1
//!     --no-arena                      CPU execution provider without its memory arena
//!     --device-allocated-initializers session.use_device_allocator_for_initializers=1
//!     --config KEY=VALUE              any other session config entry (repeatable)
//! cargo run --release -p masp-models --example load_probe -- --table [--weight-mib N]
//! ```
//!
//! The first form prints one JSON line: the model's sizes, then `load` (session creation) and
//! `run` (first inference, on zeros) as [`masp_testkit::memory::PhaseMemory`], and the RSS
//! after dropping the session. The second generates a weights model of N MiB (default 500),
//! embedded and externalized, runs the first form on each under several option sets, each in
//! its own process, and prints a Markdown table.

use std::error::Error;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use masp_budget::{Bytes, probe};
use masp_model_registry::assets;
use masp_model_registry::onnx::{DataType, Dim, ExternalizeOptions, OnnxMetadata, externalize};
use masp_testkit::memory::measure;
use masp_testkit::synthetic::{self, ActivationModel, Layout, WeightsModel};
use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::SessionBuilder;
use ort::value::{DynValue, Tensor};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = if args.first().map(String::as_str) == Some("--table") {
        table(&args[1..])
    } else {
        probe_one(&args)
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load_probe: {e}");
            ExitCode::FAILURE
        }
    }
}

fn text(e: impl Display) -> Box<dyn Error> {
    e.to_string().into()
}

#[derive(Debug, Default)]
struct Options {
    prepacking: bool,
    arena: bool,
    device_allocated_initializers: bool,
    config: Vec<(String, String)>,
}

fn parse(args: &[String]) -> Result<(PathBuf, Options)> {
    let mut model = None;
    let mut options = Options {
        prepacking: true,
        arena: true,
        ..Options::default()
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--no-prepacking" => options.prepacking = false,
            "--no-arena" => options.arena = false,
            "--device-allocated-initializers" => options.device_allocated_initializers = true,
            "--config" => {
                let entry = args.next().ok_or("--config needs KEY=VALUE")?;
                let (key, value) = entry.split_once('=').ok_or("--config needs KEY=VALUE")?;
                options.config.push((key.into(), value.into()));
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}").into()),
            path => model = Some(PathBuf::from(path)),
        }
    }
    Ok((
        model.ok_or("usage: load_probe MODEL [OPTIONS] | --table")?,
        options,
    ))
}

fn environment() -> Result<Environment> {
    let dylib = match std::env::var_os("ORT_DYLIB_PATH") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => assets::ONNXRUNTIME.locate()?,
    };
    ort::init_from(&dylib)
        .map_err(text)?
        .with_name("load_probe")
        .with_telemetry(false)
        .build()
        .map_err(text)
}

/// A session built the way masp's runtime builds it (one thread each), plus `options`.
fn session(environment: &Environment, path: &Path, options: &Options) -> Result<Session> {
    let mut builder: SessionBuilder = Session::builder(environment)
        .map_err(text)?
        .with_intra_threads(1)
        .map_err(text)?
        .with_inter_threads(1)
        .map_err(text)?
        .with_prepacking(options.prepacking)
        .map_err(text)?;
    if !options.arena {
        builder = builder
            .with_execution_providers([ort::ep::CPU::default().with_arena_allocator(false).build()])
            .map_err(text)?;
    }
    if options.device_allocated_initializers {
        builder = builder.with_device_allocated_initializers().map_err(text)?;
    }
    for (key, value) in &options.config {
        builder = builder.with_config_entry(key, value).map_err(text)?;
    }
    builder.commit_from_file(path).map_err(text)
}

/// Zero-filled float inputs for every graph input (symbolic and unknown axes of size 1).
fn zero_inputs(meta: &OnnxMetadata) -> Result<Vec<(String, DynValue)>> {
    meta.inputs
        .iter()
        .map(|input| {
            if input.elem_type != Some(DataType::Float) {
                return Err(format!("input {} is not float", input.name).into());
            }
            let shape: Vec<i64> = input
                .dims
                .iter()
                .flatten()
                .map(|d| match d {
                    Dim::Fixed(n) => *n,
                    Dim::Symbolic(_) | Dim::Unknown => 1,
                })
                .collect();
            let len = shape.iter().product::<i64>().max(0) as usize;
            let tensor = Tensor::from_array((shape, vec![0.0f32; len])).map_err(text)?;
            Ok((input.name.clone(), tensor.into_dyn()))
        })
        .collect()
}

fn probe_one(args: &[String]) -> Result<()> {
    let (path, options) = parse(args)?;
    let meta = OnnxMetadata::read(&path)?;
    let environment = environment()?;

    // Warm up: the library, its environment and thread pools are not the model's cost.
    let warm_up = synthetic::activation_model(
        &synthetic::cache_dir(),
        ActivationModel {
            bytes_per_input_sample: 4,
            name: "warm-up".into(),
        },
    )?;
    let mut warm = session(&environment, &warm_up, &options)?;
    let warm_meta = OnnxMetadata::read(&warm_up)?;
    warm.run(zero_inputs(&warm_meta)?).map_err(text)?;
    drop(warm);

    let (session, load) = measure(|| session(&environment, &path, &options));
    let mut session = session?;
    let split_after_load = rss_split();
    let inputs = zero_inputs(&meta)?;
    let (outputs, run) = measure(|| session.run(inputs).map(|outputs| outputs.len()));
    outputs.map_err(text)?;
    let split_after_run = rss_split();
    drop(session);
    let rss_after_drop = probe::process_rss().unwrap_or(Bytes::ZERO);

    let report = serde_json::json!({
        "model": path,
        "file_bytes": meta.file_bytes,
        "weight_bytes": meta.total_weight_bytes(),
        "external": !meta.external_data.is_empty(),
        "prepacking": options.prepacking,
        "arena": options.arena,
        "device_allocated_initializers": options.device_allocated_initializers,
        "config": options.config,
        "load": load,
        "run": run,
        "rss_anon_file_after_load": split_after_load,
        "rss_anon_file_after_run": split_after_run,
        "rss_after_drop": rss_after_drop,
    });
    println!("{report}");
    Ok(())
}

/// `[RssAnon, RssFile]` of this process in bytes: private memory versus mapped file pages,
/// which the kernel can drop and re-read under memory pressure.
fn rss_split() -> [u64; 2] {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |kib| kib * 1024)
    };
    [field("RssAnon:"), field("RssFile:")]
}

fn table(args: &[String]) -> Result<()> {
    let weight_mib: u64 = match args {
        [] => 500,
        [flag, n] if flag == "--weight-mib" => n.parse().map_err(text)?,
        _ => return Err("usage: load_probe --table [--weight-mib N]".into()),
    };
    let dir = synthetic::cache_dir();
    let spec = WeightsModel {
        weight_bytes: weight_mib << 20,
        layout: Layout::Embedded,
        name: format!("probe-{weight_mib}m"),
    };
    let embedded = synthetic::weights_model(&dir, spec)?;
    let external = embedded.with_file_name(format!("probe-{weight_mib}m.external.onnx"));
    if !external.is_file() {
        externalize(&embedded, &external, ExternalizeOptions::default())?;
    }
    let variants: &[(&str, &[&str])] = &[
        ("default (prepacking on)", &[]),
        ("prepacking off", &["--no-prepacking"]),
        ("no CPU arena", &["--no-arena"]),
        (
            "device-allocated initializers",
            &["--device-allocated-initializers"],
        ),
        (
            "prepacking off + no arena",
            &["--no-prepacking", "--no-arena"],
        ),
    ];
    let me = std::env::current_exe()?;
    println!(
        "| layout | options | load ms | RSS after load | peak during load | RSS after run (anon / file) | peak during run | RSS after drop |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for (layout, model) in [("embedded", &embedded), ("external", &external)] {
        for (name, flags) in variants {
            let output = Command::new(&me).arg(model).args(*flags).output()?;
            if !output.status.success() {
                return Err(format!(
                    "{layout} {name}: {}",
                    String::from_utf8_lossy(&output.stderr)
                )
                .into());
            }
            let report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
            eprintln!("{report}");
            let (load, run) = (&report["load"], &report["run"]);
            let rss_base = load["rss_before"].as_u64().unwrap_or(0);
            let delta = |v: &serde_json::Value| {
                let bytes = v.as_u64().unwrap_or(0).saturating_sub(rss_base) as f64;
                format!("+{:.0} MiB", bytes / (1 << 20) as f64)
            };
            let anon_file = |v: &serde_json::Value| {
                let mib = |i: usize| v[i].as_u64().unwrap_or(0) as f64 / (1 << 20) as f64;
                format!("{:.0} / {:.0} MiB", mib(0), mib(1))
            };
            println!(
                "| {layout} | {name} | {:.0} | {} | {} | {} ({}) | {} | {} |",
                load["elapsed"].as_f64().unwrap_or(0.0),
                delta(&load["rss_after"]),
                delta(&load["peak"]),
                delta(&run["rss_after"]),
                anon_file(&report["rss_anon_file_after_run"]),
                delta(&run["peak"]),
                delta(&report["rss_after_drop"]),
            );
        }
    }
    println!(
        "(deltas are above the RSS before session creation, after warm-up; anon / file are \
         absolute RssAnon / RssFile)"
    );
    Ok(())
}
