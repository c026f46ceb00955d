"""JSON Schemas for editors and CI, generated from the same classes that validate the files.

`edgekd schema recipe|target|bench` prints one; point an editor's TOML/JSON language server at it
for completion and inline errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def json_schema(kind: str) -> dict[str, Any]:
    from pydantic import TypeAdapter

    from edgekd.errors import EdgekdError

    if kind == "recipe":
        from edgekd.recipe import Recipe as cls
    elif kind == "target":
        from edgekd.targets import Target as cls
    elif kind == "bench":
        from edgekd.bench.stage import BenchReport as cls
    else:
        raise EdgekdError(f"unknown schema '{kind}'; choose recipe, target or bench")
    schema = TypeAdapter(cls).json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"edgekd {kind}"
    return schema


REFERENCE_KINDS = {"recipe": "Recipe", "target": "Target", "bench": "bench.json"}


def markdown_reference(kind: str) -> str:
    """The schema as a documentation page: one table per section (field, type, default, what it
    means), generated from the classes that validate the files, so the page cannot drift from the code
    (docs/reference/*.md are written by this; a test compares them)."""
    schema = json_schema(kind)
    defs = schema.get("$defs", {})
    lines = [f"# {REFERENCE_KINDS[kind]} reference", "",
             f"Generated from the classes that validate {'recipes' if kind == 'recipe' else 'targets' if kind == 'target' else 'bench.json'} "
             f"(`edgekd schema {kind}` prints the JSON Schema; `python -m edgekd.schema` rewrites these pages). "
             "Sections are TOML tables (`[data]`, `[budgets]`, ...) or JSON objects; a field left out takes its default.", ""]
    lines += _table("top level", schema, defs)
    for name, section in sorted(defs.items()):
        if "properties" in section:
            lines += _table(name, section, defs)
        elif "enum" in section:
            described = " ".join(section.get("description", "").split())
            lines += [f"## {name}", "", *([described, ""] if described else []),
                      "One of: " + ", ".join(f"`{v}`" for v in section["enum"]) + ".", ""]
    return "\n".join(line.rstrip() for line in lines).rstrip() + "\n"


def _table(name: str, section: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    lines = [f"## {name}", ""]
    if section.get("description") and name != "top level":
        lines += [" ".join(section["description"].split()), ""]
    lines += ["| field | type | default | meaning |", "|---|---|---|---|"]
    required = set(section.get("required", []))
    for field, spec in section["properties"].items():
        default = "required" if field in required else f"`{_show(spec['default'])}`" if "default" in spec else "—"
        meaning = " ".join((spec.get("description") or _comments(name).get(field, "")).split()).replace("|", "\\|")
        lines.append(f"| `{field}` | {_type(spec).replace('|', ' or ')} | {default} | {meaning} |")
    return lines + [""]


_MODULES = ("edgekd.recipe", "edgekd.targets", "edgekd.bench.stage", "edgekd.bench.measure", "edgekd.bench.verify",
            "edgekd.runtime.timing", "edgekd.runtime.graph", "edgekd.runtime.coverage", "edgekd.inputs")


def _comments(class_name: str) -> dict[str, str]:
    """Each field's comment in the class's source (the lines right above it, or the end of its own
    line): what the code says where the field has no `description`."""
    import ast
    import importlib
    import inspect

    for module_name in _MODULES:
        cls = getattr(importlib.import_module(module_name), class_name, None)
        if isinstance(cls, type):
            break
    else:
        return {}
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    lines, found = source.splitlines(), {}
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            own = lines[node.lineno - 1].split("  # ", 1)
            above, row = [], node.lineno - 2
            while row >= 0 and lines[row].strip().startswith("#"):
                above.insert(0, lines[row].strip().lstrip("#").strip())
                row -= 1
            found[node.target.id] = " ".join(above) or (own[1].strip() if len(own) > 1 else "")
    return found


def _type(spec: dict[str, Any]) -> str:
    if "$ref" in spec:
        name = spec["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in spec:
        return " | ".join(_type(s) for s in spec["anyOf"] if s.get("type") != "null") + (" or null" if any(s.get("type") == "null" for s in spec["anyOf"]) else "")
    if "enum" in spec:
        return " / ".join(f"`{v}`" for v in spec["enum"])
    kind = spec.get("type", "any")
    if kind == "array":
        return f"list of {_type(spec.get('items', {}))}"
    if kind == "object" and isinstance(spec.get("additionalProperties"), dict):
        return f"table of {_type(spec['additionalProperties'])}"
    return {"integer": "int", "number": "float", "string": "str", "boolean": "bool", "object": "table"}.get(kind, kind)


def _show(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value


def write_references(folder: Path) -> list[Path]:
    """docs/reference/<kind>.md for each schema (atomically)."""
    from edgekd._io import write_text

    written = []
    for kind in REFERENCE_KINDS:
        path = Path(folder) / f"{kind}-fields.md"
        write_text(path, markdown_reference(kind))
        written.append(path)
    return written


if __name__ == "__main__":
    import sys

    for path in write_references(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "docs" / "reference"):
        print(path)
