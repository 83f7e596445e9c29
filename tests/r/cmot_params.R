# Child process of tests/r/test_roundtrip.py: prints the CMOT parameters of the
# R package as it declares them (the formals of RunCMOT.default, through the
# R <-> Python name map cmot:::.cmot_arg_map()), one per line, tab-separated:
#   R name, Python name, R type of the default (NULL, character, logical,
#   integer or double), the default.
# Run in a child Rscript so that the cmot R package is never loaded into the
# R that rpy2 embeds in the pytest process (see conftest.py).
suppressPackageStartupMessages(library(cmot))
map <- cmot:::.cmot_arg_map()
defaults <- formals(cmot:::RunCMOT.default)[names(map)]
for (r in names(map)) {
  v <- eval(defaults[[r]], baseenv())
  type <- if (is.null(v)) "NULL" else typeof(v)
  shown <- if (is.null(v)) "" else if (is.double(v)) sprintf("%.17g", v) else as.character(v)
  cat(r, map[[r]], type, shown, sep = "\t")
  cat("\n")
}
