//! The worker side: `masp worker` runs [`serve`], which loads one model and runs the tasks the
//! orchestrator sends until told to exit (or until its stdin closes).

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::os::fd::FromRawFd;
use std::sync::Arc;

use ort::session::RunOptions;

use masp_budget::{Bytes, probe, trim};
use masp_model_registry::manifest::{ModelSource, ModelSpec};

use super::PARENT_PID_ENV;
use super::protocol::{
    FailureClass, FromWorker, LoadReport, LoadRequest, ProtocolError, RunRequest, ToWorker,
    read_frame,
};
use crate::Error;
use crate::adapter::{AdapterRegistry, ModelAdapter, TaskContext};
use crate::runtime::{Admitted, Runtime, SessionOptions};
use crate::watchdog::{DEFAULT_INTERVAL, WatchGuard, Watchdog};

/// The largest chunk a worker accepts, in samples.
const MAX_CHUNK_SAMPLES: u64 = 1 << 24;

/// The protocol's output: a private duplicate of stdout. Stdout itself is pointed at stderr, so
/// nothing a library prints can corrupt a frame.
fn protocol_output() -> std::io::Result<File> {
    // SAFETY: dup/dup2 on the standard descriptors; the new descriptor is owned by the File
    // below and by nothing else.
    unsafe {
        let fd = libc::dup(1);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::dup2(2, 1) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(File::from_raw_fd(fd))
    }
}

/// Whether an error message says an allocation failed: under the worker's cap that is the cap.
pub(crate) fn is_allocation_failure(message: &str) -> bool {
    message.contains("Failed to allocate memory")
        || message.contains("bad_alloc")
        || message.contains("memory allocation of")
        || message.contains("Cannot allocate memory")
}

fn classify(error: &Error, loading: bool) -> FailureClass {
    let message = error.to_string();
    if is_allocation_failure(&message) {
        return FailureClass::OutOfMemory;
    }
    match error {
        Error::Audio(_) => FailureClass::Input,
        _ if loading => FailureClass::Load,
        _ => FailureClass::Task,
    }
}

/// How [`serve`] ended; the binary that called it turns this into its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServeOutcome {
    /// The orchestrator said exit, or closed the pipe between requests.
    Finished,
    /// The pipe broke mid-message, or a frame could not be understood; the reason went to
    /// stderr (and, where the pipe still works, to the orchestrator).
    ProtocolError,
}

/// Serve the orchestrator on stdin/stdout until it says exit or goes away, loading models
/// with `adapters` (pass the same registry the orchestrator was built with, so a downstream
/// crate's own adapters run under process isolation too).
pub fn serve(adapters: &AdapterRegistry) -> ServeOutcome {
    if let Err(reason) = check_parent() {
        eprintln!("masp worker: {reason}");
        return ServeOutcome::ProtocolError;
    }
    let out = match protocol_output() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("masp worker: cannot set up the protocol pipe: {e}");
            return ServeOutcome::ProtocolError;
        }
    };
    let mut out = BufWriter::new(out);
    let mut input = BufReader::new(std::io::stdin().lock());
    let send = |message: FromWorker, out: &mut BufWriter<File>| -> bool {
        let written = match message.write(out) {
            // Refused before a byte was written: the task fails, the worker goes on.
            Err(ProtocolError::BadLength { len, max }) => FromWorker::Failed {
                class: FailureClass::Task,
                message: format!(
                    "the result is {} long, over the worker protocol's {} frame limit; \
                     run this input with --isolation in-process",
                    Bytes::new(len),
                    Bytes::new(max as u64)
                ),
            }
            .write(out),
            other => other,
        };
        written.is_ok() && out.flush().is_ok()
    };
    if !send(
        FromWorker::Hello {
            pid: std::process::id(),
        },
        &mut out,
    ) {
        return ServeOutcome::ProtocolError;
    }
    let mut adapter: Option<Box<dyn ModelAdapter>> = None;
    // Stops a call that takes this worker past its share of the budget. Without a thread (the
    // OS refused one) tasks run unwatched, held by the cap and the checks between chunks.
    let watchdog = Watchdog::start(DEFAULT_INTERVAL).ok();
    loop {
        let request = match read_frame(&mut input).and_then(|f| {
            f.map(|(tag, body)| ToWorker::decode(tag, &body))
                .transpose()
        }) {
            Ok(None) | Ok(Some(ToWorker::Exit)) => return ServeOutcome::Finished,
            Ok(Some(r)) => r,
            Err(e) => {
                fail_protocol(&mut out, &e);
                return ServeOutcome::ProtocolError;
            }
        };
        let reply = match request {
            ToWorker::Load(load) if adapter.is_none() => match load_model(adapters, &load) {
                Ok((loaded, report)) => {
                    adapter = Some(loaded);
                    FromWorker::Loaded(report)
                }
                Err(e) => FromWorker::Failed {
                    class: classify(&e, true),
                    message: e.to_string(),
                },
            },
            ToWorker::Load(_) => {
                fail_protocol(&mut out, &"a second load request");
                return ServeOutcome::ProtocolError;
            }
            ToWorker::Run(run) => match adapter.as_mut() {
                Some(model) => run_task(model.as_mut(), &run, watchdog.as_ref(), &mut out),
                None => {
                    fail_protocol(&mut out, &"a task before any model was loaded");
                    return ServeOutcome::ProtocolError;
                }
            },
            // `Exit` returned above; the enum is non-exhaustive.
            _ => return ServeOutcome::Finished,
        };
        if !send(reply, &mut out) {
            return ServeOutcome::ProtocolError;
        }
    }
}

