//! `-o json` and `-o yaml`, one way for every verb: serde_json (pretty) or serde-saphyr,
//! the text trimmed and ended with one newline. A verb prints the task object
//! ([`crate::taskpod::TaskState`], `src/task.schema.json`): one for a verb about one task,
//! a JSON array / YAML list for a verb about many (`list`, `spawn -f`, `cleanup`), and for
//! `wait -o json` one compact object per line as each task ends (JSON Lines, so a script
//! acts on the first result without waiting for the last).

use std::io::Write;

use serde::Serialize;

use crate::error::{Error, Result};

/// A machine-readable output format (`-o json|yaml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Yaml,
}

/// `obj` in `format`, ending with one newline.
pub fn render<T: Serialize>(obj: &T, format: Format) -> Result<String> {
    let text = match format {
        Format::Json => serde_json::to_string_pretty(obj)
            .map_err(|e| Error::other(format!("cannot encode JSON: {e}")))?,
        Format::Yaml => serde_saphyr::to_string(obj)
            .map_err(|e| Error::other(format!("cannot encode YAML: {e}")))?,
    };
    let mut text = text.trim_end().to_string();
    text.push('\n');
    Ok(text)
}

/// One compact JSON object and a newline: a line of `wait -o json`.
pub fn json_line<T: Serialize>(obj: &T) -> Result<String> {
    let mut s =
        serde_json::to_string(obj).map_err(|e| Error::other(format!("cannot encode JSON: {e}")))?;
    s.push('\n');
    Ok(s)
}

/// Print `obj` on stdout in `format`.
pub fn print<T: Serialize>(obj: &T, format: Format) -> Result<()> {
    write_stdout(&render(obj, format)?)
}

/// Print one JSON line on stdout and flush it at once (a reader waits for it).
pub fn print_line<T: Serialize>(obj: &T) -> Result<()> {
    write_stdout(&json_line(obj)?)
}

/// stdout, flushed. A closed stdout (`| head -1`) is not reached here: asdo restores
/// SIGPIPE's default at start (see `cli::main`), so the process ends quietly as Unix tools do.
fn write_stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Error::other(format!("cannot write to stdout: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_and_objects_in_both_formats() {
        let tasks = json!([{"id": "T1", "phase": "Running", "cost": null}, {"id": "T2"}]);
        let j = render(&tasks, Format::Json).unwrap();
        assert!(j.starts_with("[\n") && j.ends_with("]\n"), "{j}");
        let back: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(back, tasks);
        let y = render(&tasks, Format::Yaml).unwrap();
        assert!(y.starts_with("- ") && y.contains("\n- id: T2"), "{y}");
        assert!(y.ends_with('\n') && !y.ends_with("\n\n"), "{y:?}");
        let line = json_line(&tasks[0]).unwrap();
        assert!(
            line.ends_with("}\n") && !line[..line.len() - 1].contains('\n'),
            "{line}"
        );
        // An empty list is still a list (`[]`), never nothing: scripts parse it.
        let none: Vec<serde_json::Value> = vec![];
        assert_eq!(render(&none, Format::Json).unwrap(), "[]\n");
    }
}
