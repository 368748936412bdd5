"""Checks on .github/workflows/*.yml that hold with or without actionlint.

Usage: check-workflows.py [--shellcheck PATH] WORKFLOW...

- every `uses:` of a remote action is `owner/repo[/path]@<40-hex SHA> # <tag>`
  (a tag or branch can be moved; a commit cannot);
- the workflow sets top-level `permissions`, and every job has `timeout-minutes`;
- no `run:` script expands text an outsider controls (`github.event.*`,
  `github.head_ref`) with `${{ }}`: it goes through `env:` instead;
- every `bash .ci/...` / `.ci/...` script a `run:` calls exists;
- ci.yml runs exactly `bash .ci/run`;
- with --shellcheck, every `run:` script passes shellcheck (bash), with each
  `${{ … }}` replaced by a placeholder word as the runner would substitute it.
"""

import os
import re
import subprocess
import sys
import tempfile

import yaml

USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$")
PINNED = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$")
TAG_COMMENT = re.compile(r"^\s+#\s*v?\d+(\.\d+)*\S*\s*$")
UNTRUSTED = re.compile(r"\$\{\{[^}]*\b(github\.event\.|github\.head_ref)")
SCRIPT_REF = re.compile(r"(?:^|\s)(?:bash\s+)?(\.ci/[A-Za-z0-9_./-]+)")
EXPR = re.compile(r"\$\{\{.*?\}\}")


def steps_of(doc):
    for job_id, job in (doc.get("jobs") or {}).items():
        for i, step in enumerate(job.get("steps") or []):
            yield job_id, i, step


def check(path, shellcheck):
    errors = []
    text = open(path, encoding="utf-8").read()
    name = os.path.basename(path)
    pins = 0
    for n, line in enumerate(text.splitlines(), 1):
        m = USES.match(line)
        if not m:
            continue
        ref, rest = m.group(1).strip("'\""), m.group(2)
        if ref.startswith("./") or ref.startswith("docker://"):
            continue
        if not PINNED.match(ref):
            errors.append(f"{name}:{n}: {ref} is not pinned by a 40-hex commit SHA")
        elif not TAG_COMMENT.match(rest):
            errors.append(f"{name}:{n}: {ref} has no `# <tag>` comment saying which release the SHA is")
        else:
            pins += 1
    doc = yaml.safe_load(text)
    if "permissions" not in doc:
        errors.append(f"{name}: no top-level `permissions` (the default token may write)")
    for job_id, job in (doc.get("jobs") or {}).items():
        if "timeout-minutes" not in job:
            errors.append(f"{name}: job {job_id} has no timeout-minutes (the default is 6 hours)")
    scripts = 0
    runs = []
    for job_id, i, step in steps_of(doc):
        script = step.get("run")
        if script is None:
            continue
        runs.append(script.strip())
        where = f"{name}: job {job_id} step {i + 1} ({step.get('name', 'run')})"
        if UNTRUSTED.search(script):
            errors.append(f"{where}: expands untrusted event text in the script; pass it through env:")
        for ref in SCRIPT_REF.findall(script):
            if not os.path.exists(ref):
                errors.append(f"{where}: calls {ref}, which does not exist")
        if shellcheck:
            scripts += 1
            body = EXPR.sub("GHA_EXPR", script)
            with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as f:
                f.write("#!/usr/bin/env bash\nset -eo pipefail\n" + body + "\n")
            try:
                r = subprocess.run([shellcheck, "-s", "bash", "-f", "gcc", f.name],
                                   capture_output=True, text=True)
                if r.returncode != 0:
                    for out in r.stdout.splitlines():
                        errors.append(f"{where}: shellcheck: {out.split(':', 3)[-1].strip()}")
            finally:
                os.unlink(f.name)
    if name == "ci.yml" and "bash .ci/run" not in runs:
        errors.append(f"{name}: does not run `bash .ci/run` as a step of its own")
    return errors, pins, scripts


def main(argv):
    shellcheck = None
    if argv[:1] == ["--shellcheck"]:
        shellcheck, argv = argv[1], argv[2:]
    if not argv:
        print("no workflows given", file=sys.stderr)
        return 2
    errors = []
    pins = scripts = 0
    for path in argv:
        e, p, s = check(path, shellcheck)
        errors += e
        pins += p
        scripts += s
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        return 1
    print(f"workflows: {len(argv)} files, {pins} actions pinned by SHA, {scripts} run scripts shellchecked")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
