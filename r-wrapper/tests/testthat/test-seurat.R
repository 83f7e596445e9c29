test_that("Seurat: new assay with every refdata feature for every query cell, query otherwise unchanged", {
  skip_if_no_cmot()
  sim <- sim_data()
  so <- seurat_pair(sim)
  query0 <- so$query
  q <- do.call(run_quiet, c(list(so$query, reference = so$reference), seurat_args(labels = "celltype")))
  expect_s4_class(q, "Seurat")
  expect_true("CMOT" %in% SeuratObject::Assays(q))
  expect_identical(SeuratObject::DefaultAssay(q), "ATAC")
  a <- q[["CMOT"]]
  expect_identical(rownames(a), rownames(so$reference[["RNA"]]))
  expect_identical(colnames(a), colnames(query0))
  # untouched: the ATAC assay and the existing meta.data
  expect_identical(layer_data(q, "ATAC", "counts"), layer_data(query0, "ATAC", "counts"))
  expect_identical(q[[]][, colnames(query0[[]])], query0[[]])
  expect_setequal(colnames(q[[]]), c(colnames(query0[[]]), "cmot.poorly.mapped", "cmot.mapping.score"))
  expect_type(q$cmot.poorly.mapped, "logical")
  expect_type(q$cmot.mapping.score, "double")
  # same values as the matrix method and as the core itself
  x <- do.call(run_quiet, c(list(sim$query.y, reference = sim$reference.y, refdata = sim$reference.x,
                                 labels = unname(sim$reference.labels)), fast))
  expect_equal(plain(layer_data(q, "CMOT", "data")), plain(x), tolerance = 1e-10)
  direct <- python_direct(sim$reference.x, sim$reference.y, sim$query.y, labels = unname(sim$reference.labels))
  expect_equal(plain(layer_data(q, "CMOT", "data")), plain(direct), tolerance = 1e-10)
  # logs: command log and Tool
  expect_true("RunCMOT" %in% names(q@commands))
  cmd <- q@commands[["RunCMOT"]]
  expect_identical(cmd$refdata.assay, "RNA")
  expect_identical(cmd$k, 8)
  expect_identical(cmd$k.used, 8L)
  expect_identical(cmd$labels, "celltype")
  expect_identical(cmd$n.pcs, "auto")
  expect_true(cmd$n.pcs.used %in% c(5L, 10L, 20L, 30L, 50L))
  expect_identical(SeuratObject::Tool(q, "RunCMOT")$n.pcs.used, cmd$n.pcs.used)
  expect_identical(cmd$reg.m, "auto")
  expect_identical(cmd$shrinkage, "auto")
  expect_identical(cmd$shrinkage.used, 0)
  expect_identical(SeuratObject::Tool(q, "RunCMOT")$shrinkage.used, 0)
  expect_identical(cmd$step.c.used, attr(direct, "core")$step.c)
  expect_identical(SeuratObject::Tool(q, "RunCMOT")$step.c.used, cmd$step.c.used)
  tool <- SeuratObject::Tool(q, "RunCMOT")
  expect_identical(tool$params$n_neighbors, 8L)
  expect_identical(tool$k.used, 8L)
  expect_null(tool$k.scores)
  expect_identical(tool$new.assay.name, "CMOT")
  expect_gt(tool$reg.e.used, 0)
  expect_identical(cmd$reg.e.used, tool$reg.e.used)
  expect_equal(tool$reg.e.used, attr(direct, "core")$reg.e, tolerance = 1e-12)
})

