/* The NTM with an LSTM controller over a whole sequence (models/ntm_sequence.py), forward and backward: the
 * time loop in C, each step the LSTM layers, the head parameters and their activations, and the memory
 * access of ntm_kernel.c (included before this file, in the same program: ntm_forward_sized and
 * ntm_backward_sized, EXP). At the batches the benchmarks train, a step in torch is a few dozen small
 * operations whose fixed costs outweigh their arithmetic; here a sequence is one call each way.
 *
 * Shapes (row-major, contiguous; time-major where T appears): L layers of C units, K0 = Hr W + C and
 * Kl = 2 C inputs besides x per layer (x's product and layer 0's biases come in gates_x), P head parameters:
 *   gates_x [T, B, 4C]; rec_t [sum_l K_l, 4C] (layer l's [W_ih | W_hh] without x's columns, transposed, one
 *   layer after the other); rec [4C, K_l] per layer, one after the other; bias [L, 4C] (row 0 unused);
 *   head_t [C, P], head [P, C], head_b [P]; clip [1];
 *   h, c [L, T + 1, B, C] (slot 0: the initial state); act [L, T, B, 4C] (i, f, g, o activated);
 *   tanh_c [L, T, B, C]; params [T, B, P] (before the clip); memories [T + 1, B, N, W]; weights [T + 1, B, H, N];
 *   reads [T + 1, B, Hr, W] (slot 0 of these three: the initial state); saved [T, B (4 H N + N + H)] in
 *   ntm_kernel.c's order (content, shifted, log_shifted, cosine [B, H, N], mem_rnorm [B, N], key_rnorm [B, H]).
 *
 *   gates = gates_x_t (layer 0) or bias_l + [input, h_{t-1}] rec_t_l;  i, f, o = sigma, g = tanh
 *   c_t = f c_{t-1} + i g,  h_t = o tanh(c_t);  p_t = head_b + h_t head_t (top layer)
 *   key = p, beta = softplus(p), gate = sigma(p), s = softmax(p), gamma = 1 + softplus(p), e = sigma(p),
 *   a = tanh(p), each on its part of clip(p);  then ntm_kernel.c's step (NTM eq. 2-9).
 */

#ifndef NTM_SEQUENCE_HELPERS
#define NTM_SEQUENCE_HELPERS
#define SOFTPLUS_LINEAR_ABOVE 20  /* torch's softplus threshold: x itself above it */
#endif

static inline REAL NAME(sigma)(REAL x) { return 1 / (1 + EXP(-x)); }
/* tanh through EXP (vectorised): absolute error within half an ulp of 1 (6e-8 in float32), so relative error grows
 * near 0. Its values are added to the cell c and, as add vectors, to memory, where the absolute error is what counts. */
static inline REAL NAME(tanh_)(REAL x) { return 1 - 2 / (EXP(2 * x) + 1); }
static inline REAL NAME(softplus)(REAL x) { return x > SOFTPLUS_LINEAR_ABOVE ? x : log1p(exp(x)); }
/* d softplus / dx: sigma(x), and 1 where softplus is x itself (as torch's threshold). */
static inline REAL NAME(softplus_grad)(REAL x) { return x > SOFTPLUS_LINEAR_ABOVE ? 1 : NAME(sigma)(x); }
/* x clipped to [-clip, clip], NaN kept (as torch's clamp; fmin and fmax would drop it, and are library calls). */
static inline REAL NAME(clipped)(REAL x, REAL clip) { return x < -clip ? -clip : (x > clip ? clip : x); }

/* out[b, :M] += a[b, :K] w[K, M] for b < B (rows of a lda apart, of out and w M apart). The products are the
 * LSTM's and the head parameters', a few hundred columns by a few dozen rows: too small for a BLAS call per step
 * to pay. Tiles of MATMUL_ROWS rows by two vectors of columns (GCC's and clang's vector extension, 32 bytes: 8
 * floats or 4 doubles) keep their sums in named vector variables over k, so in registers. Left to the loop
 * vectoriser, the same sums were arrays that it spilled to the stack at every k, and on AMD Zen it chose 16-byte
 * vectors (-march=znver1 prefers them). Every sum runs over k in order from out's value, as in a plain loop. */
