/*
 * The log-frame evaluation of one run, shared by the native kernels (log_frame_ce.c: the CPU
 * backend of harness.losses.evaluate; steepest_steps.c: whole steps of steepest descent):
 * for cross-entropy and the exponential loss, everything between the two matrix products of a
 * step, in one pass that stays in cache.
 *
 * Per run, with z_ic the logits (classes along rows), M_i = max_{c != y_i} z_ic,
 * top_i = M_i - z_{i,y_i} (= -min_c r_ic), e_ic = exp(z_ic - M_i) (0 on the label) and
 * S_i = sum_c e_ic in [1, k - 1] (harness/losses.py, _evaluate_factored):
 *   CE: a_i = top_i - log(1 + S_i e^top_i) = q_i - log(S_i e^q_i + e^-p_i),
 *       p_i = max(top_i, 0), q_i = min(top_i, 0): one exp, exp(-|top_i|), and one log, with no
 *       overflow for any top_i; ell_i = top_i - a_i where top_i >= 0 (a sum of two
 *       non-negative terms) and S_i e^top_i h_i where top_i < 0, with h_i = log(w_i) / (w_i - 1),
 *       w_i = 1 + S_i e^top_i (Kahan's log1p(v)/v; h_i = 1 where w_i rounds to 1), exact
 *       where ell_i itself underflows;
 *   exp: a_i = top_i, ell_i = S_i e^top_i.
 * Then log_scale = max_i a_i, f_i = exp(a_i - log_scale) / n, and the coefficient matrix
 *   A_ic = e_ic f_i (c != y_i),   A_{i,y_i} = -S_i f_i,
 * whose product with X (the caller's second matrix product) is grad L / exp(log_scale); the
 * label entry is a sum of positive terms, never a difference.
 *
 * The loss is summed in the coefficients' frame, ell_i = n e^log_scale v_i, with
 *   v_i = g_i f_i, g_i = S_i h_i w_i where top_i < 0 (e^top_i = e^a_i w_i; the exponential
 *       loss, and CE where w_i rounds to 1: g_i = S_i),
 *   v_i = ell_i e^-log_scale / n, ell_i = top_i - a_i where top_i >= 0 (CE; log_scale is then
 *       in [-log k, 0]: these ell_i are summed apart and scaled once per run, loss_sum),
 * so log L = log_scale + log(sum_i v_i) costs no exp and no log per sample beyond a_i's and
 * f_i's (the log domain, log ell_i and a log-sum-exp, took three per sample; a frame of the
 * loss's own, exp(top_i - max_j top_j), took one exp more per sample: with glibc's log for
 * the two logs per run, 0.630 against 0.607 microseconds per lane run-step at the small
 * bench size). No term is subnormal: S_i h_i w_i >= w_i log(w_i) / (w_i - 1) >= 1, so
 * v_i >= f_i (0 or >= e^-708) where top_i < 0, and v_i >= log 2 / n where top_i >= 0. The
 * sample with a_i = log_scale has f_i = 1 / n, so its term is >= (log 2) / n, and a term
 * whose f_i is flushed to 0 (below e^-708) was below k^2 e^-708: below e^-683 of the largest
 * for k, n < e^8 (about 3000), far below rounding in the sum. The two logs per run are log_vec's, so the lanes'
 * last loop vectorizes.
 *
 * Subnormal coefficients. exp_flush is a branch-free exp the compiler vectorizes (Cody-Waite
 * reduction by ln 2, the degree-11 minimax polynomial on |r| <= ln 2 / 2 of
 * harness/native/exp_minimax.py, relative error 2.3e-17 with its float64 coefficients: within
 * an ulp), exact on the normal range and 0 below -708, so no
 * floating-point operation here ever has a subnormal operand or result: each costs a
 * microcode assist (measured: exp 30x slower, and the caller's matrix product A^T X 4x
 * slower when 2% of A is subnormal). The 0 is already the float64 result wherever a value
 * only enters a sum whose largest term is >= 1 / n (S_i, the loss and proxy sums, the
 * per-sample formulas above). In A, entries below e^-708 (< 2^-1021) are written as 0 and
 * counted per run (dropped[b]); their contribution to A^T X is accumulated here, scaled by
 * 2^64 so that every operation is on normal numbers (G_lo), and added to the caller's
 * product by add_dropped_run, which rounds onto the subnormal grid with integer
 * arithmetic. The gradient thus keeps every contribution the torch path keeps, at the cost of
 * d multiply-adds per dropped coefficient.
 */
