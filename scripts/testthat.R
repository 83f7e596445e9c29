# Run the R package's testthat suite; fail if anything failed or if every test was skipped.
res <- as.data.frame(testthat::test_local("r-wrapper", reporter = testthat::ProgressReporter$new(show_praise = FALSE),
                                          stop_on_failure = FALSE))
n_fail <- sum(res$failed) + sum(res$error)
n_skip <- sum(res$skipped)
n_ok <- sum(res$nb) - sum(res$failed) - n_skip
cat(sprintf("testthat: %d expectations in %d tests; %d failed, %d skipped\n", sum(res$nb), nrow(res), n_fail, n_skip))
if (n_fail > 0) quit(status = 1)
if (nrow(res) > 0 && n_skip >= nrow(res)) { cat("testthat: every test was skipped\n"); quit(status = 1) }
