#!/usr/bin/env bash
# Check that the R package, built as users get it (R CMD build, then installed
# from the tarball), ships its vignettes: vignette(package = "cmot") must list
# every r-wrapper/vignettes/*.Rmd.  The real data is not used here (CMOT_DATA
# unset, and R CMD build knits in a copy of the package where the default
# ../shared/data is not found): every vignette runs on data the package
# simulates.  Needs what render.sh needs.
#
#   vignettes/check_build.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
if [ -z "${RETICULATE_PYTHON:-}" ] && [ -x "$repo/.venv/bin/python" ]; then
  export RETICULATE_PYTHON="$repo/.venv/bin/python"
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
env -u CMOT_DATA R CMD build "$repo/r-wrapper" > build.log 2>&1 || { cat build.log; exit 1; }
mkdir lib
R CMD INSTALL -l lib cmot_*.tar.gz > install.log 2>&1 || { cat install.log; exit 1; }
expected="$(cd "$repo/r-wrapper/vignettes" && ls *.Rmd | sed 's/\.Rmd$//' | sort | tr '\n' ' ')"
Rscript -e '
  a <- commandArgs(TRUE)
  v <- sort(vignette(package = "cmot", lib.loc = a[1])$results[, "Item"])
  want <- sort(strsplit(trimws(a[2]), " ")[[1]])
  cat("vignette(package = \"cmot\") lists:", v, "\n")
  if (!identical(v, want)) stop("expected the vignettes ", paste(want, collapse = ", "))
  html <- file.path(a[1], "cmot", "doc", paste0(want, ".html"))
  if (!all(file.exists(html))) stop("missing built vignettes: ", paste(html[!file.exists(html)], collapse = ", "))
' "$tmp/lib" "$expected"
