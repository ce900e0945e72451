//! One result file and one journal line per (input, stage), whatever the inputs are called:
//! colliding stems in different folders, Unicode, spaces, leading dots, long names, and
//! several stages of one model.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use masp_budget::{Budget, BudgetConfig, Bytes};
use masp_model_registry::manifest::Registry;
use masp_orchestrator::SequentialOrchestrator;
use masp_run::journal::JOURNAL_FILE;
use masp_run::name::result_name;
use masp_run::pipeline::{self, Pipeline, RunOptions};
use masp_run::stages::Quiet;
use proptest::prelude::*;

/// A short 16 kHz mono WAV of a tone: naming does not depend on what the audio says, and a
/// second of it keeps the 10 cases quick.
fn write_wav(path: &Path, frequency_hz: f32) {
    let rate = 16_000u32;
    let samples: Vec<i16> = (0..rate)
        .map(|i| {
            let t = i as f32 / rate as f32;
            (8000.0 * (std::f32::consts::TAU * frequency_hz * t).sin()) as i16
        })
        .collect();
    let data_len = (samples.len() * 2) as u32;
    let mut bytes = Vec::with_capacity(44 + data_len as usize);
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(36 + data_len).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes()); // PCM
    bytes.extend_from_slice(&1u16.to_le_bytes()); // mono
    bytes.extend_from_slice(&rate.to_le_bytes());
    bytes.extend_from_slice(&(rate * 2).to_le_bytes());
    bytes.extend_from_slice(&2u16.to_le_bytes());
    bytes.extend_from_slice(&16u16.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// Stems that collide with each other once reduced to ASCII or a prefix, or that name files
/// a careless mapping would hide or merge.
const STEMS: &[&str] = &[
    "x",
    "Grüße",
    "Grüsse",
    "日本語",
    "a b",
    "x.y",
    ".hidden",
    "-",
    "x-0123456789abcdef",
];

/// Stage names, each a valid one; two stages may use the same model.
const STAGES: &[&str] = &["silero-vad", "vad fast", "Stimme", "vad", "ß"];

fn orchestrator() -> SequentialOrchestrator {
    let budget = Budget::new(BudgetConfig::default().with_limit(Bytes::from_mib(512)));
    SequentialOrchestrator::builder(budget, Registry::builtin(), masp_models::registry())
        .build()
        .expect("orchestrator (run `cargo xtask setup` if the models are missing)")
}

/// Every journal line's task key, counted.
fn journal_keys(out: &Path) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(out.join(JOURNAL_FILE)).unwrap();
    let mut keys = BTreeMap::new();
    for line in text.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        *keys
            .entry(entry["task"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    keys
}

/// For each stage: result file name → the input its JSON names.
fn results(out: &Path, stages: &[String]) -> BTreeMap<String, BTreeMap<String, String>> {
    stages
        .iter()
        .map(|stage| {
            let files = std::fs::read_dir(out.join(stage))
                .unwrap()
                .map(|e| {
                    let name = e.unwrap().file_name().into_string().unwrap();
                    let json: serde_json::Value = serde_json::from_slice(
                        &std::fs::read(out.join(stage).join(&name)).unwrap(),
                    )
                    .unwrap();
                    (name, json["path"].as_str().unwrap().to_owned())
                })
                .collect();
            (stage.clone(), files)
        })
        .collect()
}

fn check(inputs: &[PathBuf], stages: &[String], out: &Path) {
    let results = results(out, stages);
    for (stage, files) in &results {
        assert_eq!(files.len(), inputs.len(), "{stage}: {files:?}");
        for input in inputs {
            let name = format!("{}.json", result_name(input));
            assert_eq!(
                files.get(&name).map(String::as_str),
                Some(input.to_str().unwrap()),
                "{stage}: {name} in {files:?}"
            );
        }
    }
    let keys = journal_keys(out);
    assert_eq!(keys.len(), inputs.len() * stages.len(), "{keys:?}");
    assert!(keys.values().all(|n| *n == 1), "{keys:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]

    #[test]
    fn every_input_and_stage_has_one_result_and_one_journal_line(
        picks in prop::collection::btree_set((0usize..3, 0..STEMS.len()), 1..6),
        stage_picks in prop::collection::btree_set(0..STAGES.len(), 1..4),
        thresholds in prop::collection::vec(0.3f64..0.7, 4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let inputs: Vec<PathBuf> = picks
            .iter()
            .enumerate()
            .map(|(i, &(folder, stem))| {
                let folder = dir.path().join(["a", "b", "Ordner ü"][folder]);
                std::fs::create_dir_all(&folder).unwrap();
                let path = folder.join(format!("{}.wav", STEMS[stem]));
                // Each file its own content too, so no two inputs are one file by content.
                write_wav(&path, 200.0 + 50.0 * i as f32);
                path
            })
            .collect();
        let stages: Vec<String> = stage_picks.iter().map(|&i| STAGES[i].to_owned()).collect();
        let text: String = stages
            .iter()
            .zip(&thresholds)
            .map(|(name, t)| {
                format!("[[stage]]\nmodel = \"silero-vad\"\nname = \"{name}\"\nthreshold = {t}\n")
            })
            .collect();
        let pipeline = Pipeline::parse(&text, Path::new("p.toml")).unwrap();
        let out = dir.path().join("out");

        let mut orch = orchestrator();
        let first =
            pipeline::run(&mut orch, &pipeline, &inputs, &out, RunOptions::default(), &mut Quiet)
                .unwrap();
        prop_assert_eq!(first.n_failed, 0);
        prop_assert_eq!(first.n_resumed, 0);
        check(&inputs, &stages, &out);

        // A resume redoes nothing, and adds neither files nor journal lines.
        let before: BTreeSet<_> = walk(&out);
        let second =
            pipeline::run(&mut orch, &pipeline, &inputs, &out, RunOptions::default(), &mut Quiet)
                .unwrap();
        prop_assert_eq!(second.n_resumed, inputs.len() * stages.len());
        check(&inputs, &stages, &out);
        prop_assert_eq!(walk(&out), before);
    }
}

fn walk(dir: &Path) -> BTreeSet<PathBuf> {
    let mut all = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all.extend(walk(&path));
        } else {
            all.insert(path);
        }
    }
    all
}
