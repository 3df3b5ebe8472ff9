/*
 * Whole steps of normalized steepest descent in an entrywise p-norm (SignGD: p = inf, NGD:
 * p = 2, coordinate descent: p = 1, NSD-p otherwise) for CE and the exponential loss, on the
 * CPU in float64: the engine's stepping loop (harness/engine.py, _Stepper.step) for these
 * stateless methods, one call per span of steps and range of runs instead of about a dozen
 * torch calls per step. Each run stays in cache for the whole span: its logits z = W X^T,
 * the log-frame evaluation of log_frame.h (the formulas of harness.losses.evaluate), the
 * scaled gradient g = A^T X with the dropped subnormal part added back, the direction
 * D = argmax_{||D||_p <= 1} <g, D> (harness.norms.steepest_direction, scale-invariant, so g
 * in the log frame gives the exact algorithm's direction) and W <- W - eta_t D.
 *
 * Per step and run it writes the engine's invariant fields (harness.invariants.FIELDS):
 * log L, log G, the margin, eta_t, whether W moved, and NaN for the Adam ratio.
 *
 * Runs that share their data advance eight at a time, one per vector lane: steepest_lanes.h
 * (same step, same summation order; it hands any step it cannot take exactly to step_run).
 *
 * The matrix products are register-tiled loops the compiler vectorizes along the samples
 * (logits, with X^T) and along the features (gradient, with X padded to a multiple of 8
 * columns); their sums run in another order than BLAS's, so the trajectory agrees with the
 * torch path's to float64 rounding, not bit for bit.
 */
#include "log_frame.h"

/* GCC vector types (lowered to whatever the CPU has): whole tiles of accumulators stay in
 * registers. v8u: the same, for loads at any double-aligned address. */
typedef double v8 __attribute__((vector_size(64)));
typedef double v8u __attribute__((vector_size(64), aligned(8)));
#define LANES 8
#define TILE_C 5 /* classes per register tile (the paper's k = 10 and the small k = 5 fill them) */
#define TILE_V 4 /* vectors of samples (logits) or of features (gradient) per tile */

static inline v8 load8(const double *p) { return *(const v8u *)p; }
/* d rounded up to a multiple of LANES: the row width of the padded data Xp. */
long steepest_steps_padded_width(long d) { return (d + LANES - 1) / LANES * LANES; }
static inline void store8(double *p, v8 v) { *(v8u *)p = v; }

/* z (k, n) = W (k, d) X^T, with XT the (d, n) transpose: tiles of TILE_C classes by
 * TILE_V * LANES samples in registers, a plain loop for the rest. */
static void logits_run(const double *restrict W, const double *restrict XT, double *restrict z,
                       long k, long d, long n) {
    const long width = TILE_V * LANES, n_tiled = n / width * width;
    long c0 = 0;
    for (; c0 + TILE_C <= k; c0 += TILE_C)
        for (long i0 = 0; i0 < n_tiled; i0 += width) {
            v8 acc[TILE_C][TILE_V] = {{{0.0}}};
            for (long j = 0; j < d; j++) {
                v8 x[TILE_V];
                for (int v = 0; v < TILE_V; v++) x[v] = load8(XT + j * n + i0 + v * LANES);
                for (int c = 0; c < TILE_C; c++) {
                    double w = W[(c0 + c) * d + j];
                    for (int v = 0; v < TILE_V; v++) acc[c][v] += w * x[v];
                }
            }
            for (int c = 0; c < TILE_C; c++)
                for (int v = 0; v < TILE_V; v++)
                    store8(z + (c0 + c) * n + i0 + v * LANES, acc[c][v]);
        }
    for (long c = 0; c < k; c++) { /* the classes and samples outside the tiles */
        long i_start = c < c0 ? n_tiled : 0;
        double *zc = z + c * n;
#pragma omp simd
        for (long i = i_start; i < n; i++) zc[i] = 0.0;
        for (long j = 0; j < d; j++) {
            double w = W[c * d + j];
            const double *x = XT + j * n;
#pragma omp simd
            for (long i = i_start; i < n; i++) zc[i] += w * x[i];
        }
    }
}

