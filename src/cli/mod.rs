//! Command-line surface: global flags (the kubectl ones plus the environment),
//! one file per subcommand, and the process exit code.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::cluster::ClusterArgs;
use crate::error::{Error, Result, exit};
pub use crate::scope::Scope;

pub mod agent;
pub mod answer;
pub mod apply;
pub mod attach;
pub mod cleanup;
pub mod completion;
pub mod diff;
pub mod doctor;
pub mod init;
pub mod list;
pub mod logs;
pub mod mcp;
pub mod send;
pub mod spawn;
pub mod status;
pub mod ui;
pub mod wait;

#[derive(Debug, Parser)]
#[command(
    name = "asdo",
    version,
    about = "Agentic SDLC Orchestrator: run OpenCode agents as Kubernetes pods, one pod per task, and stream their logs",
    propagate_version = true,
    max_term_width = 100,
    // One format for every verb's help, kubectl's: each flag, its description below.
    next_line_help = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the pod for one task and return at once.
    Spawn(Box<spawn::SpawnArgs>),
    /// Follow a task's logs to its end, through dropped connections; exit with its exit code.
    Logs(logs::LogsArgs),
    /// List task pods.
    #[command(visible_alias = "ls")]
    List(list::ListArgs),
    /// Block until tasks finish; exit 0 only if all succeeded.
    Wait(wait::WaitArgs),
    /// Show one task's state, last agent marker and recent events.
    Status(status::StatusArgs),
    /// Delete finished task pods.
    Cleanup(cleanup::CleanupArgs),
    /// Show what a task changed: its branch against the base it started from (in this clone).
    Diff(diff::DiffArgs),
    /// Merge finished tasks' branches into the current branch, one by one, stopping at a conflict.
    Apply(apply::ApplyArgs),
    /// Check that this user can run tasks here (cluster, namespace, chart objects, RBAC; or,
    /// with --runtime local, this machine: bubblewrap, opencode, git, a provider).
    Doctor(doctor::DoctorArgs),
    /// Run a task inside its pod: clone, run OpenCode, commit, push (the image's entrypoint).
    Agent(agent::AgentArgs),
    /// Print a shell completion script.
    Completion(completion::CompletionArgs),
    /// Open a running task's OpenCode session in the local TUI (through a port-forward on a
    /// cluster).
    Attach(attach::AttachArgs),
    /// Send a follow-up message into a running task's session; stream the reply.
    Send(send::SendArgs),
    /// Answer a running task's permission request or question (as a person: through the pod's annotations).
    Answer(answer::AnswerArgs),
    /// Serve asdo's verbs as MCP tools on stdio (for OpenCode and other MCP clients).
    Mcp(mcp::McpArgs),
    /// Set up a project for asdo: `asdo init opencode` registers `asdo mcp` and a subagent.
    Init(init::InitArgs),
    /// Serve a live web page of every task (logs, follow-ups, delete) on a loopback port.
    Ui(ui::UiArgs),
    /// A local task's runner (started by spawn on the local runtime; not for people).
    #[command(name = "local-runner", hide = true)]
    LocalRunner(LocalRunnerArgs),
}

#[derive(Debug, Args)]
pub struct LocalRunnerArgs {
    /// The task's directory in the state directory.
    pub dir: PathBuf,
}

/// The heading the global flags are listed under in every verb's help (kubectl's
/// "options" apart from the verb's own).
const GLOBAL: &str = "Global options";

