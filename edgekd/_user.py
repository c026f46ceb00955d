"""User code named as "package.module:function" (a data source, a model factory, a tokenizer):
imported and called so that its failures name the file and line, never a traceback of ours.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from edgekd.errors import first_line


def import_object(spec: str, error: type[Exception], what: str):
    """Import `package.module:attr`, also from the working directory, with a clear error."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise error(f"{what} '{spec}' must look like package.module:name")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except SyntaxError as exc:  # IndentationError and TabError too: the user's file, with its line
        raise error(f"{what} '{spec}': {exc.filename}, line {exc.lineno}: {type(exc).__name__}: {exc.msg}; fix the module") from None
    except ImportError as exc:
        if (exc.name or "") != module_name and not module_name.startswith(f"{exc.name}."):  # the module itself imports something missing
            raise error(f"{what} '{spec}': module '{module_name}' {_where_raised(exc, module_name)}cannot import "
                        f"'{exc.name or '?'}' ({first_line(exc)}); install it or fix the import") from None
        raise error(f"{what} '{spec}': cannot import module '{module_name}' ({exc}); check the name and that its folder is "
                    "the working folder or on PYTHONPATH") from None
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the module's own top-level code failed (sys.exit included: never exit 0 or 1)
        raise error(f"{what} '{spec}': importing module '{module_name}' raised {type(exc).__name__} "
                    f"{_where_raised(exc, module_name)}({first_line(exc)}); fix the module") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise error(f"{what} '{spec}': module '{module_name}' has no attribute '{attr}'") from None


def call_user(fn, spec: str, error: type[Exception], what: str):
    """`fn()`, the user's own function: whatever it raises, `sys.exit` included (exit 0 or 1 would
    read as a verdict), is one `error` line naming whose code failed, not a traceback of ours."""
    try:
        return fn()
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure of user code is the user's to fix
        raise error(f"{what} '{spec}' raised {type(exc).__name__}: {first_line(exc)}; fix the function") from None


def _where_raised(exc: BaseException, module_name: str) -> str:
    """'at FILE, line N ' for the deepest frame of the traceback inside the user's package, or ''."""
    import traceback

    top = module_name.split(".")[0]
    ours = [frame for frame in traceback.extract_tb(exc.__traceback__)
            if f"/{top}/" in frame.filename.replace("\\", "/") or Path(frame.filename).stem == module_name.split(".")[-1]]
    return f"at {ours[-1].filename}, line {ours[-1].lineno} " if ours else ""