/* G (k, dp) = A (k, n) Xp, with Xp the (n, dp) data padded with zero columns to dp, a
 * multiple of LANES: tiles of TILE_C classes by up to TILE_V vectors of features. */
static void gradient_run(const double *restrict A, const double *restrict Xp, double *restrict G,
                         long k, long dp, long n) {
    for (long c0 = 0; c0 < k; c0 += TILE_C) {
        long kc = k - c0 < TILE_C ? k - c0 : TILE_C;
        for (long j0 = 0; j0 < dp; j0 += TILE_V * LANES) {
            long nv = (dp - j0) / LANES < TILE_V ? (dp - j0) / LANES : TILE_V;
            v8 acc[TILE_C][TILE_V] = {{{0.0}}};
            if (kc == TILE_C && nv == TILE_V) {
                for (long i = 0; i < n; i++) {
                    const double *x = Xp + i * dp + j0;
                    for (int c = 0; c < TILE_C; c++) {
                        double a = A[(c0 + c) * n + i];
                        for (int v = 0; v < TILE_V; v++) acc[c][v] += a * load8(x + v * LANES);
                    }
                }
            } else {
                for (long i = 0; i < n; i++) {
                    const double *x = Xp + i * dp + j0;
                    for (long c = 0; c < kc; c++) {
                        double a = A[(c0 + c) * n + i];
                        for (long v = 0; v < nv; v++) acc[c][v] += a * load8(x + v * LANES);
                    }
                }
            }
            for (long c = 0; c < kc; c++)
                for (long v = 0; v < nv; v++) store8(G + (c0 + c) * dp + j0 + v * LANES, acc[c][v]);
        }
    }
}

/*
 * D = argmax_{||D||_p <= 1} <g, D> over the k d entries (harness.norms._entrywise_direction):
 * p = inf: sign(g); p = 1: sign(g_m) at the first entry m of largest |g| (0 elsewhere);
 * else, with u = g / max|g| and q = p / (p - 1): sign(u) |u|^(q-1) / ||u||_q^(q-1). Zero
 * where g is zero; NaN propagates (a NaN gradient makes a NaN step, as in torch).
 */
static void direction_run(const double *restrict g, double *restrict D, long m, double p) {
    if (isinf(p)) {
#pragma omp simd
        for (long j = 0; j < m; j++) D[j] = g[j] > 0.0 ? 1.0 : g[j] < 0.0 ? -1.0 : g[j];
        return;
    }
    double scale = 0.0;
    long first = 0;
    for (long j = 0; j < m; j++) {
        double v = fabs(g[j]);
        if (v > scale || v != v) {
            scale = v;
            first = j;
            if (v != v) break;
        }
    }
    if (p == 1.0) {
        memset(D, 0, m * sizeof *D);
        D[first] = g[first] > 0.0 ? 1.0 : g[first] < 0.0 ? -1.0 : g[first];
        return;
    }
    double safe = scale > 0.0 ? scale : 1.0, q = p / (p - 1.0), sum = 0.0;
    for (long j = 0; j < m; j++) {
        double u = g[j] / safe;
        D[j] = u;
        sum += pow(fabs(u), q);
    }
    double norm = pow(sum, 1.0 / q);
    double denominator = pow(norm > 0.0 ? norm : 1.0, q - 1.0);
    for (long j = 0; j < m; j++) {
        double u = D[j], sign = u > 0.0 ? 1.0 : u < 0.0 ? -1.0 : u;
        D[j] = sign * pow(fabs(u), q - 1.0) / denominator;
    }
}

