#!/usr/bin/env bash
# The main job on sample data: set up, list a real chest CT study, convert a series, analyse it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DATA=${MEDIMG_DATA:-../shared/data}
CT="$DATA/ct/lung-pet-ct-dx-A0001"
mkdir -p out
.venv/bin/medimg info "$CT"
.venv/bin/medimg convert "$CT/series-2" out/chest-ct.nii.gz
.venv/bin/medimg convert "$CT/series-2" out/chest-ct-axial.png --slice 40 --window=-1000,400
.venv/bin/medimg analyze "$CT/series-2" -o out/analysis
echo "demo: wrote out/chest-ct.nii.gz, out/chest-ct-axial.png and the analysis in out/analysis/"
