# simulate_multimodal(): the designs the vignettes run on when the real data are absent.

test_that("design = 'citeseq': shapes, names, marker patterns and a shallower query", {
  set.seed(3)
  sim <- simulate_multimodal(600, 300, design = "citeseq")
  expect_identical(dim(sim$reference.x), c(15L, 600L))
  expect_identical(dim(sim$query.x), c(15L, 300L))
  expect_identical(nrow(sim$reference.y), 1000L)
  expect_identical(rownames(sim$reference.y), rownames(sim$query.y))
  expect_identical(rownames(sim$reference.x), rownames(sim$query.x))
  expect_true(all(c("CD3", "CD4", "CD8a", "CD14", "CD19") %in% rownames(sim$reference.x)))
  expect_identical(colnames(sim$reference.x), colnames(sim$reference.y))
  expect_identical(names(sim$reference.labels), colnames(sim$reference.y))
  expect_identical(names(sim$query.labels), colnames(sim$query.y))
  expect_true(inherits(sim$reference.y, "dgCMatrix"))
  expect_setequal(unique(sim$reference.labels),
                  c("CD4 T", "CD8 T", "NK", "B", "CD14 Mono", "CD16 Mono", "DC"))
  # each protein's marker type has the highest mean count of it
  type_mean <- function(p) tapply(as.numeric(sim$reference.x[p, ]), sim$reference.labels, mean)
  expect_identical(names(which.max(type_mean("CD14"))), "CD14 Mono")
  expect_identical(names(which.max(type_mean("CD19"))), "B")
  expect_true(names(which.max(type_mean("CD8a"))) %in% c("CD8 T"))
  # the query is another "donor" sequenced less deeply
  expect_lt(mean(Matrix::colSums(sim$query.y)), mean(Matrix::colSums(sim$reference.y)))
})

test_that("design = 'atac': peaks as counts (mostly 0/1), RNA on a log scale, cell lines", {
  set.seed(4)
  sim <- simulate_multimodal(160, 40, design = "atac")
  expect_identical(dim(sim$reference.y), c(2000L, 160L))
  expect_identical(dim(sim$reference.x), c(500L, 160L))
  expect_identical(dim(sim$query.y), c(2000L, 40L))
  expect_true(all(grepl("^peak", rownames(sim$reference.y))) && all(grepl("^gene", rownames(sim$reference.x))))
  v <- sim$reference.y@x
  expect_true(all(v == round(v)) && mean(v <= 1) > 0.5)
  expect_setequal(unique(sim$reference.labels), c("lineA", "lineB", "lineC"))
})

test_that("simulate_multimodal: bad design and too many types are errors naming the argument", {
  expect_error(simulate_multimodal(design = "rna"), "^design: expected one of")
  expect_error(simulate_multimodal(n.types = 8, design = "citeseq"), "^n.types: expected at most 7")
  expect_error(simulate_multimodal(n.x.features = 16, design = "citeseq"), "^n.x.features: expected at most 15")
})
