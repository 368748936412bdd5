//! Command lines for the child `asdo` processes that `asdo mcp` runs, built from
//! values asdo does not trust (an MCP client's tool arguments, possibly written by a
//! prompt-injected model).
//!
//! Why a type and not `Vec<String>`: a value pushed as its own argv word can be read
//! by clap as an option (`--on-done CMD` in a task id ran a shell command). Here every
//! value goes either into `--flag=value` (clap never reads an option out of the value
//! of `--flag=`) or after the one `--` (everything after it is positional), so no value
//! can become a flag, whatever its text. The caller still validates each value first:
//! a refused value is one line, before any process starts.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// One child command line: `asdo <verb> --flag=value… <global flags> -- <positionals…>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Argv {
    verb: Vec<OsString>,
    options: Vec<OsString>,
    positionals: Vec<OsString>,
}

impl Argv {
    /// `verb` is a literal subcommand name, never a caller's value.
    pub fn new(verb: &'static str) -> Argv {
        Argv {
            verb: vec![verb.into()],
            ..Argv::default()
        }
    }

    /// `--name=value`. `name` is a literal flag name.
    pub fn opt(&mut self, name: &'static str, value: impl Into<OsString>) -> &mut Argv {
        let mut word = OsString::from(format!("--{name}="));
        word.push(value.into());
        self.options.push(word);
        self
    }

    /// `--name=value` when there is a value.
    pub fn opt_some(&mut self, name: &'static str, value: Option<&str>) -> &mut Argv {
        if let Some(v) = value {
            self.opt(name, v);
        }
        self
    }

    /// `--name` when `on`. `name` is a literal flag name.
    pub fn flag(&mut self, name: &'static str, on: bool) -> &mut Argv {
        if on {
            self.options.push(format!("--{name}").into());
        }
        self
    }

    /// A positional value, placed after `--`.
    pub fn positional(&mut self, value: impl Into<OsString>) -> &mut Argv {
        self.positionals.push(value.into());
        self
    }

    /// The words, in order; `--` only when there are positionals.
    pub fn into_args(self) -> Vec<OsString> {
        let mut args = self.verb;
        args.extend(self.options);
        if !self.positionals.is_empty() {
            args.push("--".into());
            args.extend(self.positionals);
        }
        args
    }
}

/// The global flags a child asdo runs with: the parent's own, with the namespace and
/// environment a tool call may override (each validated by the caller). The one place
/// these become argv words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalFlags {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub namespace: Option<String>,
    pub environment: String,
    pub release_name: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// `--runtime`: a child of `asdo --runtime local mcp` works on the same local tasks.
    pub runtime: crate::runtime::Kind,
}

impl GlobalFlags {
    /// Adds every global flag to `argv` as `--flag=value`.
    pub fn push_onto(&self, argv: &mut Argv) {
        if let Some(k) = &self.kubeconfig {
            argv.opt("kubeconfig", k.as_os_str());
        }
        argv.opt_some("context", self.context.as_deref())
            .opt_some("namespace", self.namespace.as_deref())
            .opt("environment", &self.environment)
            .opt("release-name", &self.release_name)
            .opt(
                "connect-timeout",
                format!("{}ms", self.connect_timeout.as_millis()),
            )
            .opt(
                "request-timeout",
                format!("{}ms", self.request_timeout.as_millis()),
            )
            .opt("runtime", self.runtime.as_str());
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The argv as strings, for tests here and in `mcp`.
    pub(crate) fn words(a: Argv) -> Vec<String> {
        a.into_args()
            .into_iter()
            .map(|w| w.into_string().unwrap())
            .collect()
    }

    #[test]
    fn values_never_become_flags() {
        let mut a = Argv::new("wait");
        a.opt("timeout", "--on-done")
            .positional("M1")
            .positional("--on-done")
            .positional("id > /tmp/x");
        assert_eq!(
            words(a),
            [
                "wait",
                "--timeout=--on-done",
                "--",
                "M1",
                "--on-done",
                "id > /tmp/x"
            ]
        );
        let mut a = Argv::new("list");
        a.flag("all", false).flag("force", true);
        assert_eq!(words(a), ["list", "--force"]);
    }

    #[test]
    fn global_flags_are_one_word_each() {
        let g = GlobalFlags {
            kubeconfig: Some("/k/config".into()),
            context: None,
            namespace: Some("ns".into()),
            environment: "dev".into(),
            release_name: "rel".into(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_millis(1500),
            runtime: crate::runtime::Kind::Local,
        };
        let mut a = Argv::new("status");
        g.push_onto(&mut a);
        a.positional("T1");
        assert_eq!(
            words(a),
            [
                "status",
                "--kubeconfig=/k/config",
                "--namespace=ns",
                "--environment=dev",
                "--release-name=rel",
                "--connect-timeout=5000ms",
                "--request-timeout=1500ms",
                "--runtime=local",
                "--",
                "T1"
            ]
        );
    }
}