#if !defined(__GNUC__) && !defined(__clang__)
#error "ntm_sequence_kernel.c needs GCC's or clang's vector extension"
#endif
#ifndef MATMUL_ROWS
#define MATMUL_ROWS 4  /* per tile: 4 x 2 sums, 8 vector registers, w's two vectors and a's value beside them */
#endif
#ifndef MATMUL_VECTOR_BYTES
#define MATMUL_VECTOR_BYTES 32
#endif
#define MATMUL_CHUNK 64  /* rows of w per padded block in matmul_rest */
typedef REAL NAME(vector) __attribute__((vector_size(MATMUL_VECTOR_BYTES)));
#define VECTOR_LANES ((ptrdiff_t)(MATMUL_VECTOR_BYTES / sizeof(REAL)))
#define TILE_COLUMNS (2 * VECTOR_LANES)

static inline NAME(vector) NAME(vector_load)(const REAL *p) {
    NAME(vector) v;
    memcpy(&v, p, sizeof v);  /* an unaligned load */
    return v;
}
static inline void NAME(vector_store)(REAL *p, NAME(vector) v) { memcpy(p, &v, sizeof v); }

/* out[:rows, :TILE_COLUMNS] += a[:rows, :K] w[:K, :TILE_COLUMNS], rows <= MATMUL_ROWS (a constant where inlined). */
ALWAYS_INLINE void NAME(matmul_tile)(const REAL *restrict a, ptrdiff_t lda, const REAL *restrict w, ptrdiff_t ldw,
                                     ptrdiff_t K, REAL *restrict out, ptrdiff_t ldo, ptrdiff_t rows) {
    NAME(vector) sum[MATMUL_ROWS][2];
    for (ptrdiff_t r = 0; r < rows; r++) {
        sum[r][0] = NAME(vector_load)(out + r * ldo);
        sum[r][1] = NAME(vector_load)(out + r * ldo + VECTOR_LANES);
    }
    for (ptrdiff_t k = 0; k < K; k++) {
        const NAME(vector) w0 = NAME(vector_load)(w + k * ldw), w1 = NAME(vector_load)(w + k * ldw + VECTOR_LANES);
        for (ptrdiff_t r = 0; r < rows; r++) {
            const REAL s = a[r * lda + k];
            sum[r][0] += s * w0;
            sum[r][1] += s * w1;
        }
    }
    for (ptrdiff_t r = 0; r < rows; r++) {
        NAME(vector_store)(out + r * ldo, sum[r][0]);
        NAME(vector_store)(out + r * ldo + VECTOR_LANES, sum[r][1]);
    }
}

/* The same product over out's last columns, from `first` (M - first < TILE_COLUMNS): w's columns, MATMUL_CHUNK
 * rows at a time, and out's, MATMUL_ROWS rows at a time, copied into zero-padded blocks a whole tile reads. */
