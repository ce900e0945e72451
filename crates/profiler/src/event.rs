//! Marks: what the program says it is doing, stamped with time and RSS.

use masp_budget::Bytes;
use serde::{Deserialize, Serialize};

/// Something the program is doing, recorded with
/// [`ProfilerHandle::mark`](crate::ProfilerHandle::mark).
///
/// The report derives phases from these:
/// `LoadStart → [load] → LoadEnd → [idle] → TaskStart → [task] → TaskEnd → … → Unload →
/// [cleanup] → Cleanup → [idle]`. For leak detection and cleanup effectiveness, mark
/// `Unload` *before* dropping the model and `Cleanup` after the memory was released (e.g.
/// after [`masp_budget::trim::release_freed_memory`]).
///
/// In JSON: `{"kind": "load_start", "model": "whisper-tiny"}`, `{"kind": "cleanup",
/// "returned": 1048576}`, `{"kind": "note", "text": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A model starts loading.
    LoadStart {
        /// The model's name.
        model: String,
    },
    /// A model finished loading.
    LoadEnd {
        /// The model's name.
        model: String,
    },
    /// A task (e.g. one file through the model) starts.
    TaskStart {
        /// The task's name.
        task: String,
    },
    /// A task ended.
    TaskEnd {
        /// The task's name.
        task: String,
    },
    /// A model is about to be dropped.
    Unload {
        /// The model's name.
        model: String,
    },
    /// Cleanup after an unload finished.
    Cleanup {
        /// What the cleanup reported as returned to the OS (e.g. `TrimOutcome::returned`).
        returned: Bytes,
    },
    /// Free text, shown on the timeline; does not change the phase.
    Note {
        /// The text.
        text: String,
    },
}

impl Event {
    /// `Event::LoadStart { model }`.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_profiler::Event;
    /// assert_eq!(Event::load_start("m"), Event::LoadStart { model: "m".into() });
    /// ```
    #[must_use]
    pub fn load_start(model: &str) -> Self {
        Event::LoadStart {
            model: model.to_owned(),
        }
    }

    /// `Event::LoadEnd { model }`.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_profiler::Event;
    /// assert!(matches!(Event::load_end("m"), Event::LoadEnd { .. }));
    /// ```
    #[must_use]
    pub fn load_end(model: &str) -> Self {
        Event::LoadEnd {
            model: model.to_owned(),
        }
    }

    /// `Event::TaskStart { task }`.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_profiler::Event;
    /// assert!(matches!(Event::task_start("t"), Event::TaskStart { .. }));
    /// ```
    #[must_use]
    pub fn task_start(task: &str) -> Self {
        Event::TaskStart {
            task: task.to_owned(),
        }
    }

    /// `Event::TaskEnd { task }`.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_profiler::Event;
    /// assert!(matches!(Event::task_end("t"), Event::TaskEnd { .. }));
    /// ```
    #[must_use]
    pub fn task_end(task: &str) -> Self {
        Event::TaskEnd {
            task: task.to_owned(),
        }
    }

    /// `Event::Unload { model }`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(matches!(masp_profiler::Event::unload("m"), masp_profiler::Event::Unload { .. }));
    /// ```
    #[must_use]
    pub fn unload(model: &str) -> Self {
        Event::Unload {
            model: model.to_owned(),
        }
    }

    /// A short human description, e.g. `load start whisper-tiny`.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(masp_profiler::Event::unload("m").describe(), "unload m");
    /// ```
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Event::LoadStart { model } => format!("load start {model}"),
            Event::LoadEnd { model } => format!("load end {model}"),
            Event::TaskStart { task } => format!("task start {task}"),
            Event::TaskEnd { task } => format!("task end {task}"),
            Event::Unload { model } => format!("unload {model}"),
            Event::Cleanup { returned } => format!("cleanup (returned {returned})"),
            Event::Note { text } => format!("note: {text}"),
        }
    }
}

/// An [`Event`] with when it happened and the memory at that instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    /// Seconds since the profiler started.
    pub t_s: f64,
    /// RSS read when the mark was made.
    pub rss: Bytes,
    /// The highest RSS seen (by the sampler or this mark) since the previous mark; exact
    /// per-segment peaks, independent of the timeline's downsampling.
    pub peak_since_previous: Bytes,
    /// What happened.
    pub event: Event,
}
