/*
 * CPU kernel of the spectral norm sigma_1(A) (harness.norms.Norm.value) for a
 * batch of small float64 matrices: the engine's checkpoints take it for every run, and the
 * batched LAPACK eigensolver behind torch.linalg.eigvalsh spent 1.2 of the 1.9 ms that a
 * checkpoint's spectral norms of 1024 matrices of 5 x 10 cost (7% of a small bench run).
 *
 * The formula is the torch path's: with s = max |A_cj| and B = A / s, sigma_1(A) =
 * s sqrt(lambda_max(G)) where G = B B^T (or B^T B where A is taller than wide: the smaller
 * side's m x m Gram matrix, entries summed along the longer side in ascending order). Only
 * the eigensolver differs: cyclic Jacobi, eight matrices at a time, one per vector lane.
 *
 * Jacobi (Rutishauser's rotation, Numerical Recipes' update with tau = s / (1 + c)): each
 * rotation zeroes G_pq exactly and fills the other off-diagonal entries with products of
 * off-diagonal entries, so they fall quadratically towards 0 with no floor at rounding level;
 * every rotation is orthogonal to rounding, so the computed eigenvalues are those of a
 * matrix within a small multiple of eps ||G|| of G. The sweeps stop once every lane has
 * 2 m off(G) <= 2^-112 ||G||_F^2 (off(G) the sum of the squared entries above the diagonal):
 * by Weyl's inequality the diagonal's largest entry is then within ||offdiag||_2 <=
 * sqrt(2 off(G)) <= 2^-56 ||G||_F / sqrt(m) <= 2^-56 lambda_max of lambda_max. For a Gram
 * matrix lambda_max = ||G||_2, so the result is accurate to a few ulps relative, as the
 * torch path's (the tests hold both to 50-digit mpmath values).
 *
 * A matrix with a non-finite entry gives NaN; the zero matrix gives 0.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LANES 8
#define MAX_SIDE 16   /* the largest m (smaller side) taken here; harness.norms uses torch above */
#define MAX_SWEEPS 60 /* a safety bound: 4096 random matrices of each shape from 2 x 3 to
                       * 16 x 100, and clustered spectra, took at most 8 sweeps */

typedef double v8 __attribute__((vector_size(64)));
typedef long m8 __attribute__((vector_size(64))); /* a comparison's result: -1 or 0 per lane */

/* The largest smaller side spectral_norms accepts. */
long spectral_norm_max_side(void) { return MAX_SIDE; }

/* Whether every lane of the mask is set. */
static inline int all_lanes(m8 mask) {
    long all = -1;
    for (int l = 0; l < LANES; l++) all &= mask[l];
    return all != 0;
}

/* yes where the mask is set, else no (lane by lane). */
static inline v8 select8(m8 mask, v8 yes, v8 no) {
    return (v8)((mask & (m8)yes) | (~mask & (m8)no));
}

static inline v8 sqrt8(v8 x) {
    v8 r;
#pragma omp simd
    for (int l = 0; l < LANES; l++) r[l] = sqrt(x[l]);
    return r;
}

static inline v8 abs8(v8 x) { return select8(x < 0.0, -x, x); }

/* One Jacobi rotation in the (p, q) plane of every lane's m x m symmetric G (row-major, an
 * entry per lane): zeroes G_pq (lanes where it is already 0 are left as they are). */
