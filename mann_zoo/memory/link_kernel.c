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

#include <stddef.h>  /* ptrdiff_t: sizes and offsets, 64-bit wherever pointers are */
#include <stdlib.h>  /* malloc, free */

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define NAME(name) CAT(name, SUFFIX)

/* Forward. Writes new_link, forward and backward (backward is zeroed here first: it is accumulated). */
void NAME(link_reads_forward)(const REAL *link, const REAL *prec, const REAL *w, const REAL *r,
                              REAL *new_link, REAL *forward, REAL *backward,
                              ptrdiff_t B, ptrdiff_t Hw, ptrdiff_t Hr, ptrdiff_t N) {
    for (ptrdiff_t b = 0; b < B; b++) {
        for (ptrdiff_t h = 0; h < Hw; h++) {
            const REAL *L = link + (b * Hw + h) * N * N, *p = prec + (b * Hw + h) * N, *wh = w + (b * Hw + h) * N;
            REAL *Lt = new_link + (b * Hw + h) * N * N;
            for (ptrdiff_t k = 0; k < Hr; k++) {
                REAL *bk = backward + ((b * Hr + k) * Hw + h) * N;
                for (ptrdiff_t j = 0; j < N; j++) bk[j] = 0;
            }
            for (ptrdiff_t i = 0; i < N; i++) {
                const REAL *Li = L + i * N;
                REAL *Lti = Lt + i * N;
                const REAL keep_i = 1 - wh[i], wi = wh[i];
#pragma omp simd
                for (ptrdiff_t j = 0; j < N; j++) Lti[j] = (keep_i - wh[j]) * Li[j] + wi * p[j];  /* L_t[i, j] */
                Lti[i] = 0;
                for (ptrdiff_t k = 0; k < Hr; k++) {
                    const REAL *rk = r + (b * Hr + k) * N;
                    REAL *bk = backward + ((b * Hr + k) * Hw + h) * N;
                    const REAL rki = rk[i];
                    REAL fi = 0;
#pragma omp simd reduction(+ : fi)
                    for (ptrdiff_t j = 0; j < N; j++) {
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
 *   dr_j += sum_i L_t[i, j] gf[i],   dr_i += sum_j L_t[i, j] gb[j]
 * Each row of L_{t-1} is copied (it stays in the cache) with its diagonal entry set to 0, which the new
 * link does not depend on: the loops run over whole rows (a test for j == i would stop vectorisation) and
 * the diagonal's terms, then finite, are taken back after them, whatever L_{t-1}[i, i] holds.
 * Returns 0, or 1 where the row buffer could not be allocated (nothing written then). */
int NAME(link_reads_backward)(const REAL *link, const REAL *prec, const REAL *w, const REAL *r,
                              const REAL *grad_new_link, const REAL *grad_forward, const REAL *grad_backward,
                              REAL *grad_link, REAL *grad_prec, REAL *grad_w, REAL *grad_r,
                              ptrdiff_t B, ptrdiff_t Hw, ptrdiff_t Hr, ptrdiff_t N) {
    REAL *row = malloc((N > 0 ? N : 1) * sizeof(REAL));
    if (!row) return 1;
    for (ptrdiff_t x = 0; x < B * Hw * N; x++) grad_prec[x] = grad_w[x] = 0;
    for (ptrdiff_t x = 0; x < B * Hr * N; x++) grad_r[x] = 0;
    for (ptrdiff_t b = 0; b < B; b++) {
        for (ptrdiff_t h = 0; h < Hw; h++) {
            const ptrdiff_t bh = b * Hw + h;
            const REAL *L = link + bh * N * N, *p = prec + bh * N, *wh = w + bh * N;
            const REAL *Gn = grad_new_link ? grad_new_link + bh * N * N : NULL;
            REAL *dL = grad_link + bh * N * N, *dp = grad_prec + bh * N, *dw = grad_w + bh * N;
            for (ptrdiff_t i = 0; i < N; i++) {
                REAL *G = dL + i * N;  /* G's row i is built in dL's row i, then scaled in place */
                const REAL keep_i = 1 - wh[i], wi = wh[i];
                const REAL Ltii = wi * p[i];  /* what the loops below take for L_t[i, i] (0 in truth) */
                for (ptrdiff_t j = 0; j < N; j++) row[j] = L[i * N + j];
                row[i] = 0;
                if (Gn) {
                    for (ptrdiff_t j = 0; j < N; j++) G[j] = Gn[i * N + j];
                } else {
                    for (ptrdiff_t j = 0; j < N; j++) G[j] = 0;
                }
                for (ptrdiff_t k = 0; k < Hr; k++) {
                    const REAL *rk = r + (b * Hr + k) * N;
                    const REAL gfi = grad_forward ? grad_forward[((b * Hr + k) * Hw + h) * N + i] : 0;
                    const REAL *gbk = grad_backward ? grad_backward + ((b * Hr + k) * Hw + h) * N : NULL;
                    const REAL rki = rk[i];
                    REAL *drk = grad_r + (b * Hr + k) * N;
                    REAL dri = 0;
                    if (gbk) {
#pragma omp simd reduction(+ : dri)
                        for (ptrdiff_t j = 0; j < N; j++) {
                            const REAL Ltij = (keep_i - wh[j]) * row[j] + wi * p[j];
                            G[j] += gfi * rk[j] + rki * gbk[j];  /* G[i, j] += gf[i] r[j] + r[i] gb[j] */
                            drk[j] += Ltij * gfi;                 /* dr_j += L_t[i, j] gf[i] */
                            dri += Ltij * gbk[j];                 /* dr_i += L_t[i, j] gb[j] */
                        }
                        dri -= Ltii * gbk[i];
                    } else {
#pragma omp simd
                        for (ptrdiff_t j = 0; j < N; j++) {
                            const REAL Ltij = (keep_i - wh[j]) * row[j] + wi * p[j];
                            G[j] += gfi * rk[j];
                            drk[j] += Ltij * gfi;
                        }
                    }
                    drk[i] += dri - Ltii * gfi;
                }
                G[i] = 0;
                REAL dwi = 0;
#pragma omp simd reduction(+ : dwi)
                for (ptrdiff_t j = 0; j < N; j++) {
                    const REAL g = G[j], gl = g * row[j];
                    dwi += g * p[j] - gl;         /* dw_i += G[i, j] (p_j - L_{t-1}[i, j]) */
                    dw[j] -= gl;                  /* dw_j -= G[i, j] L_{t-1}[i, j] */
                    dp[j] += g * wi;              /* dp_j += G[i, j] w_i */
                    G[j] = g * (keep_i - wh[j]);  /* dL_{t-1}[i, j] = G[i, j] (1 - w_i - w_j) */
                }
                dw[i] += dwi;
            }
        }
    }
    free(row);
    return 0;
}
