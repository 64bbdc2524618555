#!/usr/bin/env bash
# Build the FCN Studio desktop bundle (dist/fcn-studio/) with PyInstaller, then run
# the bundle's own self-test headless. Run it before a release, not in every CI run:
# it takes minutes and a few GB of disk.
#
#     scripts/build_bundle.sh            # from anywhere; uses the repo's .venv if present
#     PYTHON=/path/to/python scripts/build_bundle.sh
#
# Exit status: 0 when the build succeeded and the self-test passed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -n "${PYTHON:-}" ]]; then
    py="$PYTHON"
elif [[ -x .venv/bin/python ]]; then
    py=.venv/bin/python
elif [[ -x .venv/Scripts/python.exe ]]; then
    py=.venv/Scripts/python.exe
else
    py=python3
fi
if ! "$py" -c "import PyInstaller" 2>/dev/null; then
    echo "PyInstaller is not installed for $py: $py -m pip install pyinstaller" >&2
    exit 2
fi

echo "== building dist/fcn-studio with $("$py" -m PyInstaller --version 2>/dev/null | head -1) ($py)"
start=$SECONDS
"$py" -m PyInstaller --noconfirm --log-level WARN fcn_studio.spec
echo "== built in $((SECONDS - start)) s"

exe=dist/fcn-studio/fcn-studio
[[ -x "$exe" ]] || exe=dist/fcn-studio/fcn-studio.exe
if [[ ! -x "$exe" ]]; then
    echo "no executable in dist/fcn-studio/" >&2
    exit 1
fi
echo "== bundle size: $(du -sh dist/fcn-studio | cut -f1) ($(find dist/fcn-studio -type f | wc -l) files) in dist/fcn-studio"

echo "== self-test: QT_QPA_PLATFORM=offscreen $exe --self-test"
if ! QT_QPA_PLATFORM=offscreen "$exe" --self-test; then
    echo "== FAILED: the bundle's self-test did not pass (see the FAIL line above)" >&2
    exit 1
fi
echo "== ok: $exe"
