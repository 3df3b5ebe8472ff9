/*
 * CPU kernel of harness.losses.evaluate for cross-entropy and the exponential loss: everything
 * between the two matrix products of a step, fused into one pass per run that stays in cache.
 *
 * Per run, with z_ic the logits (classes along rows), M_i = max_{c != y_i} z_ic,
 * top_i = M_i - z_{i,y_i} (= -min_c r_ic), e_ic = exp(z_ic - M_i) (0 on the label) and
 * S_i = sum_c e_ic in [1, k - 1] (harness/losses.py, _evaluate_factored):
 *   CE: a_i = top_i - log(1 + S_i e^top_i) = q_i - log(S_i e^q_i + e^-p_i),
 *       p_i = max(top_i, 0), q_i = min(top_i, 0): one exp, exp(-|top_i|), and one log, with no
 *       overflow for any top_i; log ell_i = log(top_i - a_i) where top_i >= 0 (a sum of two
 *       non-negative terms) and log S_i + top_i + log h_i where top_i < 0, with
 *       h_i = log(w_i) / (w_i - 1), w_i = 1 + S_i e^top_i (Kahan's log1p(v)/v; h_i = 1 where
 *       w_i rounds to 1), exact where ell_i itself underflows;
 *   exp: a_i = top_i, log ell_i = top_i + log S_i.
 * Then log_scale = max_i a_i, f_i = exp(a_i - log_scale) / n, and the coefficient matrix
 *   A_ic = e_ic f_i (c != y_i),   A_{i,y_i} = -S_i f_i,
 * whose product with X (the caller's second matrix product) is grad L / exp(log_scale); the
 * label entry is a sum of positive terms, never a difference.
 *
 * Exactness. exp_flush is a branch-free exp the compiler vectorizes (Cody-Waite reduction by
 * ln 2, degree-13 Taylor polynomial on |r| <= ln 2 / 2 with truncation error < 5e-18 relative:
 * about 1 ulp), exact on the normal range and 0 below -708 (exp(-708) > 2^-1022), so vector
 * code never computes a subnormal (each costs a microcode assist). That 0 is already the
 * float64 result wherever the value only enters a sum whose largest term is >= 1 / n (S_i,
 * the loss and proxy sums, the per-sample formulas above). Where it would be kept, in the
 * entries of A, a product e_ic f_i below 2^-1021 is never formed: such entries (and those
 * whose e_ic was flushed) are recomputed as exp(z_ic - M_i + log f_i) with the C library's
 * exp, which is exact on the subnormal range, so the kernel flushes nothing the torch path
 * keeps.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef HARNESS_LIBMVEC /* glibc's vector log: the per-sample loops vectorize whole */
#pragma omp declare simd notinbranch
extern double log(double);
#endif

#define EXP_NORMAL_MIN (-708.0) /* exp(x) > 2^-1022 above this: the fast path is exact */
#define EXP_ZERO_MAX (-745.2)   /* exp(x) rounds to 0 in float64 at or below this */

static inline double exp_normal(double x) {
    const double shifter = 0x1.8p52;
    double t = x * 0x1.71547652b82fep0 + shifter; /* round(x / ln 2) in the low bits */
    double kd = t - shifter;
    double r = x - kd * 0x1.62e42fee00000p-1; /* ln 2, high part: kd times it is exact */
    r = r - kd * 0x1.a39ef35793c76p-33;       /* ln 2, low part */
    double p = 1.0 / 6227020800.0;            /* 1 / 13! */
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    int64_t t_bits, shifter_bits;
    memcpy(&t_bits, &t, sizeof t_bits);
    memcpy(&shifter_bits, &shifter, sizeof shifter_bits);
    int64_t scale_bits = (t_bits - shifter_bits + 1023) << 52; /* 2^round(x / ln 2) */
    double scale;
    memcpy(&scale, &scale_bits, sizeof scale);
    return p * scale;
}

