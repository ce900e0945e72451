//! Diarization through the library API on real speech: the VAD batch, then the embedding batch
//! over windows of the speech, then clustering — on `two_voices.wav`, whose turns are known.

use std::path::{Path, PathBuf};

use masp_budget::{Budget, BudgetConfig, Bytes};
use masp_model_registry::manifest::Registry;
use masp_models::embedder::Embedding;
use masp_models::vad::VadParams;
use masp_orchestrator::batch::BatchTask;
use masp_orchestrator::task::{TaskOutput, TaskParams};
use masp_orchestrator::{AudioTask, SequentialOrchestrator};
use masp_run::diarize::{
    Clustering, SpeakerOptions, Turn, WindowConfig, assign_speakers, n_speakers, speech_windows,
};
use serde::Deserialize;

/// The acceptance bound on every turn boundary, in seconds.
const TOLERANCE_S: f64 = 0.5;

#[derive(Deserialize)]
struct Known {
    turns: Vec<KnownTurn>,
}

#[derive(Deserialize)]
struct KnownTurn {
    speaker: String,
    start_s: f64,
    end_s: f64,
}

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/samples/two_voices.wav")
}

fn known_turns() -> Vec<KnownTurn> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/samples/two_voices.turns.json");
    let known: Known = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    known.turns
}

fn orchestrator() -> SequentialOrchestrator {
    SequentialOrchestrator::builder(
        Budget::new(BudgetConfig::default().with_limit(Bytes::from_gib(2))),
        Registry::builtin(),
        masp_models::registry(),
    )
    .build()
    .unwrap_or_else(|e| panic!("{e} (run `cargo xtask setup`)"))
}

fn task(label: &str, model: &str, input: &Path, params: TaskParams) -> BatchTask {
    BatchTask {
        task: AudioTask {
            label: format!("{label} {}", input.display()),
            model: model.into(),
            input: input.to_path_buf(),
            params,
        },
        depends_on: Vec::new(),
        priority: 0,
    }
}

/// The two-batch plan: VAD for every file, then embeddings of the windows over each file's
/// speech; returns each file's turns with `options`.
fn diarize(
    orch: &mut SequentialOrchestrator,
    files: &[PathBuf],
    options: &SpeakerOptions,
) -> Vec<Vec<Turn>> {
    let vad: Vec<BatchTask> = files
        .iter()
        .map(|f| {
            task(
                "vad",
                "silero-vad",
                f,
                TaskParams::Vad(VadParams::default()),
            )
        })
        .collect();
    let mut segments: Vec<Vec<(f64, f64)>> = vec![Vec::new(); files.len()];
    let summary = orch
        .run_batch(&vad, &mut |i, result| match result.unwrap() {
            TaskOutput::Segments(o) => {
                segments[i] = o
                    .segments
                    .iter()
                    .map(|s| (s.start_s(), s.end_s()))
                    .collect();
            }
            other => panic!("not segments: {other:?}"),
        })
        .unwrap();
    assert_eq!(summary.failed, 0);
    let windows: Vec<Vec<(f64, f64)>> = segments
        .iter()
        .map(|s| speech_windows(s, &WindowConfig::default()).unwrap())
        .collect();
    let embed: Vec<BatchTask> = files
        .iter()
        .zip(&windows)
        .map(|(f, w)| {
            let params = TaskParams::Embed {
                output: None,
                windows: Some(w.clone()),
            };
            task("embed", "speaker-embedder", f, params)
        })
        .collect();
    let mut embeddings: Vec<Vec<Embedding>> = vec![Vec::new(); files.len()];
    orch.run_batch(&embed, &mut |i, result| match result.unwrap() {
        TaskOutput::RangeEmbeddings { embeddings: e, .. } => {
            embeddings[i] = e.into_iter().map(|r| r.embedding).collect();
        }
        other => panic!("not range embeddings: {other:?}"),
    })
    .unwrap();
    (0..files.len())
        .map(|i| assign_speakers(&segments[i], &windows[i], &embeddings[i], options).unwrap())
        .collect()
}

#[test]
fn two_voices_gives_two_speakers_and_the_known_turns() {
    two_voices_with(&SpeakerOptions::default());
}

#[test]
fn two_voices_with_a_given_number_of_speakers() {
    two_voices_with(&SpeakerOptions {
        clustering: Clustering::Speakers(2),
        ..SpeakerOptions::default()
    });
}

fn two_voices_with(options: &SpeakerOptions) {
    let mut orch = orchestrator();
    let turns = diarize(&mut orch, &[sample()], options).remove(0);
    assert_eq!(n_speakers(&turns), 2, "{turns:?}");
    let known = known_turns();
    assert_eq!(turns.len(), known.len(), "{turns:?}");
    // Speaker labels are arbitrary: map ours onto the known ones by the first turn.
    let first = turns[0].speaker;
    for (ours, theirs) in turns.iter().zip(&known) {
        assert!(
            (ours.start_s - theirs.start_s).abs() <= TOLERANCE_S,
            "{ours:?}"
        );
        assert!((ours.end_s - theirs.end_s).abs() <= TOLERANCE_S, "{ours:?}");
        let same_as_first = ours.speaker == first;
        assert_eq!(
            same_as_first,
            theirs.speaker == known[0].speaker,
            "{ours:?}"
        );
    }
}

#[test]
fn a_twenty_file_batch_loads_each_model_once() {
    let mut orch = orchestrator();
    let files = vec![sample(); 20];
    let turns = diarize(&mut orch, &files, &SpeakerOptions::default());
    assert_eq!(turns.len(), 20);
    // The same file gives the same turns every time.
    assert!(turns.iter().all(|t| t == &turns[0]));
    let stats = orch.stats();
    for model in ["silero-vad", "speaker-embedder"] {
        assert_eq!(stats[model].loads, 1, "{model}: {:?}", stats[model]);
        assert_eq!(stats[model].tasks_done, 20, "{model}");
    }
    assert!(orch.resident_models().is_empty());
}
