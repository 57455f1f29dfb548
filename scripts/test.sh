#!/usr/bin/env bash
# Set up, then run the whole test suite (all groups, the slow and peer ones included) on 2 workers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MEDIMG_DATA=${MEDIMG_DATA:-$(cd .. && pwd)/shared/data}
if [ ! -f "$MEDIMG_DATA/MANIFEST.md" ]; then
  echo "test: real data not found at $MEDIMG_DATA (put ../shared beside the checkout or set MEDIMG_DATA)" >&2
  exit 1
fi
.venv/bin/python -m pytest -n 2 --dist loadgroup -q --durations=20 "$@"
