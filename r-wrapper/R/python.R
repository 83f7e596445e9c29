# Python environment: discovery, installation, lazy import and error handling.

# Lazily imported Python modules (set in .onLoad; nothing is imported until used).
.cmot_env <- new.env(parent = emptyenv())

.onLoad <- function(libname, pkgname) {
  # Prefer the environment made by install_cmot() unless the user chose a Python
  # (RETICULATE_PYTHON, or reticulate already initialized).  required = FALSE
  # only records a preference; nothing starts here.
  if (!nzchar(Sys.getenv("RETICULATE_PYTHON")) && !reticulate::py_available(initialize = FALSE)) {
    envname <- getOption("cmot.envname", "r-cmot")
    exists <- tryCatch(reticulate::virtualenv_exists(envname), error = function(e) FALSE)
    if (isTRUE(exists)) {
      try(reticulate::use_virtualenv(envname, required = FALSE), silent = TRUE)
    }
  }
  .cmot_env$cmot <- reticulate::import("cmot", delay_load = TRUE, convert = FALSE)
  invisible()
}

# Name of the Python module holding the core (an option only so that the tests
# can simulate a missing core).
.module_name <- function() getOption("cmot.python.module", "cmot")

# The oldest Python core this R package works with (it passes `shrinkage`, new in 0.3.0);
# an option only so that the tests can simulate an outdated core.
.min_core_version <- function() getOption("cmot.min.core.version", "0.3.0")

.python_status <- function() {
  module <- .module_name()
  if (!reticulate::py_available(initialize = TRUE)) {
    rp <- Sys.getenv("RETICULATE_PYTHON")
    return(list(ok = FALSE, reason = paste0("no Python interpreter was found by reticulate",
                                            if (nzchar(rp)) paste0(" (RETICULATE_PYTHON is '", rp, "')") else "")))
  }
  python <- tryCatch(reticulate::py_config()$python, error = function(e) "unknown")
  core <- NULL
  res <- tryCatch({
    core <- reticulate::import(module, convert = FALSE)
    NULL
  }, error = function(e) .clean_message(conditionMessage(e)))
  if (!is.null(res)) {
    return(list(ok = FALSE, python = python,
                reason = sprintf("the Python module '%s' cannot be imported from %s: %s", module, python, res)))
  }
  core.version <- tryCatch(reticulate::py_to_r(core$`__version__`), error = function(e) "0")
  if (utils::compareVersion(as.character(core.version), .min_core_version()) < 0) {
    return(list(ok = FALSE, python = python,
                reason = sprintf("the cmot Python core in %s is version %s; this R package (%s) needs %s or later",
                                 python, core.version, utils::packageVersion("cmot"), .min_core_version())))
  }
  if (!reticulate::py_has_attr(core, "check_params")) {   # cmot.check_params, which RunCMOT() calls
    return(list(ok = FALSE, python = python,
                reason = sprintf("the cmot Python core in %s (version %s) has no check_params(); this R package (%s) needs a newer core",
                                 python, core.version, utils::packageVersion("cmot"))))
  }
  np_version <- tryCatch(
    reticulate::py_to_r(reticulate::import("numpy", convert = FALSE)$`__version__`),
    error = function(e) NA_character_
  )
  if (!is.na(np_version) && utils::compareVersion(np_version, "2.0") >= 0 &&
      utils::packageVersion("reticulate") < "1.36") {
    return(list(ok = FALSE, python = python,
                reason = sprintf("%s has NumPy %s, which reticulate %s cannot convert; install 'numpy<2'",
                                 python, np_version, utils::packageVersion("reticulate"))))
  }
  list(ok = TRUE, python = python, reason = NULL)
}

