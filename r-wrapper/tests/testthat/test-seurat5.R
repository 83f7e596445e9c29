# Seurat 5: Assay5 objects, layers, assays split into layers per sample, the
# `layer` argument (and the deprecated `slot`).

# A Seurat 5 user's objects: counts -> NormalizeData(), a CITE-seq-like
# reference (shared ATAC + RNA to infer), an ATAC-only query, both in several
# samples.
v5_objects <- function(sim) {
  ref <- SeuratObject::CreateSeuratObject(counts = SeuratObject::as.sparse(sim$reference.y), assay = "ATAC")
  ref[["RNA"]] <- SeuratObject::CreateAssay5Object(counts = SeuratObject::as.sparse(sim$reference.x))
  ref <- Seurat::NormalizeData(ref, assay = "ATAC", verbose = FALSE)
  ref <- Seurat::NormalizeData(ref, assay = "RNA", verbose = FALSE)
  ref$celltype <- unname(sim$reference.labels)
  ref$donor <- rep(c("d1", "d2", "d3"), length.out = ncol(ref))
  query <- SeuratObject::CreateSeuratObject(counts = SeuratObject::as.sparse(sim$query.y), assay = "ATAC")
  query <- Seurat::NormalizeData(query, verbose = FALSE)
  query$batch <- rep(c("b1", "b2"), length.out = ncol(query))
  list(reference = ref, query = query)
}

test_that("Seurat 5 user's script: query and reference split into layers per sample, one RunCMOT() call", {
  skip_if_no_cmot()
  skip_if(!seurat_v5(), "split layers need SeuratObject >= 5")
  skip_if_not_installed("Seurat")
  sim <- sim_data()
  so <- v5_objects(sim)
  # the independent answer: the same normalized values as plain matrices
  expected <- suppressWarnings(cmot::RunCMOT(
    as.matrix(SeuratObject::LayerData(so$query, assay = "ATAC", layer = "data")),
    reference = as.matrix(SeuratObject::LayerData(so$reference, assay = "ATAC", layer = "data")),
    refdata = as.matrix(SeuratObject::LayerData(so$reference, assay = "RNA", layer = "data")),
    labels = so$reference$celltype, k = 8, n.features = 20, seed = 0, verbose = FALSE, outlier.threshold = Inf))

  # the v5 integration workflow: split by sample (query cells alternate between samples,
  # so the layers' cell order is not the query's)
  query <- so$query
  reference <- so$reference
  query[["ATAC"]] <- split(query[["ATAC"]], f = query$batch)
  reference[["ATAC"]] <- split(reference[["ATAC"]], f = reference$donor)
  reference[["RNA"]] <- split(reference[["RNA"]], f = reference$donor)
  expect_setequal(SeuratObject::Layers(query[["ATAC"]]), c("counts.b1", "counts.b2", "data.b1", "data.b2"))
  expect_false(identical(colnames(SeuratObject::LayerData(query, assay = "ATAC", layer = "data.b1")),
                         colnames(query)[seq_len(ncol(query) / 2)]))
  query0 <- query
  expect_warning(
    q <- cmot::RunCMOT(query, reference = reference, reference.assay = "ATAC", refdata.assay = "RNA",
                       query.assay = "ATAC", layer = "data", labels = "celltype", k = 8, n.features = 20,
                       seed = 0, verbose = FALSE, outlier.threshold = Inf),
    NA)
  a <- q[["CMOT"]]
  expect_s4_class(a, "Assay5")
  expect_identical(SeuratObject::Layers(a), "data")
  expect_identical(colnames(a), colnames(query))         # every cell, in the query's order
  expect_identical(rownames(a), rownames(reference[["RNA"]]))
  out <- SeuratObject::LayerData(q, assay = "CMOT", layer = "data")
  expect_identical(colnames(out), colnames(query))
  expect_equal(unname(as.matrix(out)), unname(plain(expected)), tolerance = 1e-10)
  expect_identical(unname(q$cmot.poorly.mapped), unname(attr(expected, "cmot")$poorly.mapped))
  # the query's split assay and the reference are left as they were
  expect_identical(SeuratObject::Layers(q[["ATAC"]]), SeuratObject::Layers(query0[["ATAC"]]))
  expect_identical(SeuratObject::LayerData(q, assay = "ATAC", layer = "data.b2"),
                   SeuratObject::LayerData(query0, assay = "ATAC", layer = "data.b2"))
  expect_identical(SeuratObject::DefaultAssay(q), "ATAC")
  expect_identical(SeuratObject::Tool(q, "RunCMOT")$layer, "data")
  # the new assay is usable as any Seurat 5 assay, without warnings
  expect_warning(print(q), NA)
  expect_warning(SeuratObject::GetAssayData(q, assay = "CMOT", layer = "data"), NA)
})

