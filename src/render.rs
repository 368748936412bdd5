//! Values + task → the task `Pod`. Pure, no I/O: the chart's
//! `templates/pod.yaml` renders the same object (CI's parity check holds them together).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, DownwardAPIVolumeFile,
    DownwardAPIVolumeSource, EmptyDirVolumeSource, EnvVar, ObjectFieldSelector, Pod, PodSpec,
    SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::contract::{
    OPENCODE_PORT, OPENCODE_PORT_NAME, Prompt, SERVER_PASSWORD_KEY, SecretValue, TaskEnv,
};
use crate::task::{
    self, ANN_ASDO_VERSION, ANN_BRANCH, ANN_ENVIRONMENT, ANN_REPO, ANN_SPEC_DIR, APP, CONTAINER,
    LABEL_APP, LABEL_TASK_ID, Task,
};
use crate::values::{APP_VERSION, Values};

/// HOME inside the image; an emptyDir because the root filesystem is read-only.
pub const HOME: &str = "/home/agent";
/// Owner-read-only, as ssh insists for private keys.
const SSH_KEY_MODE: i32 = 0o400;
/// A prompt longer than this goes to the pod as a file (a ConfigMap owned by the pod,
/// [`prompt_config_map`]): one env string may not exceed 128 KiB on Linux (exec fails
/// with E2BIG and the container never starts), and the Pod must stay small.
pub const PROMPT_ENV_MAX: usize = 64 * 1024;
/// A ConfigMap's data may total at most 1 MiB (the API server's limit); key included.
pub const PROMPT_MAX: usize = 1024 * 1024 - PROMPT_KEY.len();
pub const PROMPT_KEY: &str = "prompt";
/// Where the prompt ConfigMap is mounted (TASK_PROMPT_FILE is `<dir>/prompt`).
pub const PROMPT_DIR: &str = "/etc/asdo/prompt";
/// The pod's annotations as the kubelet writes them (a read-only downwardAPI volume): the
/// person's channel for answers (`asdo answer` patches an annotation, the agent reads it here).
pub const ANSWERS_DIR: &str = "/etc/asdo/answers";
pub const ANSWERS_FILE: &str = "/etc/asdo/answers/annotations";

/// Where a pod is going, beyond the values themselves.
#[derive(Debug, Clone)]
pub struct Target {
    /// Helm release name, `${RELEASE_NAME}-${ENVIRONMENT}`.
    pub release: String,
    pub namespace: String,
    pub environment: String,
}

