#!/usr/bin/env python3
"""The OpenAPI document Latchkey serves at /.well-known/ory/openapi.json.

    scripts/openapi.py generate KRATOS_OPENAPI_JSON   # rewrite crates/http/openapi.json
    scripts/openapi.py check                          # compare it with the routers

`generate` keeps from Ory Kratos's OpenAPI 3 document (its `spec/api.json`)
only the operations Latchkey's routers serve, with their parameters and the
schemas they reference, and drops the prose (descriptions, summaries, titles,
tags) and the Ory Network security schemes. `check` needs no Kratos document:
it fails when an operation in the committed document is not routed, or a
routed operation is neither documented nor listed in UNDOCUMENTED below.
"""

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "crates/http/openapi.json"
PUBLIC = ROOT / "crates/http/src/public"
ADMIN = ROOT / "crates/http/src/admin"
METHODS = ("get", "post", "put", "patch", "delete")

# Routed operations Kratos's document does not describe.
UNDOCUMENTED = {
    ("/admin/schemas", "get"),  # Kratos serves it too; its document does not list it.
    ("/admin/schemas/{id}", "get"),
    # GET on the submit URLs (the verification email's link is one).
    ("/self-service/login", "get"),
    ("/self-service/registration", "get"),
    ("/self-service/settings", "get"),
    ("/self-service/recovery", "get"),
    ("/self-service/verification", "get"),
    ("/.well-known/ory/openapi.json", "get"),  # this document itself
    ("/health/config", "get"),  # Latchkey's own: which configuration runs
}


def routes_in(directory):
    """(path, {methods}) for every `.route("path", method(...).method(...))`."""
    found = []
    for source in sorted(directory.glob("*.rs")):
        text = source.read_text()
        for match in re.finditer(r'\.route\(\s*"([^"]+)"\s*,', text):
            i, depth, methods, word = match.end(), 1, set(), ""
            while depth > 0 and i < len(text):
                c = text[i]
                if c.isalpha() or c == "_":
                    word += c
                else:
                    if c == "(" and depth == 1 and word in METHODS + ("any",):
                        methods.add(word)
                    word = ""
                    depth += {"(": 1, ")": -1}.get(c, 0)
                i += 1
            found.append((match.group(1), methods))
        # `flows::flow_routes(FlowKind::X, ..)` routes a flow's four paths.
        for match in re.finditer(r'flow_routes\(\s*FlowKind::(\w+)', text):
            base = "/self-service/" + match.group(1).lower()
            found += [(base + "/api", {"get"}), (base + "/browser", {"get"}), (base + "/flows", {"get"})]
            found.append((base, {"get", "post"}))
    return found


def served():
    """Every routed (path, method) under the path Kratos's document uses,
    and the paths routed for any method (whoami)."""
    ops, any_paths = set(), set()

    def add(path, methods):
        for m in methods:
            if m == "any":
                any_paths.add(path)
            else:
                ops.add((path, m))

    for path, methods in routes_in(PUBLIC):
        add(path, methods)
    # The admin router answers with and without /admin; Kratos documents its
    # admin API under /admin, except health and version.
    for path, methods in routes_in(ADMIN):
        add(path if path.startswith("/health/") or path == "/version" else "/admin" + path, methods)
    return ops, any_paths


PROSE = {"description", "summary", "title", "externalDocs", "tags"}


def strip_prose(node, in_properties=False):
    if isinstance(node, list):
        return [strip_prose(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if not in_properties and (k in PROSE or k.startswith("x-")):
            continue
        out[k] = strip_prose(v, in_properties=(k == "properties" and not in_properties))
    return out


def refs(node, acc):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                acc.add(v)
            else:
                refs(v, acc)
    elif isinstance(node, list):
        for x in node:
            refs(x, acc)
    return acc


def generate(kratos_file):
    kratos = json.loads(Path(kratos_file).read_text())
    ops, any_paths = served()
    paths = {}
    for path, item in sorted(kratos["paths"].items()):
        kept = {m: op for m, op in item.items() if m in METHODS and ((path, m) in ops or path in any_paths)}
        if "parameters" in item and kept:
            kept["parameters"] = item["parameters"]
        if kept:
            paths[path] = kept
    paths = strip_prose(paths)
    for item in paths.values():
        for m, op in item.items():
            if m in METHODS:
                op.pop("security", None)
                for status, response in op.get("responses", {}).items():
                    # Response objects require a description; ours is the status.
                    if "$ref" not in response:
                        response["description"] = status
    # Keep only the components reachable from the kept operations.
    components, pending, seen = {}, refs(paths, set()), set()
    while pending:
        ref = pending.pop()
        if ref in seen or not ref.startswith("#/components/"):
            continue
        seen.add(ref)
        kind, name = ref[len("#/components/"):].split("/", 1)
        value = strip_prose(kratos["components"][kind][name])
        if kind == "responses":
            value["description"] = name
        components.setdefault(kind, {})[name] = value
        pending |= refs(value, set())
    components = {k: dict(sorted(v.items())) for k, v in sorted(components.items())}
    doc = {
        "openapi": kratos["openapi"],
        "info": {
            "title": "Latchkey",
            "version": "v1",
            "description": "The operations of Ory Kratos's HTTP API that Latchkey serves, "
            "with Kratos's request and response shapes. Generated by scripts/openapi.py.",
            "license": {"name": "Apache 2.0"},
        },
        "paths": paths,
        "components": components,
    }
    DOC.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    print(f"wrote {DOC.relative_to(ROOT)}: {sum(len(v) for v in paths.values())} operations, "
          f"{sum(len(v) for v in components.values())} components")
    return check()


def check():
    doc = json.loads(DOC.read_text())
    ops, any_paths = served()
    documented = {(p, m) for p, item in doc["paths"].items() for m in item if m in METHODS}
    problems = [
        f"documented but not routed: {m.upper()} {p}"
        for p, m in sorted(documented - ops)
        if p not in any_paths
    ]
    problems += [
        f"routed but not documented (add it, or to UNDOCUMENTED): {m.upper()} {p}"
        for p, m in sorted(ops - documented - UNDOCUMENTED)
    ]
    # Routes for any method (whoami) are documented with the methods Kratos lists.
    problems += [f"routed but not documented: {p}" for p in sorted(any_paths - set(doc["paths"]))]
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{DOC.relative_to(ROOT)}: {len(documented)} operations, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "generate":
        sys.exit(generate(sys.argv[2]))
    if len(sys.argv) == 2 and sys.argv[1] == "check":
        sys.exit(check())
    print(__doc__, file=sys.stderr)
    sys.exit(2)
