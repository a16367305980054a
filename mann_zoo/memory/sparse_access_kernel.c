/* The sparse DNC's memory access of one step (models/sparse_dnc.py's sparse_step after the controller), forward and
 * backward, one C call each way (memory/sparse_access.py): with one write head, no masks and no link sharpness, the
 * some 1,100 small torch operations of a sparse step (memory/sparse.py, sparse_link.py) become one loop per example.
 *
 * At the end of the file the same step inside a loop over time with ntm_sequence_kernel.c's LSTM controller step: the
 * sparse DNC with an LSTM controller over a whole sequence, one call each way (models/sparse_sequence.py).
 *
 * Compiled with the other kernels by memory/native.py (REAL float or double, names suffixed _f32 or _f64; EPS and
 * KEEP = 1 - EPS are memory/_checks.py's) after sparse_kernel.c, whose content_candidates, least_used, merge_plan and
 * link_columns_update it calls per example (the same slots, ties and sums as the torch path's), dnc_kernel.c (the
 * interface's activations) and ntm_sequence_kernel.c (the controller's step, for the sequence).
 *
 * The large state is changed in place, per example b (row-major, contiguous; N1 = N + 1, row N the empty slot; C = K
 * link entries per row and column): memory M [B, N1, W], its normalised rows as columns U [B, W, N1] and written
 * flags [B, N1] (bytes), usage u [B, N1], the link's values Lv, columns Lc, column lists Lr and places Lp [B, N1, C].
 * The small state (K-sparse weightings as (slot, value) pairs: write ww [B, K], read rw [B, R, K], precedence pr
 * [B, K]) is passed in and out. The interface vector raw [B, P] is models/dnc.py's (without masks or link
 * sharpness) before its clip and activations, which dnc_kernel.c's interface_activations apply (values kept in act
 * [B P], its Interface layout, for the backward; interface_backward takes their gradient back to raw).
 *
 * Per step (sparse_dnc.py's order; "merge" is sparse.merge: sum the entries of each slot, keep the K largest sums):
 *   1. u(s) <- (u + w - u w) psi on the slots s written or read at t - 1, psi = prod_r (1 - f_r w^r(s))
 *   2. (deallocation) M(s) <- M(s) psi on the slots read
 *   3. the 2 K best slots by cosine for every key (content_candidates; no gradient)
 *   4. write look-up c^w = softmax(beta^w cos(k^w, M(i))) over the write key's K best
 *   5. allocation over the K least used slots phi: a_j = (1 - u^_j) prod_{i<j} u^_i, u^ = EPS + (1 - EPS) u(phi)
 *   6. w^w = merge(g^w g^a a, g^w (1 - g^a) c^w)
 *   7. M(i) <- M(i) (1 - w^w(i) e) + w^w(i) v on the slots written
 *   8. link rows written: merge((1 - w(i) - w(j)) L[i, j], w(i) p_{t-1}(j)) (L_ii = 0), C kept; entries of the
 *      columns written: L[i, j] (1 - w(j)); column lists (link_columns_update)
 *   9. b_r = merge_j(w^r_{t-1}(i) L[i, j]) over the rows read, f_r = merge_i(L[i, j] w^r_{t-1}(j)) (all kept)
 *  10. p_t = merge((1 - sum w^w) p_{t-1}, w^w)
 *  11. read look-ups: the K best of the read key's min(2 K, N) candidates not rewritten and the rows written (ties: the lower
 *      slot), c^r = softmax(beta^r cos) over them
 *  12. w^r = merge(pi_b b, pi_c c^r, pi_f f)
 *  13. r = sum_k w^r_k M(i_k)
 * The tape (per example: the slots chosen, the merges' plans, and the old contents of what was overwritten) lets the
 * backward go through the steps in reverse and put the state back as it was before the step: called in reverse time,
 * it leaves the store as it was at the first step (the units, written flags and the link's lists are not restored).
 * Its gradients of the large state are dense buffers dM [B, N1, W], du [B, N1], dLv [B, N1, C], added to at the slots
 * used and replaced at the slots overwritten.
 */

#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>
#include <stdlib.h>

/* Tape offsets per example (int64 and REAL parts), from K, R, W: sparse_access.py reads the sizes from
 * sparse_tape_sizes. */
typedef struct {
    ptrdiff_t K, C, R, W, KC, S, RK;
    /* int64 */
    ptrdiff_t i_nS, i_S, i_nD, i_D, i_cw, i_al, i_wpos, i_oldcol, i_lpos, i_rent, i_bpos, i_fent, i_fpos, i_ppos,
        i_rc, i_rpos, i_size;
    /* REAL */
    ptrdiff_t r_uold, r_psiD, r_Dold, r_wold, r_lold, r_rold, r_bval, r_fval, r_cw, r_cr, r_size;
} NAME(Tape);

static NAME(Tape) NAME(tape_layout)(ptrdiff_t K, ptrdiff_t R, ptrdiff_t W) {
    NAME(Tape) t;
    t.K = K, t.C = K, t.R = R, t.W = W, t.KC = K * K, t.S = K + R * K, t.RK = R * K;
    ptrdiff_t o = 0;
    t.i_nS = o, o += 1;
    t.i_S = o, o += t.S;             /* usage: distinct slots written or read at t - 1 */
    t.i_nD = o, o += 1;
    t.i_D = o, o += t.RK;            /* deallocation: distinct slots read at t - 1 */
    t.i_cw = o, o += K;              /* write look-up slots */
    t.i_al = o, o += K;              /* allocation slots */
    t.i_wpos = o, o += 2 * K;        /* write merge plan */
    t.i_oldcol = o, o += t.KC;       /* link rows written: their columns before */
    t.i_lpos = o, o += K * (t.C + K);/* their merge plans */
    t.i_rent = o, o += t.KC;         /* entries of the columns written (-1: none) */
    t.i_bpos = o, o += R * t.KC;     /* backward weighting's merge plan */
    t.i_fent = o, o += R * t.KC;     /* forward weighting's entries (-1: none) */
    t.i_fpos = o, o += R * t.KC;     /* and merge plan */
    t.i_ppos = o, o += 2 * K;        /* precedence merge plan */
    t.i_rc = o, o += R * K;          /* read look-up slots */
    t.i_rpos = o, o += R * (2 * t.KC + K);  /* read merge plans */
    t.i_size = o;
    o = 0;
    t.r_uold = o, o += t.S;          /* usage before */
    t.r_psiD = o, o += t.RK;         /* psi of the slots deallocated */
    t.r_Dold = o, o += t.RK * W;     /* their rows before */
    t.r_wold = o, o += K * W;        /* rows written: before */
    t.r_lold = o, o += t.KC;         /* link rows written: values before */
    t.r_rold = o, o += t.KC;         /* entries of the columns written: values before */
    t.r_bval = o, o += R * t.KC;     /* backward weightings */
    t.r_fval = o, o += R * t.KC;     /* forward weightings */
    t.r_cw = o, o += K;              /* write look-up */
    t.r_cr = o, o += R * K;          /* read look-ups */
    t.r_size = o;
    return t;
}

