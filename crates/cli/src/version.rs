//! The text of `masp --version`, and where ONNX Runtime will be loaded from (which
//! `masp doctor` checks too).

use std::path::PathBuf;

use masp_model_registry::assets;

/// Where ONNX Runtime will be loaded from (the orchestrator's own lookup) and which setting
/// said so.
pub struct RuntimeLocation {
    /// The library file.
    pub path: PathBuf,
    /// `from ORT_DYLIB_PATH` or `the asset cache`.
    origin: &'static str,
}

impl RuntimeLocation {
    /// `ORT_DYLIB_PATH` when set and non-empty, else the runtime's place in the asset cache.
    ///
    /// # Errors
    /// When neither `MASP_HOME` nor a user cache directory is known.
    pub fn find() -> anyhow::Result<Self> {
        let (path, origin) = masp_orchestrator::runtime::library_location()?;
        Ok(Self { path, origin })
    }

    /// True when `ORT_DYLIB_PATH` named the library.
    pub fn is_from_env(&self) -> bool {
        self.origin.contains("ORT_DYLIB_PATH")
    }

    pub fn origin(&self) -> &'static str {
        self.origin
    }

    /// How to make the library be where masp looks.
    pub fn fix(&self) -> &'static str {
        if self.is_from_env() {
            "set ORT_DYLIB_PATH to an existing libonnxruntime.so (>= 1.31), or unset it and run \
             `cargo xtask setup`"
        } else {
            "run `cargo xtask setup`, or set ORT_DYLIB_PATH to a libonnxruntime.so (>= 1.31)"
        }
    }

    /// The version masp can vouch for without loading the library: the pinned one when the
    /// file is the cache's (setup verified its sha256), nothing for a user-supplied file.
    pub fn known_version(&self) -> Option<&'static str> {
        (!self.is_from_env()).then_some(assets::ONNXRUNTIME_VERSION)
    }
}

/// The text `masp --version` prints after `masp `: the masp version, the ONNX Runtime in use
/// and the asset cache. Looks files up only; nothing is loaded.
pub fn long_version() -> String {
    let runtime = match RuntimeLocation::find() {
        Ok(loc) if loc.path.is_file() => match loc.known_version() {
            Some(version) => format!("{version} (pinned), {}", loc.path.display()),
            None => format!(
                "{} ({}; version not checked, requires >= 1.31)",
                loc.path.display(),
                loc.origin()
            ),
        },
        Ok(loc) => format!(
            "not found at {} ({}): {}",
            loc.path.display(),
            loc.origin(),
            loc.fix()
        ),
        Err(e) => format!("not found ({e:#}): run `cargo xtask setup`, or set ORT_DYLIB_PATH"),
    };
    let cache = match assets::masp_home() {
        Ok(home) => format!("{} (set MASP_HOME to change)", home.display()),
        Err(e) => format!("unknown ({e}): set MASP_HOME"),
    };
    format!(
        "{}\nONNX Runtime: {runtime}\nasset cache:  {cache}",
        env!("CARGO_PKG_VERSION")
    )
}
