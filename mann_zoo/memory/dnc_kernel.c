/* The DNC's memory access of one time step with one write head (memory/dnc_access.py), forward and backward:
 * usage, allocation, write weighting, erase and write, the link and precedence, the read weightings and the
 * reads in one call each way, where the composed primitives take some forty kernels and autograd nodes.
 *
 * Compiled with link_kernel.c (included before this file: link_reads_forward and link_reads_backward do the
 * link's pass) and ntm_kernel.c (softmax_, EXP) by memory/native.py; REAL is float or double, names suffixed
 * _f32 or _f64; EPS is memory/_checks.py's, KEEP its 1 - EPS as the allocation's torch code rounds it.
 *
 * Shapes (row-major, contiguous), R read heads: memory M_{t-1} and M_t [B, N, W]; usage, precedence, write
 * weights [B, N]; link [B, N, N]; read weights [B, R, N]; read keys and masks [B, R, W], read strengths and
 * free gates [B, R], read modes [B, R, 3] (backward, content, forward); write key, mask, erase, write vector
 * [B, W]; write strength, allocation and write gates [B]; reads [B, R, W]. A mask pointer may be NULL (no
 * masking: every m_w = 1). saved [B, SAVED] with SAVED = 6 N + 5 R N + 1 + R (dnc_saved_size).
 *
 * Forward, per example (Graves et al. 2016, Methods; masking and deallocation: Csordas & Schmidhuber 2019):
 *   psi = prod_r (1 - f_r w^r_{t-1});  u = (u_{t-1} + s - u_{t-1} s) psi,  s = 1 - (1 - w^w_{t-1})
 *   M' = M_{t-1} psi (deallocation) or M_{t-1}
 *   c^w = softmax(beta^w cos(M', k^w; m^w)),  cos_i = (sum_w k_w m_w^2 M_iw) rm_i rk,
 *       rm_i = (sum_w m_w^2 M_iw^2 + EPS)^-1/2,  rk = (sum_w m_w^2 k_w^2 + EPS)^-1/2
 *   a[phi_j] = (1 - x_j) prod_{i<j} x_i,  x = EPS + (1 - EPS) u sorted ascending (ties: lower slot first)
 *   w^w = g^w (g^a a + (1 - g^a) c^w);  M = M' + w^w (v - M' e)^T
 *   L, f_r = L w^r_{t-1}, b_r = L^T w^r_{t-1} (link_kernel.c);  p = (1 - sum w^w) p_{t-1} + w^w
 *   c^r = softmax(beta^r cos(M, k^r; m^r));  w^r = pi_b b + pi_c c^r + pi_f f;  r = sum_i w^r_i M_i
 */

#ifndef DNC_SAVED
#define DNC_SAVED
/* saved, per example: psi, order (slot indices as REAL), allocation a (by slot) [N]; c^w, cos^w, rm^w [N];
 * rk^w [1]; c^r, cos^r, rm^r [R, N]; rk^r [R]; forward, backward [R, N] */
#define DNC_SAVED_SIZE(N, R) (6 * (N) + 5 * (R) * (N) + 1 + (R))
#endif

/* order[:n] <- the slots 0..n-1 by ascending x, ties by slot, NaN last (as torch.sort; a stable merge sort from
 * the identity); scratch holds n entries. */
#define DNC_BEFORE(a, b) ((a) < (b) || ((b) != (b) && (a) == (a)))  /* a strictly before b; NaN after numbers */
static void NAME(sort_slots)(const REAL *restrict x, ptrdiff_t *restrict order, ptrdiff_t *restrict scratch,
                             ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) order[i] = i;
    ptrdiff_t *from = order, *to = scratch;
    for (ptrdiff_t width = 1; width < n; width *= 2) {
        for (ptrdiff_t lo = 0; lo < n; lo += 2 * width) {
            const ptrdiff_t mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            ptrdiff_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)  /* left first on ties */
                to[k++] = DNC_BEFORE(x[from[j]], x[from[i]]) ? from[j++] : from[i++];
            while (i < mid) to[k++] = from[i++];
            while (j < hi) to[k++] = from[j++];
        }
        ptrdiff_t *swap = from;
        from = to;
        to = swap;
    }
    if (from != order)
        for (ptrdiff_t i = 0; i < n; i++) order[i] = from[i];
}

/* Content weighting of one key: c = softmax(beta cos(M, k; m)). Writes c, cos, rm [N] and *rk. mask may be NULL. */
static void NAME(dnc_content)(const REAL *restrict M, const REAL *restrict k, const REAL *restrict mask, REAL beta,
                              REAL *restrict c, REAL *restrict cs, REAL *restrict rm, REAL *restrict rk,
                              REAL *restrict km2, REAL *restrict m2, ptrdiff_t N, ptrdiff_t W) {
    REAL kk = 0;
    for (ptrdiff_t w = 0; w < W; w++) {
        m2[w] = mask ? mask[w] * mask[w] : 1;
        km2[w] = k[w] * m2[w];  /* k m^2 */
        const REAL km = mask ? k[w] * mask[w] : k[w];
        kk += km * km;  /* |k m|^2, as the torch code: (k m) squared */
    }
    *rk = 1 / sqrt(kk + EPS);
    for (ptrdiff_t i = 0; i < N; i++) {
        const REAL *restrict Mi = M + i * W;
        REAL dot = 0, mm = 0;
#pragma omp simd reduction(+ : dot, mm)
        for (ptrdiff_t w = 0; w < W; w++) {
            dot += km2[w] * Mi[w];
            mm += m2[w] * Mi[w] * Mi[w];
        }
        rm[i] = 1 / sqrt(mm + EPS);
        cs[i] = dot * rm[i] * *rk;
        c[i] = beta * cs[i];
    }
    NAME(softmax_)(c, N);
}

