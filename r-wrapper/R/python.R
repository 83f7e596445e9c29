# Python environment: discovery, installation, lazy import and error handling.

# Lazily imported Python modules (set in .onLoad; nothing is imported until used).
.cmot_env <- new.env(parent = emptyenv())

.onLoad <- function(libname, pkgname) {
  # Prefer the environment made by install_cmot() unless the user chose a Python
  # (RETICULATE_PYTHON, or reticulate already initialized).  required = FALSE
  # only records a preference; nothing starts here.
  if (!nzchar(Sys.getenv("RETICULATE_PYTHON")) && !reticulate::py_available(initialize = FALSE)) {
    env <- tryCatch(.env_path(getOption("cmot.envname", "r-cmot")), error = function(e) NA_character_)
    if (!is.na(env) && isTRUE(tryCatch(reticulate::virtualenv_exists(env), error = function(e) FALSE))) {
      try(reticulate::use_virtualenv(env, required = FALSE), silent = TRUE)
    }
  }
  .cmot_env$cmot <- reticulate::import("cmot", delay_load = TRUE, convert = FALSE)
  invisible()
}

# Name of the Python module holding the core (an option only so that the tests
# can simulate a missing core).
.module_name <- function() getOption("cmot.python.module", "cmot")

# The oldest Python core this R package works with (it passes `correction` and calls
# check_params(), new in 0.4.0; transfer_labels, feature_scores_ and representation, new in 0.5.0);
# an option only so that the tests can simulate an outdated core.
.min_core_version <- function() getOption("cmot.min.core.version", "0.5.0")

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
      !is.null(.numpy_pin(utils::packageVersion("reticulate")))) {
    return(list(ok = FALSE, python = python,
                reason = sprintf("%s has NumPy %s, which reticulate %s cannot convert (reticulate >= %s can); install 'numpy<2' there or update reticulate",
                                 python, np_version, utils::packageVersion("reticulate"), .reticulate_numpy2)))
  }
  list(ok = TRUE, python = python, reason = NULL)
}

#' Is the cmot Python core available?
#'
#' Checks, without raising an error, that reticulate finds a Python interpreter
#' in which the \code{cmot} Python package can be imported (and, with
#' reticulate < 1.38, which cannot convert NumPy 2 arrays, NumPy < 2).  Use it to guard code that needs Python, as the
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
#' \code{reticulate::virtualenv_create()} and installs the cmot Python core
#' (the Python distribution \code{cmot-ot}, imported as \code{cmot}) into it
#' from a local copy of the project: its folder, a wheel or sdist built from
#' it, or a \code{git+} URL.  Never from the package index by name: on PyPI
#' the name \code{cmot} belongs to an unrelated package.  NumPy < 2 is pinned
#' only where the installed reticulate cannot convert NumPy 2 arrays (before
#' reticulate 1.38.0).
#'
#' A bare \code{envname} (no path) is created in reticulate's virtualenv root:
#' \code{RETICULATE_VIRTUALENV_ROOT} when set, else \code{WORKON_HOME}, else
#' \code{~/.virtualenvs} (\code{reticulate::virtualenv_root()}); a path is
#' used as it is, so users without a writable home can give one.  When the
#' environment is named \code{"r-cmot"} (the default) and
#' \code{RETICULATE_PYTHON} is not set, the R package uses it automatically
#' when it is loaded; otherwise call \code{reticulate::use_virtualenv()} with
#' the returned path's environment before using cmot, or set
#' \code{RETICULATE_PYTHON} to the returned Python.
#'
#' @param envname Name of (or path to) the virtual environment.
#' @param python.path The cmot Python project to install: the folder holding
#'   its \code{pyproject.toml} (or a folder inside it: the nearest parent
#'   holding \code{pyproject.toml} or \code{setup.py} is used), a wheel or sdist
#'   file, or a \code{git+https://...} URL.  Defaults to the environment
#'   variable \code{CMOT_PYTHON_PATH}.
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
#' # the core's dependencies (numpy, scipy, POT, scikit-learn, pandas) come from PyPI
#' install_cmot(python.path = "~/src/cmot")            # a clone of the cmot repository
#' # no writable home: put the environment elsewhere
#' Sys.setenv(RETICULATE_VIRTUALENV_ROOT = "/scratch/me/venvs")
#' install_cmot(python.path = "~/src/cmot")
#' }
install_cmot <- function(envname = "r-cmot", python.path = Sys.getenv("CMOT_PYTHON_PATH"),
                         python = NULL, editable = FALSE, restart.message = TRUE, ...) {
  if (!is.character(envname) || length(envname) != 1L || is.na(envname) || !nzchar(envname)) {
    stop("envname: expected one non-empty string, found ", deparse(envname), ".", call. = FALSE)
  }
  target <- .install_target(python.path)
  env <- .env_path(envname)
  pin <- .numpy_pin(utils::packageVersion("reticulate"))
  if (!reticulate::virtualenv_exists(env)) {
    reticulate::virtualenv_create(env, python = python, packages = pin)
  }
  # one pip call, so that the resolver keeps the numpy pin while installing the
  # core's dependencies (a separate call would upgrade numpy again)
  pkgs <- c(pin, if (editable) "-e", target)
  reticulate::virtualenv_install(env, packages = pkgs, ...)
  py <- reticulate::virtualenv_python(env)
  .check_installed(py, pin)
  if (restart.message) {
    message("Installed the cmot Python core (cmot-ot) into ", env, " (", py, ").\n",
            "Restart R; cmot then uses this environment", if (envname != "r-cmot")
              paste0(" after reticulate::use_virtualenv(\"", env, "\")") else "",
            " unless RETICULATE_PYTHON points elsewhere.")
  }
  invisible(py)
}