/// Flags every subcommand takes, kubectl style.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true, value_name = "FILE", help_heading = GLOBAL)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub context: Option<String>,
    /// Namespace of the task pods (default: the environment's, agent-orchestrator-<env>).
    #[arg(short = 'n', long, global = true, env = "NAMESPACE", hide_env_values = true, help_heading = GLOBAL)]
    pub namespace: Option<String>,
    /// Environment whose chart values apply: dev, stg or prod.
    #[arg(
        short = 'e',
        long,
        global = true,
        env = "ENVIRONMENT",
        hide_env_values = true,
        default_value = "dev",
        help_heading = GLOBAL
    )]
    pub environment: String,
    /// Helm release name prefix; the release is <release-name>-<environment>.
    #[arg(
        long,
        global = true,
        env = "RELEASE_NAME",
        hide_env_values = true,
        default_value = "agentic-sdlc-orchestrator",
        help_heading = GLOBAL
    )]
    pub release_name: String,
    /// Give up connecting to the cluster after this long.
    #[arg(long, global = true, default_value = "5s", value_parser = crate::humantime::parse, help_heading = GLOBAL)]
    pub connect_timeout: Duration,
    /// Give up on any single request (not a log stream or watch) after this long, kubectl
    /// syntax (30s, 1m, 0 = no bound). Streams use their own idle detection.
    #[arg(long, global = true, default_value = "30s", value_parser = crate::humantime::parse, help_heading = GLOBAL)]
    pub request_timeout: Duration,
    /// Where tasks run: kubernetes (pods in the kubeconfig's cluster) or local (this
    /// machine, each agent in a bubblewrap sandbox, state under $XDG_STATE_HOME/asdo).
    #[arg(
        long,
        global = true,
        env = "ASDO_RUNTIME",
        value_enum,
        default_value = "kubernetes",
        hide_env_values = true,
        help_heading = GLOBAL
    )]
    pub runtime: crate::runtime::Kind,
    /// More diagnostics on stderr (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short = 'v', long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    pub verbose: u8,
}

impl Global {
    /// These flags as a child asdo takes them (`asdo mcp` runs every tool as one):
    /// `argv::GlobalFlags` turns them into `--flag=value` words, in one place.
    pub fn child_flags(&self) -> crate::argv::GlobalFlags {
        crate::argv::GlobalFlags {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            namespace: self.namespace.clone(),
            environment: self.environment.clone(),
            release_name: self.release_name.clone(),
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            runtime: self.runtime,
        }
    }

    /// Namespace precedence: see `Scope::resolve`.
    pub fn scope(&self) -> Result<Scope> {
        let mut scope = Scope::resolve(
            &self.environment,
            &self.release_name,
            self.namespace.as_deref(),
            ClusterArgs {
                kubeconfig: self.kubeconfig.clone(),
                context: self.context.clone(),
                connect_timeout: self.connect_timeout,
                request_timeout: self.request_timeout,
            },
        )?;
        scope.runtime = self.runtime;
        Ok(scope)
    }
}

/// Output formats shared by spawn and list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Yaml,
    Json,
    Name,
    Wide,
}

/// The verbs that never talk to a cluster: their help does not offer the cluster flags
/// (they are still accepted, being global, and ignored).
const OFFLINE_VERBS: &[&str] = &["agent", "completion", "init"];
const CLUSTER_FLAGS: &[&str] = &[
    "kubeconfig",
    "context",
    "namespace",
    "environment",
    "release_name",
    "connect_timeout",
    "request_timeout",
];

/// The command as parsed and shown: `Cli` with the cluster flags hidden from the offline
/// verbs' help (global args reach subcommands only when built, hence build first).
pub fn command() -> clap::Command {
    let mut cmd = Cli::command();
    cmd.build();
    for verb in OFFLINE_VERBS {
        cmd = cmd.mut_subcommand(verb, |sc| {
            sc.mut_args(|a| {
                if CLUSTER_FLAGS.contains(&a.get_id().as_str()) {
                    a.hide(true)
                } else {
                    a
                }
            })
        });
    }
    cmd
}