/* Back through dnc_content: given dc [N] (overwritten), adds to dM [N, W], dk [W], dmask [W] (if mask) and
 * returns d beta. m2, acc and acc2 [W] are scratch. */
static REAL NAME(dnc_content_backward)(const REAL *restrict M, const REAL *restrict k, const REAL *restrict mask,
                                       REAL beta, const REAL *restrict c, const REAL *restrict cs,
                                       const REAL *restrict rm, REAL rk, REAL *restrict dc, REAL *restrict dM,
                                       REAL *restrict dk, REAL *restrict dmask, REAL *restrict m2,
                                       REAL *restrict acc, REAL *restrict acc2, ptrdiff_t N, ptrdiff_t W) {
    REAL cdc = 0;
    for (ptrdiff_t i = 0; i < N; i++) cdc += c[i] * dc[i];
    REAL dbeta = 0, dcos_cos = 0;
    for (ptrdiff_t i = 0; i < N; i++) {
        const REAL dlogit = c[i] * (dc[i] - cdc);  /* back through the softmax */
        dbeta += dlogit * cs[i];
        dc[i] = beta * dlogit;  /* d cos_i */
        dcos_cos += dc[i] * cs[i];
    }
    for (ptrdiff_t w = 0; w < W; w++) {
        m2[w] = mask ? mask[w] * mask[w] : 1;
        acc[w] = acc2[w] = 0;
    }
    for (ptrdiff_t i = 0; i < N; i++) {
        const REAL *restrict Mi = M + i * W;
        REAL *restrict dMi = dM + i * W;
        const REAL ddot = dc[i] * rm[i] * rk, dsq = dc[i] * cs[i] * rm[i] * rm[i];
#pragma omp simd
        for (ptrdiff_t w = 0; w < W; w++) {
            dMi[w] += m2[w] * (ddot * k[w] - dsq * Mi[w]);  /* dM_iw += m_w^2 (d dot_i k_w - d cos_i cos_i rm_i^2 M_iw) */
            acc[w] += ddot * Mi[w];                          /* sum_i d dot_i M_iw */
            acc2[w] += dsq * Mi[w] * Mi[w];                  /* sum_i d cos_i cos_i rm_i^2 M_iw^2 */
        }
    }
    const REAL rk2 = rk * rk;
    for (ptrdiff_t w = 0; w < W; w++) {
        dk[w] += m2[w] * (acc[w] - rk2 * dcos_cos * k[w]);
        if (mask) dmask[w] += mask[w] * (2 * k[w] * acc[w] - acc2[w] - rk2 * dcos_cos * k[w] * k[w]);
    }
    return dbeta;
}

/* Forward. Writes new_memory, new_usage, new_link, new_prec, new_read_w, new_write_w, reads and saved.
 * Returns 0, or 1 where a buffer could not be allocated (nothing valid written then). */