# The first reticulate that converts NumPy 2 arrays (NEWS of 1.38.0: "Internal
# updates for NumPy 2.0", rstudio/reticulate#1621); 1.28 cannot, 1.41 can.
.reticulate_numpy2 <- "1.38.0"

# The NumPy requirement to install with reticulate `version`: "numpy<2" where
# it cannot convert NumPy 2 arrays, else NULL (no pin).
.numpy_pin <- function(version) {
  if (package_version(as.character(version)) < .reticulate_numpy2) "numpy<2" else NULL
}

# Where the environment `envname` lives: a path as given, a bare name in
# reticulate's virtualenv root (RETICULATE_VIRTUALENV_ROOT, honoured here also
# with reticulate versions that predate it, else WORKON_HOME, else ~/.virtualenvs).
.env_path <- function(envname) {
  if (grepl("[/\\\\]", envname) || startsWith(envname, "~") || startsWith(envname, ".")) {
    return(path.expand(envname))
  }
  root <- Sys.getenv("RETICULATE_VIRTUALENV_ROOT", "")
  if (!nzchar(root)) root <- reticulate::virtualenv_root()
  file.path(path.expand(root), envname)
}

# What pip installs: the local project folder, a wheel/sdist file or a VCS URL;
# never a bare name (pip would fetch PyPI's unrelated 'cmot').
.install_target <- function(python.path) {
  if (is.null(python.path) || !is.character(python.path) || length(python.path) != 1L ||
      is.na(python.path) || !nzchar(python.path)) {
    stop("python.path: expected the path to the cmot Python project (the folder with its pyproject.toml); ",
         "set it or the environment variable CMOT_PYTHON_PATH.", call. = FALSE)
  }
  if (dir.exists(python.path)) return(.find_python_project(python.path))
  if (file.exists(python.path)) return(normalizePath(python.path))
  if (grepl("^(git|hg|svn|bzr)\\+", python.path)) return(python.path)
  if (grepl("[/\\\\]", python.path)) stop("python.path: no such file or folder: ", python.path, call. = FALSE)
  stop("python.path: expected the cmot Python project's folder, a wheel or sdist file, or a git+ URL; found '",
       python.path, "', which pip would look up by name on PyPI (where 'cmot' is an unrelated package; ",
       "the core's distribution is 'cmot-ot', installed from its source).", call. = FALSE)
}

# Stop unless the core (distribution cmot-ot) imports in `py` and NumPy keeps
# to `pin`.
.check_installed <- function(py, pin) {
  code <- paste0("import importlib.metadata as m, numpy, cmot; m.distribution('cmot-ot'); ",
                 "print(numpy.__version__)")
  check <- tryCatch(system2(py, c("-c", shQuote(code)), stdout = TRUE, stderr = TRUE),
                    error = function(e) conditionMessage(e), warning = function(w) conditionMessage(w))
  np.version <- utils::tail(check, 1L)
  if (!length(np.version) || !grepl("^[0-9]+\\.", np.version)) {
    stop("install_cmot: the core (cmot-ot) was installed but cannot be imported from ", py, ":\n",
         paste(check, collapse = "\n"), call. = FALSE)
  }
  if (!is.null(pin) && utils::compareVersion(np.version, "2.0") >= 0) {
    warning("install_cmot: ", py, " has NumPy ", np.version, "; reticulate ", utils::packageVersion("reticulate"),
            " needs NumPy < 2 (reticulate >= ", .reticulate_numpy2, " does not).", call. = FALSE)
  }
  invisible(np.version)
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
