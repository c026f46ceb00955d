"""Shared loading of TOML config files (recipes and targets) into validated, frozen dataclasses.

pydantic does the validation; this module only turns its error list into the single line a user
needs: which file, which section and key, what was expected, and the closest valid key.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import Field, Strict, TypeAdapter, ValidationError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from edgekd._io import read_text
from edgekd.errors import EdgekdError

T = TypeVar("T")

# Unknown keys are errors, and so are inf and nan: no recipe or target number may be non-finite.
CONFIG = {"extra": "forbid", "frozen": True, "allow_inf_nan": False}

# Field types that take a TOML value only as what it is: `epochs = true` is not one epoch, and
# `per_channel = 1` is not true (pydantic's lax mode would convert both). Floats take integers.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
Count = Annotated[int, Strict(), Field(ge=1)]  # a batch size, a sweep entry: at least 1
Seed = Annotated[int, Strict(), Field(ge=0, le=2**32 - 1)]  # what numpy's and torch's generators accept

# Figures of reports read back (bench.json): what a measurement can be. A report with a zero or
# negative latency, a share above 1 or a non-finite figure was edited or damaged, and is refused
# on read with the field's path rather than divided by.
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Share = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Tally = Annotated[int, Field(ge=0)]  # bytes, parameters, nodes


def read_toml(path: Path, error: type[EdgekdError], what: str) -> dict[str, Any]:
    text = read_text(Path(path), error, f"{what} file", fix="TOML files are UTF-8: save it as UTF-8")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML: {exc}") from None


def validate(cls: type[T], data: dict[str, Any], source: str, error: type[EdgekdError]) -> T:
    """Build `cls` from `data`; on failure raise `error` naming the first bad key and the fix."""
    try:
        return TypeAdapter(cls).validate_python(data)
    except ValidationError as exc:
        raise error(f"{source}: {_describe(cls, exc)}") from None


def _describe(cls: type, exc: ValidationError) -> str:
    first = exc.errors()[0]
    parts = list(first["loc"])
    index = ""
    while parts and isinstance(parts[-1], int):  # an entry of a list: sweep_batches[0]
        index = f"[{parts.pop()}]" + index
    loc = [str(part) for part in parts]
    key = loc[-1] if loc else "?"
    where = _where(loc[:-1])
    if first["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
        valid = _valid_keys(cls, loc[:-1])
        close = difflib.get_close_matches(key, valid, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return f"{where}unknown key '{key}' — {hint}valid keys: {', '.join(valid)}"
    if first["type"] == "value_error" and _valid_keys(cls, loc):  # a check across a section's keys
        return f"{_where(loc)}{first['ctx']['error']}"
    if first["type"] == "missing":
        return f"{where}missing required key '{key}'"
    got = repr(first.get("input"))
    return f"{where}{key}{index}: {first['msg']} (got {got if len(got) <= 60 else got[:57] + '...'})"


def _where(section: list[str]) -> str:
    """'[data] ', '[[teachers]] #2 ' (an entry of an array of tables) or '' for the top level."""
    names = [part for part in section if not part.isdigit()]
    entries = [int(part) + 1 for part in section if part.isdigit()]
    if entries:
        return f"[[{'.'.join(names)}]] #{entries[-1]} "
    return f"[{'.'.join(names)}] " if names else ""


def _valid_keys(cls: type, section: list[str]) -> list[str]:
    """Field names of the nested dataclass that `section` points at (through lists of tables,
    such as [[teachers]] and [[distill.loss]], and optional ones)."""
    current: Any = cls
    for part in section:
        current = _table_type(current)
        if part.isdigit():  # an entry of an array of tables
            continue
        if not dataclasses.is_dataclass(current):
            return []
        current = typing.get_type_hints(current).get(part)
    current = _table_type(current)
    if not dataclasses.is_dataclass(current):
        return []
    return [f.name for f in dataclasses.fields(current)]


def _table_type(hint: Any) -> Any:
    """The dataclass inside list[...] / Optional[...] / Annotated[...], or the hint itself."""
    while typing.get_origin(hint) in (list, typing.Union, typing.Annotated) or type(hint).__name__ == "UnionType":
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if not args:
            break
        hint = args[0]
    return hint
