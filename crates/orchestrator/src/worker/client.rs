//! The orchestrator side: [`WorkerAdapter`] starts a `masp worker` process for one model and
//! proxies tasks to it, behind the same [`ModelAdapter`] trait as an in-process model.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use masp_budget::{Bytes, probe};

use super::protocol::{
    FailureClass, FromWorker, LoadReport, LoadRequest, ProtocolError, RunRequest, ToWorker,
    read_frame,
};
use super::server::is_allocation_failure;
use super::status::{WorkerFailure, WorkerStatus};
use crate::adapter::{ModelAdapter, TaskContext};
use crate::task::{TaskOutput, TaskParams};
use crate::{Error, Result};

/// How workers are started, capped, timed and retried.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerConfig {
    /// The program to run as `PROGRAM worker`: the `masp` binary.
    pub program: PathBuf,
    /// How long a worker may take to start and greet. Default 30 s.
    pub startup_timeout: Duration,
    /// How long a load may take. Default 10 minutes (a GiB-sized model on a slow disk).
    pub load_timeout: Duration,
    /// How long a working worker may stay silent (it reports after every chunk) before it is
    /// called hung and killed. Default 120 s.
    pub idle_timeout: Duration,
    /// How long a worker told to exit may take before it is killed. Default 5 s.
    pub exit_timeout: Duration,
    /// Retries of a task whose worker crashed, hung or broke the protocol. Default 1.
    pub retries_after_crash: u32,
    /// Retries of a task whose worker hit its memory cap. Default 0: the same task in the same
    /// cap fails the same way.
    pub retries_after_cap: u32,
    /// How the worker's hard cap follows from its reservation.
    pub cap: CapRule,
}

impl WorkerConfig {
    /// Defaults, with `program` as the worker binary.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            startup_timeout: Duration::from_secs(30),
            load_timeout: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(120),
            exit_timeout: Duration::from_secs(5),
            retries_after_crash: 1,
            retries_after_cap: 0,
            cap: CapRule::default(),
        }
    }
}

/// The worker's hard memory cap, from its reservation.
///
/// The cap is `RLIMIT_AS`, set in the child before it execs: this machine class (cgroup v1
/// hybrid, no delegated v2 subtree) gives a process no cgroup of its own. `RLIMIT_AS` bounds
/// address space, not RSS, and address space runs well above RSS: the mapped runtime library,
/// thread stacks, and allocator arenas reserved ahead of use. So the rule is
///
/// ```text
/// cap = address_space_base + threads × per_thread + factor × reservation
/// ```
///
/// with the worker started under `MALLOC_ARENA_MAX=2`: glibc otherwise reserves an arena per
/// thread. Measured with silero in a release worker (see `docs/ISOLATION.md`): 72 MiB of
/// address space with one intra-op thread; with 4 and 16 threads 287 and 1152 MiB without the
/// arena limit, 159 and 256 MiB with it (peaks 207 and 256 MiB). The defaults leave the model
/// twice its reservation in address space on top of that. RSS itself is checked by the
/// orchestrator between chunks against the budget, as in-process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CapRule {
    /// Address space of a worker before any model. Default 256 MiB.
    pub address_space_base: Bytes,
    /// Address space per intra-op thread. Default 32 MiB.
    pub per_thread: Bytes,
    /// Multiple of the reservation. Default 2.
    pub factor: f64,
}

impl Default for CapRule {
    fn default() -> Self {
        Self {
            address_space_base: Bytes::from_mib(256),
            per_thread: Bytes::from_mib(32),
            factor: 2.0,
        }
    }
}

impl CapRule {
    /// The cap for a worker whose load and task are reserved at `reservation`, running
    /// `threads` intra-op threads.
    pub fn cap_for(&self, reservation: Bytes, threads: usize) -> Bytes {
        let scaled = (reservation.get() as f64 * self.factor.max(1.0)) as u64;
        self.address_space_base
            .saturating_add(Bytes::new(
                self.per_thread.get().saturating_mul(threads.max(1) as u64),
            ))
            .saturating_add(Bytes::new(scaled))
    }
}

