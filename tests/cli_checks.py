"""What every user error at the command line must look like, checked in one place."""

from __future__ import annotations


def one_line_error(result, *fragments: str) -> str:
    """Exit 2, one line on stderr starting "error: " that holds every fragment, no traceback and no
    "internal error" (exit 3): the contract of a bad input. Returns the line."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output and "internal error" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
