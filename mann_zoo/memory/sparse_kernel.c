/* The sparse DNC's content look-up candidates (memory/sparse.py, content_candidates): for each key, the M
 * slots most similar to it by cosine, in one pass over the memory's normalised rows and without a
 * [B, H, N] table of scores (torch: one bmm writing the table, then one top-k per head reading it).
 *
 * Compiled with the other kernels by memory/native.py (REAL is float or double, names suffixed _f32 or _f64;
 * EPS is memory/_checks.py's) and called through ctypes on contiguous CPU tensors.
 *
 * Shapes (row-major, contiguous): units U [B, W, N1], the memory's rows M(i) / sqrt(|M(i)|^2 + EPS) as
 * columns, N1 = N + 1 (column N: the empty slot, never chosen); keys k [B, H, W]; out: index [B, H, M]
 * (int64) and score [B, H, M], each row best first (ties: the lower slot first). M <= N.
 *
 *   score_i = (k / sqrt(|k|^2 + EPS)) . U[:, i]                                            (DNC content look-up)
 *
 * A NaN score counts as the lowest (the M slots are then still M distinct slots in 0..N-1).
 */

#include <stddef.h>  /* ptrdiff_t */
#include <stdint.h>  /* int64_t: torch's int64 index */
#include <math.h>    /* sqrt, INFINITY */
#include <stdlib.h>  /* malloc, free */

#ifndef SPARSE_BLOCK
#define SPARSE_BLOCK 2048  /* slots scored at a time: long runs of each row of U (the hardware prefetcher's
                              streams), their scores in the L1-L2 caches while ranked */
#define SPARSE_MAX_HEADS 16  /* keys per call (the DNC's read and write heads); more: the torch path */
#endif

/* Insert (s, i) into the list (value, index) of length n < cap or n == cap (then the last is dropped),
 * kept in descending order of value; returns the new length. */
static ptrdiff_t NAME(insert_ranked)(REAL *value, int64_t *index, ptrdiff_t n, ptrdiff_t cap, REAL s, int64_t i) {
    ptrdiff_t at = n < cap ? n : cap - 1;
    while (at > 0 && value[at - 1] < s) {  /* equal values keep scan order: the lower slot first */
        value[at] = value[at - 1];
        index[at] = index[at - 1];
        at--;
    }
    value[at] = s;
    index[at] = i;
    return n < cap ? n + 1 : n;
}

/* Returns 0, 1 where the block's buffer could not be allocated, 2 where H is above SPARSE_MAX_HEADS
 * (nothing valid written then). */
int NAME(content_candidates)(const REAL *units, const REAL *keys, int64_t *index, REAL *score,
                             ptrdiff_t B, ptrdiff_t W, ptrdiff_t N1, ptrdiff_t H, ptrdiff_t M) {
    if (H > SPARSE_MAX_HEADS) return 2;
    const ptrdiff_t N = N1 - 1;
    REAL *scores = malloc(H * SPARSE_BLOCK * sizeof(REAL));
    if (!scores) return 1;
    REAL unit_key[SPARSE_MAX_HEADS];
    for (ptrdiff_t b = 0; b < B; b++) {
        const REAL *U = units + b * W * N1, *k = keys + b * H * W;
        ptrdiff_t count[SPARSE_MAX_HEADS];
        for (ptrdiff_t h = 0; h < H; h++) {
            REAL kk = 0;
            for (ptrdiff_t j = 0; j < W; j++) kk += k[h * W + j] * k[h * W + j];
            unit_key[h] = 1 / sqrt(kk + EPS);
            count[h] = 0;
        }
        for (ptrdiff_t start = 0; start < N; start += SPARSE_BLOCK) {
            const ptrdiff_t n = N - start < SPARSE_BLOCK ? N - start : SPARSE_BLOCK;
            for (ptrdiff_t h = 0; h < H; h++) {
                REAL *s = scores + h * SPARSE_BLOCK;
#pragma omp simd
                for (ptrdiff_t i = 0; i < n; i++) s[i] = 0;
            }
            for (ptrdiff_t h = 0; h < H; h++) {  /* s += k_j U_j over the block, four rows of U at a time */
                const REAL *kh = k + h * W;
                REAL *s = scores + h * SPARSE_BLOCK;
                ptrdiff_t j = 0;
                for (; j + 4 <= W; j += 4) {
                    const REAL *U0 = U + j * N1 + start, *U1 = U0 + N1, *U2 = U1 + N1, *U3 = U2 + N1;
                    const REAL k0 = kh[j], k1 = kh[j + 1], k2 = kh[j + 2], k3 = kh[j + 3];
#pragma omp simd
                    for (ptrdiff_t i = 0; i < n; i++) s[i] += k0 * U0[i] + k1 * U1[i] + k2 * U2[i] + k3 * U3[i];
                }
                for (; j < W; j++) {
                    const REAL *Uj = U + j * N1 + start, kj = kh[j];
#pragma omp simd
                    for (ptrdiff_t i = 0; i < n; i++) s[i] += kj * Uj[i];
                }
            }
            for (ptrdiff_t h = 0; h < H; h++) {
                REAL *v = score + (b * H + h) * M;
                int64_t *x = index + (b * H + h) * M;
                const REAL *s = scores + h * SPARSE_BLOCK;
                if (count[h] == M) {  /* full: a block whose best is not above the M-th is passed over */
                    REAL top = -INFINITY;
#pragma omp simd reduction(max : top)
                    for (ptrdiff_t i = 0; i < n; i++) top = s[i] > top ? s[i] : top;
                    if (!(top * unit_key[h] > v[M - 1])) continue;
                }
                for (ptrdiff_t i = 0; i < n; i++) {
                    REAL si = s[i] * unit_key[h];
                    si = si != si ? -INFINITY : si;  /* NaN: the lowest */
                    if (count[h] < M || si > v[M - 1])
                        count[h] = NAME(insert_ranked)(v, x, count[h], M, si, start + i);
                }
            }
        }
    }
    free(scores);
    return 0;
}