void NAME(sparse_tape_sizes)(int64_t *sizes, ptrdiff_t K, ptrdiff_t R, ptrdiff_t W) {
    NAME(Tape) t = NAME(tape_layout)(K, R, W);
    sizes[0] = t.i_size;
    sizes[1] = t.r_size;
}

/* sum of val[k] where idx[k] == s (sparse.lookup) */
static inline REAL NAME(sp_lookup)(const int64_t *idx, const REAL *val, ptrdiff_t n, int64_t s) {
    REAL x = 0;
    for (ptrdiff_t k = 0; k < n; k++) if (idx[k] == s) x += val[k];
    return x;
}

/* psi(s) = prod_r (1 - f_r w^r(s)) */
static REAL NAME(sp_psi)(const int64_t *rwi, const REAL *rwv, const REAL *fg, ptrdiff_t R, ptrdiff_t K, int64_t s) {
    REAL psi = 1;
    for (ptrdiff_t r = 0; r < R; r++) psi *= 1 - fg[r] * NAME(sp_lookup)(rwi + r * K, rwv + r * K, K, s);
    return psi;
}

/* psi's backward: df_r and dw^r at the entries of slot s, given dpsi */
static void NAME(sp_psi_backward)(const int64_t *rwi, const REAL *rwv, const REAL *fg, ptrdiff_t R, ptrdiff_t K,
                                  int64_t s, REAL dpsi, REAL *dfg, REAL *drwv) {
    for (ptrdiff_t r = 0; r < R; r++) {
        REAL others = 1;
        for (ptrdiff_t q = 0; q < R; q++)
            if (q != r) others *= 1 - fg[q] * NAME(sp_lookup)(rwi + q * K, rwv + q * K, K, s);
        const REAL rho = NAME(sp_lookup)(rwi + r * K, rwv + r * K, K, s);
        dfg[r] -= dpsi * rho * others;
        const REAL drho = -dpsi * fg[r] * others;
        for (ptrdiff_t k = 0; k < K; k++) if (rwi[r * K + k] == s) drwv[r * K + k] += drho;
    }
}

/* cos(k, m) = k.m / (sqrt(|m|^2 + EPS) sqrt(|k|^2 + EPS)) as memory.cosine_similarity */
static inline REAL NAME(sp_cosine)(const REAL *k, const REAL *m, ptrdiff_t W) {
    REAL dot = 0, mm = 0, kk = 0;
    for (ptrdiff_t j = 0; j < W; j++) dot += k[j] * m[j];
    for (ptrdiff_t j = 0; j < W; j++) mm += m[j] * m[j];
    for (ptrdiff_t j = 0; j < W; j++) kk += k[j] * k[j];
    return dot * (1 / sqrt(mm + EPS)) * (1 / sqrt(kk + EPS));
}

/* dcos into dk and dm */
static inline void NAME(sp_cosine_backward)(const REAL *k, const REAL *m, ptrdiff_t W, REAL dcos, REAL *dk, REAL *dm) {
    REAL dot = 0, mm = 0, kk = 0;
    for (ptrdiff_t j = 0; j < W; j++) dot += k[j] * m[j], mm += m[j] * m[j], kk += k[j] * k[j];
    const REAL a = 1 / sqrt(mm + EPS), c = 1 / sqrt(kk + EPS);
    for (ptrdiff_t j = 0; j < W; j++) {
        if (dm) dm[j] += dcos * c * (k[j] * a - dot * a * a * a * m[j]);
        dk[j] += dcos * a * (m[j] * c - dot * c * c * c * k[j]);
    }
}

/* softmax(beta cos) over K slots of M (out c), cos kept in cs */
static void NAME(sp_lookup_weights)(const REAL *M, ptrdiff_t W, const int64_t *slots, ptrdiff_t K, const REAL *key,
                                    REAL beta, REAL *c, REAL *cs) {
    REAL top = -INFINITY;
    for (ptrdiff_t k = 0; k < K; k++) {
        cs[k] = NAME(sp_cosine)(key, M + slots[k] * W, W);
        c[k] = beta * cs[k];
        top = c[k] > top ? c[k] : top;
    }
    REAL sum = 0;
    for (ptrdiff_t k = 0; k < K; k++) sum += c[k] = exp(c[k] - top);
    for (ptrdiff_t k = 0; k < K; k++) c[k] /= sum;
}

/* its backward, given dc: dbeta, dkey, dM at the slots */
static void NAME(sp_lookup_backward)(const REAL *M, REAL *dM, ptrdiff_t W, const int64_t *slots, ptrdiff_t K,
                                     const REAL *key, REAL beta, const REAL *c, const REAL *dc, REAL *dbeta, REAL *dkey) {
    REAL dot = 0;
    for (ptrdiff_t k = 0; k < K; k++) dot += c[k] * dc[k];
    for (ptrdiff_t k = 0; k < K; k++) {
        const REAL ds = c[k] * (dc[k] - dot);
        if (ds == 0) continue;
        const REAL *m = M + slots[k] * W;
        *dbeta += ds * NAME(sp_cosine)(key, m, W);
        NAME(sp_cosine_backward)(key, m, W, ds * beta, dkey, dM + slots[k] * W);
    }
}

static void NAME(sp_units)(const REAL *row, REAL *U, unsigned char *written, ptrdiff_t W, ptrdiff_t N1, int64_t i) {
    REAL ss = 0;
    for (ptrdiff_t j = 0; j < W; j++) ss += row[j] * row[j];
    const REAL r = 1 / sqrt(ss + EPS);
    for (ptrdiff_t j = 0; j < W; j++) U[j * N1 + i] = row[j] * r;
    written[i] = 1;
}

/* distinct slots of idx[n] below N, in order of first occurrence */
static ptrdiff_t NAME(sp_distinct)(const int64_t *idx, ptrdiff_t n, int64_t N, int64_t *out) {
    ptrdiff_t m = 0;
    for (ptrdiff_t a = 0; a < n; a++) {
        if (idx[a] == N) continue;
        int seen = 0;
        for (ptrdiff_t b = 0; b < m && !seen; b++) seen = out[b] == idx[a];
        if (!seen) out[m++] = idx[a];
    }
    return m;
}

