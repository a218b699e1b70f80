#!/usr/bin/env Rscript
# Reference values for osteomet.evaluation from R (pROC 1.18, psych 2.2.9).
#
#   Rscript scripts/make_r_fixtures.R                 # regenerate tests/evaluation/fixtures/*.csv
#   Rscript scripts/make_r_fixtures.R --roc IN OUT    # ROC statistics for the cases in IN (live tests)
#   Rscript scripts/make_r_fixtures.R --icc IN OUT    # psych::ICC rows for the matrices in IN (live tests)
#
# Input data are written next to the results, so Python reads exactly the numbers R used
# (all numbers printed with 17 significant digits, which round-trips a double).
#
# ROC input (long CSV): case, cohort (A/B), y (0/1), score1, score2, conf_level.
#   Cohort A: ci.auc(delong) of score1 and score2, Youden threshold of score1, paired
#   roc.test(score1, score2). Cohort B: unpaired roc.test(A score1, B score1).
# ICC input (long CSV): case, subject, rater, value -> psych::ICC(lmer = FALSE) rows.
#
# Needs: apt-get install -y --no-install-recommends r-base-core r-cran-proc r-cran-psych

suppressPackageStartupMessages({
  library(pROC)
  library(psych)
})

num <- function(x) ifelse(is.na(x), "NA", sprintf("%.17g", x))

write_num_csv <- function(df, path) {
  for (col in names(df)) if (is.numeric(df[[col]])) df[[col]] <- num(df[[col]])
  write.csv(df, path, row.names = FALSE, quote = FALSE)
}

fit_roc <- function(y, score) {
  roc(response = y, predictor = score, levels = c(0, 1), direction = "<", quiet = TRUE)
}

roc_results <- function(data) {
  rows <- list()
  for (case_id in unique(data$case)) {
    d <- data[data$case == case_id, ]
    a <- d[d$cohort == "A", ]
    b <- d[d$cohort == "B", ]
    level <- a$conf_level[1]
    r1 <- fit_roc(a$y, a$score1)
    r2 <- fit_roc(a$y, a$score2)
    ci1 <- as.numeric(ci.auc(r1, method = "delong", conf.level = level))
    ci2 <- as.numeric(ci.auc(r2, method = "delong", conf.level = level))
    best <- coords(r1, "best", best.method = "youden", ret = "threshold", transpose = FALSE)
    paired <- suppressWarnings(roc.test(r1, r2, method = "delong", paired = TRUE, conf.level = level))
    rb <- fit_roc(b$y, b$score1)
    unpaired <- suppressWarnings(roc.test(r1, rb, method = "delong", paired = FALSE))
    rows[[length(rows) + 1]] <- data.frame(
      case = case_id, conf_level = level,
      auc1 = ci1[2], ci1_low = ci1[1], ci1_high = ci1[3],
      auc2 = ci2[2], ci2_low = ci2[1], ci2_high = ci2[3],
      youden1 = max(best$threshold),
      paired_z = unname(paired$statistic), paired_p = paired$p.value,
      paired_diff_low = paired$conf.int[1], paired_diff_high = paired$conf.int[2],
      auc_b = as.numeric(auc(rb)),
      unpaired_d = unname(unpaired$statistic), unpaired_df = unname(unpaired$parameter),
      unpaired_p = unpaired$p.value
    )
  }
  do.call(rbind, rows)
}

icc_results <- function(data) {
  rows <- list()
  for (case_id in unique(data$case)) {
    d <- data[data$case == case_id, ]
    m <- tapply(d$value, list(d$subject, d$rater), identity)
    res <- ICC(m, lmer = FALSE)$results
    rows[[length(rows) + 1]] <- data.frame(
      case = case_id, type = res$type, icc = res$ICC, f = res$F, df1 = res$df1, df2 = res$df2,
      p = res$p, ci_low = res$`lower bound`, ci_high = res$`upper bound`
    )
  }
  do.call(rbind, rows)
}

roc_case <- function(case_id, cohort, y, s1, s2, level = 0.95) {
  data.frame(case = case_id, cohort = cohort, y = y, score1 = s1, score2 = s2, conf_level = level)
}

