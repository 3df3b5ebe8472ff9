/*
 * Lane steps of steepest_steps.c: LANES runs that share their data advance together, run l of
 * the group in vector lane l of every array (element e of lane l at e * LANES + l).
 *
 * Why. The per-run step vectorizes along the samples, which leaves its loops with ragged
 * remainders and a scalar pass over the labels wherever n is small: at k = 5, d = 10, n = 50
 * its many short loops cost more than their arithmetic. Here every operation acts on whole
 * vectors of LANES runs: the labels, the data and the loop bounds are the same in every lane,
 * so nothing is ragged and the per-sample work is the same code on eight runs at once.
 *
 * What. The same step as step_run, formula for formula (log_frame.h's evaluation, CE or the
 * exponential loss, then the steepest direction and W <- W - eta_t D): the logits and the
 * gradient sum over features and samples in the same order, and the per-sample formulas are
 * log_frame.h's ce_sample and exp_sample. Only the common case runs here: every coefficient
 * e_ic f_i of every lane at least e^-708 (normal) and every logit finite. That is checked
 * on the step's own values before W moves (the smallest coefficient of sample i is
 * exp(min_{c != y_i} z_ic - M_i + log f_i), and the label entries S_i f_i >= f_i); a step where
 * any lane fails it (the log frame's subnormal bookkeeping, skipped samples, NaN or infinite
 * logits) is taken by step_run for each of the LANES runs instead, so the result is the
 * per-run step's wherever the lanes would differ from it. Late in a long run every step goes
 * that way: measured on the paper's data (seed 0, SignGD, eta0 = 0.1, a = 1/2) the lanes take
 * every step up to t = 24,000 (log L = -480) and none from t = 25,000 on, when the samples'
 * weights span more than e^708. The lanes serve the first decades, where short runs, the
 * benchmarks and the CI scenarios spend their steps.
 *
 * Included by steepest_steps.c after step_run and direction_run, which it calls.
 */
#ifndef HARNESS_STEEPEST_LANES_H
#define HARNESS_STEEPEST_LANES_H

#include <stdint.h>

#define PRODUCT_COLS 8 /* columns per register tile of the lane matrix products */

/* Doubles of scratch the lane steps need: Z (k n lanes: logits, then e_ic, then A), five
 * per-sample arrays (n lanes each), W, G and D (k d lanes each), one lane's gradient and
 * direction (k d each, for norms other than max) and LANES for the 64-byte alignment. */
static long lane_scratch(long k, long d, long n) {
    return LANES * (k * n + 5 * n + 3 * k * d) + 2 * k * d + LANES;
}

/* Wl (lane-major, kd x LANES) from runs b .. b + LANES - 1 of W (B, k, d), and back. */
static void lanes_load(const double *restrict W, long kd, double *restrict Wl) {
    for (long e = 0; e < kd; e++)
        for (int l = 0; l < LANES; l++) Wl[e * LANES + l] = W[l * kd + e];
}

static void lanes_store(double *restrict W, long kd, const double *restrict Wl) {
    for (long e = 0; e < kd; e++)
        for (int l = 0; l < LANES; l++) W[l * kd + e] = Wl[e * LANES + l];
}

/* out[c, j] = sum_p L[c, p] S[p, j] for c < k, p < m, j < q: L lane-major (k m lanes), S a
 * shared row-major (m, q) matrix, p ascending (the order of logits_run and gradient_run), with
 * PRODUCT_COLS columns of out in registers at a time. The logits are Z = W X^T (L = W, S =
 * XT), the gradient G = A X (L = A, S = X). */