/* least_used (sparse_kernel.c) for one example, the same slots: where few slots were written, only they and the K
 * lowest others are ranked. A slot never written (written flag 0) has usage 0: usage changes only on the slots
 * written or read at the step before, and a slot only read keeps u psi = 0. Returns least_used's status. */
static int NAME(least_used_among_written)(const REAL *u, const unsigned char *w, int64_t *index, ptrdiff_t N,
                                          ptrdiff_t K) {
    if (NAME(count_written)(w, N) + K > N / 8) return NAME(least_used)(u, index, 1, N, N + 1, K);
    REAL value[64];  /* minus the K least so far (insert_ranked's descending order); K <= SP_MAX_K */
    ptrdiff_t count = 0, others = 0;
    for (ptrdiff_t i = NAME(next_short_slot)(w, 0, N, K, &others); i < N; i = NAME(next_short_slot)(w, i + 1, N, K, &others)) {
        const REAL ui = u[i] != u[i] ? -INFINITY : -u[i];
        if (count < K || ui > value[K - 1]) count = NAME(insert_ranked)(value, index, count, K, ui, i);
    }
    return 0;
}

/* One example's activated interface (dnc_kernel.c's Interface, batch-major) as named pointers and values. */
#define INTERFACE_OF(v, b)                                                                                            \
    const REAL *wk = v.write_key + (b) * W, *er = v.erase + (b) * W, *wv = v.write_vector + (b) * W,              \
               *fg = v.free_gates + (b) * R, *rk = v.read_keys + (b) * R * W, *rs = v.read_strengths + (b) * R,     \
               *md = v.read_modes + (b) * R * 3;                                                                    \
    const REAL ws = v.write_strength[b], ga = v.alloc_gate[b], gw = v.write_gate[b];

#define SP_MAX_R 16  /* read heads + 1 */
#define SP_MAX_K 16
#define SP_MAX_W 256

/* Returns 0; 1 where a called kernel could not allocate (the store is then half-updated: the sequence is lost);
 * 2 where K, R or W exceed the fixed buffers (SP_MAX_*) or K >= N (nothing changed). */