/* exp(x) for x <= 0 (or -inf), 0 below EXP_NORMAL_MIN; NaN stays NaN. */
static inline double exp_flush(double x) {
    double clamped = x < EXP_NORMAL_MIN ? EXP_NORMAL_MIN : x;
    double value = exp_normal(clamped);
    return x < EXP_NORMAL_MIN ? 0.0 : value;
}

/* exp(x) for x <= 0, exact on the whole float64 range: exported for the tests. */
void exact_exp(const double *restrict x, double *restrict out, long n) {
#pragma omp simd
    for (long i = 0; i < n; i++) out[i] = exp_flush(x[i]);
    for (long i = 0; i < n; i++)
        if (x[i] < EXP_NORMAL_MIN && x[i] > EXP_ZERO_MAX) out[i] = exp(x[i]);
}

/* Per-sample a_i and log ell_i of CE (see the top of the file); returns max_i a_i. */
static double per_sample_ce(const double *restrict top, const double *restrict S,
                            double *restrict a, double *restrict log_ell, long n) {
    double a_max = -INFINITY;
#pragma omp simd reduction(max : a_max)
    for (long i = 0; i < n; i++) {
        double x = exp_flush(-fabs(top[i])); /* e^q and e^-p: one of them is 1 */
        double exp_q = top[i] < 0.0 ? x : 1.0, exp_neg_p = top[i] < 0.0 ? 1.0 : x;
        double sum = S[i] * exp_q + exp_neg_p; /* w = 1 + S e^top where top < 0 */
        double log_sum = log(sum);
        a[i] = (top[i] < 0.0 ? top[i] : 0.0) - log_sum;
        double h = sum == 1.0 ? 1.0 : log_sum / (sum - 1.0);
        double log_arg = top[i] < 0.0 ? h : top[i] + log_sum;
        double log_shift = top[i] < 0.0 ? log(S[i]) + top[i] : 0.0;
        log_ell[i] = log(log_arg) + log_shift;
        a_max = a[i] > a_max ? a[i] : a_max;
    }
    return a_max;
}

/* Per-sample a_i and log ell_i of the exponential loss; returns max_i a_i. */
static double per_sample_exp(const double *restrict top, const double *restrict S,
                             double *restrict a, double *restrict log_ell, long n) {
    double a_max = -INFINITY;
#pragma omp simd reduction(max : a_max)
    for (long i = 0; i < n; i++) {
        a[i] = top[i];
        log_ell[i] = top[i] + log(S[i]);
        a_max = a[i] > a_max ? a[i] : a_max;
    }
    return a_max;
}

/*
 * z: (B, k, n) logits; A: (B, k, n) output, the coefficient matrix; y: labels, run b's at
 * y + b * y_stride; loss_is_ce: 1 for CE, 0 for the exponential loss; outputs (B,) each;
 * scratch: 6 n doubles. The label entries are selected by comparing y_i with the row's class,
 * so every loop streams along contiguous rows (no scatter, no gather). A run whose logits are
 * not all finite gets NaN everywhere (the engine counts a NaN loss as a failed step).
 */
