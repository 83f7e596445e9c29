#!/usr/bin/env bash
# Set everything up, then run every test: pytest (core, CLI, benchmarks' data,
# rpy2 round trips and the Seurat comparison), the R package's testthat suite,
# and render the vignettes.  Exits non-zero on any failure.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
export PYTHONUNBUFFERED=1
status=0

printf '\n== pytest (Python core, CLI, doctests, R round trips)\n' >&2
.venv/bin/python -m pytest -q --doctest-modules python/cmot || status=1
.venv/bin/python -m pytest -q -ra tests --junitxml=/tmp/cmot-pytest.xml || status=1
# The R round trips must really run (setup.sh installed R): refuse all-skipped where the data is.
if [ -d "$CMOT_DATA" ]; then
  .venv/bin/python scripts/check_ran.py /tmp/cmot-pytest.xml tests.r || status=1
fi

printf '\n== testthat (R package)\n' >&2
Rscript scripts/testthat.R || status=1

printf '\n== vignettes\n' >&2
# With the data present, a vignette that stops early (no data, no Python) is a failure.
[ -d "$CMOT_DATA" ] && export CMOT_VIGNETTES_STRICT=1
bash vignettes/render.sh "${CMOT_VIGNETTE_OUT:-$ROOT/vignettes/_output}" || status=1

# The second lane: Debian 13 (R 4.5, Seurat 5, reticulate 1.41, Python 3.13, NumPy 2) in a
# cached chroot (scripts/lane_trixie.sh).  It needs root; CI (CI=true) requires it,
# elsewhere it runs when root and can be skipped with CMOT_TRIXIE=0.
if [ "${CMOT_TRIXIE:-auto}" != "0" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    printf '\n== second lane: Debian 13, Seurat 5, NumPy 2 (scripts/lane_trixie.sh)\n' >&2
    bash scripts/lane_trixie.sh || status=1
  elif [ "${CI:-}" = "true" ]; then
    echo "the Debian 13 lane needs root (debootstrap, chroot): FAILED" >&2
    status=1
  else
    echo "== skipping the Debian 13 lane (needs root; CMOT_TRIXIE=0 silences this)" >&2
  fi
fi

if [ "$status" -ne 0 ]; then echo "cmot tests: FAILED" >&2; fi
exit "$status"
