"""Plain text out: the tables of ``irc verify`` and ``irc profile``, files written with a one-line error."""
from __future__ import annotations

from typing import List, Sequence

from ..errors import IrcError


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> List[str]:
    """Lines of a table whose columns are as wide as their widest cell; columns in ``right`` align right.
    The last column is never padded."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells):
        out = [str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        out[-1] = str(cells[-1])
        return "  ".join(out).rstrip()
    return [line(header), *(line(r) for r in rows)]


def write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path``; an IrcError naming the file when it cannot be written."""
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as e:
        raise IrcError(f"cannot write {path!r}: {e.strerror or e}") from None