static void NAME(matmul_rest)(const REAL *restrict a, ptrdiff_t lda, const REAL *restrict w, ptrdiff_t K,
                              ptrdiff_t M, REAL *restrict out, ptrdiff_t B, ptrdiff_t first) {
    REAL w_block[MATMUL_CHUNK * TILE_COLUMNS], out_block[MATMUL_ROWS * TILE_COLUMNS];
    const ptrdiff_t n = M - first;
    for (ptrdiff_t k0 = 0; k0 < K; k0 += MATMUL_CHUNK) {
        const ptrdiff_t chunk = K - k0 < MATMUL_CHUNK ? K - k0 : MATMUL_CHUNK;
        for (ptrdiff_t k = 0; k < chunk; k++)
            for (ptrdiff_t j = 0; j < TILE_COLUMNS; j++)
                w_block[k * TILE_COLUMNS + j] = j < n ? w[(k0 + k) * M + first + j] : 0;
        for (ptrdiff_t b = 0; b < B; b += MATMUL_ROWS) {
            const ptrdiff_t rows = B - b < MATMUL_ROWS ? B - b : MATMUL_ROWS;
            for (ptrdiff_t r = 0; r < rows; r++)
                for (ptrdiff_t j = 0; j < TILE_COLUMNS; j++)
                    out_block[r * TILE_COLUMNS + j] = j < n ? out[(b + r) * M + first + j] : 0;
            if (rows == MATMUL_ROWS)  /* the constant, so that the inlined tile's row loops unroll */
                NAME(matmul_tile)(a + b * lda + k0, lda, w_block, TILE_COLUMNS, chunk, out_block, TILE_COLUMNS,
                                  MATMUL_ROWS);
            else
                NAME(matmul_tile)(a + b * lda + k0, lda, w_block, TILE_COLUMNS, chunk, out_block, TILE_COLUMNS, rows);
            for (ptrdiff_t r = 0; r < rows; r++)
                for (ptrdiff_t j = 0; j < n; j++) out[(b + r) * M + first + j] = out_block[r * TILE_COLUMNS + j];
        }
    }
}

static void NAME(matmul_acc)(const REAL *restrict a, ptrdiff_t lda, const REAL *restrict w, ptrdiff_t K,
                             ptrdiff_t M, REAL *restrict out, ptrdiff_t B) {
    const ptrdiff_t tiled = M - M % TILE_COLUMNS;  /* columns in whole tiles */
    ptrdiff_t b = 0;
    for (; b + MATMUL_ROWS <= B; b += MATMUL_ROWS)
        for (ptrdiff_t j0 = 0; j0 < tiled; j0 += TILE_COLUMNS)
            NAME(matmul_tile)(a + b * lda, lda, w + j0, M, K, out + b * M + j0, M, MATMUL_ROWS);
    for (; b < B; b++)
        for (ptrdiff_t j0 = 0; j0 < tiled; j0 += TILE_COLUMNS)
            NAME(matmul_tile)(a + b * lda, lda, w + j0, M, K, out + b * M + j0, M, 1);
    if (tiled < M) NAME(matmul_rest)(a, lda, w, K, M, out, B, tiled);
}

/* The memory access's inputs from the raw head parameters of one step, clipped (models/ntm.py, NTM.step). */
static void NAME(head_activations)(const REAL *restrict params, REAL clip, ptrdiff_t B, ptrdiff_t P, ptrdiff_t H,
                                   ptrdiff_t Hw, ptrdiff_t W, ptrdiff_t S, REAL *restrict keys, REAL *restrict beta,
                                   REAL *restrict gate, REAL *restrict shift, REAL *restrict gamma,
                                   REAL *restrict erase, REAL *restrict add) {
    const ptrdiff_t A = W + 3 + S;
    for (ptrdiff_t b = 0; b < B; b++) {
        const REAL *p = params + b * P;
        for (ptrdiff_t h = 0; h < H; h++) {
            const REAL *q = p + h * A;
            const ptrdiff_t bh = b * H + h;
            for (ptrdiff_t j = 0; j < W; j++) keys[bh * W + j] = NAME(clipped)(q[j], clip);
            beta[bh] = NAME(softplus)(NAME(clipped)(q[W], clip));
            gate[bh] = NAME(sigma)(NAME(clipped)(q[W + 1], clip));
            REAL *s = shift + bh * S;
            for (ptrdiff_t j = 0; j < S; j++) s[j] = NAME(clipped)(q[W + 2 + j], clip);
            NAME(softmax_)(s, S);
            gamma[bh] = 1 + NAME(softplus)(NAME(clipped)(q[W + 2 + S], clip));
        }
        const REAL *ea = p + H * A;
        for (ptrdiff_t h = 0; h < Hw; h++)
            for (ptrdiff_t j = 0; j < W; j++) {
                erase[(b * Hw + h) * W + j] = NAME(sigma)(NAME(clipped)(ea[h * 2 * W + j], clip));
                add[(b * Hw + h) * W + j] = NAME(tanh_)(NAME(clipped)(ea[h * 2 * W + W + j], clip));
            }
    }
}

