//! `masp completions SHELL`: the shell completion script for masp's commands and flags.

use clap::Args;
use clap_complete::Shell;

use crate::Outcome;

/// Flags of `masp completions`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  masp completions bash > ~/.local/share/bash-completion/completions/masp\n  \
masp completions zsh > ~/.zfunc/_masp      # with fpath+=~/.zfunc before compinit\n  \
masp completions fish > ~/.config/fish/completions/masp.fish"
)]
pub struct CompletionsArgs {
    /// The shell to write the script for.
    #[arg(value_enum)]
    shell: Shell,
}

/// Write the completion script for `command` (masp's full command line) to stdout.
pub fn run(args: &CompletionsArgs, mut command: clap::Command) -> anyhow::Result<Outcome> {
    let name = command.get_name().to_string();
    clap_complete::generate(
        args.shell,
        &mut command,
        name,
        &mut std::io::stdout().lock(),
    );
    Ok(Outcome::AllSucceeded)
}
