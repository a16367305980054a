/* The DNC's link update and directional reads (memory/linkage.py), forward and backward, one pass over
 * the N x N link per step in the forward and one in the backward (torch's kernels take about eleven).
 *
 * Compiled at first use by memory/native.py (the system's C compiler, no Python or torch headers) and
 * called through ctypes on contiguous CPU tensors. REAL is float or double: the file is compiled once
 * for each, the functions named with the suffix _f32 or _f64.
 *
 * Shapes (row-major, contiguous): link, new_link, grads of the link [B, Hw, N, N]; precedence p and
 * write weights w [B, Hw, N]; read weights r [B, Hr, N]; forward f and backward b [B, Hr, Hw, N].
 *
 *   L_t[i, j] = (1 - w_i - w_j) L_{t-1}[i, j] + w_i p_j,   L_t[i, i] = 0
 *   f[i] = sum_j L_t[i, j] r[j],   b[j] = sum_i L_t[i, j] r[i]
 */

#include <stddef.h>

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define NAME(name) CAT(name, SUFFIX)

/* Forward. forward and backward are written (zeroed here first). */
void NAME(link_reads_forward)(const REAL *link, const REAL *prec, const REAL *w, const REAL *r,
                              REAL *new_link, REAL *forward, REAL *backward,
                              long B, long Hw, long Hr, long N) {
    for (long b = 0; b < B; b++) {
        for (long h = 0; h < Hw; h++) {
            const REAL *L = link + (b * Hw + h) * N * N, *p = prec + (b * Hw + h) * N, *wh = w + (b * Hw + h) * N;
            REAL *Lt = new_link + (b * Hw + h) * N * N;
            for (long k = 0; k < Hr; k++) {
                REAL *bk = backward + ((b * Hr + k) * Hw + h) * N;
                for (long j = 0; j < N; j++) bk[j] = 0;
            }
            for (long i = 0; i < N; i++) {
                const REAL *Li = L + i * N;
                REAL *Lti = Lt + i * N;
                const REAL keep_i = 1 - wh[i], wi = wh[i];
#pragma omp simd
                for (long j = 0; j < N; j++) Lti[j] = (keep_i - wh[j]) * Li[j] + wi * p[j];  /* L_t[i, j] */
                Lti[i] = 0;
                for (long k = 0; k < Hr; k++) {
                    const REAL *rk = r + (b * Hr + k) * N;
                    REAL *bk = backward + ((b * Hr + k) * Hw + h) * N;
                    const REAL rki = rk[i];
                    REAL fi = 0;
#pragma omp simd reduction(+ : fi)
                    for (long j = 0; j < N; j++) {
                        fi += Lti[j] * rk[j];    /* f[i] += L_t[i, j] r[j] */
                        bk[j] += Lti[j] * rki;   /* b[j] += L_t[i, j] r[i] */
                    }
                    forward[((b * Hr + k) * Hw + h) * N + i] = fi;
                }
            }
        }
    }
}

/* Backward. grad_new_link, grad_forward, grad_backward may be NULL (no gradient: zeros). Writes
 * grad_link [B, Hw, N, N], grad_prec and grad_w [B, Hw, N], grad_r [B, Hr, N] (all zeroed here first).
 * With G = dE/dL_t (from the next step, plus this step's reads: G[i, j] += gf[i] r[j] + r[i] gb[j]),
 * G[i, i] = 0, and L_t recomputed from L_{t-1} (cheaper than reading it):
 *   dL_{t-1}[i, j] = G[i, j] (1 - w_i - w_j)
 *   dw_i += sum_j G[i, j] (p_j - L_{t-1}[i, j]),   dw_j -= sum_i G[i, j] L_{t-1}[i, j]
 *   dp_j += sum_i G[i, j] w_i
 *   dr_j += sum_i L_t[i, j] gf[i],   dr_i += sum_j L_t[i, j] gb[j]                                     */
void NAME(link_reads_backward)(const REAL *link, const REAL *prec, const REAL *w, const REAL *r,
                               const REAL *grad_new_link, const REAL *grad_forward, const REAL *grad_backward,
                               REAL *grad_link, REAL *grad_prec, REAL *grad_w, REAL *grad_r,
                               long B, long Hw, long Hr, long N) {
    for (long x = 0; x < B * Hw * N; x++) grad_prec[x] = grad_w[x] = 0;
    for (long x = 0; x < B * Hr * N; x++) grad_r[x] = 0;
    for (long b = 0; b < B; b++) {
        for (long h = 0; h < Hw; h++) {
            const long bh = b * Hw + h;
            const REAL *L = link + bh * N * N, *p = prec + bh * N, *wh = w + bh * N;
            const REAL *Gn = grad_new_link ? grad_new_link + bh * N * N : NULL;
            REAL *dL = grad_link + bh * N * N, *dp = grad_prec + bh * N, *dw = grad_w + bh * N;
            for (long i = 0; i < N; i++) {
                const REAL *Li = L + i * N;
                REAL *G = dL + i * N;  /* G's row i is built in dL's row i, then scaled in place */
                const REAL keep_i = 1 - wh[i], wi = wh[i];
                if (Gn) {
                    for (long j = 0; j < N; j++) G[j] = Gn[i * N + j];
                } else {
                    for (long j = 0; j < N; j++) G[j] = 0;
                }
                for (long k = 0; k < Hr; k++) {
                    const REAL *rk = r + (b * Hr + k) * N;
                    const REAL gfi = grad_forward ? grad_forward[((b * Hr + k) * Hw + h) * N + i] : 0;
                    const REAL *gbk = grad_backward ? grad_backward + ((b * Hr + k) * Hw + h) * N : NULL;
                    const REAL rki = rk[i];
                    REAL *drk = grad_r + (b * Hr + k) * N;
                    REAL dri = 0;
                    if (gbk) {
#pragma omp simd reduction(+ : dri)
                        for (long j = 0; j < N; j++) {
                            const REAL Ltij = (keep_i - wh[j]) * Li[j] + wi * p[j];
                            G[j] += gfi * rk[j] + rki * gbk[j];
                            drk[j] += Ltij * gfi;
                            dri += Ltij * gbk[j];
                        }
                        /* the diagonal of L_t is 0: take back its terms */
                        dri -= ((keep_i - wi) * Li[i] + wi * p[i]) * gbk[i];
                    } else {
#pragma omp simd
                        for (long j = 0; j < N; j++) {
                            const REAL Ltij = (keep_i - wh[j]) * Li[j] + wi * p[j];
                            G[j] += gfi * rk[j];
                            drk[j] += Ltij * gfi;
                        }
                    }
                    drk[i] -= ((keep_i - wi) * Li[i] + wi * p[i]) * gfi;
                    drk[i] += dri;
                }
                G[i] = 0;
                REAL dwi = 0;
#pragma omp simd reduction(+ : dwi)
                for (long j = 0; j < N; j++) {
                    const REAL g = G[j], gl = g * Li[j];
                    dwi += g * p[j] - gl;
                    dw[j] -= gl;
                    dp[j] += g * wi;
                    G[j] = g * (keep_i - wh[j]);  /* dL_{t-1}[i, j] */
                }
                dw[i] += dwi;
            }
        }
    }
}
