/*
 * CPU kernel of harness.losses.evaluate for cross-entropy and the exponential loss: everything
 * between the two matrix products of a step, one cache-resident pass per run (evaluate_run of
 * log_frame.h, which states the formulas), for a batch of runs whose matrix products the
 * caller makes with torch.
 */
#include "log_frame.h"

/* exp_flush on an array: exported for the tests. */
void flush_exp(const double *restrict x, double *restrict out, long n) {
#pragma omp simd
    for (long i = 0; i < n; i++) out[i] = exp_flush(x[i]);
}

/* Doubles of scratch log_frame_ce needs. */
long log_frame_ce_scratch(long n) { return SCRATCH_PER_SAMPLE * n; }

/*
 * grad[b] += G_lo[b] 2^-LO_SHIFT for the runs with dropped[b] > 0, after the caller's product
 * A^T X: the contribution of the coefficients log_frame_ce wrote as 0, rounded once more.
 * grad and G_lo: (B, kd).
 */
void add_dropped_contributions(double *restrict grad, const double *restrict G_lo,
                               const double *restrict dropped, long B, long kd) {
    for (long b = 0; b < B; b++)
        if (dropped[b] > 0.0) add_dropped_run(grad + b * kd, G_lo + b * kd, kd);
}

/*
 * z: (B, k, n) logits, overwritten (its label entries become -inf); A: (B, k, n) output, the
 * coefficient matrix; y: labels, run b's at y + b * y_stride; loss_is_ce: 1 for CE, 0 for the
 * exponential loss; X: the data, run b's (n, d) at X + b * x_stride; five outputs of shape
 * (B,) (dropped: see "Subnormal coefficients" in log_frame.h); G_lo: (B, k, d) output, the
 * dropped coefficients' part of A^T X times 2^64; scratch: log_frame_ce_scratch(n) doubles.
 */
void log_frame_ce(double *restrict z, double *restrict A, const int64_t *restrict y,
                  long y_stride, const double *restrict X, long x_stride, long d, long B,
                  long k, long n, int loss_is_ce, double *restrict log_loss,
                  double *restrict log_proxy, double *restrict log_scale,
                  double *restrict margin, double *restrict dropped_out,
                  double *restrict G_lo, double *restrict scratch) {
    const double log_n = log((double)n), log_k = log((double)k);
    const double log_k1 = log((double)(k - 1));
    for (long b = 0; b < B; b++) {
        struct run_values v = evaluate_run(z + b * k * n, A + b * k * n, y + b * y_stride,
                                           X + b * x_stride, d, k, n, loss_is_ce, log_n,
                                           log_k, log_k1, G_lo + b * k * d, scratch);
        log_loss[b] = v.log_loss;
        log_proxy[b] = v.log_proxy;
        log_scale[b] = v.log_scale;
        margin[b] = v.margin;
        dropped_out[b] = v.dropped;
    }
}

/* log_vec on an array: exported for the tests. */
void log_array(const double *restrict x, double *restrict out, long n) {
#pragma omp simd
    for (long i = 0; i < n; i++) out[i] = log_vec(x[i]);
}
