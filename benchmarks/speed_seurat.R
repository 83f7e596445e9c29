# RunCMOT against Seurat's reference mapping, side by side (issue 10, point 4).
#
# For each task, each method runs in a fresh Rscript process
# (benchmarks/speed_seurat/run_one.R), so the fixed costs count: library(cmot),
# starting Python through reticulate, `import cmot`, the R <-> Python conversions.
#   Seurat: FindVariableFeatures (vst, 2000) + ScaleData + RunPCA (30) on the
#           reference, FindTransferAnchors (reference.reduction = "pca", i.e.
#           pcaproject, dims 1:30) + TransferData(refdata = list(ADT = "ADT")).
#   cmot:   library(cmot) + RunCMOT(query, reference, refdata = list(ADT = "ADT"),
#           verbose = TRUE), defaults otherwise.
# Both start from the same objects: RNA log-normalized (NormalizeData) in reference
# and query, the reference's proteins CLR-normalized (margin 2).  That common
# preparation (reading the counts, building the objects, NormalizeData) is done once
# here, timed and reported apart; the objects go to the workers as .rds files (their
# loading and library(Seurat) are timed and reported apart too, not in either
# method's time).  Each task is measured --reps times (fresh processes each time,
# the order of the two methods alternating) and the median reported.
#
#   CMOT_DATA=<data folder> RETICULATE_PYTHON=<python with cmot> \
#     Rscript benchmarks/speed_seurat.R [--quick] [--reps=2] [--timeout=900] [--out=FILE] [--keep=DIR]
#
# --quick (or CMOT_SPEED_QUICK=1): only the two small sets.  Without --out the table
# is printed only.  --keep=DIR keeps the objects, predictions and each run's output
# (the cmot runs' stderr holds the core's step messages) in DIR.
#
# Tasks (the cells of benchmarks/_data.py):
#   pbmc10k -> pbmc5k   all 6,855 pbmc10k cells -> all 3,994 pbmc5k cells
#   pbmc10k 80/20       the stratified split of _data.py (sklearn train_test_split,
#                       stratify = cell_type with "unlabelled" as a stratum, seed 0)
#   1,000 x 200         seeded subsample of that split's train / test cells
#   2,000 x 500         idem
suppressPackageStartupMessages({library(Seurat); library(Matrix)})

args <- commandArgs(TRUE)
opt <- function(name, default) {
  hit <- grep(paste0("^--", name, "="), args, value = TRUE)
  if (length(hit)) sub(paste0("^--", name, "="), "", hit[length(hit)]) else default
}
known <- c("^--quick$", "^--reps=", "^--timeout=", "^--out=", "^--keep=")
bad <- args[!vapply(args, function(x) any(vapply(known, grepl, TRUE, x = x)), TRUE)]
if (length(bad)) stop("unknown argument(s): ", paste(bad, collapse = " "),
                      "; expected --quick, --reps=N, --timeout=SECONDS, --out=FILE, --keep=DIR", call. = FALSE)
quick <- "--quick" %in% args || nzchar(Sys.getenv("CMOT_SPEED_QUICK"))
reps <- as.integer(opt("reps", "2"))
tmo <- as.integer(opt("timeout", "900"))
out <- opt("out", "")
if (is.na(reps) || reps < 1) stop("--reps: expected a positive integer", call. = FALSE)
if (is.na(tmo) || tmo < 1) stop("--timeout: expected a positive number of seconds", call. = FALSE)

here <- dirname(normalizePath(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))))
worker <- file.path(here, "speed_seurat", "run_one.R")
d <- Sys.getenv("CMOT_DATA", file.path(here, "..", "..", "shared", "data"))
if (!dir.exists(file.path(d, "pbmc10k"))) {
  stop("CMOT_DATA: expected the folder holding pbmc10k/ and pbmc5k/, found '", d, "'", call. = FALSE)
}
now <- function() as.numeric(proc.time()[["elapsed"]])

# ---------------------------------------------------------------- data (as seurat/standard_pbmc.R)
t.read <- now()
rd <- function(ds, mod) {
  m <- as(readMM(gzfile(file.path(d, ds, paste0(mod, ".mtx.gz")))), "CsparseMatrix")
  rownames(m) <- gsub("_", "-", readLines(file.path(d, ds, paste0(mod, "_features.txt"))))
  cells <- read.delim(file.path(d, ds, "cells.tsv"))
  colnames(m) <- cells$cell
  list(m = m, cells = cells)
}
r10 <- rd("pbmc10k", "rna"); a10 <- rd("pbmc10k", "adt")
prots <- rownames(a10$m)
types <- a10$cells$cell_type
if (!quick) {
  r5 <- rd("pbmc5k", "rna")$m; a5 <- rd("pbmc5k", "adt")$m
  stopifnot(identical(rownames(r5), rownames(r10$m)), all(prots %in% rownames(a5)))
  a5 <- a5[prots, ]
}
r10 <- r10$m; a10 <- a10$m
t.read <- now() - t.read

