/* The sparse DNC's content look-up candidates (memory/sparse.py, content_candidates): for each key, the M
 * slots most similar to it by cosine, in one pass over the memory's normalised rows and without a
 * [B, H, N] table of scores (torch: one bmm writing the table, then one top-k per head reading it).
 *
 * Compiled with the other kernels by memory/native.py (REAL is float or double, names suffixed _f32 or _f64;
 * EPS is memory/_checks.py's) and called through ctypes on contiguous CPU tensors.
 *
 * Shapes (row-major, contiguous): units U [B, W, N1], the memory's rows M(i) / sqrt(|M(i)|^2 + EPS) as
 * columns, N1 = N + 1 (column N: the empty slot, never chosen); keys k [B, H, W]; written [B, N1] (bytes 0 or
 * 1, or NULL): the slots written since the memory was all zeros; out: index [B, H, M] (int64) and score
 * [B, H, M], each row best first (ties: the lower slot first). M <= N.
 *
 *   score_i = (k / sqrt(|k|^2 + EPS)) . U[:, i]                                            (DNC content look-up)
 *
 * A NaN score counts as the lowest (the M slots are then still M distinct slots in 0..N-1).
 *
 * Where few slots were written (a sequence's first steps: at most K a step), the others' columns of U are
 * zero and all score the same (0, or NaN for a key with a NaN or an infinity): of them only the M lowest can
 * be among the M best, so only the written slots and those M are scored, in slot order, with the same
 * sums; the result is the full pass's (bit for bit with GCC 12 here; in principle a compiler may contract
 * the scalar and the vectorised multiply-adds differently: the last bit of a score, near-equal ranks).
 * Else (or written NULL) the full pass.
 */

#include <stddef.h>  /* ptrdiff_t */
#include <stdint.h>  /* int64_t: torch's int64 index */
#include <math.h>    /* sqrt, INFINITY */
#include <stdlib.h>  /* malloc, free */
#include <string.h>  /* memcpy */

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

/* s = k . U[:, i], summed as the full pass sums it (four rows of U at a time). */
static REAL NAME(score_column)(const REAL *k, const REAL *U, ptrdiff_t W, ptrdiff_t N1, ptrdiff_t i) {
    REAL s = 0;
    ptrdiff_t j = 0;
    for (; j + 4 <= W; j += 4)
        s += k[j] * U[j * N1 + i] + k[j + 1] * U[(j + 1) * N1 + i] + k[j + 2] * U[(j + 2) * N1 + i]
             + k[j + 3] * U[(j + 3) * N1 + i];
    for (; j < W; j++) s += k[j] * U[j * N1 + i];
    return s;
}

/* The number of written slots among the first N bytes of written (8 at a time where a word is all zero). */
static ptrdiff_t NAME(count_written)(const unsigned char *written, ptrdiff_t N) {
    ptrdiff_t count = 0, i = 0;
    for (; i + 8 <= N; i += 8) {
        uint64_t word;
        memcpy(&word, written + i, 8);
        if (word)
            for (ptrdiff_t j = i; j < i + 8; j++) count += written[j] != 0;
    }
    for (; i < N; i++) count += written[i] != 0;
    return count;
}

/* The short pass's next slot from i on: a written one, or one of the first M unwritten ones (*others counts those
 * taken; past them, zero words of the flags are skipped 8 slots at a time); N where none is left. */
static ptrdiff_t NAME(next_short_slot)(const unsigned char *w, ptrdiff_t i, ptrdiff_t N, ptrdiff_t M, ptrdiff_t *others) {
    for (; i < N; i++) {
        if (w[i]) return i;
        if (*others < M) {
            (*others)++;
            return i;
        }
        uint64_t word;
        while (i + 8 <= N && (memcpy(&word, w + i, 8), word == 0)) i += 8;
        if (i < N && w[i]) return i;
    }
    return N;
}

/* Returns 0, 1 where the block's buffer could not be allocated, 2 where H is above SPARSE_MAX_HEADS
 * (nothing valid written then). */