int NAME(sparse_access_forward)(REAL *M, REAL *U, unsigned char *written, REAL *u, REAL *Lv, int64_t *Lc, int64_t *Lr,
                                int64_t *Lp, const REAL *raw, const REAL *consts, const int64_t *ww_idx, const REAL *ww_val,
                                const int64_t *rw_idx, const REAL *rw_val, const int64_t *pr_idx, const REAL *pr_val,
                                int64_t *ww_idx_out, REAL *ww_val_out, int64_t *rw_idx_out, REAL *rw_val_out,
                                int64_t *pr_idx_out, REAL *pr_val_out, REAL *reads, REAL *act, int64_t *tape_i,
                                REAL *tape_r, ptrdiff_t B, ptrdiff_t N, ptrdiff_t W, ptrdiff_t K, ptrdiff_t R, ptrdiff_t dealloc) {
    if (K > SP_MAX_K || R + 1 > SP_MAX_R || W > SP_MAX_W || K >= N) return 2;
    const ptrdiff_t N1 = N + 1, C = K, KC = K * C, m = 2 * K < N ? 2 * K : N;
    const NAME(Tape) T = NAME(tape_layout)(K, R, W);
    const NAME(Interface) v = NAME(interface_in)(act, B, R, W, 0);
    NAME(interface_activations)(raw, consts[0], 0, B, DNC_INTERFACE_SIZE(R, W, 0), R, W, 0, v);
    for (ptrdiff_t b = 0; b < B; b++) {
        REAL *Mb = M + b * N1 * W, *Ub = U + b * W * N1, *ub = u + b * N1, *Lvb = Lv + b * N1 * C;
        unsigned char *wb = written + b * N1;
        int64_t *Lcb = Lc + b * N1 * C, *Lrb = Lr + b * N1 * C, *Lpb = Lp + b * N1 * C;
        INTERFACE_OF(v, b)
        const int64_t *wwi = ww_idx + b * K, *rwi = rw_idx + b * R * K, *pri = pr_idx + b * K;
        const REAL *wwv = ww_val + b * K, *rwv = rw_val + b * R * K, *prv = pr_val + b * K;
        int64_t *ti = tape_i + b * T.i_size;
        REAL *tr = tape_r + b * T.r_size;

        /* 1. usage */
        int64_t entries[SP_MAX_K * (SP_MAX_R + 1)];
        memcpy(entries, wwi, K * sizeof(int64_t));
        memcpy(entries + K, rwi, R * K * sizeof(int64_t));
        const ptrdiff_t nS = NAME(sp_distinct)(entries, K + R * K, N, ti + T.i_S);
        ti[T.i_nS] = nS;
        for (ptrdiff_t a = 0; a < nS; a++) {
            const int64_t s = ti[T.i_S + a];
            const REAL wr = 1 - (1 - NAME(sp_lookup)(wwi, wwv, K, s)), psi = NAME(sp_psi)(rwi, rwv, fg, R, K, s);
            const REAL old = ub[s];
            tr[T.r_uold + a] = old;
            ub[s] = (old + wr - old * wr) * psi;
        }
        /* 2. deallocation */
        ti[T.i_nD] = 0;
        if (dealloc) {
            const ptrdiff_t nD = NAME(sp_distinct)(rwi, R * K, N, ti + T.i_D);
            ti[T.i_nD] = nD;
            for (ptrdiff_t a = 0; a < nD; a++) {
                const int64_t s = ti[T.i_D + a];
                const REAL psi = NAME(sp_psi)(rwi, rwv, fg, R, K, s);
                tr[T.r_psiD + a] = psi;
                memcpy(tr + T.r_Dold + a * W, Mb + s * W, W * sizeof(REAL));
                for (ptrdiff_t j = 0; j < W; j++) Mb[s * W + j] = Mb[s * W + j] * psi;
                NAME(sp_units)(Mb + s * W, Ub, wb, W, N1, s);
            }
        }
        /* 3. candidates of every key */
        REAL key_buffer[SP_MAX_R * SP_MAX_W];
        memcpy(key_buffer, wk, W * sizeof(REAL));
        memcpy(key_buffer + W, rk, R * W * sizeof(REAL));
        int64_t cand[SP_MAX_R * 2 * SP_MAX_K];
        REAL score[SP_MAX_R * 2 * SP_MAX_K];
        if (NAME(content_candidates)(Ub, key_buffer, wb, cand, score, 1, W, N1, 1 + R, m)) return 1;
        /* 4. write look-up */
        int64_t *cw = ti + T.i_cw;
        memcpy(cw, cand, K * sizeof(int64_t));
        REAL cs[SP_MAX_K];
        NAME(sp_lookup_weights)(Mb, W, cw, K, wk, ws, tr + T.r_cw, cs);
        /* 5. allocation */
        int64_t *al = ti + T.i_al;
        if (NAME(least_used_among_written)(ub, wb, al, N, K)) return 1;
        REAL alloc[SP_MAX_K], before = 1;
        for (ptrdiff_t k = 0; k < K; k++) {
            const REAL uh = EPS + KEEP * ub[al[k]];
            alloc[k] = (1 - uh) * before;
            before *= uh;
        }
        /* 6. write weighting */
        const REAL gwga = gw * ga, gw1ga = gw * (1 - ga);
        int64_t widx[2 * SP_MAX_K];
        REAL wval[2 * SP_MAX_K];
        for (ptrdiff_t k = 0; k < K; k++) {
            widx[k] = al[k], wval[k] = gwga * alloc[k];
            widx[K + k] = cw[k], wval[K + k] = gw1ga * tr[T.r_cw + k];
        }
        int64_t *wi = ww_idx_out + b * K, *wpos = ti + T.i_wpos;
        REAL *w = ww_val_out + b * K;
        if (NAME(merge_plan)(widx, wval, wi, wpos, 1, 2 * K, K, N)) return 1;
        for (ptrdiff_t k = 0; k < K; k++) w[k] = 0;
        for (ptrdiff_t e = 0; e < 2 * K; e++) if (wpos[e] < K) w[wpos[e]] += wval[e];
        /* 7. write */
        for (ptrdiff_t k = 0; k < K; k++) {
            const int64_t i = wi[k];
            if (i == N) continue;
            REAL *row = Mb + i * W;
            memcpy(tr + T.r_wold + k * W, row, W * sizeof(REAL));
            for (ptrdiff_t j = 0; j < W; j++) row[j] = row[j] * (1 - w[k] * er[j]) + w[k] * wv[j];
            NAME(sp_units)(row, Ub, wb, W, N1, i);
        }
        /* 8. link */
        int64_t *oldcol = ti + T.i_oldcol, *lpos = ti + T.i_lpos, *rent = ti + T.i_rent;
        REAL *lold = tr + T.r_lold, *rold = tr + T.r_rold;
        int64_t newcol[SP_MAX_K * SP_MAX_K];
        REAL newval[SP_MAX_K * SP_MAX_K];
        for (ptrdiff_t k = 0; k < K; k++) {
            memcpy(oldcol + k * C, Lcb + wi[k] * C, C * sizeof(int64_t));
            memcpy(lold + k * C, Lvb + wi[k] * C, C * sizeof(REAL));
        }
        for (ptrdiff_t k = 0; k < K; k++) {
            int64_t cols[2 * SP_MAX_K];
            REAL vals[2 * SP_MAX_K];
            for (ptrdiff_t c = 0; c < C; c++) {
                const int64_t col = oldcol[k * C + c];
                vals[c] = col == N ? 0 : ((1 - w[k]) - NAME(sp_lookup)(wi, w, K, col)) * lold[k * C + c];
                cols[c] = (col == wi[k] || wi[k] == N) ? N : col;
            }
            for (ptrdiff_t q = 0; q < K; q++) {
                vals[C + q] = w[k] * prv[q];
                cols[C + q] = (pri[q] == wi[k] || wi[k] == N) ? N : pri[q];
            }
            if (NAME(merge_plan)(cols, vals, newcol + k * C, lpos + k * (C + K), 1, C + K, C, N)) return 1;
            for (ptrdiff_t c = 0; c < C; c++) newval[k * C + c] = 0;
            for (ptrdiff_t e = 0; e < C + K; e++)
                if (lpos[k * (C + K) + e] < C) newval[k * C + lpos[k * (C + K) + e]] += vals[e];
        }
        for (ptrdiff_t k = 0; k < K; k++) {  /* the columns written: L[i, j] (1 - w(j)) */
            const int64_t j = wi[k];
            for (ptrdiff_t p = 0; p < C; p++) {
                const int64_t row = Lrb[j * C + p];
                if (row == N) {
                    rent[k * C + p] = -1;
                    continue;
                }
                const int64_t e = row * C + Lpb[j * C + p];
                rent[k * C + p] = e;
                rold[k * C + p] = Lvb[e];
                Lvb[e] = Lvb[e] * (1 - w[k]);
            }
        }
        for (ptrdiff_t k = 0; k < K; k++) {
            memcpy(Lvb + wi[k] * C, newval + k * C, C * sizeof(REAL));
            memcpy(Lcb + wi[k] * C, newcol + k * C, C * sizeof(int64_t));
        }
        if (NAME(link_columns_update)(Lcb, Lrb, Lpb, Lvb, wi, oldcol, newcol, newval, 1, N1, C, K)) return 1;
        /* 9. directional weightings */
        int64_t bkept[SP_MAX_R][SP_MAX_K * SP_MAX_K], fkept[SP_MAX_R][SP_MAX_K * SP_MAX_K];
        for (ptrdiff_t r = 0; r < R; r++) {
            int64_t bi[SP_MAX_K * SP_MAX_K], fi[SP_MAX_K * SP_MAX_K];
            REAL bv[SP_MAX_K * SP_MAX_K], fv[SP_MAX_K * SP_MAX_K];
            int64_t *fent = ti + T.i_fent + r * KC;
            for (ptrdiff_t k = 0; k < K; k++) {
                const int64_t i = rwi[r * K + k];
                const REAL x = rwv[r * K + k];
                for (ptrdiff_t c = 0; c < C; c++) {
                    bi[k * C + c] = Lcb[i * C + c];
                    bv[k * C + c] = x * Lvb[i * C + c];
                    const int64_t row = Lrb[i * C + c];
                    const int64_t e = row == N ? N * C : row * C + Lpb[i * C + c];
                    fent[k * C + c] = row == N ? -1 : e;
                    fi[k * C + c] = row;
                    fv[k * C + c] = x * Lvb[e];
                }
            }
            int64_t *bpos = ti + T.i_bpos + r * KC, *fpos = ti + T.i_fpos + r * KC;
            REAL *bval = tr + T.r_bval + r * KC, *fval = tr + T.r_fval + r * KC;
            if (NAME(merge_plan)(bi, bv, bkept[r], bpos, 1, KC, KC, N)) return 1;
            if (NAME(merge_plan)(fi, fv, fkept[r], fpos, 1, KC, KC, N)) return 1;
            for (ptrdiff_t e = 0; e < KC; e++) bval[e] = 0, fval[e] = 0;
            for (ptrdiff_t e = 0; e < KC; e++) {
                if (bpos[e] < KC) bval[bpos[e]] += bv[e];
                if (fpos[e] < KC) fval[fpos[e]] += fv[e];
            }
        }
        /* 10. precedence */
        {
            REAL sum = 0;
            for (ptrdiff_t k = 0; k < K; k++) sum += w[k];
            const REAL decay = 1 - sum;
            int64_t pidx[2 * SP_MAX_K];
            REAL pval[2 * SP_MAX_K];
            for (ptrdiff_t k = 0; k < K; k++) {
                pidx[k] = pri[k], pval[k] = decay * prv[k];
                pidx[K + k] = wi[k], pval[K + k] = w[k];
            }
            int64_t *ppos = ti + T.i_ppos;
            REAL *po = pr_val_out + b * K;
            if (NAME(merge_plan)(pidx, pval, pr_idx_out + b * K, ppos, 1, 2 * K, K, N)) return 1;
            for (ptrdiff_t k = 0; k < K; k++) po[k] = 0;
            for (ptrdiff_t e = 0; e < 2 * K; e++) if (ppos[e] < K) po[ppos[e]] += pval[e];
        }
        /* 11-13. read look-ups, read weightings, reads */
        for (ptrdiff_t r = 0; r < R; r++) {
            const REAL *key = rk + r * W;
            int64_t pool[3 * SP_MAX_K];
            REAL pcos[3 * SP_MAX_K];
            ptrdiff_t n = 0;
            for (ptrdiff_t a = 0; a < m; a++) {
                const int64_t s = cand[(1 + r) * m + a];
                int stale = 0;
                for (ptrdiff_t k = 0; k < K && !stale; k++) stale = wi[k] == s;
                if (!stale) pool[n++] = s;
            }
            for (ptrdiff_t k = 0; k < K; k++) if (wi[k] != N) pool[n++] = wi[k];
            for (ptrdiff_t a = 0; a < n; a++) pcos[a] = NAME(sp_cosine)(key, Mb + pool[a] * W, W);
            int64_t *rc = ti + T.i_rc + r * K;
            for (ptrdiff_t k = 0; k < K; k++) {  /* the K best: larger cosine first, equal: the lower slot */
                ptrdiff_t best = -1;
                for (ptrdiff_t a = 0; a < n; a++) {
                    if (pool[a] < 0) continue;
                    if (best < 0 || pcos[a] > pcos[best] || (pcos[a] == pcos[best] && pool[a] < pool[best])) best = a;
                }
                rc[k] = pool[best];
                pool[best] = -1;
            }
            REAL *cr = tr + T.r_cr + r * K;
            NAME(sp_lookup_weights)(Mb, W, rc, K, key, rs[r], cr, cs);
            const REAL *modes = md + 3 * r;
            int64_t ridx[2 * SP_MAX_K * SP_MAX_K + SP_MAX_K];
            REAL rval[2 * SP_MAX_K * SP_MAX_K + SP_MAX_K];
            const REAL *bval = tr + T.r_bval + r * KC, *fval = tr + T.r_fval + r * KC;
            for (ptrdiff_t e = 0; e < KC; e++) {
                ridx[e] = bkept[r][e], rval[e] = modes[0] * bval[e];
                ridx[KC + K + e] = fkept[r][e], rval[KC + K + e] = modes[2] * fval[e];
            }
            for (ptrdiff_t k = 0; k < K; k++) ridx[KC + k] = rc[k], rval[KC + k] = modes[1] * cr[k];
            int64_t *ro = rw_idx_out + (b * R + r) * K, *rpos = ti + T.i_rpos + r * (2 * KC + K);
            REAL *rv = rw_val_out + (b * R + r) * K;
            if (NAME(merge_plan)(ridx, rval, ro, rpos, 1, 2 * KC + K, K, N)) return 1;
            for (ptrdiff_t k = 0; k < K; k++) rv[k] = 0;
            for (ptrdiff_t e = 0; e < 2 * KC + K; e++) if (rpos[e] < K) rv[rpos[e]] += rval[e];
            REAL *out = reads + (b * R + r) * W;
            for (ptrdiff_t j = 0; j < W; j++) out[j] = 0;
            for (ptrdiff_t k = 0; k < K; k++) {
                if (ro[k] == N) continue;
                const REAL *row = Mb + ro[k] * W;
                for (ptrdiff_t j = 0; j < W; j++) out[j] += rv[k] * row[j];
            }
        }
    }
    return 0;
}

