//! The always-on memory watchdog: a thread that reads RSS every few milliseconds while a task
//! runs, and stops the running model call the moment RSS crosses the budget's limit.
//!
//! Between chunks the orchestrator checks RSS itself ([`TaskContext::check`]); a single model
//! call can still allocate far past the limit before the next check. The watchdog closes that
//! window: the orchestrator arms it around every task with the limit and a way to stop the call
//! (ONNX Runtime's `RunOptions::terminate`, which the runtime checks between graph nodes), and
//! the first sample over the limit calls it. The call then fails, the orchestrator reports a
//! [`Error::Terminated`](crate::Error::Terminated) naming the figures, cleans up and goes down
//! its degradation ladder.
//!
//! It does not depend on the profiler and costs one `/proc/self/statm` read per interval while
//! a task runs (see [`DEFAULT_INTERVAL`]); disarmed, the thread waits on a condition variable
//! and costs nothing.
//!
//! [`TaskContext::check`]: crate::adapter::TaskContext::check

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use masp_budget::{Bytes, probe};
use ort::session::RunOptions;

/// How often an armed watchdog reads RSS by default: 2 ms. A node of a model that allocates at
/// memory bandwidth (a few GB/s) adds a few MiB in that time, which bounds how far a call can
/// overshoot before the runtime is told to stop; one read costs a few microseconds.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(2);

/// The shortest interval [`Watchdog::start`] accepts: 100 µs. Shorter would spend a core on
/// reading `/proc`.
pub const MIN_INTERVAL: Duration = Duration::from_micros(100);

/// What stops the watched call when RSS crosses the limit.
pub type StopCall = Box<dyn Fn() + Send>;

/// When the watchdog fired during one armed period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trip {
    /// The first RSS sample over the limit.
    pub rss: Bytes,
    /// The limit it crossed.
    pub limit: Bytes,
    /// Time from arming to that sample.
    pub after: Duration,
}

/// What the watchdog saw while it was armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watched {
    /// Set when RSS crossed the limit (and the call was told to stop).
    pub trip: Option<Trip>,
    /// The highest RSS sample while armed.
    pub peak: Bytes,
    /// How long the samples stayed over the limit (from the first over it to the last).
    pub over_for: Duration,
    /// How many samples were taken.
    pub samples: u64,
}

impl Watched {
    /// Nothing seen: not armed.
    const NONE: Watched = Watched {
        trip: None,
        peak: Bytes::ZERO,
        over_for: Duration::ZERO,
        samples: 0,
    };
}

struct Armed {
    limit: Bytes,
    stop: StopCall,
    started: Instant,
    peak: Bytes,
    trip: Option<Trip>,
    last_over: Option<Duration>,
    samples: u64,
}

impl Armed {
    fn watched(&self) -> Watched {
        Watched {
            trip: self.trip,
            peak: self.peak,
            over_for: match (self.trip, self.last_over) {
                (Some(t), Some(last)) => last.saturating_sub(t.after),
                _ => Duration::ZERO,
            },
            samples: self.samples,
        }
    }
}

#[derive(Default)]
struct State {
    stop_thread: bool,
    armed: Option<Armed>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing in the critical sections panics; a poisoned lock still holds a usable state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The watchdog thread. One per orchestrator (and one per worker process); armed for one task
/// at a time with [`Watchdog::arm`].
pub struct Watchdog {
    shared: Arc<Shared>,
    interval: Duration,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog")
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl Watchdog {
    /// Start the thread, reading RSS every `interval` (at least [`MIN_INTERVAL`]) while armed.
    ///
    /// # Errors
    /// The OS refused a thread.
    pub fn start(interval: Duration) -> std::io::Result<Self> {
        let interval = interval.max(MIN_INTERVAL);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let thread = std::thread::Builder::new()
            .name("masp-watchdog".into())
            .stack_size(64 << 10)
            .spawn({
                let shared = Arc::clone(&shared);
                move || watch(&shared, interval)
            })?;
        Ok(Self {
            shared,
            interval,
            thread: Some(thread),
        })
    }

    /// The interval between reads while armed.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Watch this process's RSS against `limit` until the returned guard is finished or
    /// dropped; `stop` is called once, from the watchdog's thread, at the first sample over the
    /// limit. Arming again replaces what was armed. (A worker process runs a watchdog of its
    /// own, armed at its share of the budget.)
    pub fn arm(&self, limit: Bytes, stop: StopCall) -> WatchGuard<'_> {
        let mut state = self.shared.lock();
        state.armed = Some(Armed {
            limit,
            stop,
            started: Instant::now(),
            peak: Bytes::ZERO,
            trip: None,
            last_over: None,
            samples: 0,
        });
        drop(state);
        self.shared.wake.notify_all();
        WatchGuard { dog: self }
    }

