#!/usr/bin/env bash
# The main job: set up, then infer a missing modality end to end with cmot from
# Python and from R.  Uses the real data in ../shared/data when present (the
# paper's pancancer protocol, RNA from ATAC), else data cmot simulates.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
OUT="${CMOT_OUT:-$ROOT/cmot-output}"
mkdir -p "$OUT"
printf '\n== Python: cmot demo (writes %s)\n' "$OUT" >&2
.venv/bin/cmot demo --out "$OUT"
printf '\n== R: RunCMOT on a Seurat object\n' >&2
Rscript scripts/main_r.R "$OUT"