# The 80/20 split of benchmarks/_data.py (the same cells): sklearn through reticulate.
skl <- reticulate::import("sklearn.model_selection")
sp <- skl$train_test_split(seq_along(types) - 1L, test_size = 0.2, stratify = types, random_state = 0L)
train <- sort(as.integer(sp[[1]])) + 1L; test <- sort(as.integer(sp[[2]])) + 1L
subsample <- function(n.ref, n.query, seed) {
  set.seed(seed)
  list(ref = sort(sample(train, n.ref)), query = sort(sample(test, n.query)))
}
tasks <- list(
  list(name = "pbmc10k 1,000 x 200", ref = r10, adt = a10, query = r10, truth = a10, cells = subsample(1000, 200, 0)),
  list(name = "pbmc10k 2,000 x 500", ref = r10, adt = a10, query = r10, truth = a10, cells = subsample(2000, 500, 0))
)
if (!quick) {
  tasks <- c(tasks, list(
    list(name = "pbmc10k 80/20", ref = r10, adt = a10, query = r10, truth = a10, cells = list(ref = train, query = test)),
    list(name = "pbmc10k -> pbmc5k", ref = r10, adt = a10, query = r5, truth = a5,
         cells = list(ref = seq_len(ncol(r10)), query = seq_len(ncol(r5))))
  ))
}

# Seurat's CLR (margin 2) of the measured proteins: the truth the predictions are scored against.
clr <- function(m) { m <- as.matrix(m); log1p(sweep(m, 2, exp(colMeans(log1p(m))), "/")) }
cell.r <- function(p, truth) {
  p <- p[rownames(truth), colnames(truth), drop = FALSE]
  mean(vapply(seq_len(ncol(p)), function(i) suppressWarnings(cor(p[, i], truth[, i])), 0), na.rm = TRUE)
}

keep <- opt("keep", "")
tmp <- if (nzchar(keep)) keep else tempfile("speed_seurat_")
dir.create(tmp, showWarnings = FALSE, recursive = TRUE)
# (a tempfile() is under R's session temporary folder, removed when this process exits)

prepare <- function(tk, dir) {
  t <- now()
  ref <- CreateSeuratObject(tk$ref[, tk$cells$ref], assay = "RNA")
  ref[["ADT"]] <- CreateAssayObject(counts = tk$adt[, tk$cells$ref])
  query <- CreateSeuratObject(tk$query[, tk$cells$query], assay = "RNA")
  t.build <- now() - t
  t <- now()
  ref <- NormalizeData(ref, verbose = FALSE)
  ref <- NormalizeData(ref, assay = "ADT", normalization.method = "CLR", margin = 2, verbose = FALSE)
  query <- NormalizeData(query, verbose = FALSE)
  t.norm <- now() - t
  saveRDS(ref, file.path(dir, "ref.rds"), compress = FALSE)
  saveRDS(query, file.path(dir, "query.rds"), compress = FALSE)
  list(n.ref = ncol(ref), n.query = ncol(query), build = t.build, normalize = t.norm,
       truth = clr(tk$truth[, tk$cells$query]))
}

# ---------------------------------------------------------------- one run in a fresh process
run <- function(method, dir, i) {
  so <- file.path(dir, sprintf("%s_%d.out", method, i)); se <- file.path(dir, sprintf("%s_%d.err", method, i))
  pred <- file.path(dir, sprintf("%s_%d_pred.rds", method, i))
  t <- now()
  rc <- system2("timeout", c(tmo, "Rscript", shQuote(worker), method, shQuote(file.path(dir, "ref.rds")),
                             shQuote(file.path(dir, "query.rds")), shQuote(pred)), stdout = so, stderr = se)
  wall <- now() - t
  if (!identical(as.integer(rc), 0L)) {
    stop(method, " run failed (exit ", rc, if (identical(as.integer(rc), 124L)) ", timed out" else "",
         "):\n", paste(tail(readLines(se), 20), collapse = "\n"), call. = FALSE)
  }
  tl <- grep("^TIME ", readLines(so), value = TRUE)
  key <- sub("^TIME (.*) [^ ]+$", "\\1", tl)
  times <- stats::setNames(as.numeric(sub("^.* ", "", tl)), key)
  # the Python core's steps: "cmot: <step> done in N s" (cmot._utils.timed_step)
  el <- grep("cmot: .* done in [0-9.]+ s", readLines(se), value = TRUE)
  core <- stats::setNames(as.numeric(sub(".* done in ([0-9.]+) s.*", "\\1", el)),
                          sub(".*cmot: (.*) done in [0-9.]+ s.*", "\\1", el))
  list(times = times, core = core, process = wall, pred = readRDS(pred))
}