void log_frame_ce(const double *restrict z, double *restrict A, const int64_t *restrict y,
                  long y_stride, long B, long k, long n, int loss_is_ce,
                  double *restrict log_loss, double *restrict log_proxy,
                  double *restrict log_scale, double *restrict margin,
                  double *restrict scratch) {
    double *zmax = scratch, *top = zmax + n, *S = top + n, *a = S + n, *log_ell = a + n,
           *f = log_ell + n;
    const double log_n = log((double)n);
    for (long b = 0; b < B; b++) {
        const double *zb = z + b * k * n;
        double *Ab = A + b * k * n;
        const int64_t *yb = y + b * y_stride;
#pragma omp simd
        for (long i = 0; i < n; i++) {
            zmax[i] = -INFINITY;
            top[i] = 0.0; /* z_{i,y_i} for now */
            S[i] = 0.0;
        }
        long nonfinite = 0;
        for (long c = 0; c < k; c++) {
            const double *zc = zb + c * n;
#pragma omp simd reduction(+ : nonfinite)
            for (long i = 0; i < n; i++) {
                int label = yb[i] == c;
                top[i] = label ? zc[i] : top[i];
                zmax[i] = !label && zc[i] > zmax[i] ? zc[i] : zmax[i];
                nonfinite += !(fabs(zc[i]) <= DBL_MAX);
            }
        }
        if (nonfinite) { /* NaN or overflowed logits: every output of the run is NaN */
            for (long i = 0; i < k * n; i++) Ab[i] = NAN;
            margin[b] = log_scale[b] = log_loss[b] = log_proxy[b] = NAN;
            continue;
        }
        double top_max = -INFINITY;
#pragma omp simd reduction(max : top_max)
        for (long i = 0; i < n; i++) {
            top[i] = zmax[i] - top[i];
            top_max = top[i] > top_max ? top[i] : top_max;
        }
        for (long c = 0; c < k; c++) {
            const double *zc = zb + c * n;
            double *ec = Ab + c * n;
#pragma omp simd
            for (long i = 0; i < n; i++) {
                ec[i] = yb[i] == c ? 0.0 : exp_flush(zc[i] - zmax[i]);
                S[i] += ec[i];
            }
        }
        /* Every sample separated by more than 38 + log k: v = S_i e^top_i < e^-38 < 2^-54, so
         * CE's a_i = top_i - log1p(v) and log ell_i = log S_i + top_i + log(log1p(v) / v) are
         * top_i and log S_i + top_i to within 2^-54 absolute, where |a_i|, |log ell_i| > 38:
         * the exponential loss's formulas, with one log per sample instead of three. */
        int separated = top_max < -38.0 - log((double)k);
        double a_max = loss_is_ce && !separated ? per_sample_ce(top, S, a, log_ell, n)
                                                : per_sample_exp(top, S, a, log_ell, n);
        double ell_max = -INFINITY;
#pragma omp simd reduction(max : ell_max)
        for (long i = 0; i < n; i++) ell_max = log_ell[i] > ell_max ? log_ell[i] : ell_max;
        double ell_sum = 0.0, w_sum = 0.0;
        long tiny_f = 0;
        double *w = log_ell; /* sum_c A_ic, written over log ell_i once it is summed */
#pragma omp simd reduction(+ : ell_sum, w_sum, tiny_f)
        for (long i = 0; i < n; i++) {
            ell_sum += exp_flush(log_ell[i] - ell_max);
            a[i] = a[i] - a_max - log_n; /* log f_i */
            f[i] = exp_flush(a[i]);
            w[i] = S[i] * f[i]; /* S in [1, k - 1]: no subnormal product */
            w_sum += w[i];
            tiny_f += a[i] < EXP_NORMAL_MIN;
        }
        if (tiny_f) /* f_i flushed: the label entries -S_i f_i in the subnormal range, exactly */
            for (long i = 0; i < n; i++)
                if (a[i] < EXP_NORMAL_MIN) w[i] = exp(log(S[i]) + a[i]);
        for (long c = 0; c < k; c++) {
            const double *zc = zb + c * n;
            double *Ac = Ab + c * n;
            long subnormal = 0;
#pragma omp simd reduction(+ : subnormal)
            for (long i = 0; i < n; i++) {
                /* e f >= 2^-1021 iff z - M + log f >= EXP_NORMAL_MIN (then e was not flushed) */
                double arg = zc[i] - zmax[i] + a[i];
                int label = yb[i] == c, kept = arg >= EXP_NORMAL_MIN;
                subnormal += !label & !kept & (arg > EXP_ZERO_MAX);
                Ac[i] = label ? -w[i] : kept ? Ac[i] * f[i] : 0.0;
            }
            if (subnormal) /* the entries in the subnormal range, exactly */
                for (long i = 0; i < n; i++) {
                    double arg = zc[i] - zmax[i] + a[i];
                    if (yb[i] != c && arg < EXP_NORMAL_MIN && arg > EXP_ZERO_MAX)
                        Ac[i] = exp(arg);
                }
        }
        margin[b] = -top_max;
        log_scale[b] = a_max;
        log_loss[b] = ell_max + log(ell_sum) - log_n;
        log_proxy[b] = a_max + log(w_sum);
    }
}