int NAME(dnc_access_forward)(const REAL *memory, const REAL *usage, const REAL *link, const REAL *prec,
                             const REAL *read_w, const REAL *write_w, const REAL *read_keys,
                             const REAL *read_strengths, const REAL *read_masks, const REAL *read_modes,
                             const REAL *write_key, const REAL *write_strength, const REAL *write_mask,
                             const REAL *erase, const REAL *write_vector, const REAL *free_gates,
                             const REAL *alloc_gate, const REAL *write_gate, REAL *new_memory, REAL *new_usage,
                             REAL *new_link, REAL *new_prec, REAL *new_read_w, REAL *new_write_w, REAL *reads,
                             REAL *saved, ptrdiff_t B, ptrdiff_t N, ptrdiff_t W, ptrdiff_t R, ptrdiff_t deallocate) {
    const ptrdiff_t n = N > 0 ? N : 1;
    REAL *rbuf = malloc((n + 2 * W + 2) * sizeof(REAL));
    ptrdiff_t *ibuf = malloc(2 * n * sizeof(ptrdiff_t));
    if (!rbuf || !ibuf) {
        free(rbuf);
        free(ibuf);
        return 1;
    }
    REAL *restrict x = rbuf, *restrict km2 = rbuf + n, *restrict m2 = km2 + W;
    ptrdiff_t *restrict order = ibuf, *restrict scratch = ibuf + n;
    for (ptrdiff_t b = 0; b < B; b++) {
        const REAL *restrict Mp = memory + b * N * W, *restrict up = usage + b * N, *restrict wrp = read_w + b * R * N;
        const REAL *restrict wwp = write_w + b * N, *restrict f = free_gates + b * R, *restrict pp = prec + b * N;
        const REAL *restrict e = erase + b * W, *restrict v = write_vector + b * W, *restrict pi = read_modes + b * R * 3;
        const REAL ga = alloc_gate[b], gw = write_gate[b];
        REAL *restrict M = new_memory + b * N * W, *restrict u = new_usage + b * N, *restrict ww = new_write_w + b * N;
        REAL *restrict wr = new_read_w + b * R * N, *restrict r = reads + b * R * W, *restrict p = new_prec + b * N;
        REAL *restrict sv = saved + b * DNC_SAVED_SIZE(N, R);
        REAL *restrict psi = sv, *restrict ord = sv + N, *restrict a = sv + 2 * N, *restrict cw = sv + 3 * N;
        REAL *restrict csw = sv + 4 * N, *restrict rmw = sv + 5 * N, *restrict rkw = sv + 6 * N;
        REAL *restrict cr = rkw + 1, *restrict csr = cr + R * N, *restrict rmr = csr + R * N, *restrict rkr = rmr + R * N;
        REAL *restrict fwd = rkr + R, *restrict bwd = fwd + R * N;

        for (ptrdiff_t i = 0; i < N; i++) {  /* usage, retention psi */
            REAL keep = 1;
            for (ptrdiff_t h = 0; h < R; h++) keep *= 1 - f[h] * wrp[h * N + i];
            psi[i] = keep;
            const REAL s = 1 - (1 - wwp[i]);
            u[i] = (up[i] + s - up[i] * s) * keep;
        }
        /* M' (deallocation: M_{t-1} psi) is written into M, then written over in place below */
        for (ptrdiff_t i = 0; i < N; i++) {
            const REAL scale = deallocate ? psi[i] : 1;
#pragma omp simd
            for (ptrdiff_t w = 0; w < W; w++) M[i * W + w] = Mp[i * W + w] * scale;
        }
        NAME(dnc_content)(M, write_key + b * W, write_mask ? write_mask + b * W : NULL, write_strength[b], cw, csw, rmw,
                          rkw, km2, m2, N, W);
        for (ptrdiff_t i = 0; i < N; i++) x[i] = EPS + KEEP * u[i];  /* allocation */
        NAME(sort_slots)(x, order, scratch, N);
        REAL before = 1;
        for (ptrdiff_t j = 0; j < N; j++) {
            const ptrdiff_t slot = order[j];
            ord[j] = (REAL)slot;
            a[slot] = (1 - x[slot]) * before;
            before *= x[slot];
        }
        for (ptrdiff_t i = 0; i < N; i++) ww[i] = gw * (ga * a[i] + (1 - ga) * cw[i]);
        for (ptrdiff_t i = 0; i < N; i++) {  /* erase and write: M = M' + w^w (v - M' e) */
            REAL *restrict Mi = M + i * W;
            const REAL wi = ww[i];
#pragma omp simd
            for (ptrdiff_t w = 0; w < W; w++) Mi[w] += wi * (v[w] - Mi[w] * e[w]);
        }
        NAME(link_reads_forward)(link + b * N * N, pp, ww, wrp, new_link + b * N * N, fwd, bwd, 1, 1, R, N);
        REAL written = 0;
        for (ptrdiff_t i = 0; i < N; i++) written += ww[i];
        for (ptrdiff_t i = 0; i < N; i++) p[i] = (1 - written) * pp[i] + ww[i];
        for (ptrdiff_t h = 0; h < R; h++) {
            REAL *restrict wrh = wr + h * N;
            NAME(dnc_content)(M, read_keys + (b * R + h) * W, read_masks ? read_masks + (b * R + h) * W : NULL,
                              read_strengths[b * R + h], cr + h * N, csr + h * N, rmr + h * N, rkr + h, km2, m2, N, W);
            const REAL pb = pi[h * 3], pc = pi[h * 3 + 1], pf = pi[h * 3 + 2];
            for (ptrdiff_t i = 0; i < N; i++) wrh[i] = pb * bwd[h * N + i] + pc * cr[h * N + i] + pf * fwd[h * N + i];
            REAL *restrict rh = r + h * W;
            for (ptrdiff_t w = 0; w < W; w++) rh[w] = 0;
            for (ptrdiff_t i = 0; i < N; i++) {
                const REAL wi = wrh[i];
#pragma omp simd
                for (ptrdiff_t w = 0; w < W; w++) rh[w] += wi * M[i * W + w];
            }
        }
    }
    free(rbuf);
    free(ibuf);
    return 0;
}

/* Backward. The gradients of the outputs (grad_memory ... grad_reads) may be NULL (no gradient: zeros);
 * read_masks and write_mask NULL with d_read_masks and d_write_mask NULL. Writes every gradient of the inputs
 * in full, reading the forward's new_memory, new_usage, new_read_w, new_write_w and saved. Per example, in
 * reverse: the reads and the read weightings (to M_t, the modes, the directional weightings and the read
 * content look-ups), precedence and link (link_kernel.c), erase and write (to M', w^w, e, v), the write
 * weighting (gates, allocation, write content look-up), the allocation's ordered product (its order a
 * constant: a reverse scan, no division), usage, deallocation and psi.
 * Returns 0, 1 where a buffer could not be allocated, or 2 where saved's allocation order holds a slot outside
 * [0, N) (nothing valid written in either case). */