test_that("Seurat 5: a split query gives the same values as the joined one; counts layer read per sample", {
  skip_if_no_cmot()
  skip_if(!seurat_v5(), "split layers need SeuratObject >= 5")
  skip_if_not_installed("Seurat")
  sim <- sim_data()
  so <- v5_objects(sim)
  args <- list(reference = so$reference, reference.assay = "ATAC", refdata.assay = "RNA", k = 8,
               n.features = 20, seed = 0, verbose = FALSE, outlier.threshold = Inf)
  split.q <- so$query
  split.q[["ATAC"]] <- split(split.q[["ATAC"]], f = split.q$batch)
  for (layer in c("data", "counts")) {
    joined <- do.call(cmot::RunCMOT, c(list(so$query, layer = layer), args))
    parts <- do.call(cmot::RunCMOT, c(list(split.q, layer = layer), args))
    expect_equal(as.matrix(SeuratObject::LayerData(parts, assay = "CMOT", layer = "data")),
                 as.matrix(SeuratObject::LayerData(joined, assay = "CMOT", layer = "data")), tolerance = 1e-10)
  }
  # a layer absent from the assay (split or not) is an error naming the layers present
  expect_error(do.call(cmot::RunCMOT, c(list(split.q, layer = "scale.data"), args)),
               "The 'scale.data' layer of assay 'ATAC' in the query is missing \\(layers: counts.b1, counts.b2, data.b1, data.b2\\)")
})

test_that("Seurat 5: an assay made from counts has no 'data' layer: an error that suggests NormalizeData()", {
  skip_if_no_cmot()
  skip_if(!seurat_v5(), "Assay5 objects need SeuratObject >= 5")
  sim <- sim_data()
  so <- seurat_pair(sim)
  raw <- SeuratObject::CreateSeuratObject(counts = SeuratObject::as.sparse(sim$query.y), assay = "ATAC")
  expect_identical(SeuratObject::Layers(raw[["ATAC"]]), "counts")
  expect_error(cmot::RunCMOT(raw, reference = so$reference, reference.assay = "ATAC", refdata.assay = "RNA",
                             verbose = FALSE),
               "The 'data' layer of assay 'ATAC' in the query is missing \\(layers: counts\\).*run NormalizeData\\(\\)")
})

test_that("Seurat: the new assay has the query assay's version (Assay5 for Assay5, Assay for Assay)", {
  skip_if_no_cmot()
  sim <- sim_data()
  so <- seurat_pair(sim)
  q <- do.call(run_quiet, c(list(so$query, reference = so$reference), seurat_args()))
  expect_identical(class(q[["CMOT"]])[1], class(so$query[["ATAC"]])[1])
  expect_identical(class(q[["CMOT"]])[1], if (seurat_v5()) "Assay5" else "Assay")
  if (seurat_v5()) {
    # a v3 Assay query on SeuratObject 5 gets a v3 Assay, with the same values
    old <- options(Seurat.object.assay.version = "v3")
    on.exit(options(old))
    q3 <- SeuratObject::CreateSeuratObject(counts = SeuratObject::as.sparse(sim$query.y), assay = "ATAC")
    expect_s4_class(q3[["ATAC"]], "Assay")
    expect_false(inherits(q3[["ATAC"]], "Assay5"))
    expect_warning(r3 <- do.call(cmot::RunCMOT, c(list(q3, reference = so$reference),
                                                 seurat_args(outlier.threshold = Inf))), NA)
    expect_false(inherits(r3[["CMOT"]], "Assay5"))
    expect_equal(plain(layer_data(r3, "CMOT", "data")), plain(layer_data(q, "CMOT", "data")), tolerance = 1e-10)
  }
})

test_that("Seurat: slot = is deprecated but still works, with a warning naming layer", {
  skip_if_no_cmot()
  sim <- sim_data()
  so <- seurat_pair(sim)
  base <- do.call(cmot::RunCMOT, c(list(so$query, reference = so$reference), seurat_args(outlier.threshold = Inf)))
  expect_warning(old <- do.call(cmot::RunCMOT, c(list(so$query, reference = so$reference, slot = "data"),
                                                 seurat_args(outlier.threshold = Inf))),
                 "the argument 'slot' is deprecated; use 'layer'", class = "deprecatedWarning")
  expect_equal(plain(layer_data(old, "CMOT", "data")), plain(layer_data(base, "CMOT", "data")), tolerance = 1e-12)
  expect_identical(SeuratObject::Tool(old, "RunCMOT")$layer, "data")
})

test_that("Seurat 5: layers holding different features are combined as JoinLayers() combines them (absent = 0)", {
  skip_if(!seurat_v5(), "Assay5 objects need SeuratObject >= 5")
  m1 <- SeuratObject::as.sparse(matrix(1:6 + 0.5, 3, 2, dimnames = list(c("g1", "g2", "g3"), c("c1", "c2"))))
  m2 <- SeuratObject::as.sparse(matrix(1:6 + 0.25, 2, 3, dimnames = list(c("g3", "g4"), c("c3", "c4", "c5"))))
  a <- SeuratObject::CreateAssay5Object(counts = list(s1 = m1, s2 = m2))
  expect_identical(SeuratObject::Layers(a), c("counts.s1", "counts.s2"))
  got <- cmot:::.get_layers(a, "counts", "assay 'X'")
  joined <- SeuratObject::LayerData(SeuratObject::JoinLayers(a), layer = "counts")
  expect_identical(dim(got), c(4L, 5L))
  expect_equal(as.matrix(got)[rownames(joined), colnames(joined)], as.matrix(joined))
  expect_identical(unname(as.matrix(got)["g1", c("c3", "c4", "c5")]), c(0, 0, 0))
  expect_identical(unname(as.matrix(got)["g3", ]), c(3.5, 6.5, 1.25, 3.25, 5.25))
  expect_error(cmot:::.get_layers(a, "data", "assay 'X'"), "The 'data' layer of assay 'X' is missing \\(layers: counts.s1, counts.s2\\)")
})