/* One LSTM layer's step: gates = base + in1 w[:K1] + in2 w[K1:] (in1 [B, K1], in2 [B, C], w [K1 + C, 4C], base
 * rows base_stride apart), then act (i, f, g, o activated), c_new, tanh_c and h_new, each [B, ...]. */
static void NAME(lstm_forward)(const REAL *restrict base, ptrdiff_t base_stride, const REAL *restrict in1,
                               ptrdiff_t K1, const REAL *restrict in2, const REAL *restrict w,
                               const REAL *restrict c_prev, REAL *restrict act, REAL *restrict c_new,
                               REAL *restrict tanh_c, REAL *restrict h_new, ptrdiff_t B, ptrdiff_t C) {
    const ptrdiff_t G = 4 * C;
    for (ptrdiff_t b = 0; b < B; b++)
        for (ptrdiff_t j = 0; j < G; j++) act[b * G + j] = base[b * base_stride + j];
    NAME(matmul_acc)(in1, K1, w, K1, G, act, B);
    NAME(matmul_acc)(in2, C, w + K1 * G, C, G, act, B);
    for (ptrdiff_t b = 0; b < B; b++) {
        REAL *restrict a = act + b * G;
#pragma omp simd
        for (ptrdiff_t j = 0; j < 2 * C; j++) a[j] = NAME(sigma)(a[j]);  /* i, f */
#pragma omp simd
        for (ptrdiff_t j = 2 * C; j < 3 * C; j++) a[j] = NAME(tanh_)(a[j]);  /* g */
#pragma omp simd
        for (ptrdiff_t j = 3 * C; j < G; j++) a[j] = NAME(sigma)(a[j]);  /* o */
        const REAL *restrict cp = c_prev + b * C;
        REAL *restrict cn = c_new + b * C, *restrict tc = tanh_c + b * C, *restrict hn = h_new + b * C;
#pragma omp simd
        for (ptrdiff_t j = 0; j < C; j++) {
            cn[j] = a[C + j] * cp[j] + a[j] * a[2 * C + j];  /* c_t = f c_{t-1} + i g */
            tc[j] = NAME(tanh_)(cn[j]);
            hn[j] = a[3 * C + j] * tc[j];  /* h_t = o tanh(c_t) */
        }
    }
}

/* Its backward: from grad_h (of h_t, all of it) and grad_c (of c_t from step t + 1; on return, of c_{t-1}),
 * the gradient of the gates before their activations, d [B, 4C]. */
static void NAME(lstm_backward)(const REAL *restrict act, const REAL *restrict tanh_c, const REAL *restrict c_prev,
                                const REAL *restrict grad_h, REAL *restrict grad_c, REAL *restrict d, ptrdiff_t B,
                                ptrdiff_t C) {
    for (ptrdiff_t b = 0; b < B; b++) {
        const REAL *restrict a = act + b * 4 * C, *restrict tc = tanh_c + b * C, *restrict cp = c_prev + b * C;
        const REAL *restrict dh = grad_h + b * C;
        REAL *restrict dc_ = grad_c + b * C, *restrict db = d + b * 4 * C;
#pragma omp simd
        for (ptrdiff_t j = 0; j < C; j++) {
            const REAL i = a[j], f = a[C + j], g = a[2 * C + j], o = a[3 * C + j];
            const REAL dc = dc_[j] + dh[j] * o * (1 - tc[j] * tc[j]);
            db[j] = dc * g * i * (1 - i);
            db[C + j] = dc * cp[j] * f * (1 - f);
            db[2 * C + j] = dc * i * (1 - g * g);
            db[3 * C + j] = dh[j] * tc[j] * o * (1 - o);
            dc_[j] = dc * f;
        }
    }
}

