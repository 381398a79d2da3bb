#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment: torch pinned to the CPU build first,
# then this package with its ROS 2 wheels, the fast inference engines and the test tools.
# Safe to run again; it only reinstalls when setup.py, this file or constraints.txt changed.
# VENV selects the folder. The versions are constraints.txt's (those the tests last passed
# with); UNPINNED=1 takes each package's newest instead, and after a passing run
# `scripts/setup.sh --refresh-constraints` records what the venv holds as the new set.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if [ "${1:-}" = "--refresh-constraints" ]; then
    { grep '^#' constraints.txt
      "$VENV/bin/python" -m pip freeze --exclude-editable | grep -v '^torch==\|^#'; } > constraints.new
    mv constraints.new constraints.txt
    echo "constraints.txt: $(grep -vc '^#' constraints.txt) packages from $VENV"
    exit 0
fi
pinned=(-c constraints.txt)
[ "${UNPINNED:-0}" = 1 ] && pinned=()
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# colcon crawls for package.xml files and the ROS wheels put many into the venv
touch "$VENV/COLCON_IGNORE"
stamp="$VENV/.hydranet-installed"
want=$(cat setup.py scripts/setup.sh constraints.txt <(echo "${UNPINNED:-0}") | sha1sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    # torch first and pinned to its CPU build: PyPI's Linux torch (and a bare `torch`
    # requirement) is the multi-GB CUDA build; where no configured index or wheel folder has
    # the CPU build, PyTorch's own CPU index does (macOS has only the plain build)
    "$VENV/bin/python" -m pip install --quiet "torch==2.13.0+cpu" 2>/dev/null \
        || "$VENV/bin/python" -m pip install --quiet "torch==2.13.0+cpu" \
            --extra-index-url https://download.pytorch.org/whl/cpu 2>/dev/null \
        || "$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
    "$VENV/bin/python" -m pip install --quiet "${pinned[@]}" -e ".[ros,test,engines,bag,fleet]"
    echo "$want" > "$stamp"
fi