int NAME(dnc_access_backward)(const REAL *memory, const REAL *usage, const REAL *link, const REAL *prec,
                              const REAL *read_w, const REAL *write_w, const REAL *read_keys,
                              const REAL *read_strengths, const REAL *read_masks, const REAL *read_modes,
                              const REAL *write_key, const REAL *write_strength, const REAL *write_mask,
                              const REAL *erase, const REAL *write_vector, const REAL *free_gates,
                              const REAL *alloc_gate, const REAL *write_gate, const REAL *new_memory,
                              const REAL *new_usage, const REAL *new_read_w, const REAL *new_write_w,
                              const REAL *saved, const REAL *grad_memory, const REAL *grad_usage,
                              const REAL *grad_link, const REAL *grad_prec, const REAL *grad_read_w,
                              const REAL *grad_write_w, const REAL *grad_reads, REAL *d_memory, REAL *d_usage,
                              REAL *d_link, REAL *d_prec, REAL *d_read_w, REAL *d_write_w, REAL *d_read_keys,
                              REAL *d_read_strengths, REAL *d_read_masks, REAL *d_read_modes, REAL *d_write_key,
                              REAL *d_write_strength, REAL *d_write_mask, REAL *d_erase, REAL *d_write_vector,
                              REAL *d_free_gates, REAL *d_alloc_gate, REAL *d_write_gate,
                              ptrdiff_t B, ptrdiff_t N, ptrdiff_t W, ptrdiff_t R, ptrdiff_t deallocate) {
    /* per example: dM_t and M' [N, W]; dw^r, d forward, d backward, dw^r_{t-1} from the link [R, N];
     * dw^w, dc, du, dpsi, prefix products, dp and dw^w from the link [N]; m2, acc, acc2 [W] */
    const ptrdiff_t size = 2 * N * W + 4 * R * N + 7 * N + 3 * W;
    REAL *buffer = malloc((size > 0 ? size : 1) * sizeof(REAL));
    if (!buffer) return 1;
    REAL *restrict dMt = buffer, *restrict Mpr = dMt + N * W, *restrict dwr = Mpr + N * W, *restrict dfwd = dwr + R * N;
    REAL *restrict dbwd = dfwd + R * N, *restrict dwr_link = dbwd + R * N, *restrict dww = dwr_link + R * N;
    REAL *restrict dc = dww + N, *restrict du = dc + N, *restrict dpsi = du + N, *restrict prefix = dpsi + N;
    REAL *restrict dp_link = prefix + N, *restrict dww_link = dp_link + N, *restrict m2 = dww_link + N;
    REAL *restrict acc = m2 + W, *restrict acc2 = acc + W;
    for (ptrdiff_t b = 0; b < B; b++) {
        const REAL *restrict Mp = memory + b * N * W, *restrict up = usage + b * N, *restrict wrp = read_w + b * R * N;
        const REAL *restrict wwp = write_w + b * N, *restrict f = free_gates + b * R, *restrict pp = prec + b * N;
        const REAL *restrict e = erase + b * W, *restrict v = write_vector + b * W, *restrict pi = read_modes + b * R * 3;
        const REAL *restrict M = new_memory + b * N * W, *restrict u = new_usage + b * N;
        const REAL *restrict wr = new_read_w + b * R * N, *restrict ww = new_write_w + b * N;
        const REAL ga = alloc_gate[b], gw = write_gate[b];
        const REAL *restrict sv = saved + b * DNC_SAVED_SIZE(N, R);
        const REAL *restrict psi = sv, *restrict ord = sv + N, *restrict a = sv + 2 * N, *restrict cw = sv + 3 * N;
        const REAL *restrict csw = sv + 4 * N, *restrict rmw = sv + 5 * N, rkw = sv[6 * N];
        const REAL *restrict cr = sv + 6 * N + 1, *restrict csr = cr + R * N, *restrict rmr = csr + R * N;
        const REAL *restrict rkr = rmr + R * N, *restrict fwd = rkr + R, *restrict bwd = fwd + R * N;
        const REAL *restrict gM = grad_memory ? grad_memory + b * N * W : NULL;
        const REAL *restrict gr = grad_reads ? grad_reads + b * R * W : NULL;
        REAL *restrict dM = d_memory + b * N * W, *restrict dpr = d_prec + b * N, *restrict dwrp = d_read_w + b * R * N;
        REAL *restrict dwwp = d_write_w + b * N, *restrict dup = d_usage + b * N, *restrict dpi = d_read_modes + b * R * 3;
        REAL *restrict de = d_erase + b * W, *restrict dv = d_write_vector + b * W, *restrict dkw = d_write_key + b * W;
        REAL *restrict dmw = d_write_mask ? d_write_mask + b * W : NULL;

        for (ptrdiff_t x = 0; x < N * W; x++) dMt[x] = gM ? gM[x] : 0;
        for (ptrdiff_t x = 0; x < R * N; x++) dwr[x] = grad_read_w ? grad_read_w[b * R * N + x] : 0;
        if (gr) {  /* r_h = sum_i w^r_hi M_i */
            for (ptrdiff_t i = 0; i < N; i++) {
                const REAL *restrict Mi = M + i * W;
                REAL *restrict dMi = dMt + i * W;
                for (ptrdiff_t h = 0; h < R; h++) {
                    const REAL *restrict grh = gr + h * W;
                    const REAL whi = wr[h * N + i];
                    REAL dot = 0;
#pragma omp simd reduction(+ : dot)
                    for (ptrdiff_t w = 0; w < W; w++) {
                        dot += grh[w] * Mi[w];
                        dMi[w] += whi * grh[w];
                    }
                    dwr[h * N + i] += dot;
                }
            }
        }
        for (ptrdiff_t h = 0; h < R; h++) {  /* w^r = pi_b b + pi_c c^r + pi_f f, then the read content look-up */
            const REAL *restrict dwrh = dwr + h * N;
            REAL sb = 0, sc = 0, sf = 0;
            for (ptrdiff_t i = 0; i < N; i++) {
                sb += dwrh[i] * bwd[h * N + i];
                sc += dwrh[i] * cr[h * N + i];
                sf += dwrh[i] * fwd[h * N + i];
                dbwd[h * N + i] = pi[h * 3] * dwrh[i];
                dc[i] = pi[h * 3 + 1] * dwrh[i];
                dfwd[h * N + i] = pi[h * 3 + 2] * dwrh[i];
            }
            dpi[h * 3] = sb;
            dpi[h * 3 + 1] = sc;
            dpi[h * 3 + 2] = sf;
            REAL *restrict dkh = d_read_keys + (b * R + h) * W;
            REAL *restrict dmh = d_read_masks ? d_read_masks + (b * R + h) * W : NULL;
            for (ptrdiff_t w = 0; w < W; w++) {
                dkh[w] = 0;
                if (dmh) dmh[w] = 0;
            }
            d_read_strengths[b * R + h] = NAME(dnc_content_backward)(
                M, read_keys + (b * R + h) * W, read_masks ? read_masks + (b * R + h) * W : NULL,
                read_strengths[b * R + h], cr + h * N, csr + h * N, rmr + h * N, rkr[h], dc, dMt, dkh, dmh, m2, acc,
                acc2, N, W);
        }
        REAL written = 0, gp_pp = 0;  /* p = (1 - sum w^w) p_{t-1} + w^w */
        for (ptrdiff_t i = 0; i < N; i++) written += ww[i];
        if (grad_prec)
            for (ptrdiff_t i = 0; i < N; i++) gp_pp += grad_prec[b * N + i] * pp[i];
        for (ptrdiff_t i = 0; i < N; i++) {
            const REAL gp = grad_prec ? grad_prec[b * N + i] : 0;
            dpr[i] = (1 - written) * gp;
            dww[i] = (grad_write_w ? grad_write_w[b * N + i] : 0) + gp - gp_pp;
        }
        if (NAME(link_reads_backward)(link + b * N * N, pp, ww, wrp, grad_link ? grad_link + b * N * N : NULL, dfwd,
                                      dbwd, d_link + b * N * N, dp_link, dww_link, dwr_link, 1, 1, R, N)) {
            free(buffer);
            return 1;
        }
        for (ptrdiff_t i = 0; i < N; i++) {
            dpr[i] += dp_link[i];
            dww[i] += dww_link[i];
        }
        for (ptrdiff_t x = 0; x < R * N; x++) dwrp[x] = dwr_link[x];
        for (ptrdiff_t w = 0; w < W; w++) de[w] = dv[w] = dkw[w] = 0;
        for (ptrdiff_t i = 0; i < N; i++) {  /* M = M' + w^w (v - M' e) */
            const REAL scale = deallocate ? psi[i] : 1, wi = ww[i];
            const REAL *restrict dMti = dMt + i * W, *restrict Mpi = Mp + i * W;
            REAL *restrict Mpri = Mpr + i * W, *restrict dMi = dM + i * W;
            REAL dwi = 0;
#pragma omp simd reduction(+ : dwi)
            for (ptrdiff_t w = 0; w < W; w++) {
                const REAL g = dMti[w], m = Mpri[w] = Mpi[w] * scale;
                dMi[w] = g * (1 - wi * e[w]);  /* dM' */
                dwi += g * (v[w] - m * e[w]);
                de[w] -= g * wi * m;
                dv[w] += g * wi;
            }
            dww[i] += dwi;
        }
        REAL dgw = 0, dga = 0;  /* w^w = g^w (g^a a + (1 - g^a) c^w) */
        for (ptrdiff_t i = 0; i < N; i++) {
            const REAL d = dww[i];
            dgw += d * (ga * a[i] + (1 - ga) * cw[i]);
            dga += d * gw * (a[i] - cw[i]);
            dww[i] = d * gw * ga;  /* now d a */
            dc[i] = d * gw * (1 - ga);
        }
        d_write_gate[b] = dgw;
        d_alloc_gate[b] = dga;
        if (dmw)
            for (ptrdiff_t w = 0; w < W; w++) dmw[w] = 0;
        d_write_strength[b] = NAME(dnc_content_backward)(Mpr, write_key + b * W, write_mask ? write_mask + b * W : NULL,
                                                         write_strength[b], cw, csw, rmw, rkw, dc, dM, dkw, dmw, m2,
                                                         acc, acc2, N, W);
        /* allocation, in sorted order j: a_j = (1 - x_j) P_j, P_{j+1} = P_j x_j, x = EPS + KEEP u */
        REAL product = 1;
        for (ptrdiff_t j = 0; j < N; j++) {
            const ptrdiff_t slot = (ptrdiff_t)ord[j];
            if (!(ord[j] >= 0 && ord[j] < N)) {  /* saved is the caller's: a slot outside [0, N) would write past du */
                free(buffer);
                return 2;
            }
            prefix[j] = product;
            product *= EPS + KEEP * u[slot];
        }
        for (ptrdiff_t i = 0; i < N; i++) du[i] = grad_usage ? grad_usage[b * N + i] : 0;
        REAL dP = 0;  /* d P_{j+1} */
        for (ptrdiff_t j = N - 1; j >= 0; j--) {
            const ptrdiff_t slot = (ptrdiff_t)ord[j];
            const REAL xj = EPS + KEEP * u[slot], daj = dww[slot];
            du[slot] += KEEP * (dP - daj) * prefix[j];  /* d x_j = -da_j P_j + dP_{j+1} P_j */
            dP = daj * (1 - xj) + dP * xj;              /* d P_j */
        }
        for (ptrdiff_t i = 0; i < N; i++) {  /* u = (u_{t-1} + s - u_{t-1} s) psi */
            const REAL s = 1 - (1 - wwp[i]);
            dup[i] = du[i] * (1 - s) * psi[i];
            dwwp[i] = du[i] * (1 - up[i]) * psi[i];
            dpsi[i] = du[i] * (up[i] + s - up[i] * s);
        }
        if (deallocate) {  /* M' = M_{t-1} psi */
            for (ptrdiff_t i = 0; i < N; i++) {
                REAL *restrict dMi = dM + i * W;
                const REAL *restrict Mpi = Mp + i * W;
                REAL dot = 0;
#pragma omp simd reduction(+ : dot)
                for (ptrdiff_t w = 0; w < W; w++) {
                    dot += dMi[w] * Mpi[w];
                    dMi[w] *= psi[i];
                }
                dpsi[i] += dot;
            }
        }
        for (ptrdiff_t h = 0; h < R; h++) {  /* psi = prod_h (1 - f_h w^r_{t-1, h}) */
            REAL df = 0;
            for (ptrdiff_t i = 0; i < N; i++) {
                REAL others = 1;
                for (ptrdiff_t k = 0; k < R; k++)
                    if (k != h) others *= 1 - f[k] * wrp[k * N + i];
                df -= dpsi[i] * wrp[h * N + i] * others;
                dwrp[h * N + i] -= dpsi[i] * f[h] * others;
            }
            d_free_gates[b * R + h] = df;
        }
    }
    free(buffer);
    return 0;
}