int NAME(content_candidates)(const REAL *units, const REAL *keys, const unsigned char *written, int64_t *index,
                             REAL *score, ptrdiff_t B, ptrdiff_t W, ptrdiff_t N1, ptrdiff_t H, ptrdiff_t M) {
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
        const unsigned char *w = written ? written + b * N1 : NULL;
        if (w && NAME(count_written)(w, N) + M <= N / 8) {  /* few written: those and the M lowest others */
            ptrdiff_t others = 0;
            for (ptrdiff_t i = NAME(next_short_slot)(w, 0, N, M, &others); i < N;
                 i = NAME(next_short_slot)(w, i + 1, N, M, &others)) {
                for (ptrdiff_t h = 0; h < H; h++) {
                    REAL si = NAME(score_column)(k + h * W, U, W, N1, i) * unit_key[h];
                    si = si != si ? -INFINITY : si;
                    REAL *v = score + (b * H + h) * M;
                    if (count[h] < M || si > v[M - 1])
                        count[h] = NAME(insert_ranked)(v, index + (b * H + h) * M, count[h], M, si, i);
                }
            }
            continue;
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

/* The sparse link's column lists after the rows `written` were rewritten (memory/sparse_link.py's
 * _leave_columns and _join_columns, one loop per link head instead of some forty tensor operations).
 *
 * Shapes (row-major, contiguous), for G link heads, N1 = N + 1 rows (N: none) and C entries per row and
 * column: columns, rows, places [G, N1, C] int64, changed in place; values [G, N1, C] the entries' values
 * (after the write); written [G, K] int64 the rows rewritten (distinct, or N); old_columns [G, K, C] their
 * columns before; new_columns [G, K, C] and new_values [G, K, C] their entries now (columns[written] is
 * new_columns already).
 *
 * 1. Each written row leaves the lists of its old columns.
 * 2. Each column of a written row's new entries (each once) keeps the C largest of its listed rows whose
 *    entry is still there and the written rows with an entry in it, best first (equal values: listed rows
 *    first, then written rows, each in list order); the rest of the list is none. A row that loses its
 *    place loses its entry: its column becomes none in its row (after every list is made).
 * Returns 0, 1 where a buffer could not be allocated, 2 where C + K is above SPARSE_MAX_CANDIDATES
 * (nothing written then). */
#ifndef SPARSE_MAX_CANDIDATES
#define SPARSE_MAX_CANDIDATES 256
#endif
int NAME(link_columns_update)(int64_t *columns, int64_t *rows, int64_t *places, const REAL *values,
                              const int64_t *written, const int64_t *old_columns, const int64_t *new_columns,
                              const REAL *new_values, ptrdiff_t G, ptrdiff_t N1, ptrdiff_t C, ptrdiff_t K) {
    if (C + K > SPARSE_MAX_CANDIDATES) return 2;
    const int64_t none = N1 - 1;
    const ptrdiff_t KC = K * C;
    ptrdiff_t size = 2;  /* a hash table of the new columns (open addressing, at most half full) */
    while (size < 2 * KC) size <<= 1;
    /* entries that lose their place, at most K per column changed: (row, place) pairs; then the table, and per
     * distinct new column (in order of first appearance) its slot and its entries as a list (first, next, last) */
    int64_t *dropped_at = malloc(((KC * K > 0 ? 2 * KC * K : 2) + size + 4 * KC + K + 1) * sizeof(int64_t));
    if (!dropped_at) return 1;
    int64_t *table = dropped_at + (KC * K > 0 ? 2 * KC * K : 2), *column_of = table + size;
    int64_t *first = column_of + KC, *next = first + KC, *last = next + KC, *at_k = last + KC;
    const uint64_t mask = (uint64_t)size - 1;
    for (ptrdiff_t g = 0; g < G; g++) {
        int64_t *col_g = columns + g * N1 * C, *rows_g = rows + g * N1 * C, *places_g = places + g * N1 * C;
        const REAL *val_g = values + g * N1 * C;
        const int64_t *wr = written + g * K, *old = old_columns + g * K * C, *nc = new_columns + g * K * C;
        const REAL *nv = new_values + g * K * C;
        for (ptrdiff_t k = 0; k < K; k++) {  /* 1: leave the old columns' lists */
            for (ptrdiff_t c = 0; c < C; c++) {
                const int64_t j = old[k * C + c];
                if (j == none) continue;
                for (ptrdiff_t p = 0; p < C; p++)
                    if (rows_g[j * C + p] == wr[k]) rows_g[j * C + p] = none;
            }
        }
        ptrdiff_t dropped = 0, distinct = 0;
        memset(table, 0, size * sizeof(int64_t));
        for (ptrdiff_t a = 0; a < KC; a++) {  /* the new columns, each once, with their entries */
            uint64_t h = ((uint64_t)nc[a] * 0x9E3779B97F4A7C15ull) >> 17 & mask;
            while (table[h] && column_of[table[h] - 1] != nc[a]) h = (h + 1) & mask;
            if (!table[h]) {
                column_of[distinct] = nc[a], first[distinct] = a, last[distinct] = a;
                table[h] = ++distinct;
            } else {
                next[last[table[h] - 1]] = a;
                last[table[h] - 1] = a;
            }
            next[a] = -1;
        }
        for (ptrdiff_t d = 0; d < distinct; d++) {  /* 2: join the new columns' lists */
            const int64_t j = column_of[d];
            int64_t *list = rows_g + j * C, *list_place = places_g + j * C;
            if (j == none) {
                for (ptrdiff_t p = 0; p < C; p++) list[p] = none;
                continue;
            }
            int64_t cand[SPARSE_MAX_CANDIDATES], cand_place[SPARSE_MAX_CANDIDATES];
            REAL rank[SPARSE_MAX_CANDIDATES];
            int valid[SPARSE_MAX_CANDIDATES];
            ptrdiff_t n = 0;
            for (ptrdiff_t p = 0; p < C; p++, n++) {  /* the listed rows whose entry is still in column j */
                const int64_t x = list[p], at = list_place[p];
                cand[n] = x;
                cand_place[n] = at;
                valid[n] = x != none && col_g[x * C + at] == j;
                rank[n] = valid[n] ? val_g[x * C + at] : -1;
            }
            for (ptrdiff_t k = 0; k < K; k++) at_k[k] = -1;  /* each written row's first place in column j */
            for (int64_t a = first[d]; a >= 0; a = next[a])
                if (at_k[a / C] < 0) at_k[a / C] = a % C;
            for (ptrdiff_t k = 0; k < K; k++, n++) {  /* the written rows with an entry in column j */
                const ptrdiff_t at = at_k[k];
                cand[n] = wr[k];
                cand_place[n] = at < 0 ? 0 : at;
                valid[n] = at >= 0 && wr[k] != none;
                rank[n] = valid[n] ? nv[k * C + at] : -1;
            }
            ptrdiff_t order[SPARSE_MAX_CANDIDATES];
            for (ptrdiff_t m = 0; m < n; m++) {  /* candidates by rank, best first; ties in candidate order */
                ptrdiff_t at = m;
                while (at > 0 && rank[order[at - 1]] < rank[m]) {
                    order[at] = order[at - 1];
                    at--;
                }
                order[at] = m;
            }
            for (ptrdiff_t p = 0; p < C; p++) {
                const ptrdiff_t m = order[p];
                list[p] = valid[m] ? cand[m] : none;
                list_place[p] = cand_place[m];
            }
            for (ptrdiff_t p = C; p < n; p++) {
                const ptrdiff_t m = order[p];
                if (valid[m]) {  /* at most K of the C + K candidates are past the first C */
                    dropped_at[2 * dropped] = cand[m];
                    dropped_at[2 * dropped++ + 1] = cand_place[m];
                }
            }
        }
        for (ptrdiff_t d = 0; d < dropped; d++) col_g[dropped_at[2 * d] * C + dropped_at[2 * d + 1]] = none;
    }
    free(dropped_at);
    return 0;
}

/* The plan of sparse.py's merge (sum the entries that share a slot, keep the k largest sums), without the
 * sums themselves: kept [R, k] the slots kept, best first (N: padding), and position [R, M] where each
 * entry's value goes (0..k-1, or k: dropped), so that the kept values are one differentiable scatter-add.
 *
 * Shapes (row-major, contiguous), for R rows of M entries: index [R, M] int64 (slot N: no entry),
 * value [R, M]. Order as merge's: the largest sums first, equal sums by ascending slot; the sums are
 * added in entry order. Returns 0, or 1 where a buffer could not be allocated (nothing valid written). */
int NAME(merge_plan)(const int64_t *index, const REAL *value, int64_t *kept, int64_t *position,
                     ptrdiff_t R, ptrdiff_t M, ptrdiff_t k, ptrdiff_t N) {
    /* per row: each entry's group (its slot's, numbered in order of first appearance, found through a hash
     * table of the slots, open addressing, at most half full), each group's slot and sum, the groups ranked */
    ptrdiff_t size = 2;
    while (size < 2 * M) size <<= 1;
    const ptrdiff_t n_ = M > 0 ? M : 1;
    ptrdiff_t *buffer = malloc((4 * n_ + size) * sizeof(ptrdiff_t));
    REAL *sums = malloc(n_ * sizeof(REAL));
    if (!buffer || !sums) {
        free(buffer);
        free(sums);
        return 1;
    }
    ptrdiff_t *group_of = buffer, *ranked = buffer + n_, *place = buffer + 2 * n_, *slot_of = buffer + 3 * n_;
    ptrdiff_t *table = buffer + 4 * n_;  /* group + 1, 0: empty */
    const uint64_t mask = (uint64_t)size - 1;
    for (ptrdiff_t r = 0; r < R; r++) {
        const int64_t *x = index + r * M;
        const REAL *v = value + r * M;
        int64_t *out = kept + r * k, *pos = position + r * M;
        memset(table, 0, size * sizeof(ptrdiff_t));
        ptrdiff_t groups = 0;
        for (ptrdiff_t m = 0; m < M; m++) {  /* sums in entry order */
            if (x[m] == N) {
                group_of[m] = -1;
                continue;
            }
            uint64_t h = ((uint64_t)x[m] * 0x9E3779B97F4A7C15ull) >> 17 & mask;
            while (table[h] && slot_of[table[h] - 1] != x[m]) h = (h + 1) & mask;
            if (!table[h]) {
                slot_of[groups] = x[m], sums[groups] = 0;
                table[h] = ++groups;
            }
            group_of[m] = table[h] - 1;
            sums[group_of[m]] += v[m];
        }
        /* the best k groups: the larger sum first, equal sums by the lower slot */
#define BETTER(a, b) (sums[a] > sums[b] || (sums[a] == sums[b] && slot_of[a] < slot_of[b]))
        ptrdiff_t n = 0;
        for (ptrdiff_t g = 0; g < groups; g++) {
            if (n == k && (k == 0 || !BETTER(g, ranked[k - 1]))) continue;
            ptrdiff_t at = n < k ? n++ : k - 1;
            while (at > 0 && BETTER(g, ranked[at - 1])) {
                ranked[at] = ranked[at - 1];
                at--;
            }
            ranked[at] = g;
        }
#undef BETTER
        for (ptrdiff_t g = 0; g < groups; g++) place[g] = k;  /* each group's place (k: dropped) */
        for (ptrdiff_t p = 0; p < n; p++) place[ranked[p]] = p;
        for (ptrdiff_t p = 0; p < k; p++) out[p] = N;
        for (ptrdiff_t m = 0; m < M; m++) {
            const ptrdiff_t g = group_of[m];
            pos[m] = g < 0 ? k : place[g];
            if (g >= 0 && pos[m] < k) out[pos[m]] = x[m];
        }
    }
    free(buffer);
    free(sums);
    return 0;
}

/* The sparse DNC's allocation slots (memory/sparse.py, allocation_weights): for each batch row, the k least
 * used of the N slots, least used first (ties: the lower slot first), in one pass over the usage and without
 * a sort (torch: a top-k over [B, N]).
 *
 * Shapes: usage u [B, N] with row stride `stride` (>= N; the usage buffer [B, N + 1, 1] is read as its first
 * N columns); out: index [B, k] int64 (contiguous). 1 <= k <= N. A NaN usage counts as the highest.
 * Returns 0, or 1 where the list of k values could not be allocated. */
#define LEAST_USED_BLOCK 64  /* slots compared at a time with the k-th least before any is ranked */
int NAME(least_used)(const REAL *usage, int64_t *index, ptrdiff_t B, ptrdiff_t N, ptrdiff_t stride, ptrdiff_t k) {
    REAL *value = malloc(k * sizeof(REAL));  /* minus the k least so far: insert_ranked's descending order */
    if (!value) return 1;
    for (ptrdiff_t b = 0; b < B; b++) {
        const REAL *u = usage + b * stride;
        int64_t *x = index + b * k;
        ptrdiff_t count = 0;
        for (ptrdiff_t start = 0; start < N; start += LEAST_USED_BLOCK) {
            const ptrdiff_t n = N - start < LEAST_USED_BLOCK ? N - start : LEAST_USED_BLOCK;
            if (count == k) {  /* full: a block whose least is not below the k-th is passed over */
                REAL least = INFINITY;
#pragma omp simd reduction(min : least)
                for (ptrdiff_t i = 0; i < n; i++) least = u[start + i] < least ? u[start + i] : least;
                if (!(-least > value[k - 1])) continue;
            }
            for (ptrdiff_t i = start; i < start + n; i++) {
                const REAL ui = u[i] != u[i] ? -INFINITY : -u[i];  /* minus the usage; NaN: the highest usage */
                if (count < k || ui > value[k - 1])  /* equal: scan order, the lower slot first */
                    count = NAME(insert_ranked)(value, x, count, k, ui, i);
            }
        }
    }
    free(value);
    return 0;
}
