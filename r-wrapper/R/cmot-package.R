#' cmot: Cross-Modality Optimal Transport for Seurat and Bioconductor objects
#'
#' Infers a modality that query cells lack (for example RNA or protein) from
#' reference cells measured in it and in a shared modality (for example ATAC),
#' with Cross-Modality Optimal Transport (CMOT; Alatkar and Wang, Genome Biology
#' 2023).  The computation runs in the \code{cmot} Python package, called
#' through \pkg{reticulate}.
#'
#' @section Main functions:
#' \itemize{
#'   \item \code{\link{RunCMOT}}: infer the missing modality, for matrices
#'     (features x cells, dense or sparse), \code{Seurat} objects (a new assay)
#'     and \code{SingleCellExperiment} objects (a new alternative experiment),
#'     with fully or partly paired references.
#'   \item \code{\link{install_cmot}}: install the Python core into a virtual environment.
#'   \item \code{\link{cmot_available}}: check that the Python core can be used.
#'   \item \code{\link{simulate_multimodal}}: small simulated data for trying it out.
#' }
#'
#' @section Python:
#' The package needs a Python (>= 3.11) in which the cmot Python core is
#' installed (distribution \code{cmot-ot}, imported as \code{cmot}; see
#' \code{\link{install_cmot}}), with NumPy < 2 when reticulate is older than
#' 1.38.0 (which cannot convert NumPy 2 arrays).  reticulate chooses the interpreter: the one
#' in \code{RETICULATE_PYTHON} when set, else the virtual environment
#' \code{"r-cmot"} made by \code{\link{install_cmot}} when it exists, else
#' reticulate's usual search.  Python is started on first use.  Errors raised
#' by the core arrive as R errors of class \code{cmot_python_error} carrying
#' the Python message.
#'
#' @section Seurat 5:
#' \code{RunCMOT()} reads \code{Assay5} objects and assays split into layers
#' per sample (\code{split()}) with \code{layer = "data"} (the default), and
#' adds an \code{Assay5} to such a query; read it with
#' \code{LayerData(object, assay = "CMOT", layer = "data")}.  Seurat 4 objects
#' (\code{Assay}, slots) work as before.  See
#' \code{vignette("cmot_quickstart", package = "cmot")}.
#'
#' @section Options:
#' \describe{
#'   \item{\code{cmot.envname}}{Virtual environment preferred when the package is
#'     loaded (default \code{"r-cmot"}).}
#' }
#'
#' @references Alatkar S. A. and Wang D. (2023). CMOT: Cross-Modality Optimal
#'   Transport for multimodal inference. Genome Biology 24, 163.
#'   \doi{10.1186/s13059-023-02989-8}
"_PACKAGE"

#' @importFrom methods as slot
#' @importClassesFrom Matrix dgCMatrix
NULL