/* The backward of one forward call, run after every later step's: gradients of the outputs g_* (NULL: zero) ->
 * g_raw [B, P], g_ww [B, K], g_rw [B, R, K], g_pr [B, K] (the previous weightings' values), the dense buffers
 * dM, du, dLv updated (from the state after the step to the state before it), and M, u, Lv put back as they were
 * before the step. Returns 0, 1 where a buffer could not be allocated, or 2 where K, R or W exceed the fixed
 * buffers. */
int NAME(sparse_access_backward)(REAL *M, REAL *u, REAL *Lv, REAL *dM, REAL *du, REAL *dLv, const REAL *raw,
                                 const REAL *consts, REAL *act,
                                 const int64_t *ww_idx, const REAL *ww_val, const int64_t *rw_idx, const REAL *rw_val,
                                 const int64_t *pr_idx, const REAL *pr_val, const int64_t *ww_idx_out,
                                 const REAL *ww_val_out, const int64_t *rw_idx_out, const REAL *rw_val_out,
                                 const int64_t *tape_i, const REAL *tape_r, const REAL *g_reads, const REAL *g_ww_out,
                                 const REAL *g_rw_out, const REAL *g_pr_out, REAL *g_raw, REAL *g_ww, REAL *g_rw,
                                 REAL *g_pr, ptrdiff_t B, ptrdiff_t N, ptrdiff_t W, ptrdiff_t K, ptrdiff_t R,
                                 ptrdiff_t dealloc) {
    if (K > SP_MAX_K || R + 1 > SP_MAX_R || W > SP_MAX_W || K >= N) return 2;
    const ptrdiff_t N1 = N + 1, C = K, KC = K * C;
    const NAME(Tape) T = NAME(tape_layout)(K, R, W);
    const ptrdiff_t P = DNC_INTERFACE_SIZE(R, W, 0);
    const NAME(Interface) v = NAME(interface_in)(act, B, R, W, 0);
    REAL *d_buffer = calloc(B * P, sizeof(REAL));  /* the activated interface's gradient */
    if (!d_buffer) return 1;
    const NAME(Interface) d = NAME(interface_in)(d_buffer, B, R, W, 0);
    (void)pr_idx;
    for (ptrdiff_t b = 0; b < B; b++) {
        REAL *Mb = M + b * N1 * W, *ub = u + b * N1, *Lvb = Lv + b * N1 * C;
        REAL *dMb = dM + b * N1 * W, *dub = du + b * N1, *dLb = dLv + b * N1 * C;
        INTERFACE_OF(v, b)
        REAL *d_wk = d.write_key + b * W, *d_er = d.erase + b * W, *d_wv = d.write_vector + b * W,
             *d_fg = d.free_gates + b * R, *d_rk = d.read_keys + b * R * W, *d_rs = d.read_strengths + b * R,
             *d_md = d.read_modes + b * R * 3, *d_ws = d.write_strength + b, *d_ga = d.alloc_gate + b,
             *d_gw = d.write_gate + b;
        const int64_t *wwi = ww_idx + b * K, *rwi = rw_idx + b * R * K;
        const REAL *wwv = ww_val + b * K, *rwv = rw_val + b * R * K, *prv = pr_val + b * K;
        const int64_t *wi = ww_idx_out + b * K, *ro = rw_idx_out + b * R * K;
        const REAL *w = ww_val_out + b * K, *rvo = rw_val_out + b * R * K;
        const int64_t *ti = tape_i + b * T.i_size;
        const REAL *tr = tape_r + b * T.r_size;
        REAL *gwwp = g_ww + b * K, *grwp = g_rw + b * R * K, *gprp = g_pr + b * K;
        for (ptrdiff_t k = 0; k < K; k++) gwwp[k] = 0, gprp[k] = 0;
        for (ptrdiff_t k = 0; k < R * K; k++) grwp[k] = 0;
        REAL Gww[SP_MAX_K], Gpr[SP_MAX_K], Grw[SP_MAX_R * SP_MAX_K];
        for (ptrdiff_t k = 0; k < K; k++) {
            Gww[k] = g_ww_out ? g_ww_out[b * K + k] : 0;
            Gpr[k] = g_pr_out ? g_pr_out[b * K + k] : 0;
        }
        for (ptrdiff_t k = 0; k < R * K; k++) Grw[k] = g_rw_out ? g_rw_out[b * R * K + k] : 0;

        /* 13. reads */
        if (g_reads)
            for (ptrdiff_t r = 0; r < R; r++) {
                const REAL *g = g_reads + (b * R + r) * W;
                for (ptrdiff_t k = 0; k < K; k++) {
                    const int64_t i = ro[r * K + k];
                    if (i == N) continue;
                    REAL s = 0;
                    for (ptrdiff_t j = 0; j < W; j++) {
                        s += g[j] * Mb[i * W + j];
                        dMb[i * W + j] += rvo[r * K + k] * g[j];
                    }
                    Grw[r * K + k] += s;
                }
            }
        /* 12, 11. read weightings, read look-ups */
        REAL gb[SP_MAX_R][SP_MAX_K * SP_MAX_K], gf[SP_MAX_R][SP_MAX_K * SP_MAX_K];
        for (ptrdiff_t r = 0; r < R; r++) {
            const int64_t *rpos = ti + T.i_rpos + r * (2 * KC + K), *rc = ti + T.i_rc + r * K;
            const REAL *modes = md + 3 * r, *bval = tr + T.r_bval + r * KC, *fval = tr + T.r_fval + r * KC;
            const REAL *cr = tr + T.r_cr + r * K;
            REAL gc[SP_MAX_K], dmodes[3] = {0, 0, 0};
            for (ptrdiff_t e = 0; e < 2 * KC + K; e++) {
                const int64_t p = rpos[e];
                const REAL d = p < K ? Grw[r * K + p] : 0;
                if (e < KC) {
                    gb[r][e] = d * modes[0];
                    dmodes[0] += d * bval[e];
                } else if (e < KC + K) {
                    gc[e - KC] = d * modes[1];
                    dmodes[1] += d * cr[e - KC];
                } else {
                    gf[r][e - KC - K] = d * modes[2];
                    dmodes[2] += d * fval[e - KC - K];
                }
            }
            for (ptrdiff_t q = 0; q < 3; q++) d_md[3 * r + q] += dmodes[q];
            NAME(sp_lookup_backward)(Mb, dMb, W, rc, K, rk + r * W, rs[r], cr, gc, d_rs + r, d_rk + r * W);
        }
        /* 10. precedence */
        {
            const int64_t *ppos = ti + T.i_ppos;
            REAL sum = 0, ddecay = 0;
            for (ptrdiff_t k = 0; k < K; k++) sum += w[k];
            const REAL decay = 1 - sum;
            for (ptrdiff_t e = 0; e < 2 * K; e++) {
                const REAL d = ppos[e] < K ? Gpr[ppos[e]] : 0;
                if (e < K) {
                    gprp[e] += d * decay;
                    ddecay += d * prv[e];
                } else {
                    Gww[e - K] += d;
                }
            }
            for (ptrdiff_t k = 0; k < K; k++) Gww[k] -= ddecay;
        }
        /* 9. directional weightings (the link after the step's update) */
        for (ptrdiff_t r = 0; r < R; r++) {
            const int64_t *bpos = ti + T.i_bpos + r * KC, *fpos = ti + T.i_fpos + r * KC, *fent = ti + T.i_fent + r * KC;
            for (ptrdiff_t k = 0; k < K; k++) {
                const int64_t i = rwi[r * K + k];
                const REAL x = rwv[r * K + k];
                for (ptrdiff_t c = 0; c < C; c++) {
                    const ptrdiff_t e = k * C + c;
                    if (bpos[e] < KC) {
                        const REAL d = gb[r][bpos[e]];
                        grwp[r * K + k] += d * Lvb[i * C + c];
                        dLb[i * C + c] += d * x;
                    }
                    if (fpos[e] < KC && fent[e] >= 0) {
                        const REAL d = gf[r][fpos[e]];
                        grwp[r * K + k] += d * Lvb[fent[e]];
                        dLb[fent[e]] += d * x;
                    }
                }
            }
        }
        /* 8. link */
        {
            const int64_t *oldcol = ti + T.i_oldcol, *lpos = ti + T.i_lpos, *rent = ti + T.i_rent;
            const REAL *lold = tr + T.r_lold, *rold = tr + T.r_rold;
            REAL gnew[SP_MAX_K * SP_MAX_K];
            for (ptrdiff_t k = 0; k < K; k++)
                for (ptrdiff_t c = 0; c < C; c++) {
                    gnew[k * C + c] = dLb[wi[k] * C + c];
                    dLb[wi[k] * C + c] = 0;
                }
            for (ptrdiff_t k = 0; k < K; k++)
                for (ptrdiff_t p = 0; p < C; p++) {
                    const int64_t e = rent[k * C + p];
                    if (e < 0) continue;
                    const REAL g = dLb[e];
                    dLb[e] = g * (1 - w[k]);
                    Gww[k] -= g * rold[k * C + p];
                    Lvb[e] = rold[k * C + p];
                }
            for (ptrdiff_t k = 0; k < K; k++) {
                const int64_t i = wi[k];
                memcpy(Lvb + i * C, lold + k * C, C * sizeof(REAL));
                if (i == N) continue;
                for (ptrdiff_t e = 0; e < C + K; e++) {
                    const int64_t p = lpos[k * (C + K) + e];
                    if (p >= C) continue;
                    const REAL d = gnew[k * C + p];
                    if (e < C) {
                        const int64_t col = oldcol[k * C + e];
                        if (col == N) continue;
                        const REAL old = lold[k * C + e];
                        dLb[i * C + e] += d * ((1 - w[k]) - NAME(sp_lookup)(wi, w, K, col));
                        Gww[k] -= d * old;
                        for (ptrdiff_t q = 0; q < K; q++) if (wi[q] == col) Gww[q] -= d * old;
                    } else {
                        Gww[k] += d * prv[e - C];
                        gprp[e - C] += d * w[k];
                    }
                }
            }
        }
        /* 7. write */
        for (ptrdiff_t k = 0; k < K; k++) {
            const int64_t i = wi[k];
            if (i == N) continue;
            const REAL *old = tr + T.r_wold + k * W;
            REAL *g = dMb + i * W;
            for (ptrdiff_t j = 0; j < W; j++) {
                Gww[k] += g[j] * (wv[j] - old[j] * er[j]);
                d_er[j] -= g[j] * w[k] * old[j];
                d_wv[j] += g[j] * w[k];
                g[j] *= 1 - w[k] * er[j];
            }
            memcpy(Mb + i * W, old, W * sizeof(REAL));
        }
        /* 6. write weighting */
        const int64_t *al = ti + T.i_al, *cw = ti + T.i_cw, *wpos = ti + T.i_wpos;
        const REAL *cwv = tr + T.r_cw;
        REAL uh[SP_MAX_K], alloc[SP_MAX_K], pre[SP_MAX_K], dalloc[SP_MAX_K], dcw[SP_MAX_K];
        {
            REAL before = 1;
            for (ptrdiff_t k = 0; k < K; k++) {
                uh[k] = EPS + KEEP * ub[al[k]];
                pre[k] = before;
                alloc[k] = (1 - uh[k]) * before;
                before *= uh[k];
            }
            REAL dgwga = 0, dgw1ga = 0;
            for (ptrdiff_t e = 0; e < 2 * K; e++) {
                const REAL d = wpos[e] < K ? Gww[wpos[e]] : 0;
                if (e < K) {
                    dalloc[e] = d * (gw * ga);
                    dgwga += d * alloc[e];
                } else {
                    dcw[e - K] = d * (gw * (1 - ga));
                    dgw1ga += d * cwv[e - K];
                }
            }
            *d_gw += dgwga * ga + dgw1ga * (1 - ga);
            *d_ga += dgwga * gw - dgw1ga * gw;
        }
        /* 5. allocation: a_m = (1 - u^_m) prod_{i<m} u^_i */
        for (ptrdiff_t j = 0; j < K; j++) {
            REAL d = -dalloc[j] * pre[j];
            for (ptrdiff_t q = j + 1; q < K; q++) {
                REAL prod = 1;
                for (ptrdiff_t i = 0; i < q; i++) if (i != j) prod *= uh[i];
                d += dalloc[q] * (1 - uh[q]) * prod;
            }
            dub[al[j]] += d * KEEP;
        }
        /* 4. write look-up (the memory before the write) */
        NAME(sp_lookup_backward)(Mb, dMb, W, cw, K, wk, ws, cwv, dcw, d_ws, d_wk);
        /* 2. deallocation */
        if (dealloc) {
            const ptrdiff_t nD = ti[T.i_nD];
            for (ptrdiff_t a = 0; a < nD; a++) {
                const int64_t s = ti[T.i_D + a];
                const REAL psi = tr[T.r_psiD + a], *old = tr + T.r_Dold + a * W;
                REAL *g = dMb + s * W, dpsi = 0;
                for (ptrdiff_t j = 0; j < W; j++) {
                    dpsi += g[j] * old[j];
                    g[j] *= psi;
                }
                memcpy(Mb + s * W, old, W * sizeof(REAL));
                NAME(sp_psi_backward)(rwi, rwv, fg, R, K, s, dpsi, d_fg, grwp);
            }
        }
        /* 1. usage */
        const ptrdiff_t nS = ti[T.i_nS];
        for (ptrdiff_t a = 0; a < nS; a++) {
            const int64_t s = ti[T.i_S + a];
            const REAL old = tr[T.r_uold + a], g = dub[s];
            const REAL wr = 1 - (1 - NAME(sp_lookup)(wwi, wwv, K, s)), psi = NAME(sp_psi)(rwi, rwv, fg, R, K, s);
            dub[s] = g * psi * (1 - wr);
            const REAL dwr = g * psi * (1 - old), dpsi = g * (old + wr - old * wr);
            for (ptrdiff_t k = 0; k < K; k++) if (wwi[k] == s) gwwp[k] += dwr;
            NAME(sp_psi_backward)(rwi, rwv, fg, R, K, s, dpsi, d_fg, grwp);
            ub[s] = old;
        }
    }
    NAME(interface_backward)(raw, consts[0], 0, B, P, R, W, 0, v, d, g_raw);
    free(d_buffer);
    return 0;
}