/* --- The DNC with an LSTM controller over a whole sequence (models/dnc_sequence.py), forward and backward: the
 * controller's step of ntm_sequence_kernel.c (controller_forward, controller_backward; included before this file),
 * the interface's activations, and the access above. Shapes as ntm_sequence_kernel.c's (time-major), with the
 * interface vector's P parameters in place of the NTM's heads, and per step t (slot 0: the initial state):
 *   memories [T + 1, B, N, W]; usage, precedence, write weights [T + 1, B, N]; links [T + 1, B, N, N];
 *   read weights [T + 1, B, R, N]; reads [T + 1, B, R, W]; saved [T, B, DNC_SAVED]; consts [2]: clip, mask floor.
 * The interface (models/dnc.py, one write head, no link sharpness), clipped to [-clip, clip], then in order:
 *   read keys [R W], write key [W], write vector [W] (linear); erase [W], free gates [R], allocation gate, write
 *   gate, and with masking read masks [R W] and write mask [W] (sigma; masks floor + (1 - floor) sigma); read
 *   strengths [R], write strength (1 + softplus); read modes [R, 3] (softmax per head). */

#define DNC_INTERFACE_SIZE(R, W, masking) ((R) * (W) + 3 * (W) + 5 * (R) + 3 + ((masking) ? (R) * (W) + (W) : 0))