#ifndef HARNESS_LOG_FRAME_H
#define HARNESS_LOG_FRAME_H

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>


#define EXP_NORMAL_MIN (-708.0) /* exp(x) >= e^-708 > 2^-1022 (normal): exp_normal is exact */
#define EXP_ZERO_MAX (-746.0)   /* exp(x) < 2^-1076 rounds to 0 at or below this */
#define LO_SHIFT 64             /* dropped coefficients are carried as exp(arg) 2^LO_SHIFT */

/* exp(x) 2^shift where round(x / ln 2) + shift lies in [-1021, 1023] (the result is then
 * normal; the factor 2^shift is exact: it adds to the exponent). */
static inline double exp_shifted(double x, int64_t shift) {
    const double shifter = 0x1.8p52;
    double t = x * 0x1.71547652b82fep0 + shifter; /* round(x / ln 2) in the low bits */
    double kd = t - shifter;
    double r = x - kd * 0x1.62e42fee00000p-1; /* ln 2, high part: kd times it is exact */
    r = r - kd * 0x1.a39ef35793c76p-33;       /* ln 2, low part */
    /* minimax polynomial of degree 11 (harness/native/exp_minimax.py): c11 .. c2, then 1, 1 */
    double p = 0x1.ad661c903688bp-26;
    p = p * r + 0x1.28b311c7eb84fp-22;
    p = p * r + 0x1.71df4520aaeebp-19;
    p = p * r + 0x1.a01992d0fe736p-16;
    p = p * r + 0x1.a01a0110572b2p-13;
    p = p * r + 0x1.6c16c1878111cp-10;
    p = p * r + 0x1.1111111130dd6p-7;
    p = p * r + 0x1.555555554f370p-5;
    p = p * r + 0x1.55555555554a2p-3;
    p = p * r + 0x1.0000000000010p-1;
    p = p * r + 1.0;
    p = p * r + 1.0;
    int64_t t_bits, shifter_bits;
    memcpy(&t_bits, &t, sizeof t_bits);
    memcpy(&shifter_bits, &shifter, sizeof shifter_bits);
    int64_t scale_bits = (t_bits - shifter_bits + shift + 1023) << 52; /* 2^(round(x/ln2)+shift) */
    double scale;
    memcpy(&scale, &scale_bits, sizeof scale);
    return p * scale;
}

static inline double exp_normal(double x) { return exp_shifted(x, 0); } /* x in [-708, 709] */

/* exp(x) for x <= 0 (or -inf), 0 below EXP_NORMAL_MIN; NaN stays NaN. */
static inline double exp_flush(double x) {
    double clamped = x < EXP_NORMAL_MIN ? EXP_NORMAL_MIN : x;
    double value = exp_normal(clamped);
    return x < EXP_NORMAL_MIN ? 0.0 : value;
}

/* log(x), branch-free so that loops calling it vectorize (glibc's vector log measured 80
 * cycles per 8 lanes here, a third of the kernel): fdlibm's e_log.c (error < 1 ulp). With
 * x = 2^e m, m in [sqrt(2)/2, sqrt(2)), f = m - 1, s = f / (2 + f):
 * log x = e ln 2 + f - f^2/2 + s (f^2/2 + R(s^2)), R the minimax polynomial of fdlibm, ln 2 in
 * two parts so that e ln2_hi is exact. Subnormal x is scaled by 2^54 first; log 0 = -inf,
 * log inf = inf, NaN for NaN and x < 0. */
