"""What every command shares: one-line errors instead of tracebacks, and quiet Ctrl-C."""

from __future__ import annotations

import sys
from collections.abc import Callable

from ..errors import HydraNetError

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def run_main(main: Callable[[list[str] | None], int], argv: list[str] | None = None,
             prog: str = "") -> int:
    """Call ``main``; a HydraNetError becomes ``prog: error: ...`` on stderr and exit 1."""
    try:
        return main(argv)
    except HydraNetError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