make_roc_data <- function() {
  set.seed(20240611)
  cases <- list()
  add <- function(name, ya, s1a, s2a, yb, s1b, level = 0.95) {
    cases[[length(cases) + 1]] <<- rbind(
      roc_case(name, "A", ya, s1a, s2a, level),
      roc_case(name, "B", yb, s1b, rep(NA_real_, length(yb)), level)
    )
  }
  # 1. random continuous, moderate n, correlated models
  y <- rbinom(120, 1, 0.4); s1 <- rnorm(120) + 1.0 * y; s2 <- 0.6 * s1 + rnorm(120, sd = 0.8) + 0.3 * y
  yb <- rbinom(90, 1, 0.5); sb <- rnorm(90) + 0.5 * yb
  add("random_n120", y, s1, s2, yb, sb)
  # 2. heavy ties: 5-point ordinal scores (e.g. PI-RADS-like ratings)
  y <- rep(c(0, 1), c(45, 35)); s1 <- pmin(5, pmax(1, round(2.5 + y + rnorm(80))))
  s2 <- pmin(5, pmax(1, round(2.8 + 0.6 * y + rnorm(80))))
  yb <- rep(c(0, 1), c(30, 30)); sb <- pmin(5, pmax(1, round(2.5 + 1.5 * yb + rnorm(60))))
  add("ties_ordinal5", y, s1, s2, yb, sb)
  # 3. binary score (maximal ties) vs continuous
  y <- rep(c(0, 1), c(25, 20)); s1 <- as.numeric(runif(45) < 0.3 + 0.4 * y); s2 <- rnorm(45) + y
  yb <- rep(c(0, 1), c(20, 20)); sb <- as.numeric(runif(40) < 0.2 + 0.5 * yb)
  add("ties_binary", y, s1, s2, yb, sb)
  # 4. small n: 3 cases, 4 controls
  y <- c(0, 0, 0, 0, 1, 1, 1); s1 <- c(0.1, 0.4, 0.35, 0.8, 0.7, 0.9, 0.45); s2 <- c(0.2, 0.1, 0.5, 0.3, 0.6, 0.4, 0.9)
  yb <- c(0, 0, 1, 1, 0, 1); sb <- c(0.3, 0.2, 0.6, 0.25, 0.1, 0.9)
  add("small_n7", y, s1, s2, yb, sb)
  # 5. AUC near 1 (one overlapping pair), 90% level
  y <- rep(c(0, 1), c(30, 30)); s1 <- c(sort(runif(30, 0, 0.5)), sort(runif(30, 0.5, 1)))
  s1[30] <- 0.75; s2 <- s1 + rnorm(60, sd = 0.15)
  yb <- rep(c(0, 1), c(25, 25)); sb <- c(runif(25, 0, 0.55), runif(25, 0.45, 1))
  add("near_perfect", y, s1, s2, yb, sb, level = 0.90)
  # 6. worse than chance (fixed direction keeps AUC < 0.5), rounded scores with some ties
  y <- rbinom(70, 1, 0.5); s1 <- round(rnorm(70) - 0.7 * y, 1); s2 <- round(rnorm(70), 1)
  yb <- rbinom(70, 1, 0.5); sb <- round(rnorm(70) + 0.2 * yb, 1)
  add("below_chance", y, s1, s2, yb, sb)
  # 7. larger n with mixed ties (scores on a 0.01 grid)
  y <- rbinom(400, 1, 0.3); s1 <- round(plogis(rnorm(400) + 1.2 * y), 2); s2 <- round(plogis(rnorm(400) + 0.9 * y), 2)
  yb <- rbinom(300, 1, 0.3); sb <- round(plogis(rnorm(300) + 1.2 * yb), 2)
  add("grid_n400", y, s1, s2, yb, sb)
  do.call(rbind, cases)
}

make_icc_data <- function() {
  set.seed(20240612)
  cases <- list()
  add <- function(name, m) {
    n <- nrow(m); k <- ncol(m)
    cases[[length(cases) + 1]] <<- data.frame(
      case = name, subject = rep(seq_len(n), times = k), rater = rep(seq_len(k), each = n), value = as.vector(m)
    )
  }
  subject <- rnorm(25, sd = 2); add("two_masks_n25", cbind(subject + rnorm(25, sd = 0.5), subject + rnorm(25, sd = 0.5)))
  subject <- rnorm(30); add("three_raters_bias", cbind(subject + rnorm(30, sd = 0.4), subject + 0.5 + rnorm(30, sd = 0.4), subject - 0.3 + rnorm(30, sd = 0.4)))
  add("no_agreement", matrix(rnorm(40), ncol = 2))
  subject <- rexp(12, 0.1); add("skewed_k4_n12", sapply(1:4, function(j) subject * runif(1, 0.9, 1.1) + rnorm(12)))
  add("shrout_fleiss_1979", matrix(c(9, 6, 8, 7, 10, 6, 2, 1, 4, 1, 5, 2, 5, 3, 6, 2, 6, 4, 8, 2, 8, 6, 9, 7), ncol = 4))  # 6 subjects x 4 judges, column by column
  do.call(rbind, cases)
}

args <- commandArgs(trailingOnly = TRUE)
if (length(args) == 3 && args[1] == "--roc") {
  write_num_csv(roc_results(read.csv(args[2])), args[3])
} else if (length(args) == 3 && args[1] == "--icc") {
  write_num_csv(icc_results(read.csv(args[2])), args[3])
} else if (length(args) == 0) {
  out <- file.path("tests", "evaluation", "fixtures")
  dir.create(out, showWarnings = FALSE, recursive = TRUE)
  roc_data <- make_roc_data()
  write_num_csv(roc_data, file.path(out, "roc_data.csv"))
  # results computed from the file as written, so they match what Python reads
  write_num_csv(roc_results(read.csv(file.path(out, "roc_data.csv"))), file.path(out, "roc_results.csv"))
  icc_data <- make_icc_data()
  write_num_csv(icc_data, file.path(out, "icc_data.csv"))
  write_num_csv(icc_results(read.csv(file.path(out, "icc_data.csv"))), file.path(out, "icc_results.csv"))
  writeLines(c(
    paste("R", R.version$major, ".", R.version$minor, sep = ""),
    paste("pROC", as.character(packageVersion("pROC"))),
    paste("psych", as.character(packageVersion("psych")))
  ), file.path(out, "VERSIONS.txt"))
  cat("fixtures written to", out, "\n")
} else {
  stop("usage: make_r_fixtures.R [--roc IN OUT | --icc IN OUT]")
}
