//! `cargo xtask check-layers`: the crate layering, checked against `cargo metadata`.
//!
//! Rules (docs/ARCHITECTURE.md): budget → profiler → model-registry → orchestrator → models →
//! run → cli, lower never imports higher (normal, build and dev edges alike); audio imports none
//! of ours; only masp-orchestrator and masp-models depend on `ort`, dev-dependencies included;
//! testkit is used by tests only: the one dev-dependency that may point up, because it is the
//! test framework (its synthetic models and fixtures) and no library's code can reach it;
//! `tests` and `xtask` may use anything.

use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Our crates, lowest layer first, with the crates of ours each may depend on (normal, build
/// and dev dependencies). `docs/ARCHITECTURE.md`'s layer diagram is checked against this table
/// by the tidy tests (`xtask/src/tidy.rs`).
pub const LAYERS: &[(&str, &[&str])] = &[
    ("masp-budget", &[]),
    ("masp-profiler", &["masp-budget"]),
    ("masp-model-registry", &["masp-budget", "masp-profiler"]),
    ("masp-audio", &[]),
    (
        "masp-orchestrator",
        &[
            "masp-budget",
            "masp-profiler",
            "masp-model-registry",
            "masp-audio",
        ],
    ),
    (
        "masp-models",
        &[
            "masp-budget",
            "masp-profiler",
            "masp-model-registry",
            "masp-audio",
            "masp-orchestrator",
        ],
    ),
    (
        "masp-run",
        &[
            "masp-budget",
            "masp-profiler",
            "masp-model-registry",
            "masp-audio",
            "masp-orchestrator",
            "masp-models",
        ],
    ),
    (
        "masp-testkit",
        &[
            "masp-budget",
            "masp-profiler",
            "masp-model-registry",
            "masp-audio",
            "masp-orchestrator",
            "masp-models",
            "masp-run",
        ],
    ),
    (
        "masp-cli",
        &[
            "masp-budget",
            "masp-profiler",
            "masp-model-registry",
            "masp-audio",
            "masp-orchestrator",
            "masp-models",
            "masp-run",
        ],
    ),
];

/// Crates that may depend on anything of ours.
pub const UNRESTRICTED: &[&str] = &["masp-tests", "xtask"];

/// The only crates allowed to depend on ONNX Runtime bindings, in any kind of dependency.
pub const ORT_USERS: &[&str] = &["masp-orchestrator", "masp-models"];

pub fn check() -> Result<()> {
    let metadata = metadata()?;
    let violations = violations(&metadata)?;
    if violations.is_empty() {
        println!("check-layers: ok");
        Ok(())
    } else {
        for v in &violations {
            eprintln!("forbidden dependency: {v}");
        }
        bail!("{} forbidden dependency edge(s)", violations.len())
    }
}

/// `cargo metadata --no-deps` of the workspace: our packages and their declared dependencies.
pub fn metadata() -> Result<Value> {
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout).context("parsing cargo metadata")
}

fn violations(metadata: &Value) -> Result<Vec<String>> {
    let packages = metadata["packages"]
        .as_array()
        .context("metadata has no packages")?;
    let ours: Vec<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut found = Vec::new();
    for package in packages {
        let name = package["name"].as_str().unwrap_or_default();
        let deps = package["dependencies"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        for dep in deps {
            let dep_name = dep["name"].as_str().unwrap_or_default();
            let dev = dep["kind"].as_str() == Some("dev");
            if let Some(v) = judge(name, dep_name, dev, &ours) {
                found.push(v);
            }
        }
    }
    Ok(found)
}

/// Why the edge `from → to` is forbidden, or None when it is allowed.
pub fn judge(from: &str, to: &str, dev: bool, ours: &[&str]) -> Option<String> {
    if UNRESTRICTED.contains(&from) {
        return None;
    }
    if to == "ort" || to == "ort-sys" {
        return (!ORT_USERS.contains(&from)).then(|| {
            format!(
                "{from} → {to} (only {} may use ONNX Runtime bindings)",
                ORT_USERS.join(" and ")
            )
        });
    }
    if !ours.contains(&to) {
        return None;
    }
    let Some((_, allowed)) = LAYERS.iter().find(|(n, _)| *n == from) else {
        return Some(format!(
            "{from} → {to} ({from} is not in the layer table of xtask/src/layers.rs)"
        ));
    };
    if allowed.contains(&to) || (dev && to == "masp-testkit") {
        return None;
    }
    if to == "masp-testkit" {
        return Some(format!(
            "{from} → {to} (testkit may only be a dev-dependency)"
        ));
    }
    if dev {
        return Some(format!(
            "{from} → {to} (a dev-dependency on a higher or parallel layer)"
        ));
    }
    Some(format!(
        "{from} → {to} (lower layers never import higher ones)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &[&str] = &[
        "masp-budget",
        "masp-profiler",
        "masp-model-registry",
        "masp-audio",
        "masp-orchestrator",
        "masp-models",
        "masp-run",
        "masp-testkit",
        "masp-cli",
        "masp-tests",
        "xtask",
    ];

    #[test]
    fn allowed_edges_pass() {
        assert_eq!(judge("masp-profiler", "masp-budget", false, OURS), None);
        assert_eq!(judge("masp-orchestrator", "ort", false, OURS), None);
        assert_eq!(judge("masp-budget", "masp-testkit", true, OURS), None);
        assert_eq!(judge("masp-tests", "masp-orchestrator", false, OURS), None);
        assert_eq!(judge("masp-audio", "symphonia", false, OURS), None);
    }

    #[test]
    fn forbidden_edges_are_named() {
        let up = judge("masp-budget", "masp-profiler", false, OURS).unwrap();
        assert!(up.contains("masp-budget → masp-profiler"), "{up}");
        assert!(judge("masp-audio", "masp-budget", false, OURS).is_some());
        assert!(
            judge("masp-cli", "ort", false, OURS)
                .unwrap()
                .contains("only masp-orchestrator and masp-models")
        );
        assert!(judge("masp-testkit", "ort", true, OURS).is_some());
        assert_eq!(judge("masp-models", "ort", true, OURS), None);
        assert!(judge("masp-orchestrator", "masp-models", true, OURS).is_some());
        assert!(judge("masp-run", "masp-cli", false, OURS).is_some());
        assert!(judge("masp-orchestrator", "masp-testkit", false, OURS).is_some());
        assert!(judge("masp-budget", "masp-orchestrator", true, OURS).is_some());
        assert!(judge("masp-unknown", "masp-budget", false, OURS).is_some());
    }
}
