# Reuse of what the user computed: reference.reduction + dims (pcaproject), query.reduction, features
# (default: the reference assay's VariableFeatures()).

# seurat_pair() with a PCA of the reference's ATAC (Seurat's ScaleData + RunPCA on every feature).
pair_with_pca <- function(npcs = 10) {
  skip_if_not_installed("Seurat")
  sim <- sim_data()
  so <- seurat_pair(sim)
  ref <- so$reference
  feats <- rownames(sim$reference.y)
  ref <- suppressWarnings(suppressMessages(Seurat::ScaleData(ref, assay = "ATAC", features = feats, verbose = FALSE)))
  ref <- suppressWarnings(suppressMessages(Seurat::RunPCA(ref, assay = "ATAC", features = feats, npcs = npcs,
                                                          verbose = FALSE, seed.use = 1)))
  list(sim = sim, reference = ref, query = so$query)
}

# The query projected onto the reference's loadings as pcaproject does, computed here from its definition
# (Seurat's RescaleQuery: (x - mean) / sd of the reference's data layer, clipped at 10; times the loadings).
project_by_hand <- function(reference, query, dims) {
  load <- SeuratObject::Loadings(reference[["pca"]])[, dims, drop = FALSE]
  ref <- as.matrix(layer_data(reference, "ATAC"))[rownames(load), ]
  q <- as.matrix(layer_data(query, "ATAC"))[rownames(load), ]
  mu <- rowMeans(ref)
  s <- apply(ref, 1, stats::sd)
  t(load) %*% pmin((q - mu) / s, 10)
}

test_that("reference.reduction + dims: the reference's embeddings and the query projected as pcaproject, as the core on them", {
  skip_if_no_cmot()
  p <- pair_with_pca()
  dims <- 1:8
  q <- run_quiet(p$query, reference = p$reference, reference.assay = "ATAC", refdata.assay = "RNA",
                 reference.reduction = "pca", dims = dims, k = 8, seed = 0, verbose = FALSE)
  proj <- project_by_hand(p$reference, p$query, dims)
  if (utils::packageVersion("Seurat") < "5.0.0") {
    # Seurat's own projection (Seurat 4's ProjectCellEmbeddings) agrees with the definition
    seurat.proj <- Seurat:::ProjectCellEmbeddings(reference = p$reference, query = p$query, reduction = "pca",
                                                  reference.assay = "ATAC", query.assay = "ATAC", dims = dims,
                                                  verbose = FALSE)
    expect_equal(unname(t(seurat.proj)), unname(proj), tolerance = 1e-8)
  }
  emb <- t(SeuratObject::Embeddings(p$reference[["pca"]])[, dims])
  cm <- reticulate::import("cmot")
  direct <- python_direct(p$sim$reference.x, emb, proj, k = 8L, representation = "precomputed")
  expect_equal(plain(layer_data(q, "CMOT")), plain(direct), tolerance = 1e-8)
  tool <- SeuratObject::Tool(q, "RunCMOT")
  expect_identical(tool$params$representation, "precomputed")
  expect_identical(tool$dims, dims)
  expect_identical(tool$reference.reduction, "pca")
  expect_identical(tool$n.shared.features, length(dims))
  # other dims give another result (the embeddings are really used)
  q2 <- run_quiet(p$query, reference = p$reference, reference.assay = "ATAC", refdata.assay = "RNA",
                  reference.reduction = "pca", dims = 1:3, k = 8, seed = 0, verbose = FALSE)
  expect_false(isTRUE(all.equal(plain(layer_data(q2, "CMOT")), plain(layer_data(q, "CMOT")))))
})