/* The activated interface of one step, each array batch-major ([B, ...]); masks NULL without masking. */
typedef struct {
    REAL *read_keys, *read_strengths, *read_masks, *read_modes, *write_key, *write_strength, *write_mask, *erase,
        *write_vector, *free_gates, *alloc_gate, *write_gate;
} NAME(Interface);

/* The arrays of an Interface laid out in buffer (DNC_INTERFACE_SIZE(R, W, masking) * B elements). */
static NAME(Interface) NAME(interface_in)(REAL *buffer, ptrdiff_t B, ptrdiff_t R, ptrdiff_t W, ptrdiff_t masking) {
    NAME(Interface) v;
    v.read_keys = buffer;
    v.read_strengths = v.read_keys + B * R * W;
    v.read_modes = v.read_strengths + B * R;
    v.write_key = v.read_modes + B * R * 3;
    v.write_strength = v.write_key + B * W;
    v.erase = v.write_strength + B;
    v.write_vector = v.erase + B * W;
    v.free_gates = v.write_vector + B * W;
    v.alloc_gate = v.free_gates + B * R;
    v.write_gate = v.alloc_gate + B;
    v.read_masks = masking ? v.write_gate + B : NULL;
    v.write_mask = masking ? v.read_masks + B * R * W : NULL;
    return v;
}

/* Offsets of the interface vector's groups (models/dnc.py's order). */
typedef struct { ptrdiff_t write_key, write_vector, erase, free, alloc, write_gate, read_masks, write_mask, read_strengths,
                 write_strength, modes; } NAME(Layout);

static NAME(Layout) NAME(interface_layout)(ptrdiff_t R, ptrdiff_t W, ptrdiff_t masking) {
    NAME(Layout) o;
    o.write_key = R * W;
    o.write_vector = o.write_key + W;
    o.erase = o.write_vector + W;
    o.free = o.erase + W;
    o.alloc = o.free + R;
    o.write_gate = o.alloc + 1;
    o.read_masks = o.write_gate + 1;
    o.write_mask = o.read_masks + R * W;
    o.read_strengths = masking ? o.write_mask + W : o.read_masks;
    o.write_strength = o.read_strengths + R;
    o.modes = o.write_strength + 1;
    return o;
}

static void NAME(interface_activations)(const REAL *restrict params, REAL clip, REAL floor_, ptrdiff_t B, ptrdiff_t P,
                                        ptrdiff_t R, ptrdiff_t W, ptrdiff_t masking, NAME(Interface) v) {
    const NAME(Layout) o = NAME(interface_layout)(R, W, masking);
    for (ptrdiff_t b = 0; b < B; b++) {
        const REAL *p = params + b * P;
#define CLIPPED(k) NAME(clipped)(p[k], clip)
        for (ptrdiff_t j = 0; j < R * W; j++) v.read_keys[b * R * W + j] = CLIPPED(j);
        for (ptrdiff_t j = 0; j < W; j++) {
            v.write_key[b * W + j] = CLIPPED(o.write_key + j);
            v.write_vector[b * W + j] = CLIPPED(o.write_vector + j);
            v.erase[b * W + j] = NAME(sigma)(CLIPPED(o.erase + j));
        }
        for (ptrdiff_t h = 0; h < R; h++) {
            v.free_gates[b * R + h] = NAME(sigma)(CLIPPED(o.free + h));
            v.read_strengths[b * R + h] = 1 + NAME(softplus)(CLIPPED(o.read_strengths + h));
            REAL *m = v.read_modes + (b * R + h) * 3;
            for (ptrdiff_t k = 0; k < 3; k++) m[k] = CLIPPED(o.modes + h * 3 + k);
            NAME(softmax_)(m, 3);
        }
        v.alloc_gate[b] = NAME(sigma)(CLIPPED(o.alloc));
        v.write_gate[b] = NAME(sigma)(CLIPPED(o.write_gate));
        v.write_strength[b] = 1 + NAME(softplus)(CLIPPED(o.write_strength));
        if (masking) {
            for (ptrdiff_t j = 0; j < R * W; j++)
                v.read_masks[b * R * W + j] = floor_ + (1 - floor_) * NAME(sigma)(CLIPPED(o.read_masks + j));
            for (ptrdiff_t j = 0; j < W; j++)
                v.write_mask[b * W + j] = floor_ + (1 - floor_) * NAME(sigma)(CLIPPED(o.write_mask + j));
        }
#undef CLIPPED
    }
}

/* The gradient of one step's raw interface parameters, g [B, P], from the activated interface's gradients d (an
 * Interface) and values v; zero where the clip cut the parameter off. */
