//! Writing a report to disk: its text, JSON and SVG forms side by side in one directory.
//!
//! Above `report`, `text` and `svg` (it uses all three forms), so none of them depends on the
//! others for it.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::report::Report;

/// Paths written by [`Report::write_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportPaths {
    /// `report.txt`: the text report.
    pub text: PathBuf,
    /// `report.json`: the JSON report.
    pub json: PathBuf,
    /// `timeline.svg`: the timeline picture.
    pub svg: PathBuf,
}

impl Report {
    /// Writes `report.txt`, `report.json` and `timeline.svg` into `dir` (created if missing).
    ///
    /// # Errors
    ///
    /// [`Error::WriteReport`] naming the path that could not be created or written;
    /// [`Error::Json`] if encoding fails.
    ///
    /// # Examples
    ///
    /// ```
    /// # let report = masp_profiler::MemoryProfiler::start(Default::default())?.stop().report();
    /// let dir = std::env::temp_dir().join(format!("masp-doc-{}", std::process::id()));
    /// let paths = report.write_all(&dir)?;
    /// assert!(paths.svg.exists());
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), masp_profiler::Error>(())
    /// ```
    pub fn write_all(&self, dir: &Path) -> Result<ReportPaths> {
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::WriteReport { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let paths = ReportPaths {
            text: dir.join("report.txt"),
            json: dir.join("report.json"),
            svg: dir.join("timeline.svg"),
        };
        std::fs::write(&paths.text, self.to_string()).map_err(io_err(&paths.text))?;
        std::fs::write(&paths.json, self.to_json()? + "\n").map_err(io_err(&paths.json))?;
        std::fs::write(&paths.svg, self.to_svg()).map_err(io_err(&paths.svg))?;
        Ok(paths)
    }
}
