//! What identifies a result's configuration: a stage's model, its file and its parameters,
//! hashed, so a changed model or parameter is redone on resume and never mixed in a merge.

use masp_model_registry::manifest::Registry;

/// What identifies a model's results: its pinned or declared sha256, else its file's (empty
/// when neither can be had: such a result never matches a journaled one).
pub fn model_identity(registry: &Registry, model: &str) -> String {
    let spec = registry.get(model);
    spec.and_then(|s| s.sha256.clone()).unwrap_or_else(|| {
        spec.and_then(|s| s.path().ok())
            .and_then(|p| masp_model_registry::assets::sha256_file(&p).ok())
            .unwrap_or_default()
    })
}

/// The sha256 of a JSON document (a stage's configuration), hex.
///
/// # Examples
///
/// ```
/// let a = masp_run::config::sha256_json(&serde_json::json!({"stage": "vad"}));
/// assert_eq!(a.len(), 64);
/// assert_ne!(a, masp_run::config::sha256_json(&serde_json::json!({"stage": "embed"})));
/// ```
pub fn sha256_json(doc: &serde_json::Value) -> String {
    // A `Value` always serialises: its keys are strings.
    let bytes = serde_json::to_vec(doc).unwrap_or_default();
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}