/* The gradient of one step's raw head parameters, g [B, P], from those of the access's inputs (d_*) and the
 * activations' values (head_activations'); zero where the clip cut the parameter off. */
static void NAME(head_backward)(const REAL *restrict params, REAL clip, ptrdiff_t B, ptrdiff_t P, ptrdiff_t H,
                                ptrdiff_t Hw, ptrdiff_t W, ptrdiff_t S, const REAL *restrict gate,
                                const REAL *restrict shift, const REAL *restrict erase, const REAL *restrict add,
                                const REAL *restrict d_keys, const REAL *restrict d_beta, const REAL *restrict d_gate,
                                const REAL *restrict d_shift, const REAL *restrict d_gamma,
                                const REAL *restrict d_erase, const REAL *restrict d_add, REAL *restrict g) {
    const ptrdiff_t A = W + 3 + S;
    for (ptrdiff_t b = 0; b < B; b++) {
        const REAL *p = params + b * P;
        REAL *gb = g + b * P;
        for (ptrdiff_t h = 0; h < H; h++) {
            const ptrdiff_t bh = b * H + h, at = h * A;
            for (ptrdiff_t j = 0; j < W; j++) gb[at + j] = d_keys[bh * W + j];
            gb[at + W] = d_beta[bh] * NAME(softplus_grad)(NAME(clipped)(p[at + W], clip));
            gb[at + W + 1] = d_gate[bh] * gate[bh] * (1 - gate[bh]);
            const REAL *s = shift + bh * S, *ds = d_shift + bh * S;
            REAL dot = 0;
            for (ptrdiff_t j = 0; j < S; j++) dot += ds[j] * s[j];
            for (ptrdiff_t j = 0; j < S; j++) gb[at + W + 2 + j] = s[j] * (ds[j] - dot);  /* softmax' */
            gb[at + W + 2 + S] = d_gamma[bh] * NAME(softplus_grad)(NAME(clipped)(p[at + W + 2 + S], clip));
        }
        for (ptrdiff_t h = 0; h < Hw; h++)
            for (ptrdiff_t j = 0; j < W; j++) {
                const ptrdiff_t e = (b * Hw + h) * W + j, at = H * A + h * 2 * W + j;
                gb[at] = d_erase[e] * erase[e] * (1 - erase[e]);
                gb[at + W] = d_add[e] * (1 - add[e] * add[e]);
            }
        for (ptrdiff_t j = 0; j < P; j++) gb[j] = p[j] >= -clip && p[j] <= clip ? gb[j] : 0;  /* as torch's clamp */
    }
}

/* The controller's step t (shared with dnc_kernel.c's sequence): each LSTM layer in turn (layer 0's input: x's
 * gates_x[t] and reads[t], the previous step's read vectors, K0 - C wide), then the top layer's head (or interface)
 * parameters p = head_b + h_t head_t [B, P], into params[t]. Shapes as the sequence's (file comment). */