# Short names for the core's steps (summed when a name occurs more than once).
short <- function(step) {
  rules <- c("^PCA of" = "PCA", "^choosing" = "choices", "^Ward" = "Ward", "^cost matrix" = "cost",
             "label-regularized OT" = "OT", "^composition-robust transport" = "transport",
             "^poorly mapped" = "poorly mapped", "^kNN inference" = "kNN",
             "^feature scores" = "feature scores", "^manifold alignment" = "alignment")
  for (p in names(rules)) if (grepl(p, step)) return(rules[[p]])
  step
}
fmt.core <- function(core) {
  if (!length(core)) return("")
  s <- tapply(core, vapply(names(core), short, ""), sum)
  s <- s[unique(vapply(names(core), short, ""))]   # in the order they ran
  paste(sprintf("%s %.1f", names(s), s), collapse = ", ")
}

# ---------------------------------------------------------------- measure
uptime <- function() trimws(paste(system("uptime", intern = TRUE), collapse = " "))
load.before <- uptime()
started <- format(Sys.time(), "%Y-%m-%d %H:%M UTC", tz = "UTC")
rows <- list()
for (tk in tasks) {
  dir <- file.path(tmp, gsub("[^A-Za-z0-9]+", "_", tk$name)); dir.create(dir, showWarnings = FALSE)
  p <- prepare(tk, dir)
  message(sprintf("%s: %d x %d cells; NormalizeData %.1f s", tk$name, p$n.ref, p$n.query, p$normalize))
  res <- list(seurat = list(), cmot = list())
  for (i in seq_len(reps)) {
    order <- if (i %% 2 == 1) c("seurat", "cmot") else c("cmot", "seurat")
    for (m in order) {
      r <- run(m, dir, i)
      r$r <- cell.r(r$pred, p$truth); r$pred <- NULL
      res[[m]][[i]] <- r
      message(sprintf("  %s run %d: %.1f s (process %.1f s), cell r %.3f", m, i, r$times[["method"]],
                      r$process, r$r))
    }
  }
  med <- function(m, what) stats::median(vapply(res[[m]], function(r) r$times[[what]], 0))
  # per-step medians (cmot core steps and Seurat steps), over the runs
  step.med <- function(m, field) {
    all <- lapply(res[[m]], function(r) if (field == "core") r$core else
      r$times[grepl("^step ", names(r$times))])
    nm <- unique(unlist(lapply(all, names)))
    stats::setNames(vapply(nm, function(n) stats::median(vapply(all, function(x) sum(x[names(x) == n]), 0)), 0), nm)
  }
  core <- step.med("cmot", "core")
  rows[[tk$name]] <- list(
    task = tk$name, n.ref = p$n.ref, n.query = p$n.query, normalize = p$normalize,
    seurat = med("seurat", "method"), cmot = med("cmot", "method"),
    runcmot = med("cmot", "step RunCMOT"), libcmot = med("cmot", "step library(cmot)"),
    python = med("cmot", "step python"),
    core.sum = sum(core), core = fmt.core(core),
    seurat.steps = step.med("seurat", "times"),
    load = stats::median(c(vapply(res$seurat, function(r) r$times[["load"]], 0),
                           vapply(res$cmot, function(r) r$times[["load"]], 0))),
    libseurat = stats::median(c(vapply(res$seurat, function(r) r$times[["library_seurat"]], 0),
                                vapply(res$cmot, function(r) r$times[["library_seurat"]], 0))),
    r.seurat = stats::median(vapply(res$seurat, `[[`, 0, "r")), r.cmot = stats::median(vapply(res$cmot, `[[`, 0, "r")),
    all.seurat = vapply(res$seurat, function(r) r$times[["method"]], 0),
    all.cmot = vapply(res$cmot, function(r) r$times[["method"]], 0))
}
load.after <- uptime()