#' Is the cmot Python core available?
#'
#' Checks, without raising an error, that reticulate finds a Python interpreter
#' in which the \code{cmot} Python package (and NumPy < 2, which reticulate
#' 1.28 needs) can be imported.  Use it to guard code that needs Python, as the
#' examples of this package do.  Note that the check starts Python through
#' reticulate, which then fixes the interpreter for the rest of the R session.
#'
#' @param verbose Print why the core is unavailable, when it is.
#'
#' @return \code{TRUE} or \code{FALSE}.
#' @seealso \code{\link{install_cmot}}
#' @export
#' @examples
#' cmot_available()
cmot_available <- function(verbose = FALSE) {
  st <- tryCatch(.python_status(), error = function(e) list(ok = FALSE, reason = conditionMessage(e)))
  if (!st$ok && verbose) message("cmot is unavailable: ", st$reason)
  isTRUE(st$ok)
}

# Stop with a helpful R error when the core cannot be used.
.require_cmot <- function() {
  st <- tryCatch(.python_status(), error = function(e) list(ok = FALSE, reason = conditionMessage(e)))
  if (!isTRUE(st$ok)) {
    stop(
      "The cmot Python core is not available: ", st$reason, ".\n",
      "Install it with cmot::install_cmot(python.path = \"<path to the cmot Python project>\") ",
      "and restart R, or point reticulate to a Python that has it, e.g. ",
      "Sys.setenv(RETICULATE_PYTHON = \"/path/to/venv/bin/python\") before loading cmot.",
      call. = FALSE
    )
  }
  invisible(TRUE)
}

.bridge <- function() {
  if (is.null(.cmot_env$bridge)) {
    path <- system.file("python", package = "cmot")
    if (!nzchar(path)) stop("cmot: the package's Python bridge (inst/python) is missing; reinstall cmot.", call. = FALSE)
    .cmot_env$bridge <- reticulate::import_from_path("cmot_r_bridge", path = path, convert = FALSE)
  }
  .cmot_env$bridge
}

# Strip reticulate/Python traceback noise from an error message.
.clean_message <- function(msg) {
  msg <- sub("\n*Detailed traceback:.*$", "", msg)
  msg <- sub("\n*Run `reticulate::py_last_error\\(\\)` for details.*$", "", msg)
  msg <- sub("^Error in py_call_impl\\(.*?\\) :\\s*", "", msg)
  trimws(msg)
}

# Evaluate Python-calling code, turning any Python exception into a clean R error.
.py_try <- function(expr, context = "cmot") {
  tryCatch(expr, error = function(e) {
    if (inherits(e, "cmot_error")) stop(e)
    .stop_python(.clean_message(conditionMessage(e)), context)
  })
}

# Python argument names -> R argument names, for error messages: the CMOT
# parameters (.cmot_arg_map()) and the data.
.py_arg_names <- function() {
  map <- .cmot_arg_map()
  c(stats::setNames(names(map), map), source_x = "refdata (reference modality to infer)",
    source_y = "reference (shared modality)", target_y = "query (shared modality)", correspondence = "pairs")
}

.stop_python <- function(msg, context = "cmot") {
  m <- regmatches(msg, regexec("^[A-Za-z]*(Error|Warning|Exception): ([a-z_]+)[:, ]", msg))[[1]]
  r.names <- .py_arg_names()
  if (length(m) == 3L && m[3] %in% names(r.names)) {
    msg <- paste0(msg, " [R argument: ", r.names[[m[3]]], "]")
  }
  cond <- structure(
    class = c("cmot_python_error", "cmot_error", "error", "condition"),
    list(message = paste0(context, ": the Python core reported an error: ", msg), call = NULL)
  )
  stop(cond)
}

