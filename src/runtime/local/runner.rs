//! `asdo local-runner <task dir>` (hidden): what the kubelet does for a pod. Started by
//! spawn in its own session, it waits for a parallel slot (`Queued`), starts `asdo agent`
//! with the pod's env contract inside the sandbox, stamps its output into the log, and
//! records the exit code. It alone writes `state.json`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use super::{RunState, Spec, Store, TaskDir, logfile, now, proc, sandbox, slots};

/// The hidden subcommand's name.
pub const SUBCOMMAND: &str = "local-runner";

/// Exit code recorded when the agent could not be started at all (a shell's 127).
pub const EXIT_NOT_STARTED: i32 = 127;
/// The exit code of a task cancelled while queued: as a SIGTERM'd agent's (128 + 15).
pub const EXIT_CANCELLED: i32 = 143;

/// Runs the task in `dir` to its end; the process exit code is the runner's own
/// (0: it recorded an outcome), the task's is in state.json.
pub fn run(dir: &Path) -> i32 {
    let t = TaskDir {
        dir: dir.to_path_buf(),
    };
    let spec = match t.spec() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("local-runner {}: {e}", dir.display());
            return 1;
        }
    };
    // tasks/<name> → the store root.
    let Some(store) = dir.parent().and_then(Path::parent).map(|r| Store {
        root: r.to_path_buf(),
    }) else {
        eprintln!("local-runner {}: not in a state directory", dir.display());
        return 1;
    };
    let mut st = RunState {
        runner: proc::identify(std::process::id()).ok(),
        queued_at: Some(now()),
        ..Default::default()
    };
    if let Err(e) = t.write_state(&st) {
        eprintln!("local-runner {}: writing state: {e}", dir.display());
        return 1;
    }
    let log = match logfile::open_append(&t.log()) {
        Ok(f) => Arc::new(Mutex::new(f)),
        Err(e) => {
            eprintln!("local-runner {}: opening the log: {e}", dir.display());
            return 1;
        }
    };
    let fail = |st: &mut RunState, why: String| {
        let _ = logfile::append_line(&log, &format!("local runtime: {why}"));
        st.error = Some(why);
        st.exit_code = Some(EXIT_NOT_STARTED);
        st.finished_at = Some(now());
        let _ = t.write_state(st);
        0
    };
    // Held until this process ends: a dead runner frees its slot by itself. A task
    // cancelled while queued (`cleanup --force`) ends here, its agent never started; the
    // cancel is looked for once more after the slot is taken (it may have come meanwhile).
    let cancelled = || t.cancel_requested().exists();
    let _slot = match slots::acquire(&store.slots_dir(), spec.max_parallel, cancelled) {
        Ok(Some(s)) if !cancelled() => s,
        Ok(_) => {
            let why = "cancelled while queued (cleanup --force): the agent never started";
            let _ = logfile::append_line(&log, &format!("local runtime: {why}"));
            st.error = Some(why.into());
            st.exit_code = Some(EXIT_CANCELLED);
            st.finished_at = Some(now());
            let _ = t.write_state(&st);
            return 0;
        }
        Err(e) => return fail(&mut st, format!("cannot take a parallel slot: {e}")),
    };
    let port = match free_port() {
        Ok(p) => p,
        Err(e) => return fail(&mut st, format!("no free port for OpenCode: {e}")),
    };
    let password = match std::fs::read_to_string(t.password()) {
        Ok(p) => p.trim().to_string(),
        Err(e) => return fail(&mut st, format!("cannot read the server password: {e}")),
    };
    let host = |k: &str| std::env::var(k).ok();
    let env = agent_env(&t, &spec, port, &password, std::env::vars());
    let mut cmd = if spec.sandbox {
        let bwrap = match sandbox::bwrap(host("PATH").as_deref()) {
            Ok(b) => b,
            Err(e) => return fail(&mut st, e),
        };
        let layout = layout(&store, &t, &spec, &host);
        let mut c = Command::new(bwrap);
        c.args(sandbox::args(&layout)).arg(&spec.asdo).arg("agent");
        c
    } else {
        use std::os::unix::process::CommandExt;
        let mut c = Command::new(&spec.asdo);
        c.arg("agent").current_dir(t.workspace()).process_group(0);
        c
    };
    cmd.env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(&mut st, format!("cannot start the agent: {e}")),
    };
    st.started_at = Some(now());
    st.port = Some(port);
    st.agent_pid = Some(child.id());
    let _ = t.write_state(&st);
    let pumps: Vec<_> = [
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|e| Box::new(e) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|r| {
        let log = log.clone();
        std::thread::spawn(move || logfile::pump(r, log))
    })
    .collect();
    let status = child.wait();
    for p in pumps {
        let _ = p.join();
    }
    let code = match status {
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            s.code().or(s.signal().map(|n| 128 + n)).unwrap_or(1)
        }
        Err(e) => return fail(&mut st, format!("lost the agent process: {e}")),
    };
    st.exit_code = Some(code);
    st.finished_at = Some(now());
    if let Err(e) = t.write_state(&st) {
        eprintln!("local-runner {}: writing state: {e}", dir.display());
        return 1;
    }
    0
}