static void NAME(controller_forward)(ptrdiff_t t, const REAL *gates_x, const REAL *rec_t, const REAL *bias,
                                     const REAL *head_t, const REAL *head_b, const REAL *reads, REAL *h, REAL *c,
                                     REAL *act, REAL *tanh_c, REAL *params, ptrdiff_t T, ptrdiff_t B, ptrdiff_t L,
                                     ptrdiff_t C, ptrdiff_t K0, ptrdiff_t P) {
    const ptrdiff_t G = 4 * C, layer = (T + 1) * B * C;
    for (ptrdiff_t l = 0; l < L; l++) {
        const REAL *w = rec_t + (l ? K0 * G + (l - 1) * 2 * C * G : 0);
        const REAL *in1 = l ? h + (l - 1) * layer + (t + 1) * B * C : reads + t * B * (K0 - C);
        NAME(lstm_forward)(l ? bias + l * G : gates_x + t * B * G, l ? 0 : G, in1, l ? C : K0 - C,
                           h + l * layer + t * B * C, w, c + l * layer + t * B * C, act + (l * T + t) * B * G,
                           c + l * layer + (t + 1) * B * C, tanh_c + (l * T + t) * B * C,
                           h + l * layer + (t + 1) * B * C, B, C);
    }
    REAL *p = params + t * B * P;
    for (ptrdiff_t b = 0; b < B; b++)
        for (ptrdiff_t j = 0; j < P; j++) p[b * P + j] = head_b[j];
    NAME(matmul_acc)(h + (L - 1) * layer + (t + 1) * B * C, C, head_t, C, P, p, B);
}

/* Its backward at step t, from g [B, P] (the gradient of params[t]) and grad_hs (of the top layer's h, NULL: zeros):
 * the gates' gradients grad_gates[:, t]; the carries grad_h0, grad_c0 [L, B, C] go from step t's h and c to step
 * t - 1's, and grad_reads0 [B, K0 - C] is set to the gradient of reads[t] (the layer-0 input). gz [B, max(K0, 2C)]
 * is scratch. */
static void NAME(controller_backward)(ptrdiff_t t, const REAL *rec, const REAL *head, const REAL *act,
                                      const REAL *tanh_c, const REAL *c, const REAL *g, const REAL *grad_hs,
                                      REAL *grad_h0, REAL *grad_c0, REAL *grad_reads0, REAL *grad_gates, REAL *gz,
                                      ptrdiff_t T, ptrdiff_t B, ptrdiff_t L, ptrdiff_t C, ptrdiff_t K0, ptrdiff_t P) {
    const ptrdiff_t G = 4 * C, layer = (T + 1) * B * C;
    REAL *top = grad_h0 + (L - 1) * B * C;
    if (grad_hs)
        for (ptrdiff_t i = 0; i < B * C; i++) top[i] += grad_hs[t * B * C + i];
    NAME(matmul_acc)(g, P, head, P, C, top, B);
    for (ptrdiff_t l = L - 1; l >= 0; l--) {
        REAL *d = grad_gates + (l * T + t) * B * G, *dh = grad_h0 + l * B * C;
        NAME(lstm_backward)(act + (l * T + t) * B * G, tanh_c + (l * T + t) * B * C, c + l * layer + t * B * C,
                            dh, grad_c0 + l * B * C, d, B, C);
        const ptrdiff_t K = l ? 2 * C : K0, K1 = K - C;
        for (ptrdiff_t i = 0; i < B * K; i++) gz[i] = 0;
        NAME(matmul_acc)(d, G, rec + (l ? K0 * G + (l - 1) * 2 * C * G : 0), G, K, gz, B);
        REAL *below = l ? grad_h0 + (l - 1) * B * C : grad_reads0;  /* of the layer's input at step t */
        for (ptrdiff_t b = 0; b < B; b++)
            for (ptrdiff_t j = 0; j < K1; j++) below[b * K1 + j] = (l ? below[b * K1 + j] : 0) + gz[b * K + j];
        for (ptrdiff_t b = 0; b < B; b++)
            for (ptrdiff_t j = 0; j < C; j++) dh[b * C + j] = gz[b * K + K1 + j];  /* of h_{t-1} */
    }
}

/* Forward over the sequence: fills h, c (from slot 1), act, tanh_c, params, memories, weights, reads (from slot 1)
 * and saved. Returns 0, or 1 where a buffer could not be allocated. */