test_that("Seurat: query cell order is kept and the reference's order does not matter", {
  skip_if_no_cmot()
  sim <- sim_data()
  so <- seurat_pair(sim)
  q1 <- do.call(run_quiet, c(list(so$query, reference = so$reference), seurat_args()))
  perm <- rev(colnames(so$query))
  query.p <- seurat_obj(sim$query.y[, perm], "ATAC")
  expect_identical(colnames(query.p), perm)
  qp <- do.call(run_quiet, c(list(query.p, reference = so$reference), seurat_args()))
  expect_identical(colnames(qp[["CMOT"]]), perm)
  expect_equal(plain(layer_data(qp, "CMOT", "data")),
               plain(layer_data(q1, "CMOT", "data")[, perm]), tolerance = 1e-8)
  expect_identical(unname(qp$cmot.poorly.mapped), unname(q1$cmot.poorly.mapped[perm]))
})

test_that("Seurat: '_' and '|' in feature names are rewritten with a map, collisions made unique with a warning", {
  skip_if_no_cmot()
  sim <- sim_data()
  x <- sim$reference.x
  orig <- rownames(x)
  orig[1:3] <- c("gene_1", "gene|2", "HLA_A")
  rownames(x) <- orig
  so <- seurat_pair(sim)
  # a reference assay built from a matrix in SCE-style names keeps '_' in a slot Seurat did not sanitize
  ref <- so$reference
  # Seurat (>= 3) rewrites such names itself, but objects converted from elsewhere can hold them
  a <- suppressWarnings(SeuratObject::CreateAssayObject(data = x))
  methods::slot(a, "data") <- x
  rownames(methods::slot(a, "meta.features")) <- orig
  ref[["RNA"]] <- NULL   # replace the Assay5 (SeuratObject 5) by this v3 Assay
  ref <- cmot:::.add_assay(ref, "RNA", a)
  expect_identical(rownames(ref[["RNA"]]), orig)
  msgs <- capture_messages(q <- suppressWarnings(do.call(cmot::RunCMOT, c(list(so$query, reference = ref), seurat_args()))))
  expect_match(msgs, "3 feature names had '_' or '|'", fixed = TRUE, all = FALSE)
  a <- q[["CMOT"]]
  expect_identical(rownames(a)[1:3], c("gene-1", "gene-2", "HLA-A"))
  expect_identical(a[["cmot.original.name"]][, 1], orig)
  fmap <- SeuratObject::Misc(a, "cmot.feature.map")
  expect_identical(fmap$original, orig)
  expect_identical(fmap$feature, rownames(a))
  expect_false(anyDuplicated(rownames(a)) > 0)

  # collision: "gene_4" would become "gene4"'s neighbour "gene-4"
  orig2 <- rownames(sim$reference.x)
  orig2[4:5] <- c("gene_4", "gene-4")
  expect_warning(fm <- cmot:::.seurat_feature_names(orig2), "collide")
  expect_false(anyDuplicated(fm$feature) > 0)
  expect_identical(fm$feature[5], "gene-4")        # the name that needed no rewriting keeps it
  expect_identical(fm$feature[4], "gene-4.1")
  expect_identical(fm$original, orig2)
})

test_that("Seurat: existing assay not overwritten unless overwrite = TRUE", {
  skip_if_no_cmot()
  sim <- sim_data()
  so <- seurat_pair(sim)
  q <- do.call(run_quiet, c(list(so$query, reference = so$reference), seurat_args()))
  expect_error(do.call(cmot::RunCMOT, c(list(q, reference = so$reference), seurat_args())),
               "already has an assay 'CMOT'.*overwrite = TRUE")
  q2 <- do.call(run_quiet, c(list(q, reference = so$reference), seurat_args(overwrite = TRUE, k = 5)))
  expect_identical(SeuratObject::Tool(q2, "RunCMOT")$params$n_neighbors, 5L)
  # another name works and gets its own meta.data columns
  q3 <- do.call(run_quiet, c(list(q, reference = so$reference), seurat_args(new.assay.name = "RNA.cmot", k = 6)))
  expect_true(all(c("CMOT", "RNA.cmot") %in% SeuratObject::Assays(q3)))
  # each assay keeps the record of its own run; Tool() has the last one
  first <- SeuratObject::Misc(q3[["CMOT"]], "cmot.run")
  second <- SeuratObject::Misc(q3[["RNA.cmot"]], "cmot.run")
  expect_identical(c(first$k.used, second$k.used), c(8L, 6L))
  expect_identical(c(first$new.assay.name, second$new.assay.name), c("CMOT", "RNA.cmot"))
  expect_identical(SeuratObject::Tool(q3, "RunCMOT")[names(second)], second)
  expect_true("rna.cmot.poorly.mapped" %in% colnames(q3[[]]))
  expect_false(identical(SeuratObject::Key(q3[["CMOT"]]), SeuratObject::Key(q3[["RNA.cmot"]])))
  # the default/query assay can never be replaced
  expect_error(do.call(cmot::RunCMOT, c(list(q, reference = so$reference),
                                        seurat_args(new.assay.name = "ATAC", overwrite = TRUE))),
               "cannot be replaced")
})

