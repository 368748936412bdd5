#!/usr/bin/env python3
"""Every key of the chart's values.yaml is documented and typed.

* each leaf key path (a non-empty map is descended into; anything else, empty
  maps included, is a leaf) appears as `key` in the chart README's values table;
* each leaf is reachable in values.schema.json through `properties`, so the
  schema types every key (it forbids unknown keys at the top, under pod and task);
* the README table names no key that values.yaml doesn't have.

Usage: docs_check.py CHART_DIR
"""
import json
import os
import re
import sys

import yaml


def leaves(node, prefix=""):
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from leaves(value, path + ".")
        else:
            yield path


def in_schema(schema, path):
    node = schema
    for part in path.split("."):
        while "$ref" in node and "properties" not in node:
            node = resolve(schema, node["$ref"])
        props = node.get("properties", {})
        if part in props:
            node = props[part]
        elif isinstance(node.get("additionalProperties"), dict):  # a typed map, e.g. resources.limits
            node = node["additionalProperties"]
        else:
            return False
    return True


def resolve(schema, ref):
    node = schema
    for part in ref.lstrip("#/").split("/"):
        node = node[part]
    return node


def main():
    chart = sys.argv[1]
    values = yaml.safe_load(open(os.path.join(chart, "values.yaml")))
    schema = json.load(open(os.path.join(chart, "values.schema.json")))
    readme = open(os.path.join(chart, "README.md")).read()
    section = readme.split("## Values", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([^`]+)` \|", section, re.M))

    keys = list(leaves(values))
    problems = []
    for k in keys:
        if k not in documented:
            problems.append(f"values.yaml key {k} is not in the README values table")
        if not in_schema(schema, k):
            problems.append(f"values.yaml key {k} has no entry in values.schema.json")
    for k in sorted(documented - set(keys)):
        problems.append(f"README values table lists {k}, which values.yaml doesn't have")
    for p in problems:
        print(f"FAIL {p}", file=sys.stderr)
    print(f"{len(keys)} values keys: documented in README.md and typed in values.schema.json; {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
