//! `hoist completions`: shell completion scripts.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

/// Print a completion script for a shell.
///
/// Examples:
///   hoist completions bash > /etc/bash_completion.d/hoist
///   hoist completions zsh > "${fpath[1]}/_hoist"
///   hoist completions fish > ~/.config/fish/completions/hoist.fish
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    pub shell: Shell,
}

pub fn run(args: &CompletionsArgs) -> anyhow::Result<i32> {
    let mut command = super::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "hoist", &mut script);
    super::emit(&String::from_utf8_lossy(&script))?;
    Ok(0)
}