static void rotate(v8 *restrict G, long m, long p, long q) {
    v8 apq = G[p * m + q], app = G[p * m + p], aqq = G[q * m + q];
    v8 zero = {0.0}, one = zero + 1.0;
    m8 nonzero = apq != 0.0;
    v8 safe_apq = select8(nonzero, apq, one);
    v8 theta = (aqq - app) / (2.0 * safe_apq);
    v8 abs_theta = abs8(theta);
    v8 sign = select8(theta < 0.0, -one, one);
    /* theta^2 would overflow: t = 1 / (2 theta) to far below rounding */
    m8 huge = abs_theta > 0x1p500;
    v8 safe_theta = select8(huge, one, theta);
    v8 t = select8(huge, 0.5 / select8(huge, theta, one),
                   sign / (abs8(safe_theta) + sqrt8(safe_theta * safe_theta + 1.0)));
    t = select8(nonzero, t, zero);
    v8 c = 1.0 / sqrt8(t * t + 1.0), s = t * c, tau = s / (1.0 + c);
    G[p * m + p] = app - t * apq;
    G[q * m + q] = aqq + t * apq;
    G[p * m + q] = G[q * m + p] = select8(nonzero, zero, apq);
    for (long r = 0; r < m; r++) {
        if (r == p || r == q) continue;
        v8 arp = G[r * m + p], arq = G[r * m + q];
        v8 new_rp = arp - s * (arq + tau * arp), new_rq = arq + s * (arp - tau * arq);
        G[r * m + p] = G[p * m + r] = new_rp;
        G[r * m + q] = G[q * m + r] = new_rq;
    }
}

/* lambda_max of every lane's G (m x m symmetric positive semi-definite), by cyclic Jacobi
 * until the stopping rule of the file's top holds in every lane. */
static v8 largest_eigenvalue(v8 *restrict G, long m) {
    for (int sweep = 0; sweep < MAX_SWEEPS; sweep++) {
        v8 off = {0.0}, diagonal = {0.0};
        for (long i = 0; i < m; i++) {
            diagonal += G[i * m + i] * G[i * m + i];
            for (long j = i + 1; j < m; j++) off += G[i * m + j] * G[i * m + j];
        }
        if (all_lanes(2.0 * (double)m * off <= 0x1p-112 * (diagonal + 2.0 * off))) break;
        for (long p = 0; p < m - 1; p++)
            for (long q = p + 1; q < m; q++) rotate(G, m, p, q);
    }
    v8 top = G[0];
    for (long i = 1; i < m; i++) top = select8(G[i * m + i] > top, G[i * m + i], top);
    return top;
}

/*
 * out[b] = sigma_1 of A[b] for b < B, A: (B, k, d) row-major float64 with min(k, d) <=
 * MAX_SIDE. Returns 0, or -1 (out untouched) where min(k, d) is out of range or the
 * scratch cannot be allocated.
 */
long spectral_norms(const double *restrict A, long B, long k, long d, double *restrict out) {
    const long m = k < d ? k : d, L = k < d ? d : k, kd = k * d;
    if (m < 1 || m > MAX_SIDE) return -1;
    double *rows = malloc(sizeof(double) * m * L); /* one matrix's B (or B^T), m x L */
    v8 *G = aligned_alloc(64, sizeof(v8) * m * m);
    if (rows == NULL || G == NULL) {
        free(rows);
        free(G);
        return -1;
    }
    for (long b0 = 0; b0 < B; b0 += LANES) {
        double scale[LANES];
        memset(G, 0, sizeof(v8) * m * m);
        for (int l = 0; l < LANES; l++) {
            scale[l] = 0.0;
            if (b0 + l >= B) continue; /* a zero matrix in the unused lanes */
            const double *a = A + (b0 + l) * kd;
            double top = 0.0;
            for (long e = 0; e < kd; e++) {
                double v = fabs(a[e]);
                top = v > top || v != v ? v : top;
            }
            scale[l] = top;
            if (!(top > 0.0) || isinf(top)) continue; /* 0 (then G = 0), inf or NaN */
            for (long i = 0; i < m; i++)
                for (long t = 0; t < L; t++)
                    rows[i * L + t] = (k <= d ? a[i * d + t] : a[t * d + i]) / top;
            for (long i = 0; i < m; i++)
                for (long j = i; j < m; j++) {
                    double sum = 0.0;
                    for (long t = 0; t < L; t++) sum += rows[i * L + t] * rows[j * L + t];
                    G[i * m + j][l] = G[j * m + i][l] = sum;
                }
        }
        v8 top = largest_eigenvalue(G, m);
        for (int l = 0; l < LANES && b0 + l < B; l++) {
            double s = scale[l];
            out[b0 + l] = s != s || isinf(s) ? NAN : s * sqrt(top[l] > 0.0 ? top[l] : 0.0);
        }
    }
    free(rows);
    free(G);
    return 0;
}