int NAME(ntm_sequence_forward)(const REAL *gates_x, const REAL *rec_t, const REAL *bias, const REAL *head_t,
                               const REAL *head_b, const REAL *clip, REAL *h, REAL *c, REAL *act, REAL *tanh_c,
                               REAL *params, REAL *memories, REAL *weights, REAL *reads, REAL *saved,
                               ptrdiff_t T, ptrdiff_t B, ptrdiff_t L, ptrdiff_t C, ptrdiff_t N, ptrdiff_t W,
                               ptrdiff_t Hr, ptrdiff_t Hw, ptrdiff_t S) {
    const ptrdiff_t H = Hr + Hw, P = H * (W + 3 + S) + 2 * Hw * W, K0 = Hr * W + C;
    const ptrdiff_t BHN = B * H * N, step_saved = B * (4 * H * N + N + H);
    const ptrdiff_t activations = B * H * W + 4 * B * H + B * H * S + 2 * B * Hw * W;
    REAL *scratch = malloc(sizeof(REAL) * (activations > 0 ? activations : 1));  /* malloc(0) may be NULL */
    if (!scratch) return 1;
    REAL *keys = scratch, *beta = keys + B * H * W, *gate = beta + B * H, *shift = gate + B * H;
    REAL *gamma = shift + B * H * S, *erase = gamma + B * H, *add = erase + B * Hw * W;
    for (ptrdiff_t t = 0; t < T; t++) {
        NAME(controller_forward)(t, gates_x, rec_t, bias, head_t, head_b, reads, h, c, act, tanh_c, params, T, B, L,
                                 C, K0, P);
        const REAL *p = params + t * B * P;
        NAME(head_activations)(p, *clip, B, P, H, Hw, W, S, keys, beta, gate, shift, gamma, erase, add);
        REAL *sv = saved + t * step_saved;
        if (NAME(ntm_access_forward)(memories + t * B * N * W, weights + t * BHN, keys, beta, gate, shift, gamma,
                                     erase, add, weights + (t + 1) * BHN, reads + (t + 1) * B * Hr * W,
                                     memories + (t + 1) * B * N * W, sv, sv + BHN, sv + 2 * BHN, sv + 3 * BHN,
                                     sv + 4 * BHN, sv + 4 * BHN + B * N, B, N, W, Hr, Hw, S)) {
            free(scratch);
            return 1;
        }
    }
    free(scratch);
    return 0;
}

/* Backward over the sequence, from grad_hs [T, B, C] (of the top layer's h_t) and grad_reads [T, B, Hr, W]
 * (either NULL: zeros): the gates' gradients grad_gates [L, T, B, 4C] and the head parameters' grad_params
 * [T, B, P] (the weights' gradients are products of these with the forward's values, formed by the caller),
 * and those of the initial state: grad_h0, grad_c0 [L, B, C], grad_memory0 [B, N, W], grad_weights0 [B, H, N],
 * grad_reads0 [B, Hr, W]. Returns 0, or 1 where a buffer could not be allocated. */
