#!/usr/bin/env bash
# Sets up everything medimg needs on a fresh Debian machine (run as root, or with sudo available):
# the reference tools from Debian (dcm2niix, dcmtk, dciodvfy from dicom3tools, Chromium for PDF
# reports, poppler-utils to check them) and a virtual environment in .venv with
# PyTorch's local CPU wheel (torch==2.13.0, installed first so nothing pulls the CUDA build), then
# medimg itself with its test extras.  Safe to run again: it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

debs=(dcm2niix dcmtk dicom3tools chromium poppler-utils orthanc orthanc-dicomweb postgresql)
missing=()
for d in "${debs[@]}"; do
  dpkg -s "$d" >/dev/null 2>&1 || missing+=("$d")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.medimg-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing Python packages (torch 2.13.0 CPU first)"
  .venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test,postgres]"
  echo "$want" > "$stamp"
fi
# The workstation UI (web/): JavaScript dependencies pinned in web/package-lock.json, built with vite
# into src/medimg/web/static (served at /ui).  Node.js comes from Debian if the machine has none.
if ! command -v npm >/dev/null 2>&1; then
  echo "setup: installing Node.js and npm from Debian"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi
webstamp=web/node_modules/.medimg-build
webwant=$(cat web/package.json web/package-lock.json web/vite.config.js web/index.html $(find web/src -type f | sort) | sha256sum | cut -d' ' -f1)
if [ ! -f "$webstamp" ] || [ "$(cat "$webstamp")" != "$webwant" ] || [ ! -f src/medimg/web/static/index.html ]; then
  echo "setup: building the workstation UI (npm ci, vite build)"
  (cd web && npm ci --no-audit --no-fund --loglevel=error >/dev/null && npm run --silent build >/dev/null)
  echo "$webwant" > "$webstamp"
fi
# The stock OHIF viewer the browser tests run against medimg (tests/web/test_ohif.py): only @ohif/app
# and its prebuilt dist/, pinned with its integrity in web/ohif/package-lock.json.
ohifstamp=web/ohif/node_modules/.medimg-install
ohifwant=$(cat web/ohif/package.json web/ohif/package-lock.json | sha256sum | cut -d' ' -f1)
if [ ! -f "$ohifstamp" ] || [ "$(cat "$ohifstamp")" != "$ohifwant" ]; then
  echo "setup: installing the OHIF viewer for the browser tests (npm ci in web/ohif)"
  (cd web/ohif && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$ohifwant" > "$ohifstamp"
fi
.venv/bin/python -c "import torch, medimg; assert torch.__version__.startswith('2.13.0'), torch.__version__"
echo "setup: ready (medimg $(.venv/bin/python -c 'import medimg; print(medimg.__version__)'), torch $(.venv/bin/python -c 'import torch; print(torch.__version__)'))"
