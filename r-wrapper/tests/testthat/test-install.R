# install_cmot(): which NumPy to pin, where the environment goes, what pip installs.

test_that("NumPy < 2 is pinned only for reticulate versions that cannot convert NumPy 2 arrays (< 1.38.0)", {
  for (v in c("1.28", "1.28.0", "1.35.0", "1.36.1", "1.37.0")) expect_identical(cmot:::.numpy_pin(v), "numpy<2", info = v)
  for (v in c("1.38.0", "1.39.0", "1.41", "1.41.0.1", "2.0.0")) expect_null(cmot:::.numpy_pin(v), info = v)
  expect_identical(cmot:::.numpy_pin(package_version("1.28")), "numpy<2")
  expect_null(cmot:::.numpy_pin(package_version("1.41.0")))
})

test_that("the NumPy decision holds for the reticulate and NumPy in use: NumPy 2 arrays convert where no pin is set", {
  skip_if_no_cmot()
  np <- reticulate::import("numpy", convert = FALSE)
  np.version <- reticulate::py_to_r(np$`__version__`)
  pin <- cmot:::.numpy_pin(utils::packageVersion("reticulate"))
  if (utils::compareVersion(np.version, "2.0") >= 0) {
    # this reticulate works with NumPy 2: no pin, and arrays convert both ways
    expect_null(pin)
    m <- matrix(c(1.5, 2, 3, 4, 5, 6.25), 2)
    back <- reticulate::py_to_r(reticulate::r_to_py(m))
    expect_identical(back, m)
    made.in.python <- reticulate::py_to_r(np$linspace(0, 1, 3L))
    expect_false(inherits(made.in.python, "python.builtin.object"))   # converted, not left as a Python object
    expect_identical(as.vector(made.in.python), c(0, 0.5, 1))
  } else {
    expect_true(is.null(pin) || identical(pin, "numpy<2"))
  }
})

test_that("a bare envname goes to reticulate's virtualenv root (RETICULATE_VIRTUALENV_ROOT, WORKON_HOME), a path as it is", {
  old <- Sys.getenv(c("RETICULATE_VIRTUALENV_ROOT", "WORKON_HOME"), unset = NA)
  on.exit(for (n in names(old)) if (is.na(old[[n]])) Sys.unsetenv(n) else do.call(Sys.setenv, as.list(old[n])))
  Sys.setenv(RETICULATE_VIRTUALENV_ROOT = "/opt/venvs", WORKON_HOME = "/srv/workon")
  expect_identical(cmot:::.env_path("r-cmot"), "/opt/venvs/r-cmot")
  Sys.unsetenv("RETICULATE_VIRTUALENV_ROOT")
  expect_identical(cmot:::.env_path("r-cmot"), "/srv/workon/r-cmot")
  expect_identical(cmot:::.env_path("r-cmot"), file.path(reticulate::virtualenv_root(), "r-cmot"))
  Sys.unsetenv("WORKON_HOME")
  expect_identical(cmot:::.env_path("r-cmot"), file.path(path.expand("~/.virtualenvs"), "r-cmot"))
  expect_identical(cmot:::.env_path("/scratch/me/env"), "/scratch/me/env")
  expect_identical(cmot:::.env_path("~/envs/cmot"), path.expand("~/envs/cmot"))
})

test_that("install_cmot installs the local project, never a bare name from PyPI", {
  for (name in c("cmot", "cmot-ot", "cmot==0.4.0")) {
    expect_error(cmot::install_cmot(python.path = name, restart.message = FALSE),
                 "which pip would look up by name on PyPI .*'cmot' is an unrelated package", info = name)
  }
  expect_identical(cmot:::.install_target("git+https://example.org/cmot.git"), "git+https://example.org/cmot.git")
  whl <- tempfile(fileext = ".whl")
  file.create(whl)
  on.exit(unlink(whl))
  expect_identical(cmot:::.install_target(whl), normalizePath(whl))
  expect_error(cmot:::.install_target(NA_character_), "python.path: expected the path")
})