/// A port free on 127.0.0.1 now, for OpenCode's server (ASDO_OPENCODE_PORT), recorded
/// in state.json so attach/send connect without a port-forward.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Whether a variable of the user's environment reaches the agent: the locale, proxies
/// and CA settings, OpenCode's own settings, and provider keys (`*_API_KEY`) and
/// `GIT_TOKEN`, which a pod gets from Secrets. Nothing else (no HOME, XDG paths, SSH
/// agent socket, cloud credentials).
pub fn passes_through(name: &str) -> bool {
    const EXACT: [&str; 14] = [
        "PATH",
        "LANG",
        "LANGUAGE",
        "TZ",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "GIT_TOKEN",
        "GIT_CONFIG_NOSYSTEM",
    ];
    EXACT.contains(&name)
        || name.starts_with("LC_")
        || is_secret(name)
        || (name.starts_with("OPENCODE_")
            && name != "OPENCODE_SERVER_PASSWORD"
            && name != "OPENCODE_SERVER_USERNAME")
}

/// Passed-through values the agent treats as secrets (kept out of the log and commits).
pub fn is_secret(name: &str) -> bool {
    name == "GIT_TOKEN" || name.ends_with("_API_KEY")
}

/// The agent's environment: the user's pass-through variables, the pod's contract from
/// spawn, then what this machine decides (paths, port, password, the secret list).
pub fn agent_env(
    t: &TaskDir,
    spec: &Spec,
    port: u16,
    password: &str,
    host: impl Iterator<Item = (String, String)>,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = host.filter(|(k, _)| passes_through(k)).collect();
    let mut secrets: Vec<String> = env
        .iter()
        .filter(|(k, _)| is_secret(k))
        .map(|(k, _)| k.clone())
        .collect();
    let set = |env: &mut Vec<(String, String)>, k: &str, v: String| {
        env.retain(|(n, _)| n != k);
        env.push((k.to_string(), v));
    };
    for (k, v) in &spec.env {
        set(&mut env, k, v.clone());
    }
    let path = |p: PathBuf| p.display().to_string();
    set(&mut env, crate::contract::HOME, path(t.home()));
    set(
        &mut env,
        crate::contract::TASK_CONTEXT_PATH,
        path(t.workspace()),
    );
    if t.prompt().exists() {
        set(
            &mut env,
            crate::contract::TASK_PROMPT_FILE,
            path(t.prompt()),
        );
    }
    set(&mut env, crate::contract::ANSWERS_FILE, path(t.answers()));
    set(
        &mut env,
        crate::contract::OPENCODE_PORT_ENV,
        port.to_string(),
    );
    set(
        &mut env,
        crate::contract::PASSWORD_ENV,
        password.to_string(),
    );
    secrets.insert(0, "OPENCODE_SERVER_PASSWORD".into());
    set(
        &mut env,
        crate::contract::SECRET_ENV_LIST,
        secrets.join(","),
    );
    env
}

