#!/usr/bin/env bash
# Set up what is missing, then run the whole test suite. Extra arguments go to pytest.
# Without arguments each test file runs in its own pytest process: a whole-suite process
# was seen to die with SIGSEGV late in the run (state left by earlier files' in-process
# Ray, rclpy or DataLoader use; each file alone passes), so no file's leftovers reach another.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
PYTHON="${VENV:-.venv}/bin/python"
if [ "$#" -gt 0 ]; then
    exec "$PYTHON" -m pytest "$@"
fi
failed=()
for file in test/test_*.py; do
    echo "== $file"
    "$PYTHON" -m pytest -q -p no:cacheprovider "$file" || {
        code=$?
        [ "$code" -eq 5 ] || failed+=("$file (exit $code)")
    }
done
if [ "${#failed[@]}" -gt 0 ]; then
    printf 'failed: %s\n' "${failed[@]}"
    exit 1
fi
echo "all test files passed"
