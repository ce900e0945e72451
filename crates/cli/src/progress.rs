//! Live progress on stderr for batch work (the `-v`/`-vv` logs are in `logs`).
//!
//! A bar per stage: files done of total, audio processed, speed (× real time), ETA, the model
//! in memory, and RSS against the budget. Drawn only when stderr is a terminal and `--quiet`
//! is not given; a piped or redirected run gets no progress noise.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use masp_budget::{Bytes, probe};
use masp_orchestrator::RunEvent;

/// What the event sink and the bars share.
#[derive(Debug, Default)]
struct Shared {
    /// The model loaded last (and not yet unloaded).
    model: Option<String>,
    /// Worker processes to count with this one.
    workers: Vec<u32>,
}

/// Progress for one command: creates a bar per stage, knows the budget and the current model.
#[derive(Debug, Clone)]
pub struct Progress {
    enabled: bool,
    quiet: bool,
    limit: Bytes,
    shared: Arc<Mutex<Shared>>,
}

/// One stage's bar.
#[derive(Debug)]
pub struct StageBar {
    bar: ProgressBar,
    progress: Progress,
    started: Instant,
    audio_s: f64,
}

impl Progress {
    /// Progress for a run under `limit`; drawn when `quiet` is off and stderr is a terminal.
    pub fn new(quiet: bool, limit: Bytes) -> Self {
        Self {
            enabled: !quiet && std::io::stderr().is_terminal(),
            quiet,
            limit,
            shared: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Follow an orchestrator event (which model is in memory), and say on stderr, unless
    /// `--quiet`, when the watchdog stopped a model call: the budget was crossed, however
    /// briefly, and the task goes on with less memory.
    pub fn event(&self, event: &RunEvent) {
        match event {
            _ if self.quiet => {}
            RunEvent::WatchdogFired {
                task,
                model,
                rss,
                peak,
                limit,
                over_ms,
                chunk_samples,
            } => eprintln!(
                "masp: {task}: the watchdog stopped {model} mid-call at RSS {rss}, over the \
                 {limit} limit (peak {peak}, {over_ms:.0} ms over it, chunk of {chunk_samples} \
                 samples); retrying with less memory"
            ),
            RunEvent::OverrideExceeded {
                model,
                stated,
                measured,
            } => eprintln!(
                "masp: warning: {model} peaked at {measured} while loading, more than twice its \
                 manifest's memory = {stated}; the measurement is used from now on"
            ),
            _ => {}
        }
        let mut shared = self.lock();
        match event {
            RunEvent::Loaded {
                model, worker_pid, ..
            } => {
                shared.model = Some(model.clone());
                if let Some(pid) = worker_pid {
                    shared.workers.push(*pid);
                }
            }
            RunEvent::Unloaded { model, .. } => {
                if shared.model.as_deref() == Some(model.as_str()) {
                    shared.model = None;
                }
                // Gone workers no longer answer; keep the list to the live ones.
                shared
                    .workers
                    .retain(|&pid| probe::process_rss_of(pid).is_some());
            }
            _ => {}
        }
    }

    /// A bar for `stage` over `total` items (`unit`: files, tasks).
    pub fn stage(&self, stage: &str, total: usize, unit: &str) -> StageBar {
        let bar = if self.enabled {
            let bar = ProgressBar::with_draw_target(
                Some(total as u64),
                ProgressDrawTarget::stderr_with_hz(4),
            );
            // The message is cut to the terminal's width rather than wrapped.
            let style = ProgressStyle::with_template(&format!(
                "{{prefix:>7}} [{{bar:16}}] {{pos}}/{{len}} {unit} · ETA {{eta}} · {{wide_msg}}"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(stage.to_owned());
            bar.enable_steady_tick(Duration::from_millis(500));
            bar
        } else {
            ProgressBar::hidden()
        };
        let stage = StageBar {
            bar,
            progress: self.clone(),
            started: Instant::now(),
            audio_s: 0.0,
        };
        stage.refresh();
        stage
    }
}

impl StageBar {
    /// One file done, with `audio_s` seconds of audio (0 when unknown or failed).
    pub fn file_done(&mut self, audio_s: f64) {
        self.audio_s += audio_s;
        self.bar.inc(1);
        self.refresh();
    }

    fn refresh(&self) {
        if self.bar.is_hidden() {
            return;
        }
        let (model, workers) = {
            let shared = self.progress.lock();
            (shared.model.clone(), shared.workers.clone())
        };
        let rss = workers
            .iter()
            .filter_map(|&pid| probe::process_rss_of(pid))
            .fold(
                probe::process_rss().unwrap_or_default(),
                Bytes::saturating_add,
            );
        let elapsed = self.started.elapsed().as_secs_f64();
        let speed = if elapsed > 0.0 {
            self.audio_s / elapsed
        } else {
            0.0
        };
        // Most useful first: a narrow terminal cuts the end off.
        self.bar.set_message(format!(
            "{} · {rss} of {} · {} audio · {speed:.0}× real time",
            model.as_deref().unwrap_or("no model"),
            self.progress.limit,
            human_duration(self.audio_s),
        ));
    }

    /// Remove the bar.
    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}

/// What the CLI shows of a run's stages: a bar per stage, one line on stderr per failed input.
#[derive(Debug)]
pub struct Shown<'a> {
    progress: &'a Progress,
    bar: Option<StageBar>,
}

impl<'a> Shown<'a> {
    /// Stages shown on `progress`.
    pub fn new(progress: &'a Progress) -> Self {
        Self {
            progress,
            bar: None,
        }
    }
}

impl masp_run::stages::Observer for Shown<'_> {
    fn stage_started(&mut self, stage: &str, n_inputs: usize) {
        self.bar = Some(self.progress.stage(stage, n_inputs, "files"));
    }

    fn input_done(&mut self, _stage: &str, audio_s: f64) {
        if let Some(bar) = self.bar.as_mut() {
            bar.file_done(audio_s);
        }
    }

    fn stage_finished(&mut self, _stage: &str) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
    }

    fn failed(&mut self, input: &std::path::Path, reason: &str) {
        // One line, naming the file and the reason; the batch goes on.
        eprintln!("masp: {}: {reason}", input.display());
    }
}

/// `3.4 s`, `12 min 5 s`, `2 h 03 min`.
pub fn human_duration(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{} min {:02} s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!(
            "{} h {:02} min",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_would_write_them() {
        assert_eq!(human_duration(3.44), "3.4 s");
        assert_eq!(human_duration(725.0), "12 min 05 s");
        assert_eq!(human_duration(7380.0), "2 h 03 min");
    }

    #[test]
    fn quiet_draws_nothing() {
        let bar = Progress::new(true, Bytes::from_gib(1)).stage("x", 1, "files");
        assert!(bar.bar.is_hidden());
    }
}