int NAME(ntm_sequence_backward)(const REAL *rec, const REAL *head, const REAL *clip, const REAL *act,
                                const REAL *tanh_c, const REAL *c, const REAL *params, const REAL *memories,
                                const REAL *weights, const REAL *saved, const REAL *grad_hs, const REAL *grad_reads,
                                REAL *grad_gates, REAL *grad_params, REAL *grad_h0, REAL *grad_c0,
                                REAL *grad_memory0, REAL *grad_weights0, REAL *grad_reads0, ptrdiff_t T, ptrdiff_t B,
                                ptrdiff_t L, ptrdiff_t C, ptrdiff_t N, ptrdiff_t W, ptrdiff_t Hr, ptrdiff_t Hw,
                                ptrdiff_t S) {
    const ptrdiff_t H = Hr + Hw, P = H * (W + 3 + S) + 2 * Hw * W, K0 = Hr * W + C;
    const ptrdiff_t BHN = B * H * N, BNW = B * N * W, BRW = B * Hr * W, step_saved = B * (4 * H * N + N + H);
    const ptrdiff_t activations = B * H * W + 4 * B * H + B * H * S + 2 * B * Hw * W, widest = K0 > 2 * C ? K0 : 2 * C;
    const ptrdiff_t scratch_size = 2 * activations + BHN + BNW + B * widest;
    REAL *scratch = calloc(scratch_size > 0 ? scratch_size : 1, sizeof(REAL));  /* calloc(0) may be NULL */
    if (!scratch) return 1;
    REAL *keys = scratch, *beta = keys + B * H * W, *gate = beta + B * H, *shift = gate + B * H;
    REAL *gamma = shift + B * H * S, *erase = gamma + B * H, *add = erase + B * Hw * W;
    REAL *d_keys = scratch + activations, *d_beta = d_keys + B * H * W, *d_gate = d_beta + B * H;
    REAL *d_shift = d_gate + B * H, *d_gamma = d_shift + B * H * S, *d_erase = d_gamma + B * H;
    REAL *d_add = d_erase + B * Hw * W;
    REAL *spare_weights = scratch + 2 * activations, *spare_memory = spare_weights + BHN, *gz = spare_memory + BNW;
    /* The carries: gradients of step t's outputs from step t + 1, each in one of two buffers in turn (the access's
     * backward reads one and writes the other); the controller's in grad_h0, grad_c0 and grad_reads0. */
    REAL *gw = grad_weights0, *gw_next = spare_weights, *gm = grad_memory0, *gm_next = spare_memory;
    for (ptrdiff_t i = 0; i < BHN; i++) gw[i] = 0;
    for (ptrdiff_t i = 0; i < BNW; i++) gm[i] = 0;
    for (ptrdiff_t i = 0; i < BRW; i++) grad_reads0[i] = 0;
    for (ptrdiff_t i = 0; i < L * B * C; i++) grad_h0[i] = grad_c0[i] = 0;
    for (ptrdiff_t t = T - 1; t >= 0; t--) {
        const REAL *p = params + t * B * P;
        NAME(head_activations)(p, *clip, B, P, H, Hw, W, S, keys, beta, gate, shift, gamma, erase, add);
        if (grad_reads)
            for (ptrdiff_t i = 0; i < BRW; i++) grad_reads0[i] += grad_reads[t * BRW + i];
        const REAL *sv = saved + t * step_saved;
        if (NAME(ntm_access_backward)(memories + t * BNW, weights + t * BHN, keys, beta, gate, shift, gamma, erase,
                                      add, weights + (t + 1) * BHN, sv, sv + BHN, sv + 2 * BHN, sv + 3 * BHN,
                                      sv + 4 * BHN, sv + 4 * BHN + B * N, gw, grad_reads0, gm, gm_next, gw_next,
                                      d_keys, d_beta, d_gate, d_shift, d_gamma, d_erase, d_add, B, N, W, Hr, Hw, S)) {
            free(scratch);
            return 1;
        }
        REAL *swap = gw; gw = gw_next; gw_next = swap;
        swap = gm; gm = gm_next; gm_next = swap;
        REAL *g = grad_params + t * B * P;
        NAME(head_backward)(p, *clip, B, P, H, Hw, W, S, gate, shift, erase, add, d_keys, d_beta, d_gate, d_shift,
                            d_gamma, d_erase, d_add, g);
        NAME(controller_backward)(t, rec, head, act, tanh_c, c, g, grad_hs, grad_h0, grad_c0, grad_reads0, grad_gates,
                                  gz, T, B, L, C, K0, P);
    }
    if (gw != grad_weights0)
        for (ptrdiff_t i = 0; i < BHN; i++) grad_weights0[i] = gw[i];
    if (gm != grad_memory0)
        for (ptrdiff_t i = 0; i < BNW; i++) grad_memory0[i] = gm[i];
    free(scratch);
    return 0;
}
