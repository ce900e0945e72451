//! The orchestrator side: [`WorkerAdapter`] starts a `masp worker` process for one model and
//! proxies tasks to it, behind the same [`ModelAdapter`] trait as an in-process model.

use std::collections::VecDeque;
use std::io::{BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use masp_budget::{Bytes, probe};

use super::protocol::{
    FailureClass, FromWorker, LoadReport, LoadRequest, ProtocolError, RunRequest, ToWorker,
    read_frame,
};
use super::server::is_allocation_failure;
use super::status::{WorkerFailure, WorkerStatus};
use super::{PARENT_PID_ENV, groups};
use crate::adapter::{ModelAdapter, TaskContext};
use crate::task::{ResultFiles, TaskOutput, TaskParams, WrittenTensor};
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
    /// How long a working worker may go without advancing (it reports after every chunk)
    /// before it is killed: silent, it is called hung; reporting the same progress over and
    /// over, stalled. Only a report further than any before resets this. Default 120 s.
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

/// Lines of a worker's stderr kept for error messages: the last 8.
const STDERR_LINES: usize = 8;
/// Longest stderr line kept, in characters: enough for any real error message.
const STDERR_LINE_CHARS: usize = 400;
/// Bytes of one stderr line buffered, at most: [`STDERR_LINE_CHARS`] characters of up to 4
/// bytes. The rest of a longer line is read and dropped as it arrives, so a worker writing
/// an endless line costs the orchestrator this much, not the line.
const STDERR_LINE_BYTES: usize = 4 * STDERR_LINE_CHARS;
/// Bytes read from a worker's stderr at a time.
const STDERR_READ_BYTES: usize = 8 << 10;
/// How long a worker's death waits for its stderr reader to reach the end of the pipe, so the
/// error quotes what it wrote last: 1 s. The reader normally ends as soon as the process does;
/// it runs longer only when something the worker started still holds the pipe.
const STDERR_DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest failure message kept from a worker, in bytes: a real one is a line; a frame
/// can carry 64 MiB, which would otherwise be printed, journaled and reported whole.
const MAX_WORKER_MESSAGE_BYTES: usize = 4 << 10;
/// The longest codec name a worker may report, in bytes (real ones are like `pcm_s16le`).
const MAX_CODEC_NAME_BYTES: usize = 64;

/// A model running in a worker process.
pub struct WorkerAdapter {
    model: String,
    config: WorkerConfig,
    child: Child,
    pid: u32,
    cap: Bytes,
    stdin: Option<ChildStdin>,
    /// Asks the stdout reader for one more frame: it reads only what was asked for, so at
    /// most one frame sits decoded ahead of the orchestrator (never a queue of them).
    wanted: Sender<()>,
    /// Whether a frame was asked for and not received yet.
    asked: bool,
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
    /// The worker dies with its orchestrator: it is started with a parent-death signal
    /// (SIGKILL), checks before it runs that its parent is still the process that started it,
    /// and its process group is tracked for [`kill_all_workers`](super::kill_all_workers).
    /// Linux delivers the parent-death signal when the *thread* that started the worker ends,
    /// so call this from a thread that lives as long as the worker is needed.
    ///
    /// # Errors
    /// [`Error::Worker`] when it cannot start, crashes, hangs or hits its cap while loading;
    /// [`Error::Remote`] when the model fails to load (the worker's message).
    pub fn spawn(config: &WorkerConfig, request: LoadRequest, cap: Bytes) -> Result<Self> {
        let model = request.name.clone();
        let parent = std::process::id();
        let mut command = Command::new(&config.program);
        command
            .arg("worker")
            .env("MALLOC_ARENA_MAX", "2")
            .env(PARENT_PID_ENV, parent.to_string())
            // Its own process group: a kill reaches anything it started, too.
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let limit = cap.get();
        let parent = libc::pid_t::try_from(parent).unwrap_or(libc::pid_t::MAX);
        // SAFETY: runs in the child between fork and exec; setrlimit, prctl and getppid are
        // async-signal-safe, and nothing here allocates or touches the parent's memory.
        unsafe {
            command.pre_exec(move || {
                let rlimit = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_AS, &raw const rlimit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Die with the orchestrator, however it ends (SIGKILL included); the signal
                // survives exec.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The orchestrator may have died before the line above: then nothing would
                // ever send the signal.
                if libc::getppid() != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
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
        // Beyond the slots, the parent-death signal alone ends it with the orchestrator.
        let _ = groups::track(pid_of(pid));
        let (Some(stdin), Some(stdout), Some(stderr_pipe)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            groups::untrack(pid_of(pid));
            let _ = child.kill();
            let _ = child.wait();
            return Err(spawn_err("its pipes could not be set up".into()));
        };
        let (wanted, asks) = crossbeam_channel::bounded::<()>(1);
        let (tx, incoming) = crossbeam_channel::bounded::<Incoming>(1);
        let reader = std::thread::Builder::new()
            .name(format!("masp-worker-{pid}-out"))
            .spawn(move || {
                let mut stdout = BufReader::new(stdout);
                // One frame per ask: a worker that floods the pipe waits on it instead of
                // filling the orchestrator's memory.
                for () in asks.iter() {
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
            .spawn(move || read_stderr_tail(stderr_pipe, &tail));
        // The stdout reader first, the stderr reader second (`death` waits for the latter).
        let mut threads = Vec::new();
        for t in [reader, stderr_reader] {
            match t {
                Ok(t) => threads.push(t),
                Err(e) => {
                    groups::untrack(pid_of(pid));
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
            wanted,
            asked: false,
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
            other => {
                return Err(worker.broken(format!(
                    "expected a greeting, got a {} message",
                    other.name()
                )));
            }
        }
        worker.send(&ToWorker::Load(request))?;
        match worker.next(config.load_timeout)? {
            FromWorker::Loaded(report) => {
                worker.load = report;
                worker.last_rss = report.rss_after;
                Ok(worker)
            }
            FromWorker::Failed { class, message } => Err(worker.failed(class, message)),
            other => Err(worker.broken(format!(
                "expected the load's result, got a {} message",
                other.name()
            ))),
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
        match self.receive(timeout)? {
            Some(m) => Ok(m),
            None => Err(self.hung(timeout)),
        }
    }

    /// The next message within `timeout`, or `None` when there was none (the worker is left
    /// as it is); a broken or ended worker is an error and leaves it dead.
    fn receive(&mut self, timeout: Duration) -> Result<Option<FromWorker>> {
        // A reader that has ended has sent its last item or dropped its sender: the receive
        // below then says how it ended.
        if !self.asked && self.wanted.send(()).is_ok() {
            self.asked = true;
        }
        match self.incoming.recv_timeout(timeout) {
            Ok(item) => {
                self.asked = false;
                match item {
                    Incoming::Message(FromWorker::Failed { class, message }) => {
                        Ok(Some(FromWorker::Failed {
                            class,
                            message: bounded_message(message),
                        }))
                    }
                    Incoming::Message(m) => Ok(Some(m)),
                    Incoming::Broken(e) => Err(self.broken(e.to_string())),
                    Incoming::Eof => Err(self.death()),
                }
            }
            Err(RecvTimeoutError::Disconnected) => Err(self.death()),
            Err(RecvTimeoutError::Timeout) => Ok(None),
        }
    }

    /// Kill a worker silent for `waited`.
    fn hung(&mut self, waited: Duration) -> Error {
        let rss = probe::process_rss_of(self.pid).unwrap_or(self.last_rss);
        self.kill();
        self.error(WorkerFailure::Hung { waited, rss })
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
        // The last lines may still be in the pipe: a crash is read from what it said last.
        let started = Instant::now();
        while self.threads.get(1).is_some_and(|t| !t.is_finished())
            && started.elapsed() < STDERR_DRAIN_TIMEOUT
        {
            std::thread::sleep(Duration::from_millis(2));
        }
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
        // Before it can be reaped: a signal handler must never kill a reused id.
        groups::untrack(pid_of(self.pid));
        let started = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if started.elapsed() < timeout => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Ok(None) => {
                    // The whole group, as `kill` does: what a stuck worker started goes too.
                    // SAFETY: kill(2) on the worker's own group; the leader is not reaped yet
                    // (try_wait said it is running), so the id is still ours.
                    unsafe { libc::kill(-pid_of(self.pid), libc::SIGKILL) };
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return None;
                }
                Err(_) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return None;
                }
            }
        }
    }

    fn kill(&mut self) {
        if !self.dead {
            let pid = pid_of(self.pid);
            groups::untrack(pid);
            // SAFETY: kill(2) on the worker's own process group (it was started as the
            // leader of a new group and has not been reaped, so the id is still ours).
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.dead = true;
        }
    }
}

/// A process id as `kill(2)` takes it; ids fit (the kernel's limit is 2^22).
fn pid_of(pid: u32) -> libc::pid_t {
    libc::pid_t::try_from(pid).unwrap_or(libc::pid_t::MAX)
}

/// A worker's failure message cut to [`MAX_WORKER_MESSAGE_BYTES`], at a character boundary.
fn bounded_message(mut message: String) -> String {
    if message.len() > MAX_WORKER_MESSAGE_BYTES {
        let mut end = MAX_WORKER_MESSAGE_BYTES;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str(" […]");
        message.shrink_to_fit();
    }
    message
}

/// Keep the last [`STDERR_LINES`] lines of `pipe` in `tail`, each cut to
/// [`STDERR_LINE_CHARS`], reading fixed-size chunks until the pipe ends: what is beyond a
/// line's first [`STDERR_LINE_BYTES`] is dropped as it arrives, never buffered.
fn read_stderr_tail(mut pipe: impl Read, tail: &Mutex<VecDeque<String>>) {
    let keep = |line: &[u8]| {
        let text: String = String::from_utf8_lossy(line)
            .trim_end()
            .chars()
            .take(STDERR_LINE_CHARS)
            .collect();
        if text.is_empty() {
            return;
        }
        let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
        if tail.len() == STDERR_LINES {
            tail.pop_front();
        }
        tail.push_back(text);
    };
    let mut chunk = vec![0u8; STDERR_READ_BYTES];
    let mut line = Vec::with_capacity(STDERR_LINE_BYTES);
    loop {
        let n = match pipe.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        for piece in chunk[..n].split_inclusive(|&b| b == b'\n') {
            let (text, ends) = match piece.split_last() {
                Some((b'\n', text)) => (text, true),
                _ => (piece, false),
            };
            let room = STDERR_LINE_BYTES - line.len();
            line.extend_from_slice(&text[..text.len().min(room)]);
            if ends {
                keep(&line);
                line.clear();
            }
        }
    }
    keep(&line);
}

/// Check a worker's result against the request it answers, before anything in it is used:
/// the output is of the kind the task asked for, has as many embeddings as ranges were asked,
/// reports the input it was given, and every file it says it wrote is one of the task's result
/// files (see [`reported_file`]). The reason names the offending value.
fn check_output(request: &RunRequest, output: &TaskOutput) -> std::result::Result<(), String> {
    let written = |files: Option<&ResultFiles>, tensors: &[&WrittenTensor]| {
        let mut seen: Vec<&Path> = Vec::with_capacity(tensors.len());
        for t in tensors {
            reported_file(files, &t.path)?;
            if seen.contains(&t.path.as_path()) {
                return Err(format!(
                    "it reported {} twice as a written file",
                    t.path.display()
                ));
            }
            seen.push(&t.path);
        }
        Ok(())
    };
    match (&request.params, output) {
        (TaskParams::Vad(_), TaskOutput::Segments(o)) => {
            if o.info.path != request.input {
                return Err(format!(
                    "it reported results for {} when asked for {}",
                    o.info.path.display(),
                    request.input.display()
                ));
            }
            let codec = &o.info.codec;
            if codec.len() > MAX_CODEC_NAME_BYTES || codec.chars().any(char::is_control) {
                return Err(format!("it reported an invalid codec name {codec:?}"));
            }
            Ok(())
        }
        (TaskParams::Generic { output }, TaskOutput::Tensors(tensors)) => {
            written(Some(output), &tensors.iter().collect::<Vec<_>>())
        }
        (
            TaskParams::Embed {
                output: files,
                windows: None,
            },
            TaskOutput::Embeddings { windows, .. },
        ) => written(files.as_ref(), &windows.iter().collect::<Vec<_>>()),
        (
            TaskParams::Embed {
                output: files,
                windows: Some(ranges),
            },
            TaskOutput::RangeEmbeddings {
                embeddings,
                written: tensor,
            },
        ) => {
            if embeddings.len() != ranges.len() {
                return Err(format!(
                    "it returned {} embeddings for {} ranges",
                    embeddings.len(),
                    ranges.len()
                ));
            }
            written(files.as_ref(), &tensor.iter().collect::<Vec<_>>())
        }
        _ => Err("it returned a result of another kind than the task asked for".to_owned()),
    }
}

/// Whether `path`, reported by a worker as written, is one of the task's result files:
/// exactly `<dir>/<name>.<suffix>.npy` of `files`, with a suffix that passes the same name
/// check as the result name itself ([`ResultFiles::new`]). A task without result files writes
/// nothing. No `..`, no other directory, no absolute path elsewhere, no hidden name.
fn reported_file(files: Option<&ResultFiles>, path: &Path) -> std::result::Result<(), String> {
    let refused = || {
        format!(
            "it reported writing {}, which is not one of the task's result files",
            path.display()
        )
    };
    let files = files.ok_or_else(refused)?;
    let suffix = path
        .file_name()
        .and_then(|f| f.to_str())
        .and_then(|f| f.strip_prefix(files.name()))
        .and_then(|f| f.strip_prefix('.'))
        .ok_or_else(refused)?;
    let plain = suffix.ends_with(".npy") && ResultFiles::new(files.dir(), suffix).is_ok();
    // Byte for byte, not `Path` equality, which ignores `.` components and a trailing `/`:
    // what is journaled is exactly the name the orchestrator would have made.
    if plain && files.file(suffix).as_os_str() == path.as_os_str() {
        Ok(())
    } else {
        Err(refused())
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
        let request = RunRequest {
            input: input.to_path_buf(),
            chunk_samples: ctx.chunk_samples() as u64,
            // The worker's share: the limit less what this process holds now.
            rss_limit: ctx
                .memory_limit()
                .map(|limit| limit.saturating_sub(probe::process_rss().unwrap_or_default())),
            params: params.clone(),
        };
        self.send(&ToWorker::Run(request.clone()))?;
        let idle = self.config.idle_timeout;
        // Only a report further than any before resets the deadline: a worker repeating
        // itself is as stuck as a silent one.
        let mut advanced_at = Instant::now();
        let mut furthest: Option<u64> = None;
        loop {
            let left = idle.saturating_sub(advanced_at.elapsed());
            let Some(message) = self.receive(left)? else {
                return Err(match furthest {
                    None => self.hung(idle),
                    Some(samples_done) => {
                        let rss = probe::process_rss_of(self.pid).unwrap_or(self.last_rss);
                        self.kill();
                        self.error(WorkerFailure::Stalled {
                            waited: idle,
                            samples_done,
                            rss,
                        })
                    }
                });
            };
            match message {
                FromWorker::Progress { samples_done, rss } => {
                    self.last_rss = rss;
                    if furthest.is_none_or(|f| samples_done > f) {
                        furthest = Some(samples_done);
                        advanced_at = Instant::now();
                    }
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
                    // Nothing the worker names is used or journaled before it is checked.
                    if let Err(reason) = check_output(&request, &output) {
                        return Err(self.broken(reason));
                    }
                    self.last_task_peak = working_peak;
                    return Ok(output);
                }
                FromWorker::Failed { class, message } => return Err(self.failed(class, message)),
                FromWorker::Terminated { rss, peak, limit } => {
                    // Its peak as the kernel saw it, not only as its samples did.
                    let peak = probe::process_peak_rss_of(self.pid).map_or(peak, |p| p.max(peak));
                    // Its runtime's arena keeps what the call took: ending it gives it back.
                    self.kill();
                    return Err(self.error(WorkerFailure::Terminated { rss, peak, limit }));
                }
                other => {
                    return Err(
                        self.broken(format!("unexpected {} message during a task", other.name()))
                    );
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
        // Drop the receiver first: a reader blocked on a full channel then returns; and the
        // asking side, so a reader waiting to be asked returns.
        drop(std::mem::replace(
            &mut self.incoming,
            crossbeam_channel::never(),
        ));
        drop(std::mem::replace(
            &mut self.wanted,
            crossbeam_channel::bounded(0).0,
        ));
        // The stdout reader ends with the process. The stderr reader may outlive it when
        // something the worker started still holds the pipe: it is left to end on its own.
        let mut threads = self.threads.drain(..);
        if let Some(reader) = threads.next() {
            let _ = reader.join();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::io::Read;

    use masp_audio::AudioInfo;

    use super::*;
    use crate::task::{EMBEDDING_DIM, RangeEmbedding, VadOutcome, VadParams};

    fn tail_of(input: impl Read) -> Vec<String> {
        let tail = Mutex::new(VecDeque::new());
        read_stderr_tail(input, &tail);
        tail.into_inner().unwrap().into()
    }

    #[test]
    fn stderr_keeps_a_bounded_tail_of_bounded_lines() {
        // A 64 MiB line without a newline: the first characters are kept, the rest dropped.
        let endless = std::io::repeat(b'x').take(64 << 20);
        let tail = tail_of(endless);
        assert_eq!(tail.len(), 1);
        assert_eq!(tail[0].chars().count(), STDERR_LINE_CHARS);
        // A long line between short ones, then more lines than are kept.
        let mut text = b"first\n".to_vec();
        text.extend(std::iter::repeat_n(b'y', 3 * STDERR_READ_BYTES));
        text.extend_from_slice(b"\nafter\n");
        for i in 0..20 {
            text.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        text.extend_from_slice(b"no newline at the end");
        let tail = tail_of(text.as_slice());
        assert_eq!(tail.len(), STDERR_LINES);
        assert_eq!(tail.last().unwrap(), "no newline at the end");
        assert_eq!(tail[0], "line 13");
        // Multibyte characters cut anywhere, blank lines and lone newlines.
        let mut text = "é".repeat(3000).into_bytes();
        text.extend_from_slice(b"\n\n   \n");
        let tail = tail_of(text.as_slice());
        assert_eq!(tail.len(), 1);
        assert!(tail[0].chars().count() <= STDERR_LINE_CHARS);
        assert!(tail[0].chars().all(|c| c == 'é'));
    }

    #[test]
    fn a_long_failure_message_is_cut_at_a_character() {
        let cut = bounded_message("ü".repeat(MAX_WORKER_MESSAGE_BYTES));
        assert!(cut.len() <= MAX_WORKER_MESSAGE_BYTES + " […]".len());
        assert!(cut.ends_with(" […]"));
        assert_eq!(bounded_message("short".into()), "short");
    }

    fn run(params: TaskParams) -> RunRequest {
        RunRequest {
            input: "/in/a.wav".into(),
            chunk_samples: 1,
            rss_limit: None,
            params,
        }
    }

    fn tensor(path: &str) -> WrittenTensor {
        WrittenTensor {
            output: "y".into(),
            path: path.into(),
            shape: vec![1],
        }
    }

    #[test]
    fn reported_files_must_be_the_tasks_own() {
        let files = ResultFiles::new("/out/run", "a-1234").unwrap();
        let generic = run(TaskParams::Generic {
            output: files.clone(),
        });
        for good in ["/out/run/a-1234.y.npy", "/out/run/a-1234.embeddings.npy"] {
            let out = TaskOutput::Tensors(vec![tensor(good)]);
            assert_eq!(check_output(&generic, &out), Ok(()), "{good}");
        }
        for bad in [
            "/etc/passwd",
            "/out/run/../a-1234.y.npy",
            "/out/run/sub/a-1234.y.npy",
            "/out/run/a-1234.y.npy/..",
            "/out/run/b-1234.y.npy",
            "/out/run/a-1234.npy",
            "/out/run/a-1234..npy",
            "/out/run/a-1234.y.txt",
            "/out/run/a-1234.y\n.npy",
            "out/run/a-1234.y.npy",
            "/out/run/./a-1234.y.npy/",
            "/out/run/a-1234.y.npy/x",
        ] {
            let out = TaskOutput::Tensors(vec![tensor(bad)]);
            let reason = check_output(&generic, &out).unwrap_err();
            assert!(reason.contains(bad), "{bad}: {reason}");
        }
        // The same file twice is two results under one name.
        let twice = TaskOutput::Tensors(vec![
            tensor("/out/run/a-1234.y.npy"),
            tensor("/out/run/a-1234.y.npy"),
        ]);
        assert!(
            check_output(&generic, &twice)
                .unwrap_err()
                .contains("twice")
        );
        // A task without result files writes none.
        let no_files = run(TaskParams::Embed {
            output: None,
            windows: None,
        });
        let out = TaskOutput::Embeddings {
            utterance: Box::new([0.0; EMBEDDING_DIM]),
            n_windows: 1,
            windows: Some(tensor("/out/run/a-1234.embeddings.npy")),
        };
        assert!(check_output(&no_files, &out).is_err());
    }

    #[test]
    fn results_must_answer_the_request() {
        let vad = run(TaskParams::Vad(VadParams::default()));
        let segments = |path: &str, codec: &str| {
            TaskOutput::Segments(VadOutcome {
                info: AudioInfo {
                    path: path.into(),
                    codec: codec.into(),
                    source_sample_rate_hz: 16_000,
                    n_channels: 1,
                    n_source_frames: None,
                },
                n_samples: 0,
                segments: Vec::new(),
            })
        };
        assert_eq!(
            check_output(&vad, &segments("/in/a.wav", "pcm_s16le")),
            Ok(())
        );
        assert!(check_output(&vad, &segments("/in/b.wav", "pcm_s16le")).is_err());
        assert!(check_output(&vad, &segments("/in/a.wav", &"c".repeat(65))).is_err());
        assert!(check_output(&vad, &segments("/in/a.wav", "pcm\n")).is_err());
        // Another kind of result than asked for.
        assert!(check_output(&vad, &TaskOutput::Tensors(Vec::new())).is_err());
        // One embedding per range asked.
        let ranges = run(TaskParams::Embed {
            output: None,
            windows: Some(vec![(0.0, 1.0), (1.0, 2.0)]),
        });
        let one = TaskOutput::RangeEmbeddings {
            embeddings: vec![RangeEmbedding {
                start_s: 0.0,
                end_s: 1.0,
                embedding: [0.0; EMBEDDING_DIM],
            }],
            written: None,
        };
        assert!(
            check_output(&ranges, &one)
                .unwrap_err()
                .contains("1 embeddings for 2")
        );
    }
}