    /// [`Watchdog::arm`] for a task's model calls: the stop terminates `options`, which every
    /// call of the task passes to ONNX Runtime (it stops at the next graph node).
    pub fn arm_calls(&self, limit: Bytes, options: &Arc<RunOptions>) -> WatchGuard<'_> {
        let options = Arc::clone(options);
        self.arm(
            limit,
            Box::new(move || {
                // Fails only if the runtime is gone, and then nothing runs.
                let _ = options.terminate();
            }),
        )
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.lock().stop_thread = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An armed [`Watchdog`]: [`WatchGuard::finish`] disarms it and says what it saw.
#[must_use = "dropping the guard disarms the watchdog at once"]
pub struct WatchGuard<'a> {
    dog: &'a Watchdog,
}

impl std::fmt::Debug for WatchGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchGuard").finish_non_exhaustive()
    }
}

impl WatchGuard<'_> {
    /// What the watchdog has seen so far, without disarming it.
    pub fn watched(&self) -> Watched {
        self.dog
            .shared
            .lock()
            .armed
            .as_ref()
            .map_or(Watched::NONE, Armed::watched)
    }

    /// Disarm, and say whether the watchdog fired and how high RSS went.
    pub fn finish(self) -> Watched {
        let armed = self.dog.shared.lock().armed.take();
        // Drop would find nothing armed now.
        armed.as_ref().map_or(Watched::NONE, Armed::watched)
    }
}

impl Drop for WatchGuard<'_> {
    fn drop(&mut self) {
        self.dog.shared.lock().armed = None;
    }
}

/// The thread: sleep while disarmed, sample while armed.
fn watch(shared: &Shared, interval: Duration) {
    // statm kept open: a read is a pread of a few bytes, not an open/read/close.
    let reader = probe::RssReader::new();
    let mut state = shared.lock();
    loop {
        if state.stop_thread {
            return;
        }
        let Some(armed) = state.armed.as_mut() else {
            state = shared
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            continue;
        };
        let rss = match &reader {
            Some(r) => r.read(),
            None => probe::process_rss(),
        }
        .unwrap_or_default();
        armed.samples += 1;
        armed.peak = armed.peak.max(rss);
        if rss > armed.limit {
            let at = armed.started.elapsed();
            armed.last_over = Some(at);
            if armed.trip.is_none() {
                armed.trip = Some(Trip {
                    rss,
                    limit: armed.limit,
                    after: at,
                });
                (armed.stop)();
            }
        }
        state = shared
            .wake
            .wait_timeout(state, interval)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn counter() -> (Arc<AtomicU32>, StopCall) {
        let stops = Arc::new(AtomicU32::new(0));
        let seen = Arc::clone(&stops);
        (
            stops,
            Box::new(move || {
                seen.fetch_add(1, Ordering::SeqCst);
            }),
        )
    }

    /// Wait until `what` holds, however slow the machine (a hang guard, not a timing).
    fn wait_for(what: impl Fn() -> bool) {
        let started = Instant::now();
        while !what() {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the watchdog never got there"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn under_the_limit_it_samples_and_does_not_stop() {
        let dog = Watchdog::start(Duration::from_millis(1)).unwrap();
        let (stops, stop) = counter();
        let guard = dog.arm(Bytes::from_gib(1 << 20), stop);
        wait_for(|| guard.watched().samples >= 2);
        let seen = guard.finish();
        assert_eq!(stops.load(Ordering::SeqCst), 0);
        assert!(seen.trip.is_none());
        assert!(seen.samples >= 2, "{seen:?}");
        assert!(seen.peak > Bytes::ZERO, "{seen:?}");
    }

    #[test]
    fn crossing_the_limit_stops_the_call_once_and_names_the_figures() {
        let dog = Watchdog::start(Duration::from_millis(1)).unwrap();
        let (stops, stop) = counter();
        let before = probe::process_rss().unwrap();
        let limit = before.saturating_add(Bytes::from_mib(32));
        let guard = dog.arm(limit, stop);
        // 64 MiB written page by page: RSS passes the limit half way.
        let ballast = vec![0x5Au8; 64 << 20];
        wait_for(|| stops.load(Ordering::SeqCst) > 0);
        // More samples over the limit after the trip: still one stop.
        let at_trip = guard.watched().samples;
        wait_for(|| guard.watched().samples >= at_trip + 3);
        let seen = guard.finish();
        drop(ballast);
        assert_eq!(stops.load(Ordering::SeqCst), 1, "stopped exactly once");
        let trip = seen.trip.expect("the watchdog fired");
        assert_eq!(trip.limit, limit);
        assert!(trip.rss > limit, "{trip:?}");
        assert!(seen.peak >= trip.rss, "{seen:?}");
    }

    #[test]
    fn each_arming_starts_afresh() {
        let dog = Watchdog::start(Duration::from_millis(1)).unwrap();
        let (stops, stop) = counter();
        let guard = dog.arm(Bytes::ZERO, stop);
        wait_for(|| stops.load(Ordering::SeqCst) > 0);
        assert!(guard.finish().trip.is_some());
        // Disarmed: the next arming samples afresh, and the old stop is gone.
        let (again, stop) = counter();
        let guard = dog.arm(Bytes::from_gib(1 << 20), stop);
        wait_for(|| guard.watched().samples >= 2);
        assert_eq!(stops.load(Ordering::SeqCst), 1);
        let seen = guard.finish();
        assert!(seen.trip.is_none(), "{seen:?}");
        assert_eq!(again.load(Ordering::SeqCst), 0);
    }
}
