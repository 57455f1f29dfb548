#!/usr/bin/env bash
# The main job on sample data: set up, list a real chest CT study and convert a series to NIfTI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DATA=${MEDIMG_DATA:-../shared/data}
CT="$DATA/ct/lung-pet-ct-dx-A0001"
mkdir -p out
.venv/bin/medimg info "$CT"
.venv/bin/medimg convert "$CT/series-2" out/chest-ct.nii.gz
.venv/bin/medimg convert "$CT/series-2" out/chest-ct-axial.png --slice 40 --window=-1000,400
echo "demo: wrote out/chest-ct.nii.gz and out/chest-ct-axial.png"
