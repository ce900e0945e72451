//! The raw record of one profiling run (`Profile`, `PeakSample`), shared by the sampler that
//! fills it and the analysis that reads it.
//!
//! Plain data with no behaviour beyond arithmetic on its own fields, so that `profiler` (which
//! produces it) and `report` (which consumes it) both depend on it and not on each other.

use std::time::Duration;

use masp_budget::Bytes;
use serde::{Deserialize, Serialize};

use crate::buffer::Bucket;
use crate::event::Mark;

/// The highest sampled RSS and when it was seen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PeakSample {
    /// Seconds since the profiler started.
    pub t_s: f64,
    /// The RSS.
    pub rss: Bytes,
}

/// Everything one profiling run recorded: the raw material of a [`Report`](crate::Report).
///
/// Serializable, so a run can be saved and reported on later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// The sampling interval, in milliseconds.
    pub interval_ms: f64,
    /// Wall time from start to stop, in seconds.
    pub duration_s: f64,
    /// The budget line to draw, from the config.
    pub budget_limit: Option<Bytes>,
    /// Window of the recent trend, in seconds, from the config.
    pub trend_window_s: f64,
    /// Movement of RSS over the trend window that decides the trend verdict, from the config.
    #[serde(default = "default_trend_tolerance")]
    pub trend_tolerance: Bytes,
    /// Leak tolerance per cycle, from the config.
    pub leak_tolerance: Bytes,
    /// RSS when the profiler started.
    pub rss_start: Option<Bytes>,
    /// RSS when it stopped.
    pub rss_end: Option<Bytes>,
    /// The downsampled timeline, oldest first.
    pub timeline: Vec<Bucket>,
    /// Samples per full bucket at the end of the run.
    pub samples_per_bucket: u64,
    /// Total number of samples taken.
    pub n_samples: u64,
    /// Every mark, in time order.
    pub marks: Vec<Mark>,
    /// Highest RSS since the last mark (the tail's `peak_since_previous`).
    pub tail_peak: Bytes,
    /// The highest sampled RSS (sampler and marks).
    pub sampled_peak: Option<PeakSample>,
    /// The kernel's high-water mark read at stop (Linux `VmHWM`); it also sees spikes between
    /// samples.
    pub kernel_peak: Option<Bytes>,
    /// Whether the kernel high-water mark was reset at start (otherwise it may include memory
    /// used before profiling).
    pub kernel_peak_since_start: bool,
    /// CPU time used by the sampler thread, in seconds (`None` where not measurable).
    pub sampler_cpu_s: Option<f64>,
    /// Highest sampled RSS of this process alone (samples and marks count followed worker
    /// processes too).
    #[serde(default)]
    pub own_peak: Option<Bytes>,
    /// Highest sampled RSS of the followed worker processes together; `None` when none ran.
    #[serde(default)]
    pub workers_peak: Option<Bytes>,
}

fn default_trend_tolerance() -> Bytes {
    Bytes::from_mib(4)
}

impl Profile {
    /// CPU time used by the sampler thread.
    ///
    /// # Examples
    ///
    /// ```
    /// # let profile = masp_profiler::MemoryProfiler::start(Default::default())?.stop();
    /// if let Some(cpu) = profile.sampler_cpu_time() {
    ///     println!("sampler used {cpu:?}");
    /// }
    /// # Ok::<(), masp_profiler::Error>(())
    /// ```
    #[must_use]
    pub fn sampler_cpu_time(&self) -> Option<Duration> {
        self.sampler_cpu_s
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
    }

    /// Sampler CPU time as a percentage of one core over the run.
    ///
    /// # Examples
    ///
    /// ```
    /// # let profile = masp_profiler::MemoryProfiler::start(Default::default())?.stop();
    /// if let Some(pct) = profile.sampler_overhead_pct() {
    ///     assert!(pct >= 0.0);
    /// }
    /// # Ok::<(), masp_profiler::Error>(())
    /// ```
    #[must_use]
    pub fn sampler_overhead_pct(&self) -> Option<f64> {
        let cpu = self.sampler_cpu_s?;
        (self.duration_s > 0.0).then(|| 100.0 * cpu / self.duration_s)
    }
}