test_that("query.reduction: the query's own embeddings (e.g. a joint Harmony run) are used as given", {
  skip_if_no_cmot()
  p <- pair_with_pca()
  dims <- 2:6
  proj <- project_by_hand(p$reference, p$query, 1:10)
  query <- p$query
  query[["harmony"]] <- SeuratObject::CreateDimReducObject(embeddings = t(proj), key = "harmony_", assay = "ATAC")
  q <- run_quiet(query, reference = p$reference, reference.assay = "ATAC", refdata.assay = "RNA",
                 reference.reduction = "pca", dims = dims, query.reduction = "harmony", k = 8, seed = 0,
                 verbose = FALSE)
  q.proj <- run_quiet(p$query, reference = p$reference, reference.assay = "ATAC", refdata.assay = "RNA",
                      reference.reduction = "pca", dims = dims, k = 8, seed = 0, verbose = FALSE)
  expect_equal(plain(layer_data(q, "CMOT")), plain(layer_data(q.proj, "CMOT")), tolerance = 1e-8)
  expect_identical(SeuratObject::Tool(q, "RunCMOT")$query.reduction, "harmony")
  # errors
  run <- function(...) cmot::RunCMOT(query, reference = p$reference, reference.assay = "ATAC",
                                     refdata.assay = "RNA", k = 8, verbose = FALSE, ...)
  expect_error(run(reference.reduction = "umap"), "reference.reduction: reduction 'umap' not found in reference")
  expect_error(run(reference.reduction = "pca", dims = c(1, 11)), "dims: expected distinct dimensions among 1..10")
  expect_error(run(reference.reduction = "pca", query.reduction = "lsi"), "query.reduction: reduction 'lsi' not found")
  expect_error(run(dims = 1:5), "dims: only used with reference.reduction")
  expect_error(run(reference.reduction = "pca", features = "feature1"), "features: not used with reference.reduction")
  expect_error(run(reference.reduction = "pca", representation = "pca"), "representation: with reference.reduction")
})

test_that("features: the reference's VariableFeatures() by default, an explicit vector as given", {
  skip_if_no_cmot()
  sim <- sim_data()
  so <- seurat_pair(sim)
  vf <- rownames(sim$reference.y)[c(3, 1, 7:18)]
  ref <- so$reference
  SeuratObject::VariableFeatures(ref, assay = "ATAC") <- vf
  msgs <- capture_messages(q <- run_quiet(so$query, reference = ref, reference.assay = "ATAC", refdata.assay = "RNA",
                                          k = 8, n.features = 20, seed = 0, verbose = TRUE))
  expect_match(msgs, "Using the reference assay's 14 VariableFeatures()", fixed = TRUE, all = FALSE)
  x <- run_quiet(sim$query.y[vf, ], reference = sim$reference.y[vf, ], refdata = sim$reference.x, k = 8,
                 n.features = 20, seed = 0, verbose = FALSE)
  expect_equal(plain(layer_data(q, "CMOT")), plain(x), tolerance = 1e-10)
  expect_identical(SeuratObject::Tool(q, "RunCMOT")$features, vf)
  # an explicit vector wins over VariableFeatures()
  f <- rownames(sim$reference.y)[5:20]
  q2 <- run_quiet(so$query, reference = ref, reference.assay = "ATAC", refdata.assay = "RNA", features = f,
                  k = 8, n.features = 20, seed = 0, verbose = FALSE)
  x2 <- run_quiet(sim$query.y[f, ], reference = sim$reference.y[f, ], refdata = sim$reference.x, k = 8,
                  n.features = 20, seed = 0, verbose = FALSE)
  expect_equal(plain(layer_data(q2, "CMOT")), plain(x2), tolerance = 1e-10)
  # without VariableFeatures(): every shared feature (cmot's own selection), as before
  q3 <- run_quiet(so$query, reference = so$reference, reference.assay = "ATAC", refdata.assay = "RNA",
                  k = 8, n.features = 20, seed = 0, verbose = FALSE)
  expect_null(SeuratObject::Tool(q3, "RunCMOT")$features)
  expect_error(cmot::RunCMOT(so$query, reference = ref, reference.assay = "ATAC", refdata.assay = "RNA",
                             features = c(f, "nope1", "nope2"), verbose = FALSE),
               "features: 2 of the 18 features are not in the reference assay, e.g. 'nope1', 'nope2'")
  expect_error(cmot::RunCMOT(so$query, reference = ref, reference.assay = "ATAC", refdata.assay = "RNA",
                             features = c(f, f[1]), verbose = FALSE), "features: expected feature names .*unique")
})