static void lane_product(const double *restrict L, const double *restrict S,
                         double *restrict out, long k, long m, long q) {
    for (long c = 0; c < k; c++) {
        const double *Lc = L + c * m * LANES;
        double *oc = out + c * q * LANES;
        long j0 = 0;
        for (; j0 + PRODUCT_COLS <= q; j0 += PRODUCT_COLS) {
            v8 acc[PRODUCT_COLS];
            for (int t = 0; t < PRODUCT_COLS; t++) acc[t] = (v8){0.0};
            for (long p = 0; p < m; p++) {
                v8 v = load8(Lc + p * LANES);
                for (int t = 0; t < PRODUCT_COLS; t++) acc[t] += v * S[p * q + j0 + t];
            }
            for (int t = 0; t < PRODUCT_COLS; t++) store8(oc + (j0 + t) * LANES, acc[t]);
        }
        for (; j0 < q; j0++) {
            v8 acc = {0.0};
            for (long p = 0; p < m; p++) acc += load8(Lc + p * LANES) * S[p * q + j0];
            store8(oc + j0 * LANES, acc);
        }
    }
}

/* Whether any lane of v is nonzero. */
static inline int any_lane(const double *v) {
    double total = 0.0;
    for (int l = 0; l < LANES; l++) total += v[l] != 0.0;
    return total > 0.0;
}

/* a_i and g_i of every sample in every lane (ce_sample where ce[l] is 1, else exp_sample),
 * with a_max[l] = max_i a_i; the g_i = ell_i of CE's samples with top_i >= 0 go to
 * ell_sum[l] instead (their g_i is set to 0: every loss term left is then g_i f_i); formulas:
 * 1 CE in every lane, 0 the exponential loss's in every lane, 2 either (both computed: a
 * constant at each call, so the compiler drops the unused one, an exp and a log per sample). */
static inline void lane_samples(const double *restrict top, const double *restrict S,
                                const double *restrict ce, double *restrict a,
                                double *restrict g, double *restrict a_max,
                                double *restrict ell_sum, long n, int formulas) {
    for (long i = 0; i < n; i++) {
        const double *ti = top + i * LANES, *Si = S + i * LANES;
        double *ai = a + i * LANES, *gi = g + i * LANES;
#pragma omp simd
        for (int l = 0; l < LANES; l++) {
            double ce_a = 0.0, ce_g = 0.0, exp_a = 0.0, exp_g = 0.0;
            if (formulas != 0) ce_sample(ti[l], Si[l], &ce_a, &ce_g);
            if (formulas != 1) exp_sample(ti[l], Si[l], &exp_a, &exp_g);
            int use_ce = formulas == 1 || (formulas == 2 && ce[l] != 0.0);
            int scaled = use_ce && ti[l] >= 0.0; /* a term ell_i e^-log_scale / n */
            ai[l] = use_ce ? ce_a : exp_a;
            gi[l] = scaled ? 0.0 : use_ce ? ce_g : exp_g;
            ell_sum[l] += scaled ? ce_g : 0.0;
            a_max[l] = ai[l] > a_max[l] ? ai[l] : a_max[l];
        }
    }
}

/*
 * The log-frame evaluation of evaluate_run in every lane, for logits Z (k n lanes) that it
 * overwrites with the coefficient matrix A. Returns 0, with A unfinished, when some lane is
 * outside the safe range (the top of the file); else 1, with log L, log G and the margin of
 * lane l in out[l], out[LANES + l], out[2 LANES + l]. s: five arrays of n lanes.
 */