static inline double log_vec(double x) {
    double tiny = x < 0x1p-1022 ? 1.0 : 0.0; /* arithmetic, not branches: it vectorizes */
    double xs = x * (1.0 + tiny * (0x1p54 - 1.0));
    int64_t bits;
    memcpy(&bits, &xs, sizeof bits);
    /* e and m with m in [sqrt(2)/2, sqrt(2)): offset the bits by those of sqrt(2)/2 */
    int64_t shifted = bits - 0x3fe6a09e667f3bcdLL;
    int64_t m_bits = bits - (shifted & (int64_t)0xfff0000000000000ULL);
    double m;
    memcpy(&m, &m_bits, sizeof m);
    double f = m - 1.0, hfsq = 0.5 * f * f, s = f / (2.0 + f), z = s * s, w = z * z;
    double t1 = w * (3.999999999940941908e-01 +
                     w * (2.222219843214978396e-01 + w * 1.531383769920937332e-01));
    double t2 = z * (6.666666666666735130e-01 +
                     w * (2.857142874366239149e-01 +
                          w * (1.818357216161805012e-01 + w * 1.479819860511658591e-01)));
    double dk = (double)(shifted >> 52) - 54.0 * tiny;
    double r = dk * 6.93147180369123816490e-01 -
               ((hfsq - (s * (hfsq + t2 + t1) + dk * 1.90821492927058770002e-10)) - f);
    double special = x == 0.0 ? -INFINITY : (x > 0.0 ? x : NAN);
    return x > 0.0 ? (x <= DBL_MAX ? r : special) : special;
}

/* One sample's a_i and g_i for CE (see the top of the file) from top_i and S_i: one exp,
 * exp(-|top_i|), and one log. Shared by the per-run loop below and the lane steps
 * (steepest_lanes.h). */
static inline void ce_sample(double top, double S, double *restrict a, double *restrict g) {
    double x = exp_flush(-fabs(top)); /* e^q and e^-p: one of them is 1 */
    double exp_q = top < 0.0 ? x : 1.0, exp_neg_p = top < 0.0 ? 1.0 : x;
    double sum = S * exp_q + exp_neg_p; /* w = 1 + S e^top where top < 0 */
    double log_sum = log_vec(sum);
    *a = (top < 0.0 ? top : 0.0) - log_sum;
    double h = sum == 1.0 ? 1.0 : log_sum / (sum - 1.0);
    *g = top < 0.0 ? (S * h) * sum : top + log_sum;
}

/* The same for the exponential loss: a_i = top_i, g_i = S_i. */
static inline void exp_sample(double top, double S, double *restrict a, double *restrict g) {
    *a = top;
    *g = S;
}

/* sum_i v_i (top of the file) from the sum of the terms g_i f_i and CE's sum of ell_i over
 * the samples with top_i >= 0 (0 if none: log_scale is in [-log k, 0] only where it is not,
 * so the exp's argument is 0 there, and the product stays 0). */
static inline double loss_sum(double v_sum, double ell_sum, double log_scale, double log_n) {
    return v_sum + ell_sum * exp_normal(ell_sum > 0.0 ? -log_scale - log_n : 0.0);
}

/* Per-sample a_i and g_i of CE for every sample; returns max_i a_i. */
static double per_sample_ce(const double *restrict top, const double *restrict S,
                            double *restrict a, double *restrict g, long n) {
    double a_max = -INFINITY;
#pragma omp simd reduction(max : a_max)
    for (long i = 0; i < n; i++) {
        ce_sample(top[i], S[i], a + i, g + i);
        a_max = a[i] > a_max ? a[i] : a_max;
    }
    return a_max;
}

/* Per-sample a_i and g_i of the exponential loss; returns max_i a_i. */
static double per_sample_exp(const double *restrict top, const double *restrict S,
                             double *restrict a, double *restrict g, long n) {
    double a_max = -INFINITY;
#pragma omp simd reduction(max : a_max)
    for (long i = 0; i < n; i++) {
        exp_sample(top[i], S[i], a + i, g + i);
        a_max = a[i] > a_max ? a[i] : a_max;
    }
    return a_max;
}

#define BLOCK 32
#define SCRATCH_PER_SAMPLE 8 /* evaluate_run's scratch: 8 arrays of n doubles */

static long block_end(long i0, long n) { return i0 + BLOCK < n ? i0 + BLOCK : n; }

/* Samples [i0, i1): e_ic = exp(z_ic - M_i) into A and S_i = sum_c e_ic (the label logits are
 * -inf by now: their e is 0). */
