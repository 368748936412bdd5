//! What opencode is told, and how the resulting commit is described.

use super::config::Config;

/// Longest commit subject line, the usual 72-column convention.
const SUBJECT_MAX: usize = 72;

/// The message passed to `opencode run`. It always starts with fixed text, so it can
/// never be taken for an option by opencode's argument parser, whatever the user wrote.
pub fn build(c: &Config) -> String {
    let mut p = format!(
        "You are working on task {id} in the git repository in the current directory, on branch {branch}.\n",
        id = c.task_id,
        branch = c.branch
    );
    if let Some(dir) = &c.spec_dir {
        p.push_str(&format!(
            "The specification is in {dir}/ (spec.md, plan.md and tasks.md, when present). \
             Task {id} is listed in {dir}/tasks.md: implement it as described there and mark it done ([X]) in that file.\n",
            id = c.task_id
        ));
    }
    p.push('\n');
    match &c.prompt {
        Some(user) => {
            p.push_str("Instructions:\n");
            p.push_str(user.trim_end());
            p.push('\n');
        }
        None if c.spec_dir.is_some() => {
            p.push_str(&format!("Implement task {}.\n", c.task_id));
        }
        None => p.push_str(&format!(
            "Implement task {id}. Find its description in the repository (for example a tasks.md under specs/ that lists {id}).\n",
            id = c.task_id
        )),
    }
    p.push_str(
        "\nWork only inside this repository and do not push: when you finish, every change \
         left in the work tree is committed and pushed to the branch for you.\n",
    );
    p
}

/// The session's title in OpenCode (given, so OpenCode makes no model call to invent one).
pub fn title(c: &Config) -> String {
    let first = c
        .prompt
        .as_deref()
        .and_then(|p| p.lines().map(str::trim).find(|l| !l.is_empty()))
        .unwrap_or("");
    truncate(&format!("{}: {first}", c.task_id), SUBJECT_MAX)
        .trim_end_matches([':', ' '])
        .to_string()
}

/// The commit of an interrupted or failed session: marked as work in progress with
/// why (`interrupted by SIGTERM`, `the session failed`), same trailers.
pub fn wip_message(c: &Config, why: &str) -> String {
    format!(
        "wip({id}): partial work, {why}\n\nTask-Id: {id}\nTask-Branch: {}\nGenerated-By: asdo agent (opencode)\n",
        c.branch,
        id = c.task_id
    )
}

/// `feat(<task>): <first line of the prompt>` plus trailers naming the task and branch.
pub fn commit_message(c: &Config) -> String {
    let summary = c
        .prompt
        .as_deref()
        .and_then(|p| p.lines().map(str::trim).find(|l| !l.is_empty()))
        .map(str::to_string)
        .unwrap_or_else(|| format!("implement task {}", c.task_id));
    let prefix = format!("feat({}): ", c.task_id);
    let room = SUBJECT_MAX.saturating_sub(prefix.chars().count()).max(20);
    format!(
        "{prefix}{}\n\nTask-Id: {}\nTask-Branch: {}\nGenerated-By: asdo agent (opencode)\n",
        truncate(&summary, room),
        c.task_id,
        c.branch
    )
}

/// At most `max` characters, with an ellipsis when something was cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.truncate(out.trim_end().len());
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(prompt: Option<&str>, spec_dir: Option<&str>) -> Config {
        Config::from_lookup(|k| {
            match k {
                "TASK_ID" => Some("T001"),
                "GIT_REPO" => Some("file:///srv/r.git"),
                "GIT_BRANCH" => Some("specs/001-auth/T001-async"),
                "TASK_PROMPT" => prompt,
                "TASK_SPEC_DIR" => spec_dir,
                _ => None,
            }
            .map(str::to_string)
        })
        .unwrap()
    }

    #[test]
    fn prompt_points_at_the_spec_and_task() {
        let p = build(&config(None, Some("specs/001-auth")));
        assert!(p.starts_with("You are working on task T001"), "{p}");
        assert!(p.contains("specs/001-auth/tasks.md"), "{p}");
        assert!(p.contains("Implement task T001."), "{p}");
        assert!(p.contains("specs/001-auth/T001-async"), "{p}");
    }

    #[test]
    fn user_prompt_is_included_and_cannot_become_an_option() {
        let p = build(&config(Some("--help me\nsecond line"), None));
        assert!(!p.starts_with('-'));
        assert!(p.contains("Instructions:\n--help me\nsecond line\n"), "{p}");
        let p = build(&config(None, None));
        assert!(p.contains("tasks.md under specs/"), "{p}");
    }

    #[test]
    fn commit_message_subject_and_trailers() {
        let m = commit_message(&config(Some("\n  Add login form  \nwith details"), None));
        assert_eq!(
            m,
            "feat(T001): Add login form\n\nTask-Id: T001\nTask-Branch: specs/001-auth/T001-async\nGenerated-By: asdo agent (opencode)\n"
        );
        let m = commit_message(&config(None, None));
        assert!(m.starts_with("feat(T001): implement task T001\n\n"), "{m}");
    }

    #[test]
    fn long_subjects_are_truncated_on_a_char_boundary() {
        let long = "é".repeat(200);
        let m = commit_message(&config(Some(&long), None));
        let subject = m.lines().next().unwrap();
        assert_eq!(subject.chars().count(), SUBJECT_MAX);
        assert!(subject.ends_with('…'));
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("a few words here", 8), "a few w…");
        assert_eq!(truncate("a few  words", 7), "a few…");
    }
}