/* The sparse DNC with an LSTM controller over a whole sequence (models/sparse_sequence.py), as dnc_kernel.c's
 * dnc_sequence_forward with this file's access: per step t, ntm_sequence_kernel.c's controller_forward (h, c [L,
 * T + 1, B, C] from slot 1, act [L, T, B, 4C], tanh_c [L, T, B, C], the interface before its clip params [T, B, P]),
 * then sparse_access_forward on the store (M ... Lp, changed in place) from the small state of slot t to that of
 * slot t + 1: write ww [T + 1, B, K], read rw [T + 1, B, R, K], precedence pr [T + 1, B, K] (indices and values),
 * reads [T + 1, B, R, W]; the activated interface iact [T, B, P] and the tapes [T, B, ...] kept for the backward.
 * Returns 0, 1 where a buffer could not be allocated, 2 for sizes out of the kernel's bounds. */
int NAME(sparse_sequence_forward)(const REAL *gates_x, const REAL *rec_t, const REAL *bias, const REAL *iface_t,
                                  const REAL *iface_b, const REAL *consts, REAL *h, REAL *c, REAL *act, REAL *tanh_c,
                                  REAL *params, REAL *M, REAL *U, unsigned char *written, REAL *u, REAL *Lv,
                                  int64_t *Lc, int64_t *Lr, int64_t *Lp, int64_t *ww_idx, REAL *ww_val,
                                  int64_t *rw_idx, REAL *rw_val, int64_t *pr_idx, REAL *pr_val, REAL *reads,
                                  REAL *iact, int64_t *tape_i, REAL *tape_r, ptrdiff_t T, ptrdiff_t B, ptrdiff_t L,
                                  ptrdiff_t C, ptrdiff_t N, ptrdiff_t W, ptrdiff_t K, ptrdiff_t R, ptrdiff_t dealloc) {
    const ptrdiff_t P = DNC_INTERFACE_SIZE(R, W, 0), K0 = R * W + C, RK = R * K;
    const NAME(Tape) tape = NAME(tape_layout)(K, R, W);
    for (ptrdiff_t t = 0; t < T; t++) {
        const ptrdiff_t now = t * B, next = (t + 1) * B;  /* first example of slot t and of slot t + 1 */
        NAME(controller_forward)(t, gates_x, rec_t, bias, iface_t, iface_b, reads, h, c, act, tanh_c, params, T, B, L,
                                 C, K0, P);
        const int status = NAME(sparse_access_forward)(
            M, U, written, u, Lv, Lc, Lr, Lp, params + now * P, consts, ww_idx + now * K, ww_val + now * K,
            rw_idx + now * RK, rw_val + now * RK, pr_idx + now * K, pr_val + now * K, ww_idx + next * K,
            ww_val + next * K, rw_idx + next * RK, rw_val + next * RK, pr_idx + next * K, pr_val + next * K,
            reads + next * R * W, iact + now * P, tape_i + now * tape.i_size, tape_r + now * tape.r_size, B, N, W, K, R,
            dealloc);
        if (status) return status;
    }
    return 0;
}

