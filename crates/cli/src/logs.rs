//! `-v`/`-vv` logs of what the orchestrator does, through `tracing` to stderr (above the
//! progress bars when they are drawn).

use std::io::IsTerminal;

use masp_orchestrator::RunEvent;

use crate::progress::human_duration;

/// Turn on `tracing` logs to stderr: `-v` shows loads, unloads and cleanups with sizes and
/// times, `-vv` every task too.
pub fn init_logs(verbose: u8) {
    if verbose == 0 {
        return;
    }
    let level = if verbose == 1 {
        tracing::Level::INFO
    } else {
        tracing::Level::DEBUG
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        // Colours only for a person reading a terminal, not in a log file.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Log one orchestrator event.
pub fn log_event(event: &RunEvent) {
    match event {
        RunEvent::Loaded {
            model,
            estimated_peak,
            measured_peak,
            resident,
            load_ms,
            worker_pid,
            ..
        } => tracing::info!(
            "loaded {model} in {load_ms:.0} ms: peak {measured_peak} (estimated \
             {estimated_peak}), resident {resident}{}",
            worker_pid.map_or_else(String::new, |p| format!(", worker process {p}"))
        ),
        RunEvent::Unloaded {
            model,
            reason,
            trimmed,
            freed,
            shortfall,
            leak_suspected,
            worker_returned,
        } => tracing::info!(
            "unloaded {model} ({reason}): freed {freed}, allocator trim returned {trimmed}\
             {}{}",
            if worker_returned.get() > 0 {
                format!(", worker process returned {worker_returned}")
            } else {
                String::new()
            },
            if *leak_suspected {
                format!("; {shortfall} not returned: leak suspected")
            } else {
                String::new()
            }
        ),
        RunEvent::LoadRefused { model, reason } => {
            tracing::warn!("load of {model} refused: {reason}");
        }
        RunEvent::LeanCopyWritten {
            model,
            path,
            bytes_moved,
            ms,
        } => {
            if bytes_moved.get() == 0 {
                tracing::warn!(
                    "the lean copy of {model} moves no weights (they sit inside subgraphs or in \
                     tensors under 1 KiB): it loads as the original does; {}",
                    path.display()
                );
            } else {
                tracing::info!(
                    "wrote the lean copy of {model} ({bytes_moved} of weights to map) in \
                     {ms:.0} ms: {}",
                    path.display()
                );
            }
        }
        RunEvent::TaskDone {
            task,
            ms,
            working_peak,
            chunk_samples,
            ..
        } => tracing::debug!(
            "{task}: {} ({chunk_samples}-sample chunks, working memory {working_peak})",
            human_duration(ms / 1000.0)
        ),
        RunEvent::Degraded {
            task, step, detail, ..
        } => tracing::warn!("{task}: {step}: {detail}"),
        RunEvent::TaskFailed { task, reason, .. } => tracing::debug!("{task} failed: {reason}"),
        _ => {}
    }
}
