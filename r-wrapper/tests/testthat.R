library(testthat)
library(cmot)

test_check("cmot")
