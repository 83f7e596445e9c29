#!/usr/bin/env bash
# Set up everything cmot needs on a fresh Debian 12 machine: R + Seurat from Debian,
# a Python virtual environment (.venv) with the core installed, and the R package.
# Idempotent: steps already done are skipped.  Run from anywhere; needs root for apt.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { printf '\n== %s\n' "$*" >&2; }

APT_PKGS="r-base-core r-base-dev r-cran-seurat r-cran-reticulate r-bioc-singlecellexperiment \
r-cran-testthat r-cran-knitr r-cran-rmarkdown r-cran-roxygen2 pandoc"
missing=""
for p in $APT_PKGS; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  say "installing Debian packages:$missing"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  say "creating the Python environment .venv"
  "$PY" -m venv .venv
fi
say "installing the cmot Python core (numpy<2 in this environment: reticulate 1.28 needs it)"
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
# The distribution is named cmot-ot; an older checkout installed it as "cmot" (also the
# name of an unrelated PyPI package): remove that one so `import cmot` is this project.
if .venv/bin/python -m pip show -q cmot >/dev/null 2>&1; then
  .venv/bin/python -m pip uninstall -y -q cmot >/dev/null 2>&1 || true
  rm -rf python/cmot.egg-info
fi
# numpy<2 is a constraint of this environment (R's reticulate), not of the cmot package.
.venv/bin/python -m pip install -q --disable-pip-version-check "numpy<2" -e ".[test,r,bench,anndata]" 2>&1 \
  | grep -v -i "^WARNING: Location" || true
.venv/bin/python -c "import cmot, numpy; print('cmot', cmot.__version__, 'numpy', numpy.__version__)"

say "installing the cmot R package"
R CMD INSTALL --no-multiarch r-wrapper >/tmp/cmot-r-install.log 2>&1 || { cat /tmp/cmot-r-install.log; exit 1; }
RETICULATE_PYTHON="$ROOT/.venv/bin/python" Rscript -e 'stopifnot(cmot::cmot_available(verbose = TRUE)); cat("cmot R package ready\n")'
