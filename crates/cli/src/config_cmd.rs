//! `masp config show`: the effective settings and where each came from.

use clap::Args;

use crate::config::Settings;
use crate::flags::Common;
use crate::setting::Source;

/// Flags of `masp config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration and where each value came from.
    Show {
        #[command(flatten)]
        common: Common,
    },
}

/// `masp config show`.
pub fn run(args: &ConfigArgs) -> anyhow::Result<crate::Outcome> {
    let ConfigCommand::Show { common } = &args.command;
    let s = Settings::resolve(common)?;
    let budget = crate::context::budget_for(&s);
    println!(
        "{:<14} {}",
        "config file",
        s.file.as_ref().map_or_else(
            || "none (./masp.toml absent)".to_owned(),
            |p| p.display().to_string()
        )
    );
    let row = |name: &str, value: String, source: &Source| {
        println!("{name:<14} {value:<28} {source}");
    };
    row(
        "budget",
        s.budget
            .value
            .unwrap_or(masp_budget::DEFAULT_LIMIT)
            .to_string(),
        &s.budget.source,
    );
    println!("{:<14} {}", "  effective", budget.describe());
    row(
        "isolation",
        s.isolation.value.to_string(),
        &s.isolation.source,
    );
    row("threads", s.threads.value.to_string(), &s.threads.source);
    row(
        "max_resident",
        s.max_resident.value.to_string(),
        &s.max_resident.source,
    );
    row(
        "format",
        s.format
            .value
            .clone()
            .unwrap_or_else(|| "each command's own".to_owned()),
        &s.format.source,
    );
    let registry = crate::context::registry(&s)?;
    for spec in registry.models() {
        let origin = match &spec.source {
            masp_model_registry::manifest::ModelSource::Asset(_) => "built-in".to_owned(),
            masp_model_registry::manifest::ModelSource::File(p) => p.display().to_string(),
        };
        println!(
            "{:<14} {:<28} {}{}",
            "model",
            spec.name,
            origin,
            spec.isolation
                .map_or_else(String::new, |i| format!(" (isolation {i})"))
        );
    }
    Ok(crate::Outcome::AllSucceeded)
}