# ---------------------------------------------------------------- report
la <- function(s) as.numeric(strsplit(sub(".*load average: *", "", s), ", *")[[1]][1:3])
busy <- max(la(load.before)[1], la(load.after)[1]) > 1.5
py <- Sys.getenv("RETICULATE_PYTHON")
core.ver <- tryCatch(reticulate::import("cmot")$`__version__`, error = function(e) "?")
# the git commit of the core that ran (its source may be an editable checkout)
core.commit <- tryCatch({
  src <- dirname(reticulate::import("cmot")$`__file__`)
  h <- system2("git", c("-C", shQuote(src), "rev-parse", "--short", "HEAD"), stdout = TRUE, stderr = FALSE)
  dirty <- system2("git", c("-C", shQuote(src), "status", "--porcelain", "--", "."), stdout = TRUE, stderr = FALSE)
  paste0(" (commit ", h, if (length(dirty)) ", with uncommitted changes" else "", ")")
}, error = function(e) "", warning = function(w) "")
lines <- c(
  "# RunCMOT vs Seurat's FindTransferAnchors + TransferData: time side by side",
  "",
  paste0("Measured ", started, " with `Rscript benchmarks/speed_seurat.R", if (quick) " --quick" else "",
         "` (", reps, " runs per method and task, median; each run a fresh Rscript process).  ",
         "Machine: ", parallel::detectCores(), "-core VM shared with other jobs, so these timings depend on its load: ",
         "`uptime` before: `", load.before, "`; after: `", load.after, "`",
         if (busy) " (**above 1.5: the machine was busy; the times are inflated and noisier**)" else "",
         ".  R ", getRversion(), ", Seurat ", as.character(packageVersion("Seurat")), ", cmot (R) ",
         as.character(packageVersion("cmot")), ", cmot core ", core.ver, core.commit, "."),
  "",
  "- **Seurat s**: FindVariableFeatures (vst, 2000) + ScaleData + RunPCA (30) on the reference,",
  "  FindTransferAnchors (reference.reduction = \"pca\", dims 1:30) + TransferData(refdata = list(ADT = \"ADT\")).",
  "- **cmot s**: library(cmot) + RunCMOT(query, reference, refdata = list(ADT = \"ADT\")), defaults (verbose = TRUE):",
  "  includes starting Python, `import cmot` and the R <-> Python conversions.",
  "- Not in either: reading the counts, NormalizeData (RNA of both, CLR of the reference's ADT; **norm s**),",
  "  and in each process library(Seurat) and readRDS of the two objects (medians in the notes below).",
  "- **core steps**: the Python core's own step timings (`cmot: <step> done in N s`, median over runs);",
  "  **Python start** = starting Python and `import cmot` (`cmot_available()`, called just before RunCMOT);",
  "  **other** = the rest of cmot's time: library(cmot), R-side checks, R <-> Python conversions and what the",
  "  core does not time.",
  "- **cell r**: mean cell-wise Pearson r of the 14 predicted proteins against the query's measured CLR proteins",
  "  (a check that both produced the real thing; not part of the timing).",
  "",
  "| task | n ref | n query | norm s | Seurat s | cmot s | ratio cmot/Seurat | cmot core steps (s) | Python start s | other s | cell r Seurat / cmot |",
  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |")
for (r in rows) {
  lines <- c(lines, sprintf("| %s | %s | %s | %.1f | %.1f | %.1f | %.2f | %s | %.1f | %.1f | %.3f / %.3f |",
                            r$task, format(r$n.ref, big.mark = ","), format(r$n.query, big.mark = ","), r$normalize,
                            r$seurat, r$cmot, r$cmot / r$seurat, r$core, r$python,
                            r$cmot - r$core.sum - r$python, r$r.seurat, r$r.cmot))
}
lines <- c(lines, "", "Seurat's steps (median s) and every run's time:", "")
for (r in rows) {
  st <- r$seurat.steps; names(st) <- sub("^step ", "", names(st))
  lines <- c(lines, sprintf("- %s: %s; runs Seurat %s, cmot %s; library(cmot) %.1f s, RunCMOT %.1f s; library(Seurat) %.1f s, readRDS %.1f s (both excluded).",
                            r$task, paste(sprintf("%s %.1f", names(st), st), collapse = ", "),
                            paste(sprintf("%.1f", r$all.seurat), collapse = " / "),
                            paste(sprintf("%.1f", r$all.cmot), collapse = " / "), r$libcmot, r$runcmot,
                            r$libseurat, r$load))
}
lines <- c(lines, "", sprintf("Reading the counts (once, all tasks): %.1f s.", t.read))
cat(lines, sep = "\n")
if (nzchar(out)) { writeLines(lines, out); message("wrote ", out) }
