#!/usr/bin/env bash
# Render the cmot vignettes to HTML.
#
#   vignettes/render.sh [OUTPUT_DIR] [VIGNETTE.Rmd ...]
#
# The vignettes live in the R package, r-wrapper/vignettes/ (installed with it:
# vignette(package = "cmot")).  OUTPUT_DIR defaults to vignettes/_output.
# Without vignette names, every r-wrapper/vignettes/*.Rmd is rendered, each in
# its own R process; then vignettes/check_build.sh checks that the package built
# with R CMD build lists them (vignette(package = "cmot")).  Exits
# with status 1 if any render fails (after trying all of them).
#
# Needs: R with rmarkdown, knitr, Seurat, ggplot2, patchwork and the cmot R
# package installed (R CMD INSTALL r-wrapper); pandoc; a Python with the cmot
# core, given by RETICULATE_PYTHON (default: <repo>/.venv/bin/python when it
# exists); the data folder, given by CMOT_DATA (default: <repo>/../shared/data).
# Without the data, the data vignettes (pbmc_protein, rna_from_atac) run to the
# end on data the package simulates, and say so ("Using simulated data").
# Without the Python core, a vignette stops early with a note (not an error).
# With CMOT_VIGNETTES_STRICT=1 either counts as a failure (use it in CI where
# the data and the Python core are expected).
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
vigdir="$repo/r-wrapper/vignettes"
out="${1:-$here/_output}"
shift || true
mkdir -p "$out"
out="$(cd "$out" && pwd)"

if [ -z "${RETICULATE_PYTHON:-}" ] && [ -x "$repo/.venv/bin/python" ]; then
  export RETICULATE_PYTHON="$repo/.venv/bin/python"
fi
# single-threaded BLAS: much faster on small shared machines
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

if ! command -v pandoc >/dev/null 2>&1; then
  echo "render.sh: pandoc not found (rmarkdown needs it; e.g. apt-get install -y pandoc)" >&2
  exit 1
fi

all=0
if [ "$#" -gt 0 ]; then files=("$@"); else files=("$vigdir"/*.Rmd); all=1; fi
status=0
for f in "${files[@]}"; do
  [ -f "$f" ] || f="$vigdir/$f"
  name="$(basename "$f" .Rmd)"
  tmp="$(mktemp -d)"
  start=$(date +%s)
  echo "== rendering $name.Rmd -> $out/$name.html"
  if Rscript -e 'a <- commandArgs(TRUE); rmarkdown::render(a[1], output_dir = a[2], intermediates_dir = a[3], quiet = TRUE, envir = new.env())' \
       "$f" "$out" "$tmp"; then
    # the printed messages ("#> ... Stopping here.", "#> Using simulated data"), not the vignette's code
    if [ "${CMOT_VIGNETTES_STRICT:-0}" = "1" ] && grep -q "#&gt; [^<]*Stopping here\." "$out/$name.html"; then
      echo "== $name: stopped early (no Python core; see $out/$name.html), failing as CMOT_VIGNETTES_STRICT=1" >&2
      status=1
    elif [ "${CMOT_VIGNETTES_STRICT:-0}" = "1" ] && grep -q "#&gt; Using simulated data" "$out/$name.html"; then
      echo "== $name: ran on simulated data (the real data not found; see $out/$name.html), failing as CMOT_VIGNETTES_STRICT=1" >&2
      status=1
    else
      data=""
      grep -q "#&gt; Using simulated data" "$out/$name.html" && data=" (simulated data)"
      grep -q "#&gt; Using the real data" "$out/$name.html" && data=" (real data)"
      echo "== $name: OK in $(( $(date +%s) - start )) s$data"
    fi
  else
    echo "== $name: FAILED after $(( $(date +%s) - start )) s" >&2
    status=1
  fi
  rm -rf "$tmp"
done
# all of them: also check that the built package ships them (vignette(package = "cmot"))
if [ "$all" = 1 ]; then
  echo "== building the R package and listing its vignettes"
  bash "$here/check_build.sh" || { echo "== the built package does not list its vignettes" >&2; status=1; }
fi
exit $status