/// The Pod for `task`. The caller has validated the task.
pub fn pod(values: &Values, task: &Task, target: &Target) -> Pod {
    let p = &values.pod;
    let environment = if values.environment.is_empty() {
        &target.environment
    } else {
        &values.environment
    };

    let mut labels = p.labels.clone();
    labels.extend(
        [
            (LABEL_APP, APP.to_string()),
            (LABEL_TASK_ID, task.id.clone()),
            ("app.kubernetes.io/name", values.chart_name()),
            ("app.kubernetes.io/instance", target.release.clone()),
            ("app.kubernetes.io/component", "agent".to_string()),
            ("app.kubernetes.io/version", APP_VERSION.to_string()),
            ("app.kubernetes.io/managed-by", "asdo".to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    if !p.queue_name.is_empty() {
        labels.insert(task::LABEL_QUEUE_NAME.into(), p.queue_name.clone());
    }

    let mut annotations = p.annotations.clone();
    annotations.insert(ANN_BRANCH.into(), task.branch.clone());
    annotations.insert(ANN_REPO.into(), task.repo.clone());
    annotations.insert(ANN_ENVIRONMENT.into(), environment.clone());
    if let Some(dir) = &task.spec_dir {
        annotations.insert(ANN_SPEC_DIR.into(), dir.clone());
    }
    if let Some(base) = &task.base {
        annotations.insert(crate::task::ANN_BASE.into(), base.clone());
    }
    annotations.insert(
        ANN_ASDO_VERSION.into(),
        env!("CARGO_PKG_VERSION").to_string(),
    );

    let image_pull_secrets = if p.image_pull_secrets.is_empty() {
        &values.global.image_pull_secrets
    } else {
        &p.image_pull_secrets
    };

    let (volumes, mounts) = volumes(values, task);

    Pod {
        metadata: ObjectMeta {
            name: Some(task::pod_name(&task.id)),
            namespace: Some(target.namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            service_account_name: Some(values.service_account_name(&target.release)),
            // The agent needs no API access; a mounted token would only be a credential to leak.
            automount_service_account_token: Some(false),
            // Service env vars would leak cluster topology into the agent's environment.
            enable_service_links: Some(false),
            active_deadline_seconds: p.active_deadline_seconds,
            termination_grace_period_seconds: p.termination_grace_period_seconds,
            security_context: p.security_context.clone(),
            image_pull_secrets: non_empty(image_pull_secrets.clone()),
            node_selector: (!p.node_selector.is_empty()).then(|| p.node_selector.clone()),
            tolerations: non_empty(p.tolerations.clone()),
            affinity: p.affinity.clone().filter(|a| *a != Default::default()),
            runtime_class_name: non_empty_str(&p.runtime_class_name),
            priority_class_name: non_empty_str(&p.priority_class_name),
            containers: vec![Container {
                name: CONTAINER.into(),
                image: Some(values.image()),
                image_pull_policy: (!p.image.pull_policy.is_empty())
                    .then(|| p.image.pull_policy.clone()),
                command: non_empty(p.command.clone()),
                args: non_empty(p.args.clone()),
                // `opencode serve`, on the pod's loopback: reached with `kubectl port-forward`.
                ports: Some(vec![ContainerPort {
                    name: Some(OPENCODE_PORT_NAME.into()),
                    container_port: OPENCODE_PORT.into(),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                env: Some(env(values, task, target)),
                resources: p.resources.clone(),
                security_context: p.container_security_context.clone(),
                volume_mounts: Some(mounts),
                ..Default::default()
            }],
            volumes: Some(volumes),
            ..Default::default()
        }),
        status: None,
    }
}

/// `agent-<id>-prompt`.
pub fn prompt_config_map_name(task_id: &str) -> String {
    format!("{}-prompt", task::pod_name(task_id))
}

/// The ConfigMap that carries a prompt too big for an env value, with the pod's labels;
/// `None` when the prompt fits in `TASK_PROMPT`. The caller creates it after the pod,
/// owned by it (so it goes when the pod goes); the pod waits in ContainerCreating until
/// it exists.
pub fn prompt_config_map(pod: &Pod, task: &Task) -> Option<ConfigMap> {
    let prompt = task.prompt.as_ref().filter(|p| p.len() > PROMPT_ENV_MAX)?;
    Some(ConfigMap {
        metadata: ObjectMeta {
            name: Some(prompt_config_map_name(&task.id)),
            namespace: pod.metadata.namespace.clone(),
            labels: pod.metadata.labels.clone(),
            ..Default::default()
        },
        data: Some([(PROMPT_KEY.to_string(), prompt.clone())].into()),
        ..Default::default()
    })
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

fn non_empty_str(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// The agent's contract (see `asdo agent` and [`crate::contract`]): task identity, where to
/// work, what to do, who commits; then the chart's `pod.env`.
fn env(values: &Values, task: &Task, target: &Target) -> Vec<EnvVar> {
    let d = &values.task;
    let p = &values.pod;
    let a = &values.agent;
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let mut te = TaskEnv {
        task_id: task.id.clone(),
        repo: task.repo.clone(),
        branch: task.branch.clone(),
        base: task.base.clone(),
        context_path: Some(task.context_dir.clone()),
        spec_dir: task.spec_dir.clone(),
        prompt: task.prompt.as_ref().map(|prompt| {
            if prompt.len() > PROMPT_ENV_MAX {
                Prompt::File(format!("{PROMPT_DIR}/{PROMPT_KEY}"))
            } else {
                Prompt::Text(prompt.clone())
            }
        }),
        model: task.model.clone(),
        author_name: Some(d.git_author_name.clone()),
        author_email: Some(d.git_author_email.clone()),
        home: Some(HOME.into()),
        ssh_key_dir: p
            .ssh_secret
            .enabled
            .then(|| p.ssh_secret.mount_path.clone()),
        git_token: p.git_token_secret.enabled.then(|| SecretValue::Ref {
            secret: p.git_token_secret.name.clone(),
            key: p.git_token_secret.key.clone(),
        }),
        pull_request: a.pull_request.then(|| "true".into()),
        forge: some(&a.forge.kind),
        forge_api_url: some(&a.forge.api_url),
        forge_project: some(&a.forge.project),
        password: Some(SecretValue::Ref {
            secret: values.server_password_secret(&target.release),
            key: SERVER_PASSWORD_KEY.into(),
        }),
        permissions: Some(a.permissions.clone()),
        idle_timeout: Some(a.idle_timeout.clone()),
        questions: Some(a.questions.clone()),
        answers_file: Some(ANSWERS_FILE.into()),
        // As the chart renders them (`int64 | toString`, `toString`): "300", "0", "1.5", "false".
        max_turns: Some(a.max_turns.to_string()),
        max_tokens: Some(a.max_tokens.to_string()),
        max_cost: Some(a.max_cost.clone()),
        tool_timeout: Some(a.tool_timeout.clone()),
        allow_no_changes: Some(a.allow_no_changes.to_string()),
        ..TaskEnv::default()
    };
    // Every value taken from a Secret, by name (the chart's `pod.env` included), so the
    // agent keeps them out of the log and out of commits.
    te.secret_env = te
        .secret_names()
        .into_iter()
        .map(str::to_string)
        .chain(
            p.env
                .iter()
                .filter(|e| {
                    e.value_from
                        .as_ref()
                        .is_some_and(|f| f.secret_key_ref.is_some())
                })
                .map(|e| e.name.clone()),
        )
        .collect();
    let mut env = te.to_env();
    env.extend(p.env.iter().cloned());
    env
}

fn empty_dir(name: &str, size_limit: Option<&str>) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: size_limit.map(|s| Quantity(s.to_string())),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

/// Writable scratch (the root filesystem is read-only) plus the optional SSH key.
fn volumes(values: &Values, task: &Task) -> (Vec<Volume>, Vec<VolumeMount>) {
    let p = &values.pod;
    let mut volumes = vec![
        empty_dir("workspace", p.workspace.size_limit.as_deref()),
        empty_dir("home", p.home.size_limit.as_deref()),
        empty_dir("tmp", p.tmp.size_limit.as_deref()),
        Volume {
            name: "answers".into(),
            downward_api: Some(DownwardAPIVolumeSource {
                items: Some(vec![DownwardAPIVolumeFile {
                    path: "annotations".into(),
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.annotations".into(),
                        api_version: None,
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    let mut mounts = vec![
        mount("workspace", &task.context_dir, false),
        mount("home", HOME, false),
        mount("tmp", "/tmp", false),
        mount("answers", ANSWERS_DIR, true),
    ];
    if p.ssh_secret.enabled {
        volumes.push(Volume {
            name: "ssh-key".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(p.ssh_secret.name.clone()),
                default_mode: Some(SSH_KEY_MODE),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(mount("ssh-key", &p.ssh_secret.mount_path, true));
    }
    if task
        .prompt
        .as_ref()
        .is_some_and(|p| p.len() > PROMPT_ENV_MAX)
    {
        volumes.push(Volume {
            name: "prompt".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: prompt_config_map_name(&task.id),
                optional: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(mount("prompt", PROMPT_DIR, true));
    }
    volumes.extend(p.extra_volumes.iter().cloned());
    mounts.extend(p.extra_volume_mounts.iter().cloned());
    (volumes, mounts)
}

/// Labels as a map, for tests and callers that check them.
pub fn labels(pod: &Pod) -> BTreeMap<String, String> {
    pod.metadata.labels.clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::{apply_set, defaults_for};

    fn task() -> Task {
        Task {
            id: "T001".into(),
            branch: "specs/001-auth/T001-async".into(),
            repo: "git@github.com:org/repo.git".into(),
            context_dir: "/workspace".into(),
            spec_dir: Some("specs/001-auth".into()),
            base: None,
            prompt: Some("Implement T001".into()),
            model: None,
        }
    }

    fn target(env: &str) -> Target {
        Target {
            release: format!("agentic-sdlc-orchestrator-{env}"),
            namespace: format!("agent-orchestrator-{env}"),
            environment: env.into(),
        }
    }

    fn render(env: &str, sets: &[&str]) -> Pod {
        let mut v = defaults_for(env).unwrap();
        for s in sets {
            apply_set(&mut v, s).unwrap();
        }
        pod(&Values::from_value(v).unwrap(), &task(), &target(env))
    }

    fn env_of(p: &Pod) -> Vec<EnvVar> {
        p.spec.as_ref().unwrap().containers[0]
            .env
            .clone()
            .unwrap_or_default()
    }

    fn env_value(p: &Pod, name: &str) -> Option<String> {
        env_of(p)
            .into_iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value)
    }

    #[test]
    fn names_and_labels() {
        let p = render("dev", &[]);
        assert_eq!(p.metadata.name.as_deref(), Some("agent-t001"));
        assert_eq!(
            p.metadata.namespace.as_deref(),
            Some("agent-orchestrator-dev")
        );
        let l = labels(&p);
        assert_eq!(l["app"], "agent-orchestrator");
        assert_eq!(l["task-id"], "T001", "the label keeps the id as given");
        assert_eq!(
            l["app.kubernetes.io/instance"],
            "agentic-sdlc-orchestrator-dev"
        );
        let a = p.metadata.annotations.unwrap();
        assert_eq!(a[ANN_BRANCH], "specs/001-auth/T001-async");
        assert_eq!(a[ANN_ENVIRONMENT], "dev");
        assert_eq!(a[ANN_SPEC_DIR], "specs/001-auth");
    }

    /// The budgets reach the agent as the chart renders them, defaults and `--set` alike,
    /// and `asdo agent` reads back what was rendered.
    #[test]
    fn budgets_and_no_changes_reach_the_agent_env() {
        use crate::contract as vars;
        let p = render("dev", &[]);
        let got = |p: &Pod| {
            [
                vars::MAX_TURNS,
                vars::MAX_TOKENS,
                vars::MAX_COST,
                vars::TOOL_TIMEOUT,
                vars::ALLOW_NO_CHANGES,
            ]
            .map(|n| env_value(p, n).unwrap_or_default())
        };
        assert_eq!(got(&p), ["300", "0", "0", "30m", "false"]);
        let p = render(
            "dev",
            &[
                "agent.maxTurns=12",
                "agent.maxTokens=200000",
                "agent.maxCost=2.5",
                "agent.toolTimeout=45m",
                "agent.allowNoChanges=true",
            ],
        );
        assert_eq!(got(&p), ["12", "200000", "2.5", "45m", "true"]);
        let env: Vec<(String, String)> = env_of(&p)
            .into_iter()
            .filter_map(|e| Some((e.name, e.value?)))
            .collect();
        let c = crate::agent::config::Config::from_lookup(|k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
        .unwrap();
        assert_eq!(
            (
                c.budgets.max_turns,
                c.budgets.max_tokens,
                c.budgets.max_cost
            ),
            (12, 200000, 2.5)
        );
        assert!(c.allow_no_changes);
        for bad in [
            "agent.maxCost=-1",
            "agent.maxCost=lots",
            "agent.maxTurns=-1",
        ] {
            let mut v = defaults_for("dev").unwrap();
            apply_set(&mut v, bad).unwrap();
            assert!(Values::from_value(v).is_err(), "{bad} is refused");
        }
    }

    /// The pod env contract end to end: what `render::pod` writes, `TaskEnv::from_lookup`
    /// and the agent's `Config` read back as the same task and the same settings.
    #[test]
    fn rendered_env_round_trips_to_the_agent() {
        use crate::contract::{self, Prompt, TaskEnv};
        let values = |sets: &[&str]| {
            let mut v = defaults_for("dev").unwrap();
            for s in sets {
                apply_set(&mut v, s).unwrap();
            }
            Values::from_value(v).unwrap()
        };
        let mut t = task();
        t.base = Some("release/1.2".into());
        t.model = Some("stub/stub-model".into());
        let v = values(&[
            "agent.maxTurns=12",
            "agent.permissions=wait",
            "agent.questions=wait",
            "agent.pullRequest=true",
            "agent.forge.type=github",
            "pod.gitTokenSecret.enabled=true",
            "pod.gitTokenSecret.name=gh",
        ]);
        let p = pod(&v, &t, &target("dev"));
        let env = env_of(&p);
        let got = TaskEnv::from_lookup(contract::lookup_in(&env, "from-a-secret")).unwrap();
        assert_eq!(
            (
                &got.task_id,
                &got.repo,
                &got.branch,
                &got.base,
                &got.spec_dir,
                &got.model
            ),
            (&t.id, &t.repo, &t.branch, &t.base, &t.spec_dir, &t.model)
        );
        assert_eq!(got.context_path.as_deref(), Some(t.context_dir.as_str()));
        assert_eq!(got.prompt, Some(Prompt::Text("Implement T001".into())));
        assert_eq!(
            got.secret_env,
            [contract::GIT_TOKEN, contract::PASSWORD_ENV]
        );
        // Written back, the agent's reading gives the same container env (secret
        // references aside: those the kubelet resolves).
        let again: Vec<EnvVar> = got.to_env();
        let literals = |e: &[EnvVar]| -> Vec<(String, Option<String>)> {
            e.iter()
                .filter(|e| e.value_from.is_none())
                .map(|e| (e.name.clone(), e.value.clone()))
                .collect()
        };
        assert_eq!(literals(&again), literals(&env));

        let c =
            crate::agent::config::Config::from_lookup(contract::lookup_in(&env, "tok")).unwrap();
        assert_eq!(
            (
                c.task_id.as_str(),
                c.repo.as_str(),
                c.branch.as_str(),
                c.base.as_deref(),
                c.spec_dir.as_deref(),
                c.model.as_deref(),
                c.prompt.as_deref()
            ),
            (
                "T001",
                t.repo.as_str(),
                t.branch.as_str(),
                Some("release/1.2"),
                Some("specs/001-auth"),
                Some("stub/stub-model"),
                Some("Implement T001")
            )
        );
        assert_eq!(c.context, std::path::Path::new("/workspace"));
        assert_eq!(c.budgets.max_turns, 12);
        assert_eq!(c.permissions.name(), "wait");
        assert_eq!(c.questions.name(), "wait");
        assert!(c.credentials.token && c.forge.is_some());
        assert_eq!(c.opencode_port, contract::OPENCODE_PORT);
        assert_eq!(c.home, std::path::Path::new(HOME));
        assert_eq!(
            c.answers_file.as_deref(),
            Some(std::path::Path::new(ANSWERS_FILE))
        );
        let port = &p.spec.as_ref().unwrap().containers[0]
            .ports
            .as_ref()
            .unwrap()[0];
        assert_eq!(
            (port.name.as_deref(), port.container_port),
            (
                Some(contract::OPENCODE_PORT_NAME),
                i32::from(c.opencode_port)
            )
        );

        // A prompt too big for an env value goes by file, and reads back as that file.
        let mut big = task();
        big.prompt = Some("x".repeat(PROMPT_ENV_MAX + 1));
        let env = env_of(&pod(&v, &big, &target("dev")));
        let got = TaskEnv::from_lookup(contract::lookup_in(&env, "s")).unwrap();
        assert_eq!(
            got.prompt,
            Some(Prompt::File(format!("{PROMPT_DIR}/{PROMPT_KEY}")))
        );
    }

    #[test]
    fn agent_environment() {
        let p = render("stg", &[]);
        assert_eq!(env_value(&p, "TASK_ID").as_deref(), Some("T001"));
        assert_eq!(
            env_value(&p, "GIT_REPO").as_deref(),
            Some("git@github.com:org/repo.git")
        );
        assert_eq!(
            env_value(&p, "TASK_CONTEXT_PATH").as_deref(),
            Some("/workspace")
        );
        assert_eq!(
            env_value(&p, "TASK_PROMPT").as_deref(),
            Some("Implement T001")
        );
        assert_eq!(
            env_value(&p, "GIT_AUTHOR_NAME").as_deref(),
            Some("asdo-agent")
        );
        assert!(env_value(&p, "OPENCODE_MODEL").is_none());
        let pw = env_of(&p)
            .into_iter()
            .find(|e| e.name == "OPENCODE_SERVER_PASSWORD")
            .unwrap();
        assert!(pw.value.is_none(), "the password is never a literal");
        let r = pw.value_from.unwrap().secret_key_ref.unwrap();
        assert_eq!(r.name, "agentic-sdlc-orchestrator-stg-server-password");
        assert_eq!(r.key, "server-password");
    }

    #[test]
    fn secure_by_default() {
        let p = render("prod", &[]);
        let env = env_of(&p);
        let spec = p.spec.unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.automount_service_account_token, Some(false));
        assert_eq!(spec.active_deadline_seconds, Some(7200));
        let psc = spec.security_context.unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.run_as_user, Some(10001));
        let c = &spec.containers[0];
        assert_eq!(c.name, "agent");
        assert_eq!(c.image.as_deref(), Some("agentic-sdlc/opencode:0.1.0"));
        assert_eq!(
            c.command.as_deref(),
            Some(&["asdo".to_string(), "agent".to_string()][..])
        );
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_string()][..])
        );
        let mounts: Vec<_> = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.mount_path.as_str())
            .collect();
        assert_eq!(mounts, ["/workspace", HOME, "/tmp", ANSWERS_DIR]);
        // The person's channel is read-only to everything in the pod, the model included.
        let answers = &c.volume_mounts.as_ref().unwrap()[3];
        assert_eq!(answers.read_only, Some(true));
        let get = |n: &str| {
            env.iter()
                .find(|e| e.name == n)
                .and_then(|e| e.value.clone())
        };
        assert_eq!(get("ASDO_ANSWERS_FILE").as_deref(), Some(ANSWERS_FILE));
        assert_eq!(get("ASDO_QUESTIONS").as_deref(), Some("fail"));
        assert_eq!(
            get("ASDO_SECRET_ENV").as_deref(),
            Some("OPENCODE_SERVER_PASSWORD")
        );
        assert_eq!(
            c.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"].0,
            "8Gi"
        );
    }

    #[test]
    fn ssh_key_is_mounted_read_only_0400() {
        let p = render(
            "dev",
            &["pod.sshSecret.enabled=true", "pod.sshSecret.name=git-ssh"],
        );
        let spec = p.spec.as_ref().unwrap();
        let v = spec
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "ssh-key")
            .unwrap();
        let s = v.secret.as_ref().unwrap();
        assert_eq!(s.secret_name.as_deref(), Some("git-ssh"));
        assert_eq!(s.default_mode, Some(0o400));
        let m = spec.containers[0]
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.name == "ssh-key")
            .unwrap();
        assert_eq!(m.read_only, Some(true));
        assert_eq!(m.mount_path, "/etc/asdo/ssh");
        assert_eq!(
            env_value(&p, "GIT_SSH_KEY_DIR").as_deref(),
            Some("/etc/asdo/ssh")
        );
    }

    #[test]
    fn values_reach_the_pod() {
        let p = render(
            "dev",
            &[
                "pod.image.tag=9.9.9",
                "pod.command={sh,-c,echo hi}",
                "pod.labels.team=ai",
                "pod.nodeSelector.pool=agents",
                "pod.gitTokenSecret.enabled=true",
                "pod.gitTokenSecret.name=gh",
            ],
        );
        let spec = p.spec.as_ref().unwrap();
        let c = &spec.containers[0];
        assert_eq!(c.image.as_deref(), Some("agentic-sdlc/opencode:9.9.9"));
        assert_eq!(c.command.as_ref().unwrap()[2], "echo hi");
        assert_eq!(labels(&p)["team"], "ai");
        assert_eq!(spec.node_selector.as_ref().unwrap()["pool"], "agents");
        let tok = env_of(&p)
            .into_iter()
            .find(|e| e.name == "GIT_TOKEN")
            .unwrap();
        assert_eq!(tok.value_from.unwrap().secret_key_ref.unwrap().name, "gh");
        // Every secret-backed variable is named for the agent (values never).
        assert_eq!(
            env_value(&p, "ASDO_SECRET_ENV").as_deref(),
            Some("GIT_TOKEN,OPENCODE_SERVER_PASSWORD")
        );
    }

    #[test]
    fn fixed_labels_win_over_pod_labels() {
        let p = render("dev", &["pod.labels.app=other"]);
        assert_eq!(labels(&p)["app"], "agent-orchestrator");
    }

    /// `pod.queueName` is Kueue's queue-name label (as the chart renders it), and a bad name
    /// is refused by the chart's schema before anything is sent.
    #[test]
    fn queue_name_is_the_kueue_label() {
        let p = render("dev", &[]);
        assert!(
            !labels(&p).contains_key(task::LABEL_QUEUE_NAME),
            "off by default"
        );
        let p = render("dev", &["pod.queueName=team-a"]);
        assert_eq!(labels(&p)[task::LABEL_QUEUE_NAME], "team-a");
        let mut v = defaults_for("dev").unwrap();
        apply_set(&mut v, "pod.queueName=Team_A").unwrap();
        let e = Values::from_value(v).unwrap_err().to_string();
        assert!(e.contains("pod.queueName"), "{e}");
    }
}