#' Install the cmot Python core into a virtual environment
#'
#' Creates (or reuses) a Python virtual environment through
#' \code{reticulate::virtualenv_create()} and installs NumPy < 2 (needed by
#' reticulate < 1.36) and the \code{cmot} Python package into it.  When the
#' environment is named \code{"r-cmot"} (the default) and \code{RETICULATE_PYTHON}
#' is not set, the R package uses it automatically when it is loaded; otherwise
#' call \code{reticulate::use_virtualenv(envname)} before using cmot, or set
#' \code{RETICULATE_PYTHON} to its Python.
#'
#' @param envname Name of (or path to) the virtual environment.
#' @param python.path Path to the cmot Python project: the folder holding its
#'   \code{pyproject.toml}, or the Python package folder inside that project
#'   (then the nearest parent holding \code{pyproject.toml} or \code{setup.py} is used).
#'   Can also be a pip requirement (for example a wheel file).  Defaults to the
#'   environment variable \code{CMOT_PYTHON_PATH}.
#' @param python Python interpreter to create the environment with
#'   (passed to \code{reticulate::virtualenv_create()}; \code{NULL} lets reticulate choose).
#' @param editable Install the core in editable (development) mode (\code{pip install -e}).
#' @param restart.message Print a reminder to restart R after installing.
#' @param ... Passed to \code{reticulate::virtualenv_install()}.
#'
#' @return The path to the environment's Python, invisibly.
#' @seealso \code{\link{cmot_available}}
#' @export
#' @examples
#' \dontrun{
#' # needs network access to PyPI (for numpy, scipy, POT, scikit-learn, pandas)
#' install_cmot(envname = "r-cmot", python.path = "~/src/cmot")
#' }
install_cmot <- function(envname = "r-cmot", python.path = Sys.getenv("CMOT_PYTHON_PATH"),
                         python = NULL, editable = FALSE, restart.message = TRUE, ...) {
  if (!is.character(envname) || length(envname) != 1L || !nzchar(envname)) {
    stop("envname: expected one non-empty string, found ", deparse(envname), ".", call. = FALSE)
  }
  if (is.null(python.path) || !is.character(python.path) || length(python.path) != 1L ||
      !nzchar(python.path)) {
    stop("python.path: expected the path to the cmot Python project (the folder with its pyproject.toml); ",
         "set it or the environment variable CMOT_PYTHON_PATH.", call. = FALSE)
  }
  target <- python.path
  if (dir.exists(python.path)) {
    target <- .find_python_project(python.path)
  } else if (!file.exists(python.path) && grepl("[/\\\\]", python.path)) {
    stop("python.path: no such file or folder: ", python.path, call. = FALSE)
  }
  if (!reticulate::virtualenv_exists(envname)) {
    reticulate::virtualenv_create(envname, python = python, packages = "numpy<2")
  }
  # one pip call, so that the resolver keeps numpy < 2 while installing the
  # core's dependencies (a separate call would upgrade numpy again)
  pkgs <- if (editable) c("numpy<2", "-e", target) else c("numpy<2", target)
  reticulate::virtualenv_install(envname, packages = pkgs, ...)
  py <- reticulate::virtualenv_python(envname)
  check <- tryCatch(
    system2(py, c("-c", shQuote("import numpy, cmot; print(numpy.__version__)")), stdout = TRUE, stderr = TRUE),
    error = function(e) conditionMessage(e), warning = function(w) conditionMessage(w)
  )
  np.version <- utils::tail(check, 1L)
  if (!grepl("^[0-9]+\\.", np.version)) {
    stop("install_cmot: the core was installed but cannot be imported from ", py, ":\n",
         paste(check, collapse = "\n"), call. = FALSE)
  }
  if (utils::compareVersion(np.version, "2.0") >= 0) {
    warning("install_cmot: ", py, " has NumPy ", np.version, "; reticulate ", utils::packageVersion("reticulate"),
            " needs NumPy < 2.", call. = FALSE)
  }
  if (restart.message) {
    message("Installed the cmot Python core into '", envname, "' (", py, ").\n",
            "Restart R; cmot then uses this environment", if (envname != "r-cmot")
              paste0(" after reticulate::use_virtualenv(\"", envname, "\")") else "",
            " unless RETICULATE_PYTHON points elsewhere.")
  }
  invisible(py)
}

.find_python_project <- function(path) {
  path <- normalizePath(path, mustWork = TRUE)
  cur <- path
  for (i in 1:4) {
    if (file.exists(file.path(cur, "pyproject.toml")) || file.exists(file.path(cur, "setup.py"))) {
      return(cur)
    }
    parent <- dirname(cur)
    if (identical(parent, cur)) break
    cur <- parent
  }
  stop("python.path: found no pyproject.toml or setup.py in ", path, " or its parents; ",
       "give the folder of the cmot Python project.", call. = FALSE)
}