static void NAME(interface_backward)(const REAL *restrict params, REAL clip, REAL floor_, ptrdiff_t B, ptrdiff_t P,
                                     ptrdiff_t R, ptrdiff_t W, ptrdiff_t masking, NAME(Interface) v, NAME(Interface) d,
                                     REAL *restrict g) {
    const NAME(Layout) o = NAME(interface_layout)(R, W, masking);
    for (ptrdiff_t b = 0; b < B; b++) {
        const REAL *p = params + b * P;
        REAL *gb = g + b * P;
#define SIGMA_GRAD(x) ((x) * (1 - (x)))
        for (ptrdiff_t j = 0; j < R * W; j++) gb[j] = d.read_keys[b * R * W + j];
        for (ptrdiff_t j = 0; j < W; j++) {
            gb[o.write_key + j] = d.write_key[b * W + j];
            gb[o.write_vector + j] = d.write_vector[b * W + j];
            gb[o.erase + j] = d.erase[b * W + j] * SIGMA_GRAD(v.erase[b * W + j]);
        }
        for (ptrdiff_t h = 0; h < R; h++) {
            gb[o.free + h] = d.free_gates[b * R + h] * SIGMA_GRAD(v.free_gates[b * R + h]);
            gb[o.read_strengths + h] = d.read_strengths[b * R + h] *
                                       NAME(softplus_grad)(NAME(clipped)(p[o.read_strengths + h], clip));
            const REAL *m = v.read_modes + (b * R + h) * 3, *dm = d.read_modes + (b * R + h) * 3;
            const REAL dot = dm[0] * m[0] + dm[1] * m[1] + dm[2] * m[2];
            for (ptrdiff_t k = 0; k < 3; k++) gb[o.modes + h * 3 + k] = m[k] * (dm[k] - dot);  /* softmax' */
        }
        gb[o.alloc] = d.alloc_gate[b] * SIGMA_GRAD(v.alloc_gate[b]);
        gb[o.write_gate] = d.write_gate[b] * SIGMA_GRAD(v.write_gate[b]);
        gb[o.write_strength] = d.write_strength[b] * NAME(softplus_grad)(NAME(clipped)(p[o.write_strength], clip));
        if (masking) {  /* m = floor + (1 - floor) s, s = sigma(x): dm/dx = (1 - floor) s (1 - s), s computed again */
            for (ptrdiff_t j = 0; j < R * W; j++) {
                const REAL s = NAME(sigma)(NAME(clipped)(p[o.read_masks + j], clip));
                gb[o.read_masks + j] = d.read_masks[b * R * W + j] * (1 - floor_) * SIGMA_GRAD(s);
            }
            for (ptrdiff_t j = 0; j < W; j++) {
                const REAL s = NAME(sigma)(NAME(clipped)(p[o.write_mask + j], clip));
                gb[o.write_mask + j] = d.write_mask[b * W + j] * (1 - floor_) * SIGMA_GRAD(s);
            }
        }
#undef SIGMA_GRAD
        for (ptrdiff_t j = 0; j < P; j++) gb[j] = p[j] >= -clip && p[j] <= clip ? gb[j] : 0;  /* as torch's clamp */
    }
}

/* Forward over the sequence: fills h, c (from slot 1), act, tanh_c, params and the memory state and reads from slot
 * 1, and saved. Returns 0, or 1 where a buffer could not be allocated. */
int NAME(dnc_sequence_forward)(const REAL *gates_x, const REAL *rec_t, const REAL *bias, const REAL *iface_t,
                               const REAL *iface_b, const REAL *consts, REAL *h, REAL *c, REAL *act, REAL *tanh_c,
                               REAL *params, REAL *memories, REAL *usage, REAL *links, REAL *prec, REAL *read_w,
                               REAL *write_w, REAL *reads, REAL *saved, ptrdiff_t T, ptrdiff_t B, ptrdiff_t L,
                               ptrdiff_t C, ptrdiff_t N, ptrdiff_t W, ptrdiff_t R, ptrdiff_t masking,
                               ptrdiff_t deallocate) {
    const ptrdiff_t P = DNC_INTERFACE_SIZE(R, W, masking), K0 = R * W + C, size = B * P;
    const ptrdiff_t BN = B * N, BNW = BN * W, BNN = BN * N, BRN = B * R * N, BRW = B * R * W;
    REAL *scratch = malloc(sizeof(REAL) * (size > 0 ? size : 1));
    if (!scratch) return 1;
    const NAME(Interface) v = NAME(interface_in)(scratch, B, R, W, masking);
    for (ptrdiff_t t = 0; t < T; t++) {
        NAME(controller_forward)(t, gates_x, rec_t, bias, iface_t, iface_b, reads, h, c, act, tanh_c, params, T, B, L,
                                 C, K0, P);
        NAME(interface_activations)(params + t * B * P, consts[0], consts[1], B, P, R, W, masking, v);
        if (NAME(dnc_access_forward)(memories + t * BNW, usage + t * BN, links + t * BNN, prec + t * BN,
                                     read_w + t * BRN, write_w + t * BN, v.read_keys, v.read_strengths, v.read_masks,
                                     v.read_modes, v.write_key, v.write_strength, v.write_mask, v.erase,
                                     v.write_vector, v.free_gates, v.alloc_gate, v.write_gate,
                                     memories + (t + 1) * BNW, usage + (t + 1) * BN, links + (t + 1) * BNN,
                                     prec + (t + 1) * BN, read_w + (t + 1) * BRN, write_w + (t + 1) * BN,
                                     reads + (t + 1) * BRW, saved + t * B * DNC_SAVED_SIZE(N, R), B, N, W, R,
                                     deallocate)) {
            free(scratch);
            return 1;
        }
    }
    free(scratch);
    return 0;
}

/* Backward over the sequence, from grad_hs [T, B, C] (of the top layer's h_t) and grad_reads [T, B, R, W] (either
 * NULL: zeros): grad_gates [L, T, B, 4C] and grad_params [T, B, P] (the weights' gradients are the caller's
 * products of these with the forward's values), and the initial state's: grad_h0, grad_c0 [L, B, C] and the
 * memory state's and reads' (grad_memory0 ... grad_reads0, shapes of one slot of the forward's). The carries
 * (gradients of step t's outputs from step t + 1) alternate between the outputs and a spare buffer each.
 * Returns 0, 1 where a buffer could not be allocated, or 2 where saved's allocation order is not slots. */
