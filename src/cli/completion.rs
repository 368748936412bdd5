//! `asdo completion bash|zsh|fish|powershell|elvish`.

use clap::Args;
use clap_complete::Shell;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  source <(asdo completion bash)
  asdo completion zsh > \"${fpath[1]}/_asdo\"
  asdo completion fish > ~/.config/fish/completions/asdo.fish")]
pub struct CompletionArgs {
    /// The shell to generate completions for.
    pub shell: Shell,
}

pub fn run(args: CompletionArgs, cmd: &mut clap::Command) {
    clap_complete::generate(args.shell, cmd, "asdo", &mut std::io::stdout());
}