static void exp_pass(const double *restrict zb, double *restrict Ab,
                     const double *restrict zmax, double *restrict S, long k, long n, long i0,
                     long i1) {
#pragma omp simd
    for (long i = i0; i < i1; i++) S[i] = 0.0;
    for (long c = 0; c < k; c++) {
        const double *zc = zb + c * n;
        double *ec = Ab + c * n;
#pragma omp simd
        for (long i = i0; i < i1; i++) {
            ec[i] = exp_flush(zc[i] - zmax[i]);
            S[i] += ec[i];
        }
    }
}

/* Samples [i0, i1): A_ic = e_ic f_i in place over e (0 on the label, set by the caller) where
 * that is >= e^-708 (> 2^-1022, normal), else 0; returns how many of those zeros replace a
 * nonzero value, exp(z - M + log f) in (e^-746, e^-708) (a float count: the loop then has no
 * integer conversions). */
static double product_pass(const double *restrict zb, double *restrict Ab,
                           const double *restrict zmax, const double *restrict log_f,
                           const double *restrict f, long k, long n, long i0, long i1) {
    double dropped = 0.0;
    for (long c = 0; c < k; c++) {
        const double *zc = zb + c * n;
        double *Ac = Ab + c * n;
#pragma omp simd reduction(+ : dropped)
        for (long i = i0; i < i1; i++) {
            /* e f >= e^-708 iff z - M + log f >= EXP_NORMAL_MIN (then e was not flushed) */
            double arg = zc[i] - zmax[i] + log_f[i];
            int kept = arg >= EXP_NORMAL_MIN;
            dropped += !kept & (arg > EXP_ZERO_MAX) ? 1.0 : 0.0;
            Ac[i] = kept ? Ac[i] * f[i] : 0.0;
        }
    }
    return dropped;
}

/* G_lo[c, :] += exp(arg) 2^LO_SHIFT x_i for the coefficients product_pass dropped on samples
 * [i0, i1) (arg = z - M + log f in (EXP_ZERO_MAX, EXP_NORMAL_MIN)): normal numbers only. */
static void add_dropped(const double *restrict zb, const double *restrict zmax,
                        const double *restrict log_f, const double *restrict Xb, long d, long k,
                        long n, long i0, long i1, double *restrict G_lo) {
    for (long i = i0; i < i1; i++)
        for (long c = 0; c < k; c++) {
            double arg = zb[c * n + i] - zmax[i] + log_f[i];
            if (arg < EXP_NORMAL_MIN && arg > EXP_ZERO_MAX) {
                double v = exp_shifted(arg, LO_SHIFT);
#pragma omp simd
                for (long j = 0; j < d; j++) G_lo[c * d + j] += v * Xb[i * d + j];
            }
        }
}

/* v 2^-LO_SHIFT rounded onto the float64 grid, subnormals included, for v zero or normal:
 * a plain product where the result is normal, else m 2^-1074 with m = rint(|v| 2^(1074 -
 * LO_SHIFT)) < 2^52 (bit pattern m, exponent field 0), never a subnormal operation. */
static inline double scale_down(double v) {
    const double two52 = 0x1p52;
    double mag = fabs(v);
    int64_t m;
    double scaled = mag * 0x1p1010 + two52; /* 1074 - LO_SHIFT = 1010 */
    memcpy(&m, &scaled, sizeof m);
    int64_t two52_bits, v_bits;
    memcpy(&two52_bits, &two52, sizeof two52_bits);
    memcpy(&v_bits, &v, sizeof v_bits);
    int64_t bits = (m - two52_bits) | (v_bits & INT64_MIN);
    double tiny;
    memcpy(&tiny, &bits, sizeof tiny);
    return mag >= 0x1p-958 ? v * 0x1p-64 : tiny;
}

/* grad_b += G_lo_b 2^-LO_SHIFT for one run's (k d) gradient: the contribution of the
 * coefficients evaluate_run wrote as 0, rounded once more. */
static void add_dropped_run(double *restrict grad_b, const double *restrict G_lo_b, long kd) {
#pragma omp simd
    for (long j = 0; j < kd; j++) {
        double g = grad_b[j]; /* above 2^900 the dropped part is far below rounding */
        grad_b[j] = fabs(g) < 0x1p900 ? scale_down(g * 0x1p64 + G_lo_b[j]) : g;
    }
}