/// That the orchestrator named in [`PARENT_PID_ENV`], when set, is still this process's
/// parent: if it died before the parent-death signal was armed, nothing would end this worker.
fn check_parent() -> Result<(), String> {
    let Some(expected) = std::env::var_os(PARENT_PID_ENV) else {
        return Ok(());
    };
    let expected: libc::pid_t = expected
        .to_str()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("{PARENT_PID_ENV} is not a process id: {expected:?}"))?;
    // SAFETY: getppid(2) has no preconditions.
    let parent = unsafe { libc::getppid() };
    if parent == expected {
        Ok(())
    } else {
        Err(format!(
            "the orchestrator that started this worker (process {expected}) is gone; \
             exiting (parent is now {parent})"
        ))
    }
}

fn fail_protocol(out: &mut BufWriter<File>, reason: &dyn std::fmt::Display) {
    eprintln!("masp worker: protocol error: {reason}");
    let _ = FromWorker::Failed {
        class: FailureClass::Protocol,
        message: format!("worker protocol error: {reason}"),
    }
    .write(out);
    let _ = out.flush();
}

fn rss() -> Bytes {
    probe::process_rss().unwrap_or_default()
}

fn load_model(
    adapters: &AdapterRegistry,
    load: &LoadRequest,
) -> Result<(Box<dyn ModelAdapter>, LoadReport), Error> {
    let runtime = Runtime::get()?;
    let spec = ModelSpec {
        name: load.name.clone(),
        kind: load.kind,
        source: ModelSource::File(load.path.clone()),
        sha256: None,
        sample_rate_hz: load.sample_rate_hz,
        memory_override: None,
        generic: load.generic.clone(),
        isolation: None,
        // The orchestrator sends the lean copy's path when the model has one.
        lean: false,
    };
    let options = SessionOptions {
        intra_op_threads: load.intra_op_threads.max(1) as usize,
        prepacking: load.prepacking,
    };
    trim::release_freed_memory();
    // The orchestrator that started this worker holds the load's reservation.
    let (adapter, memory) =
        probe::measure(|| adapters.load(&Admitted::in_worker(runtime), &spec, &load.path, options));
    Ok((
        adapter?,
        LoadReport {
            load_ms: memory.elapsed.as_secs_f64() * 1e3,
            rss_before: memory.rss_before,
            peak: memory.peak,
            rss_after: memory.rss_after,
        },
    ))
}

fn run_task(
    model: &mut dyn ModelAdapter,
    run: &RunRequest,
    watchdog: Option<&Watchdog>,
    out: &mut BufWriter<File>,
) -> FromWorker {
    model.reset();
    probe::reset_peak_rss();
    let rss_before = rss();
    let mut check = |samples_done: u64| -> crate::Result<()> {
        let progress = FromWorker::Progress {
            samples_done,
            rss: rss(),
        };
        // The orchestrator gone: stop the task, there is nobody to give the result to.
        progress
            .write(out)
            .map_err(|e: ProtocolError| Error::Output {
                path: "worker protocol pipe".into(),
                reason: e.to_string(),
            })
    };
    // Not trusted blindly either: a chunk is at most 2^24 samples (64 MiB of f32).
    let chunk = usize::try_from(run.chunk_samples.clamp(1, MAX_CHUNK_SAMPLES)).unwrap_or(1);
    let run_options = RunOptions::new().ok().map(Arc::new);
    let guard = match (watchdog, run.rss_limit, &run_options) {
        (Some(dog), Some(limit), Some(options)) => Some(dog.arm_calls(limit, options)),
        _ => None,
    };
    let mut ctx = TaskContext::new(chunk, &mut check);
    if let Some(options) = &run_options {
        ctx = ctx.with_run_options(Arc::clone(options));
    }
    let result = model.run(&run.input, &run.params, &mut ctx);
    let watched = guard.map(WatchGuard::finish);
    let working_peak = probe::process_peak_rss()
        .unwrap_or_default()
        .saturating_sub(rss_before);
    trim::release_freed_memory();
    match (result, watched.and_then(|w| w.trip.map(|t| (t, w.peak)))) {
        (Err(_), Some((trip, peak))) => FromWorker::Terminated {
            rss: trip.rss,
            peak,
            limit: trip.limit,
        },
        (Ok(output), _) => FromWorker::Done {
            output,
            working_peak,
        },
        (Err(e), None) => FromWorker::Failed {
            class: classify(&e, false),
            message: e.to_string(),
        },
    }
}