/* The per-run step's scratch, in doubles: z and A (k n each), G, G_lo and D (k dp each:
 * G_lo and D use k d of theirs; this layout measured 4% faster at the paper size than packing
 * them, an alignment effect), g (k d) and evaluate_run's. */
static long run_scratch(long k, long d, long n) {
    return 2 * k * n + 3 * k * steepest_steps_padded_width(d) + k * d + SCRATCH_PER_SAMPLE * n;
}

/* Constants of a call shared by every step: the data of one run (or the shared data), its
 * layout and the method. */
struct problem {
    long k, d, n, dp;
    int loss_is_ce;
    double p, log_n, log_k, log_k1;
};

/* One step of one run: W (k, d) in place with step size eta, data X (n, d), XT (d, n), Xp
 * (n, dp), labels y; row: the run's six invariant fields at stride B. */
static void step_run(double *restrict Wb, const double *restrict Xb, const double *restrict XTb,
                     const double *restrict Xpb, const int64_t *restrict yb,
                     const struct problem *P, double eta, double *restrict row, long B,
                     double *restrict scratch) {
    const long k = P->k, d = P->d, n = P->n, dp = P->dp, kd = k * d;
    double *z = scratch, *A = z + k * n, *G = A + k * n, *G_lo = G + k * dp,
           *g = G_lo + k * dp, *D = g + kd, *evaluation_scratch = D + k * dp;
    logits_run(Wb, XTb, z, k, d, n);
    struct run_values v = evaluate_run(z, A, yb, Xb, d, k, n, P->loss_is_ce, P->log_n,
                                       P->log_k, P->log_k1, G_lo, evaluation_scratch);
    gradient_run(A, Xpb, G, k, dp, n);
    for (long c = 0; c < k; c++) memcpy(g + c * d, G + c * dp, d * sizeof *g);
    if (v.dropped > 0.0) add_dropped_run(g, G_lo, kd);
    direction_run(g, D, kd, P->p);
    long moved = 0;
#pragma omp simd reduction(| : moved)
    for (long j = 0; j < kd; j++) {
        double next = Wb[j] - eta * D[j];
        moved |= next != Wb[j];
        Wb[j] = next;
    }
    row[0] = v.log_loss;
    row[B] = v.log_proxy;
    row[2 * B] = v.margin;
    row[3 * B] = eta;
    row[4 * B] = (double)moved;
    row[5 * B] = NAN;
}

#include "steepest_lanes.h"

/* Doubles of scratch steepest_steps needs per thread: the per-run step's and the lane
 * steps' (steepest_lanes.h), one after the other. */
long steepest_steps_scratch(long k, long d, long n) {
    return run_scratch(k, d, n) + lane_scratch(k, d, n);
}

/* Runs [b, e) of the batch advanced by T steps (the arguments of steepest_steps); returns the
 * run-steps taken in the lanes. */
static long steps_range(double *restrict W, const double *restrict X, long x_stride,
                        const double *restrict XT, long xt_stride, const double *restrict Xp,
                        long xp_stride, const int64_t *restrict y, long y_stride, long B,
                        const struct problem *P, const double *restrict eta, long T, long b,
                        long e, double *restrict fields, double *restrict scratch) {
    const long kd = P->k * P->d;
    long lane_run_steps = 0;
    if (x_stride == 0 && xt_stride == 0 && xp_stride == 0 && y_stride == 0)
        for (; b + LANES <= e; b += LANES)
            lane_run_steps += lane_steps(W, X, XT, Xp, y, P, B, eta, T, b, fields, scratch,
                                         scratch + run_scratch(P->k, P->d, P->n));
    for (; b < e; b++) {
        double *Wb = W + b * kd;
        const double *Xb = X + b * x_stride, *XTb = XT + b * xt_stride, *Xpb = Xp + b * xp_stride;
        const int64_t *yb = y + b * y_stride;
        for (long t = 0; t < T; t++)
            step_run(Wb, Xb, XTb, Xpb, yb, P, eta[t * B + b], fields + t * 6 * B + b, B,
                     scratch);
    }
    return lane_run_steps;
}

