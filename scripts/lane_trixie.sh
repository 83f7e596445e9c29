#!/usr/bin/env bash
# The Debian 13 (trixie) test lane: R 4.5, Seurat 5, SeuratObject 5, reticulate 1.41,
# Python 3.13 and NumPy 2, in a chroot kept in a cache directory.
#
#   bash scripts/lane_trixie.sh            # build the chroot if needed, then test
#
# What runs there: the Python core's tests (NumPy 2), the rpy2 + anndata2ri round
# trips and the Seurat comparison (rpy2 3.6), the R package's testthat suite, and
# the vignettes.  Needs root (debootstrap, chroot, mounts) and the network to the
# Debian mirror apt uses and to PyPI.  The chroot (about 1.5 GB) is cached in
# $CMOT_CACHE (default /var/cache/cmot) and reused on later runs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${CMOT_CACHE:-/var/cache/cmot}"
CHROOT="$CACHE/trixie"
STAMP="$CHROOT/.cmot-lane-v1"
DATA="${CMOT_DATA:-$ROOT/../shared/data}"
say() { printf '\n== [trixie] %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  echo "lane_trixie.sh: needs root (debootstrap, chroot and mounts)" >&2
  exit 1
fi

# The Debian mirror apt already uses here (deb822 or one-line sources).
mirror() {
  local uri
  uri="$(grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?' /etc/apt/sources.list.d/*.sources \
         /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $2}')"
  echo "${uri:-http://deb.debian.org/debian}"
}

mounts=()
cleanup() {
  local i
  for (( i=${#mounts[@]}-1; i>=0; i-- )); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
bind() {  # bind SRC DEST [ro]; a mount left at DEST (another checkout, an earlier run) is replaced
  mkdir -p "$2"
  while mountpoint -q "$2"; do umount -l "$2"; done
  mount --bind "$1" "$2"; mounts+=("$2")
  if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$2"; fi
}

build_chroot() {
  local tmp="$CHROOT.tmp"
  say "building the chroot in $CHROOT (about 5 minutes, once)"
  command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  umount -l "$tmp/proc" 2>/dev/null || true
  rm -rf "$tmp"
  mkdir -p "$CACHE"
  debootstrap --variant=minbase trixie "$tmp" "$(mirror)" >/dev/null
  mount -t proc proc "$tmp/proc"
  # the host's locally added CA certificates, else pip fails certificate checks
  mkdir -p "$tmp/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$tmp/usr/local/share/ca-certificates/" 2>/dev/null || true
  env -u PIP_FIND_LINKS chroot "$tmp" /bin/bash -euc '
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends ca-certificates >/dev/null
    update-ca-certificates >/dev/null
    apt-get install -y -qq --no-install-recommends r-base-core r-base-dev r-cran-seurat r-cran-reticulate \
      r-cran-testthat r-bioc-singlecellexperiment r-cran-knitr r-cran-rmarkdown pandoc \
      libpython3.13 python3-venv python3-dev gcc g++ make >/dev/null
    apt-get clean
    python3 -m venv /opt/cmot-venv
    /opt/cmot-venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
    # rpy2 3.6 for R 4.5 (3.5 is for R <= 4.2)
    /opt/cmot-venv/bin/python -m pip install -q --disable-pip-version-check \
      "numpy>=2" scipy POT scikit-learn pandas anndata h5py "dask[array]" pytest matplotlib "rpy2>=3.6" "anndata2ri>=2"
  '
  umount -l "$tmp/proc"
  touch "$tmp/.cmot-lane-v1"
  rm -rf "$CHROOT"
  mv "$tmp" "$CHROOT"
}

[ -f "$STAMP" ] || build_chroot

mountpoint -q "$CHROOT/proc" || { mount -t proc proc "$CHROOT/proc"; mounts+=("$CHROOT/proc"); }
bind /dev "$CHROOT/dev"
bind "$ROOT" "$CHROOT/cmot"
if [ -d "$DATA" ]; then bind "$DATA" "$CHROOT/shared/data" ro; fi

say "versions"
env -u PIP_FIND_LINKS chroot "$CHROOT" /bin/bash -euc '
  cd /cmot
  export RETICULATE_PYTHON=/opt/cmot-venv/bin/python
  # the core, editable, from this checkout (dependencies are already in the venv)
  /opt/cmot-venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
  # added to the lane after the chroot was first cached: install when missing
  /opt/cmot-venv/bin/python -c "import matplotlib" 2>/dev/null \
    || /opt/cmot-venv/bin/python -m pip install -q --disable-pip-version-check matplotlib
  /opt/cmot-venv/bin/python -c "import dask.array" 2>/dev/null \
    || /opt/cmot-venv/bin/python -m pip install -q --disable-pip-version-check "dask[array]"
  R CMD INSTALL --no-multiarch r-wrapper >/tmp/cmot-r-install.log 2>&1 || { cat /tmp/cmot-r-install.log; exit 1; }
  Rscript -e "cat(R.version.string, \"Seurat\", format(packageVersion(\"Seurat\")), \"SeuratObject\",
              format(packageVersion(\"SeuratObject\")), \"reticulate\", format(packageVersion(\"reticulate\")), \"\n\")"
  /opt/cmot-venv/bin/python -c "import sys, numpy, cmot, importlib.metadata as m; print(\"Python\", sys.version.split()[0], \"numpy\", numpy.__version__, \"rpy2\", m.version(\"rpy2\"), \"cmot\", cmot.__version__)"
  Rscript -e "stopifnot(cmot::cmot_available(verbose = TRUE))"
'

say "tests"
chroot "$CHROOT" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
  LANG=C.UTF-8 CI="${CI:-}" /bin/bash -uc '
  cd /cmot
  export RETICULATE_PYTHON=/opt/cmot-venv/bin/python PYTHONUNBUFFERED=1
  [ -d /shared/data ] && export CMOT_DATA=/shared/data
  export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
  status=0
  py=/opt/cmot-venv/bin/python
  printf "\n== [trixie] pytest (core on NumPy 2, R round trips, Seurat comparison)\n" >&2
  $py -m pytest -q -p no:cacheprovider -ra tests --junitxml=/tmp/cmot-pytest-trixie.xml || status=1
  if [ -n "${CMOT_DATA:-}" ]; then $py scripts/check_ran.py /tmp/cmot-pytest-trixie.xml tests.r || status=1; fi
  printf "\n== [trixie] testthat\n" >&2
  Rscript scripts/testthat.R || status=1
  printf "\n== [trixie] vignettes\n" >&2
  [ -n "${CMOT_DATA:-}" ] && export CMOT_VIGNETTES_STRICT=1
  bash vignettes/render.sh /tmp/cmot-vignettes-trixie || status=1
  exit $status
'
