"""JSON Schemas for editors and CI, generated from the same classes that validate the files.

`edgekd schema recipe|target|bench` prints one; point an editor's TOML/JSON language server at it
for completion and inline errors.
"""

from __future__ import annotations

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