/// The sandbox of one task: the user's home and the state directory hidden; the task's
/// clone, HOME and a local git remote writable; its input and the programs it runs
/// read-only.
pub fn layout(
    store: &Store,
    t: &TaskDir,
    spec: &Spec,
    host: &dyn Fn(&str) -> Option<String>,
) -> sandbox::Layout {
    let mut hide = vec![store.root.clone()];
    if let Some(h) = host("HOME").filter(|h| h.starts_with('/') && h != "/") {
        hide.push(PathBuf::from(h));
    }
    let hidden = |p: &Path| {
        hide.iter().any(|h| sandbox::under(p, h))
            || sandbox::under(p, Path::new("/tmp"))
            || sandbox::under(p, Path::new("/var/tmp"))
    };
    let path_var = host("PATH");
    let mut programs = sandbox::program_dirs(&spec.asdo);
    if let Some(oc) = sandbox::find_on_path("opencode", path_var.as_deref().map(AsRef::as_ref)) {
        programs.extend(sandbox::program_dirs(&oc));
    }
    programs.extend(
        std::env::split_paths(path_var.as_deref().unwrap_or_default()).filter(|p| p.is_absolute()),
    );
    let mut read_only: Vec<PathBuf> = programs.into_iter().filter(|p| hidden(p)).collect();
    read_only.sort();
    read_only.dedup();
    read_only.push(t.input());
    let mut writable = vec![t.workspace(), t.home()];
    if let Some(r) = sandbox::local_remote(&spec.repo).filter(|r| r.exists()) {
        writable.push(r);
    }
    sandbox::Layout {
        hide,
        read_only,
        writable,
        chdir: t.workspace(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_is_the_contract_plus_this_machines_values() {
        let t = TaskDir {
            dir: "/s/tasks/agent-t1".into(),
        };
        let spec = Spec {
            id: "T1".into(),
            uid: "u".into(),
            branch: "b".into(),
            repo: "file:///r.git".into(),
            base: None,
            model: None,
            created_at: now(),
            env: vec![
                ("TASK_ID".into(), "T1".into()),
                ("HOME".into(), "/home/agent".into()),
            ],
            sandbox: true,
            max_parallel: 1,
            asdo: "/usr/bin/asdo".into(),
        };
        let host = [
            ("PATH", "/usr/bin"),
            ("HOME", "/home/me"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
            ("ANTHROPIC_API_KEY", "k"),
            ("OPENCODE_CONFIG_CONTENT", "{}"),
            ("OPENCODE_SERVER_PASSWORD", "theirs"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let env = agent_env(&t, &spec, 4100, "pw", host.into_iter());
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("TASK_ID"), Some("T1"));
        assert_eq!(get("HOME"), Some("/s/tasks/agent-t1/home"));
        assert_eq!(
            get("TASK_CONTEXT_PATH"),
            Some("/s/tasks/agent-t1/workspace")
        );
        assert_eq!(get(crate::contract::OPENCODE_PORT_ENV), Some("4100"));
        assert_eq!(get("OPENCODE_SERVER_PASSWORD"), Some("pw"));
        assert_eq!(get("ANTHROPIC_API_KEY"), Some("k"));
        assert_eq!(get("OPENCODE_CONFIG_CONTENT"), Some("{}"));
        assert_eq!(get("AWS_SECRET_ACCESS_KEY"), None, "not a provider key");
        assert_eq!(
            get(crate::contract::SECRET_ENV_LIST),
            Some("OPENCODE_SERVER_PASSWORD,ANTHROPIC_API_KEY")
        );
        assert_eq!(env.iter().filter(|(n, _)| n == "HOME").count(), 1);
    }
}