/* What evaluate_run returns for one run (NaN everywhere but dropped for non-finite logits). */
struct run_values {
    double log_loss, log_proxy, log_scale, margin, dropped;
};

/*
 * One run: zb its (k, n) logits (overwritten: the label entries become -inf), Ab its (k, n)
 * coefficient matrix (written), yb its labels, Xb its (n, d) data, G_lo_b its (k, d) dropped
 * part of A^T X times 2^64 (written; see "Subnormal coefficients" above), scratch
 * SCRATCH_PER_SAMPLE n doubles;
 * log_n, log_k, log_k1 = log n, log k, log(k - 1). The labels are touched twice (z_{i,y_i}
 * read and replaced by -inf, A_{i,y_i} written at the end), so every other loop streams along
 * contiguous rows with no label test.
 *
 * Skipped samples. Where a_i = top_i (the exponential loss, and CE once every sample is
 * separated, see below), log f_i = top_i - max_j top_j - log n is known before any exp. A
 * sample with log f_i + log(k - 1) < -746 has every coefficient (label entry S_i f_i included)
 * below 2^-1075, i.e. exactly 0 in float64, and a loss term below e^-700 times the largest:
 * below rounding in the loss sum. Blocks of BLOCK such samples skip their exps and get zero
 * coefficients. Late in a long run most samples are in that range (only those near the
 * margin count), so the cost there is that of the support samples.
 *
 * Non-finite logits (from a NaN or overflowed W) make some counted sample's S_i or top_i
 * non-finite; the run then gets NaN everywhere (the engine counts a NaN loss as a failed
 * step).
 */