/// Entry point; returns the process exit code.
pub fn main() -> i32 {
    let args = shim_args(std::env::args_os());
    // Installed as a kubectl plugin, help and errors say `kubectl asdo …`.
    let display = bin_name(&args);
    let mut command = command();
    if let Some(name) = display {
        command = command.bin_name(name);
    }
    let parsed = command.try_get_matches_from(&args).and_then(|m| {
        use clap::FromArgMatches;
        Cli::from_arg_matches(&m)
    });
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => return usage_error(e, &args, display.unwrap_or("asdo")),
    };
    crate::logging::init_tracing(cli.global.verbose);
    if !matches!(cli.command, Command::Agent(_) | Command::LocalRunner(_)) {
        crate::logging::quiet_on_closed_stdout();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

async fn run(cli: Cli) -> Result<i32> {
    let g = &cli.global;
    match cli.command {
        Command::Spawn(a) => spawn::run(g, *a).await,
        Command::Logs(a) => logs::run(g, a).await,
        Command::List(a) => list::run(g, a).await,
        Command::Wait(a) => wait::run(g, a).await,
        Command::Status(a) => status::run(g, a).await,
        Command::Cleanup(a) => cleanup::run(g, a).await,
        Command::Diff(a) => diff::run(g, a).await,
        Command::Apply(a) => apply::run(g, a).await,
        Command::Doctor(a) => doctor::run(g, a).await,
        Command::Agent(a) => agent::run(a).await,
        Command::Attach(a) => attach::run(g, a).await,
        Command::Send(a) => send::run(g, a).await,
        Command::Answer(a) => answer::run(g, a).await,
        Command::Mcp(a) => mcp::run(g, a).await,
        Command::Init(a) => init::run(a),
        Command::Ui(a) => ui::run(g, a).await,
        Command::LocalRunner(a) => Ok(crate::runtime::local::runner::run(&a.dir)),
        Command::Completion(a) => {
            completion::run(a, &mut command());
            Ok(exit::OK)
        }
    }
}

/// clap's usage errors as kubectl prints them: the error on one line, where to find help
/// on a second (clap's own are 2–4 lines with a blank line and the usage in between).
fn usage_error(e: clap::Error, args: &[std::ffi::OsString], name: &str) -> i32 {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            exit::USAGE
        } else {
            exit::OK
        };
    }
    let sub = args
        .iter()
        .skip(1)
        .filter_map(|a| a.to_str())
        .find(|a| Cli::command().find_subcommand(a).is_some());
    let line = match (e.kind(), sub) {
        (ErrorKind::MissingRequiredArgument, Some("logs")) => {
            format!("error: {}", logs::NEEDS_TASK)
        }
        (ErrorKind::MissingRequiredArgument, Some("wait")) => {
            format!("error: {}", wait::NEEDS_TASKS)
        }
        _ => one_line(&e.render().to_string()),
    };
    eprintln!("{line}");
    match sub {
        Some(sub) => eprintln!("See '{name} {sub} --help' for usage."),
        None => eprintln!("See '{name} --help' for usage."),
    }
    exit::USAGE
}

/// The first paragraph of clap's message (the error and what it lists), on one line.
fn one_line(rendered: &str) -> String {
    let first = rendered.split("\n\n").next().unwrap_or(rendered);
    let joined: Vec<&str> = first
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut line = joined.join(" ");
    if !line.starts_with("error:") {
        line = format!("error: {line}");
    }
    line
}

/// spec-kit looks for `scripts/spawn-pod.sh`; a symlink of that name to asdo acts as `asdo spawn`.
fn shim_args(args: impl Iterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut args: Vec<_> = args.collect();
    if args.first().is_some_and(|a| is_spawn_pod(a)) && args.get(1).is_none_or(|a| a != "spawn") {
        args.insert(1, "spawn".into());
    }
    args
}

fn is_spawn_pod(argv0: &std::ffi::OsStr) -> bool {
    std::path::Path::new(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("spawn-pod"))
}

/// Run as spec-kit's `spawn-pod.sh`: spawn then defaults to `--if-exists skip`, because
/// `implement.sh` spawns every task again on a re-run and stops at the first non-zero exit.
pub fn invoked_as_spawn_pod() -> bool {
    std::env::args_os().next().is_some_and(|a| is_spawn_pod(&a))
}

