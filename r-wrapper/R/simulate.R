#' Simulate a small multimodal reference and query
#'
#' Simulates cells of a few types from a shared latent state; modality X (to
#' infer) and modality Y (shared) are different random nonlinear maps of it.
#' Reference cells have both, query cells have Y (their true X is returned too,
#' for checking).  Mirrors \code{cmot.datasets.make_multimodal} of the Python
#' core, in R; no Python needed.  Values are non-negative.
#'
#' @param n.reference,n.query Numbers of reference and query cells.
#' @param n.types Number of cell types.
#' @param n.x.features,n.y.features Numbers of features of X and Y.
#' @param n.latent Dimension of the latent state.
#' @param noise Standard deviation of the measurement noise.
#'
#' @return A list of matrices with features as rows and cells as columns:
#'   \code{reference.x}, \code{reference.y}, \code{query.y}, \code{query.x}
#'   (named features \code{gene1}, ... and \code{peak1}, ...; cells \code{ref1},
#'   ... and \code{query1}, ...), and the cell types \code{reference.labels},
#'   \code{query.labels}.  Uses R's random number generator (call
#'   \code{set.seed()} first for reproducible data).
#' @export
#' @examples
#' set.seed(1)
#' sim <- simulate_multimodal(100, 30)
#' str(sim, max.level = 1)
simulate_multimodal <- function(n.reference = 300, n.query = 100, n.types = 3, n.x.features = 30,
                                n.y.features = 60, n.latent = 5, noise = 0.3) {
  n.reference <- .check_count(n.reference, "n.reference")
  n.query <- .check_count(n.query, "n.query")
  n.types <- .check_count(n.types, "n.types")
  n.latent <- .check_count(n.latent, "n.latent")
  n.x.features <- .check_count(n.x.features, "n.x.features")
  n.y.features <- .check_count(n.y.features, "n.y.features")
  noise <- .check_number(noise, "noise", min = 0)
  centres <- matrix(stats::rnorm(n.types * n.latent, sd = 3), n.types)
  wx <- matrix(stats::rnorm(n.latent * n.x.features), n.latent) / sqrt(n.latent)
  wy <- matrix(stats::rnorm(n.latent * n.y.features), n.latent) / sqrt(n.latent)
  cells <- function(n, prefix) {
    types <- sample.int(n.types, n, replace = TRUE)
    z <- centres[types, , drop = FALSE] + matrix(stats::rnorm(n * n.latent), n)
    x <- tanh(z %*% wx) * 2 + 2 + noise * matrix(stats::rnorm(n * n.x.features), n)
    y <- log1p(exp(z %*% wy)) + noise * matrix(stats::rnorm(n * n.y.features), n)
    x <- t(pmax(x, 0))
    y <- t(pmax(y, 0))
    cn <- paste0(prefix, seq_len(n))
    dimnames(x) <- list(paste0("gene", seq_len(n.x.features)), cn)
    dimnames(y) <- list(paste0("peak", seq_len(n.y.features)), cn)
    list(x = x, y = y, types = paste0("type", types))
  }
  ref <- cells(n.reference, "ref")
  qry <- cells(n.query, "query")
  list(reference.x = ref$x, reference.y = ref$y, query.y = qry$y, query.x = qry$x,
       reference.labels = stats::setNames(ref$types, colnames(ref$x)),
       query.labels = stats::setNames(qry$types, colnames(qry$x)))
}
