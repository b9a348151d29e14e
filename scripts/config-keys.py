#!/usr/bin/env python3
"""The configuration keys Ory Kratos knows, as a tree Latchkey checks files against.

    scripts/config-keys.py KRATOS_CONFIG_SCHEMA_JSON   # rewrite crates/server/src/config/kratos-keys.json

Reads Kratos's configuration JSON Schema (its `embedx/config.schema.json`)
and keeps only the shape of its keys: each object maps its property names to
their subtrees; `"*"` stands for any key of a map (`additionalProperties`
with a schema, or `patternProperties`), `"[]"` for the items of a list, and
`true` for a value Kratos does not look inside (free-form objects, such as
a webhook's body or an OIDC claim mapper) or a plain value.
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/server/src/config/kratos-keys.json"


def resolve(schema, node, seen):
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            return {}  # an external schema: its insides are not configuration keys
        if ref in seen:
            return {}
        seen = seen | {ref}
        target = schema
        for part in ref[2:].split("/"):
            target = target[part]
        rest = {k: v for k, v in node.items() if k != "$ref"}
        node = {**target, **rest}
    return node, seen


def merge(a, b):
    if a is True or b is True:
        return True if (a is True and b is True) or not isinstance(a, dict) or not isinstance(b, dict) else None
    out = dict(a)
    for k, v in b.items():
        out[k] = merge_values(out[k], v) if k in out else v
    return out


def merge_values(a, b):
    if isinstance(a, dict) and isinstance(b, dict):
        return merge(a, b)
    # One side is a plain value, the other an object: keep the object's keys.
    return a if isinstance(a, dict) else b


def tree(schema, node, seen=frozenset(), depth=0, partial=False):
    if depth > 40 or not isinstance(node, dict):
        return True
    resolved = resolve(schema, node, seen)
    if not isinstance(resolved, tuple):
        return True
    node, seen = resolved
    out = {}
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in node.get(key, []):
            sub_tree = tree(schema, sub, seen, depth + 1, partial=True)
            if isinstance(sub_tree, dict):
                out = merge_values(out, sub_tree)
    for key in ("then", "else"):
        if key in node:
            sub_tree = tree(schema, node[key], seen, depth + 1, partial=True)
            if isinstance(sub_tree, dict):
                out = merge_values(out, sub_tree)
    for name, sub in node.get("properties", {}).items():
        sub_tree = tree(schema, sub, seen, depth + 1)
        out[name] = merge_values(out[name], sub_tree) if name in out else sub_tree
    for sub in node.get("patternProperties", {}).values():
        out["*"] = tree(schema, sub, seen, depth + 1)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        out["*"] = tree(schema, extra, seen, depth + 1)
    if "items" in node and isinstance(node["items"], dict):
        items = tree(schema, node["items"], seen, depth + 1)
        if isinstance(items, dict):
            out["[]"] = items
    if not out:
        return True
    # An object that allows more keys than it names is free beside its names
    # (a part of a combination only adds names to the object it is part of).
    if not partial and "properties" in node and "additionalProperties" not in node:
        if "patternProperties" not in node:
            out["*"] = True
    return out


def main():
    schema = json.loads(Path(sys.argv[1]).read_text())
    result = tree(schema, schema)
    OUT.write_text(json.dumps(result, sort_keys=True, separators=(",", ":")) + "\n")
    print(f"{OUT.relative_to(ROOT)}: {len(OUT.read_text())} bytes")


if __name__ == "__main__":
    main()
