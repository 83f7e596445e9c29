test_that("citation('cmot') cites the CMOT paper (Genome Biology 2023) and this package", {
  # the installed file, read as citation("cmot") reads it (also under pkgload, which lacks meta$Version)
  file <- system.file("CITATION", package = "cmot")
  expect_true(nzchar(file))
  cit <- utils::readCitationFile(file, meta = list(Version = as.character(utils::packageVersion("cmot")),
                                                   Encoding = "UTF-8"))
  expect_length(cit, 2L)
  paper <- unclass(cit[1])[[1]]
  expect_identical(attr(paper, "bibtype"), "Article")
  expect_identical(paper$doi, "10.1186/s13059-023-02989-8")
  expect_identical(c(paper$journal, paper$volume, paper$pages, paper$year), c("Genome Biology", "24", "163", "2023"))
  expect_identical(format(paper$author, include = "family"), c("Alatkar", "Wang"))
  pkg <- unclass(cit[2])[[1]]
  expect_match(pkg$note, paste("R package version", utils::packageVersion("cmot")), fixed = TRUE)
})

test_that("the vignettes' sources are in the package's vignettes folder, with their shared helper", {
  vig <- testthat::test_path("..", "..", "vignettes")
  skip_if(!dir.exists(vig), "not run from the source tree")
  expect_setequal(list.files(vig, pattern = "\\.Rmd$"), c("cmot_quickstart.Rmd", "pbmc_protein.Rmd", "rna_from_atac.Rmd"))
  expect_true(file.exists(file.path(vig, "seurat_layers.R")))
  # every vignette declares the knitr engine that DESCRIPTION's VignetteBuilder provides
  for (f in list.files(vig, pattern = "\\.Rmd$", full.names = TRUE)) {
    expect_true(any(grepl("%\\VignetteEngine{knitr::rmarkdown}", readLines(f), fixed = TRUE)), info = f)
  }
  desc <- read.dcf(testthat::test_path("..", "..", "DESCRIPTION"))
  expect_identical(unname(desc[, "VignetteBuilder"]), "knitr")
})