enum Incoming {
    Message(FromWorker),
    Broken(ProtocolError),
    Eof,
}

/// Lines of a worker's stderr kept for error messages.
const STDERR_LINES: usize = 8;
/// Longest stderr line kept.
const STDERR_LINE_CHARS: usize = 400;

/// A model running in a worker process.
pub struct WorkerAdapter {
    model: String,
    config: WorkerConfig,
    child: Child,
    pid: u32,
    cap: Bytes,
    stdin: Option<ChildStdin>,
    incoming: Receiver<Incoming>,
    threads: Vec<JoinHandle<()>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    load: LoadReport,
    last_rss: Bytes,
    last_task_peak: Bytes,
    /// Set once the process is gone or killed: it must be unloaded.
    dead: bool,
}

impl std::fmt::Debug for WorkerAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerAdapter")
            .field("model", &self.model)
            .field("pid", &self.pid)
            .field("cap", &self.cap)
            .field("dead", &self.dead)
            .finish_non_exhaustive()
    }
}

impl WorkerAdapter {
    /// Start a worker capped at `cap`, and load `request` in it.
    ///
    /// # Errors
    /// [`Error::Worker`] when it cannot start, crashes, hangs or hits its cap while loading;
    /// [`Error::Remote`] when the model fails to load (the worker's message).
    pub fn spawn(config: &WorkerConfig, request: LoadRequest, cap: Bytes) -> Result<Self> {
        let model = request.name.clone();
        let mut command = Command::new(&config.program);
        command
            .arg("worker")
            .env("MALLOC_ARENA_MAX", "2")
            // Its own process group: a kill reaches anything it started, too.
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let limit = cap.get();
        // SAFETY: runs in the child between fork and exec; setrlimit is async-signal-safe
        // and touches no memory of the parent's.
        unsafe {
            command.pre_exec(move || {
                let rlimit = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_AS, &raw const rlimit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let spawn_err = |reason: String| Error::Worker {
            model: model.clone(),
            failure: WorkerFailure::Spawn {
                program: config.program.clone(),
                reason,
            },
        };
        let mut child = command.spawn().map_err(|e| spawn_err(e.to_string()))?;
        let pid = child.id();
        let (Some(stdin), Some(stdout), Some(stderr_pipe)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(spawn_err("its pipes could not be set up".into()));
        };
        let (tx, incoming) = crossbeam_channel::bounded::<Incoming>(64);
        let reader = std::thread::Builder::new()
            .name(format!("masp-worker-{pid}-out"))
            .spawn(move || {
                let mut stdout = BufReader::new(stdout);
                loop {
                    let item = match read_frame(&mut stdout) {
                        Ok(None) => Incoming::Eof,
                        Ok(Some((tag, body))) => match FromWorker::decode(tag, &body) {
                            Ok(m) => Incoming::Message(m),
                            Err(e) => Incoming::Broken(e),
                        },
                        Err(e) => Incoming::Broken(e),
                    };
                    let last = !matches!(item, Incoming::Message(_));
                    if tx.send(item).is_err() || last {
                        return;
                    }
                }
            });
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let tail = Arc::clone(&stderr);
        let stderr_reader = std::thread::Builder::new()
            .name(format!("masp-worker-{pid}-err"))
            .spawn(move || {
                let mut lines = BufReader::new(stderr_pipe);
                let mut line = Vec::new();
                while let Ok(n) = lines.read_until(b'\n', &mut line) {
                    if n == 0 {
                        break;
                    }
                    let text: String = String::from_utf8_lossy(&line)
                        .trim_end()
                        .chars()
                        .take(STDERR_LINE_CHARS)
                        .collect();
                    line.clear();
                    if text.is_empty() {
                        continue;
                    }
                    let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
                    if tail.len() == STDERR_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(text);
                }
            });
        let mut threads = Vec::new();
        for t in [reader, stderr_reader] {
            match t {
                Ok(t) => threads.push(t),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(spawn_err(format!("cannot start its I/O thread: {e}")));
                }
            }
        }
        let mut worker = Self {
            model,
            config: config.clone(),
            child,
            pid,
            cap,
            stdin: Some(stdin),
            incoming,
            threads,
            stderr,
            load: LoadReport {
                load_ms: 0.0,
                rss_before: Bytes::new(0),
                peak: Bytes::new(0),
                rss_after: Bytes::new(0),
            },
            last_rss: Bytes::new(0),
            last_task_peak: Bytes::new(0),
            dead: false,
        };
        match worker.next(config.startup_timeout)? {
            FromWorker::Hello { pid } if pid == worker.pid => {}
            FromWorker::Hello { pid } => {
                return Err(worker.broken(format!(
                    "it greeted as process {pid}, but it is process {}",
                    worker.pid
                )));
            }
            other => return Err(worker.broken(format!("expected a greeting, got {other:?}"))),
        }
        worker.send(&ToWorker::Load(request))?;
        match worker.next(config.load_timeout)? {
            FromWorker::Loaded(report) => {
                worker.load = report;
                worker.last_rss = report.rss_after;
                Ok(worker)
            }
            FromWorker::Failed { class, message } => Err(worker.failed(class, message)),
            other => Err(worker.broken(format!("expected the load's result, got {other:?}"))),
        }
    }

    /// The worker's figures.
    pub fn status(&self) -> WorkerStatus {
        WorkerStatus {
            pid: self.pid,
            cap: self.cap,
            load: self.load,
            last_task_peak: self.last_task_peak,
        }
    }

    fn stderr_tail(&self) -> String {
        let tail = self.stderr.lock().unwrap_or_else(PoisonError::into_inner);
        tail.back().cloned().unwrap_or_default()
    }

    fn send(&mut self, message: &ToWorker) -> Result<()> {
        let written = match self.stdin.as_mut() {
            Some(stdin) => message.write(stdin),
            None => Err(ProtocolError::Io(std::io::ErrorKind::BrokenPipe.into())),
        };
        match written {
            Ok(()) => Ok(()),
            // A closed pipe means the worker is gone: say how it went.
            Err(_) => Err(self.death()),
        }
    }

    /// The next message within `timeout`; any failure of the worker is an error and leaves it
    /// dead.
    fn next(&mut self, timeout: Duration) -> Result<FromWorker> {
        match self.incoming.recv_timeout(timeout) {
            Ok(Incoming::Message(m)) => Ok(m),
            Ok(Incoming::Broken(e)) => Err(self.broken(e.to_string())),
            Ok(Incoming::Eof) | Err(RecvTimeoutError::Disconnected) => Err(self.death()),
            Err(RecvTimeoutError::Timeout) => {
                let rss = probe::process_rss_of(self.pid).unwrap_or(self.last_rss);
                self.kill();
                Err(self.error(WorkerFailure::Hung {
                    waited: timeout,
                    rss,
                }))
            }
        }
    }

    fn error(&self, failure: WorkerFailure) -> Error {
        Error::Worker {
            model: self.model.clone(),
            failure,
        }
    }

    fn broken(&mut self, reason: String) -> Error {
        self.kill();
        self.error(WorkerFailure::Protocol { reason })
    }

    /// A failure the worker reported.
    fn failed(&mut self, class: FailureClass, message: String) -> Error {
        match class {
            FailureClass::OutOfMemory => {
                // Its heap is in an unknown state: end it.
                let rss = probe::process_rss_of(self.pid).unwrap_or(self.last_rss);
                self.kill();
                self.error(WorkerFailure::CapExceeded {
                    cap: self.cap,
                    rss,
                    detail: message,
                })
            }
            FailureClass::Protocol => self.broken(message),
            _ => Error::Remote { class, message },
        }
    }

    /// The worker ended on its own: reap it and say how.
    fn death(&mut self) -> Error {
        let status = self.reap(self.config.exit_timeout);
        self.dead = true;
        let stderr = self.stderr_tail();
        let status_text = match status {
            Some(s) => match (s.code(), s.signal()) {
                (Some(code), _) => format!("exited with code {code}"),
                (None, Some(sig)) => format!("killed by signal {sig} ({})", signal_name(sig)),
                _ => "ended".to_owned(),
            },
            None => "did not end after its pipe closed; killed".to_owned(),
        };
        // An allocation failure under the cap aborts a Rust or C++ program (SIGABRT) with
        // the size it wanted on stderr.
        let aborted = status.and_then(|s| s.signal()) == Some(libc::SIGABRT);
        if aborted && is_allocation_failure(&stderr) {
            return self.error(WorkerFailure::CapExceeded {
                cap: self.cap,
                rss: self.last_rss,
                detail: stderr,
            });
        }
        self.error(WorkerFailure::Crashed {
            status: status_text,
            rss: self.last_rss,
            stderr,
        })
    }

    /// Wait up to `timeout` for the process to end; kill it if it does not.
    fn reap(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let started = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if started.elapsed() < timeout => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return None;
                }
            }
        }
    }

    fn kill(&mut self) {
        if !self.dead {
            if let Ok(pid) = i32::try_from(self.pid) {
                // SAFETY: kill(2) on the worker's own process group (it was started as the
                // leader of a new group and has not been reaped, so the id is still ours).
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.dead = true;
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGTERM => "SIGTERM",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        _ => "signal",
    }
}

impl ModelAdapter for WorkerAdapter {
    fn reset(&mut self) {
        // The worker resets its model before every task.
    }

    fn run(
        &mut self,
        input: &Path,
        params: &TaskParams,
        ctx: &mut TaskContext<'_>,
    ) -> Result<TaskOutput> {
        if self.dead {
            return Err(self.error(WorkerFailure::Crashed {
                status: "already gone".into(),
                rss: self.last_rss,
                stderr: self.stderr_tail(),
            }));
        }
        self.send(&ToWorker::Run(RunRequest {
            input: input.to_path_buf(),
            chunk_samples: ctx.chunk_samples() as u64,
            params: params.clone(),
        }))?;
        loop {
            match self.next(self.config.idle_timeout)? {
                FromWorker::Progress { samples_done, rss } => {
                    self.last_rss = rss;
                    if let Err(e) = ctx.check(samples_done) {
                        // Cancelled (the budget): ending the worker gives its memory back now.
                        self.kill();
                        return Err(e);
                    }
                }
                FromWorker::Done {
                    output,
                    working_peak,
                } => {
                    self.last_task_peak = working_peak;
                    return Ok(output);
                }
                FromWorker::Failed { class, message } => return Err(self.failed(class, message)),
                other => {
                    return Err(self.broken(format!("unexpected message during a task: {other:?}")));
                }
            }
        }
    }

    fn worker(&self) -> Option<WorkerStatus> {
        Some(self.status())
    }

    fn is_dead(&self) -> bool {
        self.dead
    }
}

impl Drop for WorkerAdapter {
    fn drop(&mut self) {
        if !self.dead
            && let Some(stdin) = self.stdin.as_mut()
        {
            let _ = ToWorker::Exit.write(stdin);
            let _ = stdin.flush();
        }
        // Closing stdin ends a worker that missed the exit message.
        self.stdin = None;
        if !self.dead {
            self.reap(self.config.exit_timeout);
            self.dead = true;
        }
        // Drop the receiver first: a reader blocked on a full channel then returns.
        drop(std::mem::replace(
            &mut self.incoming,
            crossbeam_channel::never(),
        ));
        // The stdout reader ends with the process. The stderr reader may outlive it when
        // something the worker started still holds the pipe: it is left to end on its own.
        let mut threads = self.threads.drain(..);
        if let Some(reader) = threads.next() {
            let _ = reader.join();
        }
    }
}