test_that("Seurat: partly paired reference as two objects, with pairs or by names", {
  skip_if_no_cmot()
  sim <- sim_data()
  ref.y <- seurat_obj(sim$reference.y[, 31:90], "ATAC")
  ref.y$celltype <- unname(sim$reference.labels[31:90])
  ref.x <- seurat_obj(sim$reference.x[, 1:60], "RNA")
  query <- seurat_obj(sim$query.y, "ATAC")
  expect_error(do.call(cmot::RunCMOT, c(list(query, reference = ref.y, reference.x = ref.x), seurat_args())),
               "Mismatched cells")
  msgs <- capture_messages(
    q <- do.call(run_quiet, c(list(query, reference = ref.y, reference.x = ref.x, pairs = "names"),
                              seurat_args(labels = "celltype", verbose = TRUE)))
  )
  expect_match(msgs, "Partly paired reference: 30 known pairs between 60 .* and 60", all = FALSE)
  expect_identical(rownames(q[["CMOT"]]), rownames(ref.x))
  expect_identical(colnames(q[["CMOT"]]), colnames(query))
  expect_identical(SeuratObject::Tool(q, "RunCMOT")$n.pairs, 30L)
  pairs <- data.frame(rna = colnames(ref.x)[31:60], atac = colnames(ref.y)[1:30])
  q2 <- do.call(run_quiet, c(list(query, reference = ref.y, reference.x = ref.x, pairs = pairs),
                             seurat_args(labels = "celltype")))
  expect_equal(plain(layer_data(q2, "CMOT", "data")),
               plain(layer_data(q, "CMOT", "data")), tolerance = 1e-10)
  direct <- python_direct(sim$reference.x[, 1:60], sim$reference.y[, 31:90], sim$query.y,
                          correspondence = cbind(30:59, 0:29), labels = unname(sim$reference.labels[31:90]))
  expect_equal(plain(layer_data(q, "CMOT", "data")), plain(direct), tolerance = 1e-10)
})

test_that("Seurat: shared features are the intersection of reference and query assays", {
  skip_if_no_cmot()
  sim <- sim_data()
  so <- seurat_pair(sim)
  qy <- sim$query.y[c(5:25), ]
  query <- seurat_obj(qy, "ATAC")
  msgs <- capture_messages(
    q <- do.call(run_quiet, c(list(query, reference = so$reference), seurat_args(verbose = TRUE)))
  )
  expect_match(msgs, "Found 21 shared features", all = FALSE)
  expect_match(msgs, "Storing 12 inferred features in assay 'CMOT'", all = FALSE)
  expect_identical(SeuratObject::Tool(q, "RunCMOT")$n.shared.features, 21L)
  x <- do.call(run_quiet, c(list(qy, reference = sim$reference.y[5:25, ], refdata = sim$reference.x), fast))
  expect_equal(plain(layer_data(q, "CMOT", "data")), plain(x), tolerance = 1e-10)
})