/*
 * Advance runs [b0, b1) of a batch of B by T steps (the step sizes eta say where in their
 * schedules).
 *
 * W: (B, k, d), updated in place; X: the data, run b's (n, d) at X + b * x_stride; XT and Xp:
 * the same data transposed, (d, n) at XT + b * xt_stride, and padded with zero columns to
 * dp = steepest_steps_padded_width(d), (n, dp) at Xp + b * xp_stride (the caller prepares
 * both once); labels of run b at y + b * y_stride; loss_is_ce: 1 for CE, 0 for the exponential
 * loss; p: the norm's exponent (INFINITY for the max norm); eta: (T, B) step sizes;
 * fields: (T, 6, B) output, the engine's history rows; scratch: steepest_steps_scratch(k, d, n)
 * doubles, private to the calling thread (runs in disjoint ranges may advance concurrently).
 *
 * claimed: NULL, and the call advances the whole range; or a counter shared by every thread
 * advancing [b0, b1) in this span (0 before the first call), and each call advances chunks of
 * LANES runs (b0 + *claimed onwards, the counter raised atomically) until none is left. Why:
 * a static split of the runs between the threads waits at the end of every span for the
 * thread that shared its core with the engine's Python work (the rows and checks beside
 * the kernel); chunks claimed as the threads go keep both cores on the kernel to the end.
 * Runs are independent, so which thread takes a chunk changes no result.
 *
 * Where every run shares the data (all strides 0), whole groups of LANES runs advance
 * together, one run per vector lane (steepest_lanes.h); the rest of the range, and any step
 * of a group that leaves the lanes' safe range, take the per-run step. Returns the number of
 * run-steps the lanes took (the tests read it; the engine does not need it).
 */
long steepest_steps(double *restrict W, const double *restrict X, long x_stride,
                    const double *restrict XT, long xt_stride, const double *restrict Xp,
                    long xp_stride, const int64_t *restrict y, long y_stride, long B, long k,
                    long d, long n, int loss_is_ce, double p, const double *restrict eta,
                    long T, long b0, long b1, double *restrict fields,
                    double *restrict scratch, long *claimed) {
    const struct problem P = {k, d, n, steepest_steps_padded_width(d), loss_is_ce, p,
                              log((double)n), log((double)k), log((double)(k - 1))};
    if (claimed == NULL)
        return steps_range(W, X, x_stride, XT, xt_stride, Xp, xp_stride, y, y_stride, B, &P,
                           eta, T, b0, b1, fields, scratch);
    long lane_run_steps = 0;
    for (;;) {
        long b = b0 + __atomic_fetch_add(claimed, LANES, __ATOMIC_RELAXED);
        if (b >= b1) return lane_run_steps;
        long e = b + LANES < b1 ? b + LANES : b1;
        lane_run_steps += steps_range(W, X, x_stride, XT, xt_stride, Xp, xp_stride, y, y_stride,
                                      B, &P, eta, T, b, e, fields, scratch);
    }
}

/*
 * The two matrix products of steepest_steps alone, for harness bench's GEMM-only limit of
 * this kernel: for runs [0, B), z = W_b X^T and G = A_b Xp, repeated `repeats` times (W:
 * (B, k, d), A: (B, k, n) given; z and G: scratch as in steepest_steps).
 */
void steepest_steps_products(const double *restrict W, const double *restrict A,
                             const double *restrict XT, const double *restrict Xp, long B,
                             long k, long d, long n, long repeats, double *restrict scratch) {
    const long dp = steepest_steps_padded_width(d);
    double *z = scratch, *G = z + k * n;
    for (long r = 0; r < repeats; r++)
        for (long b = 0; b < B; b++) {
            logits_run(W + b * k * d, XT, z, k, d, n);
            gradient_run(A + b * k * n, Xp, G, k, dp, n);
        }
}