/* Its backward, in reverse time, from grad_hs [T, B, C] (of the top layer's h_t) and grad_reads [T, B, R, W] (either
 * NULL: zeros), the store as the forward left it and the dense gradient buffers dM, du, dLv zeros: grad_gates [L, T,
 * B, 4C] and grad_params [T, B, P] (the weights' gradients are the caller's products), and the initial state's:
 * grad_h0, grad_c0 [L, B, C], the weightings' values grad_ww0 [B, K], grad_rw0 [B, R, K], grad_pr0 [B, K] and the
 * reads' grad_reads0 [B, R, W]. Leaves memory, usage and link values as at the first step (sparse_access_backward).
 * The weightings' carries alternate between the outputs and a spare buffer each. Returns as the forward. */
int NAME(sparse_sequence_backward)(const REAL *rec, const REAL *iface, const REAL *consts, const REAL *act,
                                   const REAL *tanh_c, const REAL *c, const REAL *params, REAL *M, REAL *u, REAL *Lv,
                                   REAL *dM, REAL *du, REAL *dLv, REAL *iact, const int64_t *ww_idx,
                                   const REAL *ww_val, const int64_t *rw_idx, const REAL *rw_val,
                                   const int64_t *pr_idx, const REAL *pr_val, const int64_t *tape_i,
                                   const REAL *tape_r, const REAL *grad_hs, const REAL *grad_reads, REAL *grad_gates,
                                   REAL *grad_params, REAL *grad_h0, REAL *grad_c0, REAL *grad_ww0, REAL *grad_rw0,
                                   REAL *grad_pr0, REAL *grad_reads0, ptrdiff_t T, ptrdiff_t B, ptrdiff_t L,
                                   ptrdiff_t C, ptrdiff_t N, ptrdiff_t W, ptrdiff_t K, ptrdiff_t R, ptrdiff_t dealloc) {
    const ptrdiff_t P = DNC_INTERFACE_SIZE(R, W, 0), K0 = R * W + C, RK = R * K, widest = K0 > 2 * C ? K0 : 2 * C;
    const ptrdiff_t BK = B * K, BRK = B * RK, BRW = B * R * W;
    const NAME(Tape) tape = NAME(tape_layout)(K, R, W);
    REAL *scratch = calloc(2 * BK + BRK + B * widest, sizeof(REAL));
    if (!scratch) return 1;
    REAL *gww = grad_ww0, *grw = grad_rw0, *gpr = grad_pr0;  /* gradients of slot t + 1's weightings */
    REAL *gww2 = scratch, *grw2 = gww2 + BK, *gpr2 = grw2 + BRK, *gz = gpr2 + BK;  /* of slot t's */
    for (ptrdiff_t i = 0; i < BK; i++) gww[i] = gpr[i] = 0;
    for (ptrdiff_t i = 0; i < BRK; i++) grw[i] = 0;
    for (ptrdiff_t i = 0; i < BRW; i++) grad_reads0[i] = 0;
    for (ptrdiff_t i = 0; i < L * B * C; i++) grad_h0[i] = grad_c0[i] = 0;
    for (ptrdiff_t t = T - 1; t >= 0; t--) {
        const ptrdiff_t now = t * B, next = (t + 1) * B;
        if (grad_reads)
            for (ptrdiff_t i = 0; i < BRW; i++) grad_reads0[i] += grad_reads[t * BRW + i];
        REAL *g = grad_params + now * P;
        const int status = NAME(sparse_access_backward)(
            M, u, Lv, dM, du, dLv, params + now * P, consts, iact + now * P, ww_idx + now * K, ww_val + now * K,
            rw_idx + now * RK, rw_val + now * RK, pr_idx + now * K, pr_val + now * K, ww_idx + next * K,
            ww_val + next * K, rw_idx + next * RK, rw_val + next * RK, tape_i + now * tape.i_size,
            tape_r + now * tape.r_size, grad_reads0, gww, grw, gpr, g, gww2, grw2, gpr2, B, N, W, K, R, dealloc);
        if (status) {
            free(scratch);
            return status;
        }
#define SWAP(a, b) do { REAL *swap_ = a; a = b; b = swap_; } while (0)
        SWAP(gww, gww2); SWAP(grw, grw2); SWAP(gpr, gpr2);
#undef SWAP
        NAME(controller_backward)(t, rec, iface, act, tanh_c, c, g, grad_hs, grad_h0, grad_c0, grad_reads0, grad_gates,
                                  gz, T, B, L, C, K0, P);
    }
    if (gww != grad_ww0) {
        memcpy(grad_ww0, gww, BK * sizeof(REAL));
        memcpy(grad_rw0, grw, BRK * sizeof(REAL));
        memcpy(grad_pr0, gpr, BK * sizeof(REAL));
    }
    free(scratch);
    return 0;
}