/// kubectl runs a plugin `kubectl-asdo` (a copy or link of asdo, as krew installs it) for
/// `kubectl asdo …`; it is asdo in every respect but the name its help shows.
fn bin_name(args: &[std::ffi::OsString]) -> Option<&'static str> {
    let invoked_as = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_stem())
        .and_then(|n| n.to_str())?;
    (invoked_as == "kubectl-asdo").then_some("kubectl asdo")
}

/// Print a Kubernetes object as YAML or JSON on stdout.
pub fn print_object<T: serde::Serialize>(obj: &T, format: Output) -> Result<()> {
    let text = match format {
        Output::Json => serde_json::to_string_pretty(obj)
            .map_err(|e| Error::other(format!("cannot encode JSON: {e}")))?,
        _ => serde_saphyr::to_string(obj)
            .map_err(|e| Error::other(format!("cannot encode YAML: {e}")))?,
    };
    println!("{}", text.trim_end());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn spawn_pod_shim_inserts_spawn() {
        let args = |v: &[&str]| {
            v.iter()
                .map(Into::into)
                .collect::<Vec<std::ffi::OsString>>()
        };
        assert_eq!(
            shim_args(args(&["/x/scripts/spawn-pod.sh", "--task-id", "T1"]).into_iter()),
            args(&["/x/scripts/spawn-pod.sh", "spawn", "--task-id", "T1"])
        );
        assert_eq!(
            shim_args(args(&["spawn-pod.sh", "spawn", "T1"]).into_iter()),
            args(&["spawn-pod.sh", "spawn", "T1"])
        );
        assert_eq!(
            shim_args(args(&["asdo", "list"]).into_iter()),
            args(&["asdo", "list"])
        );
    }

    #[test]
    fn kubectl_plugin_name() {
        let os = |s: &str| vec![std::ffi::OsString::from(s)];
        assert_eq!(
            bin_name(&os("/home/u/.krew/bin/kubectl-asdo")),
            Some("kubectl asdo")
        );
        assert_eq!(bin_name(&os("kubectl-asdo.exe")), Some("kubectl asdo"));
        assert_eq!(bin_name(&os("/usr/local/bin/asdo")), None);
        assert_eq!(bin_name(&os("scripts/spawn-pod.sh")), None);
        // The plugin name never becomes a subcommand: `kubectl asdo list` is `asdo list`.
        let args = shim_args(["kubectl-asdo", "list"].map(Into::into).into_iter());
        assert_eq!(args, ["kubectl-asdo", "list"].map(std::ffi::OsString::from));
    }

    #[test]
    fn usage_errors_are_one_line() {
        let e = Cli::try_parse_from(["asdo", "status"]).unwrap_err();
        let line = one_line(&e.render().to_string());
        assert!(
            line.starts_with("error: ") && !line.contains('\n'),
            "{line}"
        );
        assert!(line.contains("<TASK>"), "names what is missing: {line}");
    }

    #[test]
    fn hostile_namespaces_are_refused() {
        for ns in [
            "agent-orchestrator-stg?",
            "a#b",
            "a/b",
            "..",
            "x%2Fy",
            "a b",
            "ü",
            "",
        ] {
            let cli = Cli::try_parse_from(["asdo", "list", "-n", ns]).unwrap();
            assert_eq!(cli.global.scope().unwrap_err().exit_code(), 2, "{ns:?}");
        }
    }

    #[test]
    fn namespace_precedence() {
        let parse = |v: &[&str]| Cli::try_parse_from(v).unwrap().global.scope().unwrap();
        assert_eq!(parse(&["asdo", "list"]).namespace, "agent-orchestrator-dev");
        assert_eq!(
            parse(&["asdo", "list", "-e", "prod"]).namespace,
            "agent-orchestrator-prod"
        );
        assert_eq!(parse(&["asdo", "list", "-n", "mine"]).namespace, "mine");
        assert_eq!(
            parse(&["asdo", "list", "-e", "stg"]).release,
            "agentic-sdlc-orchestrator-stg"
        );
    }
}