static int lane_evaluate(double *restrict Z, const int64_t *restrict y,
                         const struct problem *P, double *restrict s, double *restrict out) {
    const long k = P->k, n = P->n;
    double *top = s, *S = top + n * LANES, *lo = S + n * LANES, *a = lo + n * LANES,
           *g = a + n * LANES;
    double top_max[LANES], a_max[LANES], v_sum[LANES], ell_sum[LANES], w_sum[LANES];
    double unsafe[LANES] = {0.0}; /* per lane: a horizontal sum per sample costs more */
    for (int l = 0; l < LANES; l++) top_max[l] = -INFINITY;
    for (long i = 0; i < n; i++) { /* M_i, top_i, e_ic = exp(z_ic - M_i) and S_i */
        const long yi = y[i];
        double *zy = Z + (yi * n + i) * LANES;
        double M[LANES], low[LANES], Si[LANES];
#pragma omp simd
        for (int l = 0; l < LANES; l++) {
            M[l] = -INFINITY;
            low[l] = INFINITY;
            Si[l] = 0.0;
        }
        for (long c = 0; c < k; c++) {
            if (c == yi) continue;
            const double *zc = Z + (c * n + i) * LANES;
#pragma omp simd
            for (int l = 0; l < LANES; l++) {
                M[l] = zc[l] > M[l] ? zc[l] : M[l];
                low[l] = zc[l] < low[l] ? zc[l] : low[l];
            }
        }
        for (long c = 0; c < k; c++) {
            if (c == yi) continue;
            double *zc = Z + (c * n + i) * LANES;
#pragma omp simd
            for (int l = 0; l < LANES; l++) {
                zc[l] = exp_flush(zc[l] - M[l]);
                Si[l] += zc[l];
            }
        }
        double *ti = top + i * LANES;
#pragma omp simd
        for (int l = 0; l < LANES; l++) {
            ti[l] = M[l] - zy[l];
            top_max[l] = ti[l] > top_max[l] ? ti[l] : top_max[l];
            S[i * LANES + l] = Si[l];
            lo[i * LANES + l] = low[l] - M[l];
            unsafe[l] += !(fabs(ti[l]) <= DBL_MAX) | (Si[l] != Si[l]) ? 1.0 : 0.0;
        }
    }
    if (any_lane(unsafe)) return 0;
    double ce[LANES]; /* 1.0: CE's formulas (a double, so the loops below stay 8 wide) */
#pragma omp simd
    for (int l = 0; l < LANES; l++) {
        ce[l] = P->loss_is_ce && !(top_max[l] < -38.0 - P->log_k) ? 1.0 : 0.0;
        a_max[l] = -INFINITY;
        v_sum[l] = 0.0;
        ell_sum[l] = 0.0;
        w_sum[l] = 0.0;
    }
    double ce_lanes = 0.0;
    for (int l = 0; l < LANES; l++) ce_lanes += ce[l];
    /* a_i, g_i, max_i a_i and CE's sum of ell_i over top_i >= 0; only the formulas some lane
     * uses */
    if (ce_lanes == LANES)
        lane_samples(top, S, ce, a, g, a_max, ell_sum, n, 1);
    else if (ce_lanes == 0.0)
        lane_samples(top, S, ce, a, g, a_max, ell_sum, n, 0);
    else
        lane_samples(top, S, ce, a, g, a_max, ell_sum, n, 2);
    for (long i = 0; i < n; i++) { /* A_ic = e_ic f_i, A_{i,y_i} = -S_i f_i, all normal? */
        const long yi = y[i];
        const double *Si = S + i * LANES, *loi = lo + i * LANES, *ai = a + i * LANES,
                     *gi = g + i * LANES;
        double f[LANES], *Ay = Z + (yi * n + i) * LANES;
#pragma omp simd
        for (int l = 0; l < LANES; l++) {
            double log_f = ai[l] - a_max[l] - P->log_n;
            unsafe[l] += loi[l] + log_f >= EXP_NORMAL_MIN ? 0.0 : 1.0; /* smallest e_ic f_i */
            f[l] = exp_flush(log_f);
            v_sum[l] += gi[l] * f[l];
            Ay[l] = -(Si[l] * f[l]);
            w_sum[l] += Si[l] * f[l];
        }
        for (long c = 0; c < k; c++) {
            if (c == yi) continue;
            double *Ac = Z + (c * n + i) * LANES;
#pragma omp simd
            for (int l = 0; l < LANES; l++) Ac[l] *= f[l];
        }
    }
    if (any_lane(unsafe)) return 0;
#pragma omp simd
    for (int l = 0; l < LANES; l++) {
        out[l] = a_max[l] + log_vec(loss_sum(v_sum[l], ell_sum[l], a_max[l], P->log_n));
        out[LANES + l] = a_max[l] + log_vec(w_sum[l]);
        out[2 * LANES + l] = -top_max[l];
    }
    return 1;
}