int NAME(dnc_sequence_backward)(const REAL *rec, const REAL *iface, const REAL *consts, const REAL *act,
                                const REAL *tanh_c, const REAL *c, const REAL *params, const REAL *memories,
                                const REAL *usage, const REAL *links, const REAL *prec, const REAL *read_w,
                                const REAL *write_w, const REAL *saved, const REAL *grad_hs, const REAL *grad_reads,
                                REAL *grad_gates, REAL *grad_params, REAL *grad_h0, REAL *grad_c0,
                                REAL *grad_memory0, REAL *grad_usage0, REAL *grad_link0, REAL *grad_prec0,
                                REAL *grad_read_w0, REAL *grad_write_w0, REAL *grad_reads0, ptrdiff_t T, ptrdiff_t B,
                                ptrdiff_t L, ptrdiff_t C, ptrdiff_t N, ptrdiff_t W, ptrdiff_t R, ptrdiff_t masking,
                                ptrdiff_t deallocate) {
    const ptrdiff_t P = DNC_INTERFACE_SIZE(R, W, masking), K0 = R * W + C, widest = K0 > 2 * C ? K0 : 2 * C;
    const ptrdiff_t BN = B * N, BNW = BN * W, BNN = BN * N, BRN = B * R * N, BRW = B * R * W;
    const ptrdiff_t carries = BNW + 3 * BN + BNN + BRN;  /* one spare of each state carry */
    const ptrdiff_t size = 2 * B * P + carries + B * widest;
    REAL *scratch = calloc(size > 0 ? size : 1, sizeof(REAL));
    if (!scratch) return 1;
    const NAME(Interface) v = NAME(interface_in)(scratch, B, R, W, masking);
    const NAME(Interface) d = NAME(interface_in)(scratch + B * P, B, R, W, masking);
    REAL *spare = scratch + 2 * B * P, *gz = spare + carries;
    REAL *gm = grad_memory0, *gu = grad_usage0, *gl = grad_link0, *gp = grad_prec0, *gr = grad_read_w0;
    REAL *gw = grad_write_w0;
    REAL *gm2 = spare, *gu2 = gm2 + BNW, *gp2 = gu2 + BN, *gw2 = gp2 + BN, *gl2 = gw2 + BN, *gr2 = gl2 + BNN;
    for (ptrdiff_t i = 0; i < BNW; i++) gm[i] = 0;
    for (ptrdiff_t i = 0; i < BN; i++) gu[i] = gp[i] = gw[i] = 0;
    for (ptrdiff_t i = 0; i < BNN; i++) gl[i] = 0;
    for (ptrdiff_t i = 0; i < BRN; i++) gr[i] = 0;
    for (ptrdiff_t i = 0; i < BRW; i++) grad_reads0[i] = 0;
    for (ptrdiff_t i = 0; i < L * B * C; i++) grad_h0[i] = grad_c0[i] = 0;
    for (ptrdiff_t t = T - 1; t >= 0; t--) {
        const REAL *p = params + t * B * P;
        NAME(interface_activations)(p, consts[0], consts[1], B, P, R, W, masking, v);
        if (grad_reads)
            for (ptrdiff_t i = 0; i < BRW; i++) grad_reads0[i] += grad_reads[t * BRW + i];
        const int status = NAME(dnc_access_backward)(memories + t * BNW, usage + t * BN, links + t * BNN, prec + t * BN,
                                      read_w + t * BRN, write_w + t * BN, v.read_keys, v.read_strengths, v.read_masks,
                                      v.read_modes, v.write_key, v.write_strength, v.write_mask, v.erase,
                                      v.write_vector, v.free_gates, v.alloc_gate, v.write_gate,
                                      memories + (t + 1) * BNW, usage + (t + 1) * BN, read_w + (t + 1) * BRN,
                                      write_w + (t + 1) * BN, saved + t * B * DNC_SAVED_SIZE(N, R), gm, gu, gl, gp, gr,
                                      gw, grad_reads0, gm2, gu2, gl2, gp2, gr2, gw2, d.read_keys, d.read_strengths,
                                      d.read_masks, d.read_modes, d.write_key, d.write_strength, d.write_mask, d.erase,
                                      d.write_vector, d.free_gates, d.alloc_gate, d.write_gate, B, N, W, R,
                                      deallocate);
        if (status) {
            free(scratch);
            return status;
        }
#define SWAP(a, b) do { REAL *swap_ = a; a = b; b = swap_; } while (0)
        SWAP(gm, gm2); SWAP(gu, gu2); SWAP(gl, gl2); SWAP(gp, gp2); SWAP(gr, gr2); SWAP(gw, gw2);
#undef SWAP
        REAL *g = grad_params + t * B * P;
        NAME(interface_backward)(p, consts[0], consts[1], B, P, R, W, masking, v, d, g);
        NAME(controller_backward)(t, rec, iface, act, tanh_c, c, g, grad_hs, grad_h0, grad_c0, grad_reads0, grad_gates,
                                  gz, T, B, L, C, K0, P);
    }
    const REAL *finals[] = {gm, gu, gl, gp, gr, gw};
    REAL *outputs[] = {grad_memory0, grad_usage0, grad_link0, grad_prec0, grad_read_w0, grad_write_w0};
    const ptrdiff_t sizes[] = {BNW, BN, BNN, BN, BRN, BN};
    for (int k = 0; k < 6; k++)
        if (finals[k] != outputs[k])
            for (ptrdiff_t i = 0; i < sizes[k]; i++) outputs[k][i] = finals[k][i];
    free(scratch);
    return 0;
}
