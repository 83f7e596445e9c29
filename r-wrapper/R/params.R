# The CMOT parameters on the R side: their names and defaults are the formals
# of RunCMOT.default() (the one place they are listed); this file maps them to
# the Python core's names and hands them to the core's own checks.

# Arguments of RunCMOT.default() that are not parameters of the Python core.
.r_only_args <- c("object", "reference", "refdata", "pairs", "labels", "transfer.labels", "verbose", "...")

# R names that are not the Python name with '.' for '_'.
.r_renamed <- c(k = "n_neighbors", seed = "random_state")

# The R <-> Python name map: a named character vector, R name -> Python name,
# for every CMOT parameter of RunCMOT.default(), in the order of its formals.
# A test keeps it equal to the Python core's parameter list, defaults included.
.cmot_arg_map <- function() {
  r <- setdiff(names(formals(RunCMOT.default)), .r_only_args)
  py <- ifelse(r %in% names(.r_renamed), .r_renamed[r], chartr(".", "_", r))
  stats::setNames(unname(py), r)
}

# The CMOT arguments of a RunCMOT.default() call (R names, as given or
# defaulted), from its frame.
.cmot_args_in <- function(env) mget(names(.cmot_arg_map()), envir = env)

# Parameters of the Python core (its names) from the CMOT arguments (R names).
# R checks only what is about R values (one value, not NA: reticulate would turn
# c(1, 2) into a list and NA into True); numbers and ranges are checked once,
# by the core's check_params(), whose errors are relabelled with the R names.
# Returns the parameters as check_params() normalized them (whole numbers as
# integers), with Python names.
.core_params <- function(args, context = "RunCMOT") {
  map <- .cmot_arg_map()
  # values without a Python counterpart go as an empty list, which the core
  # refuses with its description of the parameter; the R value is shown
  shown <- character()
  for (a in names(args)) {
    x <- args[[a]]
    ok <- is.null(x) || (is.atomic(x) && !is.factor(x) && is.null(dim(x)) && length(x) == 1L && !is.na(x) &&
                           (is.numeric(x) || is.character(x) || is.logical(x)))
    if (!ok) {
      shown[[a]] <- paste(deparse(x, nlines = 1L), collapse = " ")
      args[a] <- list(list())
    }
  }
  params <- stats::setNames(args, map[names(args)])
  params$verbose <- FALSE   # R prints its own messages; the core never logs
  res <- .py_try(reticulate::py_to_r(.bridge()$check_params(reticulate::r_to_py(params))), context = context)
  if (!is.null(res$error)) {
    if (!res$error[[1]] %in% c("ValueError", "TypeError")) .stop_python(paste0(res$error[[1]], ": ", res$error[[2]]), context)
    .stop_param(res$error[[2]], shown)
  }
  if (length(shown)) {   # not reached unless the core accepts an empty list
    a <- names(shown)[1]
    stop(a, ": expected one value, found ", shown[[a]], ".", call. = FALSE)
  }
  res$params
}

# The core's parameter names in a message (error or warning) as R names.
.r_names <- function(msg) {
  map <- .cmot_arg_map()
  for (py in map[order(-nchar(map))]) {
    msg <- gsub(paste0("(?<![A-Za-z0-9_.])", py, "(?![A-Za-z0-9_])"), names(map)[map == py], msg, perl = TRUE)
  }
  msg
}

# Python -> R wording of a message from the core about its parameters:
# parameter names, None/True/False/np.inf, whole numbers and quoted strings as R
# writes them.
.r_wording <- function(msg) {
  msg <- .r_names(msg)
  msg <- gsub("\\bNone\\b", "NULL", msg, perl = TRUE)
  msg <- gsub("\\bTrue\\b", "TRUE", msg, perl = TRUE)
  msg <- gsub("\\bFalse\\b", "FALSE", msg, perl = TRUE)
  msg <- gsub("np.inf", "Inf", msg, fixed = TRUE)
  msg <- gsub("found (-?)inf\\b", "found \\1Inf", msg, perl = TRUE)
  msg <- gsub("found nan\\b", "found NaN", msg, perl = TRUE)
  msg <- gsub("found (-?[0-9]+)\\.0([^0-9]|$)", "found \\1\\2", msg)   # R writes 3, Python 3.0
  gsub("found '([^']*)'", "found \"\\1\"", msg)
}

# An error of the core's parameter check, as an R error naming the R argument.
# `shown`: R values (deparsed, by R name) that went to the core as an empty list.
.stop_param <- function(msg, shown = character()) {
  msg <- .r_wording(msg)
  for (a in names(shown)) {
    if (startsWith(msg, paste0(a, ":"))) msg <- sub("found [].", paste0("found ", shown[[a]], "."), msg, fixed = TRUE)
  }
  stop(structure(class = c("cmot_param_error", "cmot_python_error", "cmot_error", "error", "condition"),
                 list(message = msg, call = NULL)))
}