static struct run_values evaluate_run(double *restrict zb, double *restrict Ab,
                                      const int64_t *restrict yb, const double *restrict Xb,
                                      long d, long k, long n, int loss_is_ce, double log_n,
                                      double log_k, double log_k1, double *restrict G_lo_b,
                                      double *restrict scratch) {
    double *zmax = scratch, *top = zmax + n, *S = top + n, *a = S + n, *g = a + n, *f = g + n,
           *zmin = f + n, *skipped = zmin + n; /* 1.0: block skipped */
    memset(G_lo_b, 0, k * d * sizeof *G_lo_b);
    for (long i = 0; i < n; i++) {
        top[i] = zb[yb[i] * n + i];
        zb[yb[i] * n + i] = -INFINITY;
    }
#pragma omp simd
    for (long i = 0; i < n; i++) {
        zmax[i] = zb[i];
        zmin[i] = zb[i] > -INFINITY ? zb[i] : INFINITY; /* the smallest non-label logit */
    }
    for (long c = 1; c < k; c++) {
        const double *zc = zb + c * n;
#pragma omp simd
        for (long i = 0; i < n; i++) {
            zmax[i] = zc[i] > zmax[i] ? zc[i] : zmax[i];
            zmin[i] = zc[i] > -INFINITY && zc[i] < zmin[i] ? zc[i] : zmin[i];
        }
    }
    double top_max = -INFINITY;
#pragma omp simd reduction(max : top_max)
    for (long i = 0; i < n; i++) {
        top[i] = zmax[i] - top[i];
        top_max = top[i] > top_max ? top[i] : top_max;
    }
    /* Every sample separated by more than 38 + log k: v = S_i e^top_i < e^-38 < 2^-54, so
     * CE's a_i = top_i - log1p(v) and log ell_i = log S_i + top_i + log(log1p(v) / v) are
     * top_i and log S_i + top_i to within 2^-54 absolute, where |a_i|, |log ell_i| > 38:
     * the exponential loss's formulas, with one log per sample instead of three. */
    int separated = top_max < -38.0 - log_k;
    int exp_formulas = !loss_is_ce || separated;
    double cutoff = exp_formulas ? top_max + log_n - log_k1 - 746.0 : -INFINITY;
    long all_counted = 0;
#pragma omp simd reduction(+ : all_counted)
    for (long i = 0; i < n; i++) all_counted += top[i] >= cutoff;
    all_counted = all_counted == n;
    if (all_counted) {
        exp_pass(zb, Ab, zmax, S, k, n, 0, n);
    } else {
        for (long i0 = 0, blk = 0; i0 < n; i0 += BLOCK, blk++) {
            long i1 = block_end(i0, n), counted = 0;
#pragma omp simd reduction(+ : counted)
            for (long i = i0; i < i1; i++) counted += top[i] >= cutoff;
            skipped[blk] = counted == 0;
            if (counted) {
                exp_pass(zb, Ab, zmax, S, k, n, i0, i1);
            } else {
#pragma omp simd
                for (long i = i0; i < i1; i++) S[i] = 1.0; /* unused: f_i = 0 */
            }
        }
    }
    double a_max = exp_formulas ? per_sample_exp(top, S, a, g, n) : per_sample_ce(top, S, a, g, n);
    long nonfinite = 0;
#pragma omp simd reduction(+ : nonfinite)
    for (long i = 0; i < n; i++) nonfinite += !(fabs(top[i]) <= DBL_MAX) | (S[i] != S[i]);
    if (nonfinite) {
        for (long i = 0; i < k * n; i++) Ab[i] = NAN;
        return (struct run_values){NAN, NAN, NAN, NAN, 0.0};
    }
    double w_sum = 0.0, v_sum = 0.0, ell_sum = 0.0, candidates = 0.0;
    double *w = g; /* sum_c A_ic, written over g_i once its loss term is summed */
#pragma omp simd reduction(+ : w_sum, v_sum, ell_sum, candidates)
    for (long i = 0; i < n; i++) {
        a[i] = a[i] - a_max - log_n; /* log f_i */
        f[i] = exp_flush(a[i]);
        int scaled = !exp_formulas && top[i] >= 0.0; /* CE: a term ell_i e^-log_scale / n */
        v_sum += top[i] >= cutoff && !scaled ? g[i] * f[i] : 0.0;
        ell_sum += scaled ? g[i] : 0.0;
        w[i] = S[i] * f[i]; /* f_i >= e^-708 or 0, S_i in [1, k - 1]: no subnormal */
        w_sum += w[i];
        /* S_i f_i may be in the subnormal range only if log f_i + log(k - 1) > -746 */
        candidates += (a[i] < EXP_NORMAL_MIN) & (a[i] > EXP_ZERO_MAX - log_k1) ? 1.0 : 0.0;
    }
    double dropped = 0.0;
    if (candidates) /* label entries -S_i f_i in the subnormal range */
        for (long i = 0; i < n; i++) {
            double arg = log(S[i]) + a[i];
            if (a[i] < EXP_NORMAL_MIN && arg > EXP_ZERO_MAX) {
                double v = exp_shifted(arg, LO_SHIFT);
                for (long j = 0; j < d; j++) G_lo_b[yb[i] * d + j] -= v * Xb[i * d + j];
                dropped += 1.0;
            }
        }
    for (long i0 = 0, blk = 0; i0 < n; i0 += all_counted ? n : BLOCK, blk++) {
        long i1 = all_counted ? n : block_end(i0, n);
        if (!all_counted && skipped[blk]) {
            for (long c = 0; c < k; c++) memset(Ab + c * n + i0, 0, (i1 - i0) * sizeof *Ab);
            continue;
        }
        /* (z - M) + log f is monotone in z under rounding: where it is >= -708 at the
         * smallest logit of every sample in the block, every coefficient is kept */
        double unsafe = 0.0;
#pragma omp simd reduction(+ : unsafe)
        for (long i = i0; i < i1; i++) unsafe += zmin[i] - zmax[i] + a[i] < EXP_NORMAL_MIN;
        if (unsafe == 0.0) {
            for (long c = 0; c < k; c++) {
                double *Ac = Ab + c * n;
#pragma omp simd
                for (long i = i0; i < i1; i++) Ac[i] *= f[i];
            }
            continue;
        }
        double dropped_here = product_pass(zb, Ab, zmax, a, f, k, n, i0, i1);
        if (dropped_here > 0.0) add_dropped(zb, zmax, a, Xb, d, k, n, i0, i1, G_lo_b);
        dropped += dropped_here;
    }
    for (long i = 0; i < n; i++) Ab[yb[i] * n + i] = -w[i];
    return (struct run_values){a_max + log_vec(loss_sum(v_sum, ell_sum, a_max, log_n)),
                               a_max + log_vec(w_sum), a_max,
                               -top_max, (double)dropped};
}

#endif