/* D = argmax_{||D||_p <= 1} <G, D> in every lane: the sign for the max norm, else
 * direction_run on each lane's gradient (one, two: k d doubles each). */
static void lane_direction(const double *restrict G, double *restrict D, long kd, double p,
                           double *restrict one, double *restrict two) {
    if (isinf(p)) {
#pragma omp simd
        for (long e = 0; e < kd * LANES; e++)
            D[e] = G[e] > 0.0 ? 1.0 : G[e] < 0.0 ? -1.0 : G[e];
        return;
    }
    for (int l = 0; l < LANES; l++) {
        for (long e = 0; e < kd; e++) one[e] = G[e * LANES + l];
        direction_run(one, two, kd, p);
        for (long e = 0; e < kd; e++) D[e * LANES + l] = two[e];
    }
}

/* Runs b .. b + LANES - 1 of W (B, k, d) advanced by T steps (as steepest_steps, whose
 * arguments these are; run_scratch_: step_run's scratch, s: lane_scratch(k, d, n) doubles);
 * returns the run-steps taken in the lanes (LANES per step that did not fall back). */
static long lane_steps(double *restrict W, const double *restrict X, const double *restrict XT,
                       const double *restrict Xp, const int64_t *restrict y,
                       const struct problem *P, long B, const double *restrict eta, long T,
                       long b, double *restrict fields, double *restrict run_scratch_,
                       double *restrict s) {
    const long k = P->k, d = P->d, n = P->n, kd = k * d;
    s = (double *)(((uintptr_t)s + 63) & ~(uintptr_t)63);
    double *Z = s, *per_sample = Z + k * n * LANES, *Wl = per_sample + 5 * n * LANES,
           *G = Wl + kd * LANES, *D = G + kd * LANES, *one = D + kd * LANES, *two = one + kd;
    double *Wb = W + b * kd;
    long in_lanes = 0;
    lanes_load(Wb, kd, Wl);
    for (long t = 0; t < T; t++) {
        const double *eta_t = eta + t * B + b;
        double *row = fields + t * 6 * B + b, out[3 * LANES];
        lane_product(Wl, XT, Z, k, d, n); /* Z = W X^T */
        if (!lane_evaluate(Z, y, P, per_sample, out)) { /* the per-run step for this one */
            lanes_store(Wb, kd, Wl);
            for (int l = 0; l < LANES; l++)
                step_run(Wb + l * kd, X, XT, Xp, y, P, eta_t[l], row + l, B, run_scratch_);
            lanes_load(Wb, kd, Wl);
            continue;
        }
        lane_product(Z, X, G, k, n, d); /* G = A X */
        lane_direction(G, D, kd, P->p, one, two);
        double moved[LANES] = {0.0};
        for (long e = 0; e < kd; e++) {
            double *w = Wl + e * LANES;
            const double *De = D + e * LANES;
#pragma omp simd
            for (int l = 0; l < LANES; l++) {
                double next = w[l] - eta_t[l] * De[l];
                moved[l] = next != w[l] ? 1.0 : moved[l];
                w[l] = next;
            }
        }
        for (int l = 0; l < LANES; l++) {
            row[l] = out[l];
            row[B + l] = out[LANES + l];
            row[2 * B + l] = out[2 * LANES + l];
            row[3 * B + l] = eta_t[l];
            row[4 * B + l] = moved[l];
            row[5 * B + l] = NAN;
        }
        in_lanes += LANES;
    }
    lanes_store(Wb, kd, Wl);
    return in_lanes;
}

#endif
