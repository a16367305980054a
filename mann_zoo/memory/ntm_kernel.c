/* The NTM's addressing, read and write of one time step (memory/ntm_access.py), forward and backward:
 * two passes over the memory each way, where the composed primitives take a dozen kernels each way.
 *
 * Compiled with link_kernel.c by memory/native.py (REAL is float or double, names suffixed _f32 or _f64;
 * EPS is memory/_checks.py's) and called through ctypes on contiguous CPU tensors.
 *
 * Shapes (row-major, contiguous): memory M and the new memory [B, N, W]; per head (H = Hr + Hw, read
 * heads first): previous weights, content, shifted and new weights and cosine [B, H, N], keys [B, H, W],
 * strengths beta, gates g and gammas [B, H], shift weights s [B, H, S]; erase e and add a [B, Hw, W];
 * read vectors [B, Hr, W]; saved log(shifted + EPS) [B, H, N], row norms rm [B, N] and key norms rk [B, H].
 *
 *   cos_i = (k . M_i) rm_i rk,  rm_i = (|M_i|^2 + EPS)^-1/2,  rk = (|k|^2 + EPS)^-1/2      (NTM eq. 6)
 *   c = softmax(beta cos)                                                                  (NTM eq. 5)
 *   q_i = w_prev_i + g (c_i - w_prev_i)                                                    (NTM eq. 7)
 *   u_i = sum_k s_k q_{(i - k + R) mod N},  R = S / 2                                      (NTM eq. 8)
 *   w = softmax(gamma log(u + EPS))                                                        (NTM eq. 9)
 *   r = sum_i w_i M_i (read heads);  M'_i = M_i prod_h (1 - w_hi e_h) + sum_h w_hi a_h     (NTM eq. 2-4)
 */

#include <stddef.h>  /* ptrdiff_t */
#include <stdlib.h>  /* malloc, free */
#include <tgmath.h>  /* exp, log, sqrt for float and double alike */

#ifndef CAT
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define NAME(name) CAT(name, SUFFIX)
#endif

#ifndef NTM_FAST_MATH
#define NTM_FAST_MATH
#include <stdint.h>
#include <string.h>  /* memcpy: a float's bits as an integer, the way compilers vectorise */
/* expf and logf as inline polynomials (Cephes' coefficients, about 1 ulp), so that the loops that call
 * them vectorise: the library's scalar calls were 40 % of the forward. The double versions are libm's. */
static inline float fast_expf(float x) {
    float c = x < -87.33f ? -87.33f : (x > 88.3f ? 88.3f : x);  /* 2^n stays a normal float: -126 <= n <= 127 */
    c = x != x ? 0.0f : c;  /* NaN: no conversion of NaN to an integer below (its result is x itself) */
    const float n = floorf(c * 1.44269504088896341f + 0.5f);
    const float r = c - n * 0.693359375f + n * 2.12194440e-4f;  /* c - n ln 2, ln 2 in two parts */
    const float p = ((((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r
                      + 4.1665795894e-2f) * r + 1.6666665459e-1f) * r + 5.0000001201e-1f) * r * r) + r + 1;
    const int32_t bits = ((int32_t)n + 127) << 23;  /* 2^n */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float result = p * scale;
    result = x < -87.33f ? 0.0f : result;  /* about FLT_MIN (exp(-87.3365)) and below: 0, not a subnormal */
    result = x > 88.72f ? INFINITY : result;  /* past FLT_MAX */
    return x != x ? x : result;
}
static inline float fast_logf(float x) {
    const int tiny = x < 1.17549435e-38f;  /* below FLT_MIN: subnormal (scaled up by 2^23 first), 0 or negative */
    const float xs = tiny ? x * 8388608.0f : x;
    int32_t bits;
    memcpy(&bits, &xs, sizeof bits);
    float e = (float)((bits >> 23) - 126) - (tiny ? 23.0f : 0.0f);
    bits = (bits & 0x007fffff) | 0x3f000000;  /* the mantissa m in [0.5, 1) */
    float m;
    memcpy(&m, &bits, sizeof m);
    const int below = m < 0.707106781186547524f;
    e = below ? e - 1 : e;
    m = below ? m + m - 1 : m - 1;
    const float z = m * m;
    float y = ((((((((7.0376836292e-2f * m - 1.1514610310e-1f) * m + 1.1676998740e-1f) * m
                   - 1.2420140846e-1f) * m + 1.4249322787e-1f) * m - 1.6668057665e-1f) * m
                 + 2.0000714765e-1f) * m - 2.4999993993e-1f) * m + 3.3333331174e-1f) * m * z;
    y += -2.12194440e-4f * e - 0.5f * z;
    float result = m + y + 0.693359375f * e;
    result = x == INFINITY ? INFINITY : result;
    result = x == 0 ? -INFINITY : result;
    return x < 0 || x != x ? NAN : result;  /* as logf: NaN for a negative number or NaN */
}
#define EXP(x) _Generic((x), float: fast_expf, default: exp)(x)
#define LOG(x) _Generic((x), float: fast_logf, default: log)(x)
#endif

#ifndef NTM_FORWARD_PARAMS
#if defined(__GNUC__) || defined(__clang__)
#define ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE static inline
#endif
#define NTM_FORWARD_PARAMS const REAL *memory, const REAL *prev, const REAL *keys, const REAL *beta, \
    const REAL *gate, const REAL *shift_w, const REAL *gamma, const REAL *erase, const REAL *add, REAL *weights, \
    REAL *reads, REAL *new_memory, REAL *content, REAL *shifted, REAL *log_shifted, REAL *cosine, \
    REAL *mem_rnorm, REAL *key_rnorm
#define NTM_FORWARD_ARGS memory, prev, keys, beta, gate, shift_w, gamma, erase, add, weights, reads, new_memory, \
    content, shifted, log_shifted, cosine, mem_rnorm, key_rnorm
#define NTM_BACKWARD_PARAMS const REAL *memory, const REAL *prev, const REAL *keys, const REAL *beta, \
    const REAL *gate, const REAL *shift_w, const REAL *gamma, const REAL *erase, const REAL *add, \
    const REAL *weights, const REAL *content, const REAL *shifted, const REAL *log_shifted, const REAL *cosine, \
    const REAL *mem_rnorm, const REAL *key_rnorm, const REAL *grad_weights, const REAL *grad_reads, \
    const REAL *grad_new_memory, REAL *d_memory, REAL *d_prev, REAL *d_keys, REAL *d_beta, REAL *d_gate, \
    REAL *d_shift, REAL *d_gamma, REAL *d_erase, REAL *d_add
#define NTM_BACKWARD_ARGS memory, prev, keys, beta, gate, shift_w, gamma, erase, add, weights, content, shifted, \
    log_shifted, cosine, mem_rnorm, key_rnorm, grad_weights, grad_reads, grad_new_memory, d_memory, d_prev, d_keys, \
    d_beta, d_gate, d_shift, d_gamma, d_erase, d_add
#endif

/* x <- softmax(x), in place, over n entries. */
static void NAME(softmax_)(REAL *restrict x, ptrdiff_t n) {
    REAL top = x[0], total = 0;
#pragma omp simd reduction(max : top)
    for (ptrdiff_t i = 1; i < n; i++) top = x[i] > top ? x[i] : top;
#pragma omp simd reduction(+ : total)
    for (ptrdiff_t i = 0; i < n; i++) total += (x[i] = EXP(x[i] - top));
    const REAL scale = 1 / total;
#pragma omp simd
    for (ptrdiff_t i = 0; i < n; i++) x[i] *= scale;
}

/* out[i] += coef in[(i + d) mod n] for every i, -n < d < n: two contiguous runs (vectorised). */
static void NAME(rotated_axpy)(REAL *restrict out, const REAL *restrict in, REAL coef, ptrdiff_t d, ptrdiff_t n) {
    d = d < 0 ? d + n : d;
#pragma omp simd
    for (ptrdiff_t i = 0; i < n - d; i++) out[i] += coef * in[i + d];
#pragma omp simd
    for (ptrdiff_t i = n - d; i < n; i++) out[i] += coef * in[i + d - n];
}

/* sum_i a[i] in[(i + d) mod n], -n < d < n. */
static REAL NAME(rotated_dot)(const REAL *restrict a, const REAL *restrict in, ptrdiff_t d, ptrdiff_t n) {
    d = d < 0 ? d + n : d;
    REAL total = 0;
#pragma omp simd reduction(+ : total)
    for (ptrdiff_t i = 0; i < n - d; i++) total += a[i] * in[i + d];
#pragma omp simd reduction(+ : total)
    for (ptrdiff_t i = n - d; i < n; i++) total += a[i] * in[i + d - n];
    return total;
}

/* Forward. Writes weights, reads, new_memory and the saved content, shifted, log_shifted, cosine,
 * mem_rnorm, key_rnorm. Returns 0, or 1 where a buffer could not be allocated (nothing valid written). */
ALWAYS_INLINE int NAME(ntm_forward_sized)(NTM_FORWARD_PARAMS, ptrdiff_t B, ptrdiff_t N, ptrdiff_t W,
                                          ptrdiff_t Hr, ptrdiff_t Hw, ptrdiff_t S) {
    const ptrdiff_t H = Hr + Hw, R = S / 2;
    REAL *restrict q = malloc((N > 0 ? N : 1) * sizeof(REAL));
    if (!q) return 1;
    for (ptrdiff_t b = 0; b < B; b++) {
        const REAL *restrict M = memory + b * N * W, *restrict k = keys + b * H * W;
        const REAL *restrict e = erase + b * Hw * W, *restrict a = add + b * Hw * W;
        REAL *restrict rm = mem_rnorm + b * N, *restrict rk = key_rnorm + b * H, *restrict cs = cosine + b * H * N;
        for (ptrdiff_t h = 0; h < H; h++) {
            REAL kk = 0;
            for (ptrdiff_t j = 0; j < W; j++) kk += k[h * W + j] * k[h * W + j];
            rk[h] = 1 / sqrt(kk + EPS);
        }
        for (ptrdiff_t i = 0; i < N; i++) {  /* pass 1: |M_i|^2 and k . M_i */
            const REAL *restrict Mi = M + i * W;
            REAL mm = 0;
#pragma omp simd reduction(+ : mm)
            for (ptrdiff_t j = 0; j < W; j++) mm += Mi[j] * Mi[j];
            rm[i] = mm;
            for (ptrdiff_t h = 0; h < H; h++) {
                REAL dot = 0;
#pragma omp simd reduction(+ : dot)
                for (ptrdiff_t j = 0; j < W; j++) dot += Mi[j] * k[h * W + j];
                cs[h * N + i] = dot;
            }
        }
#pragma omp simd
        for (ptrdiff_t i = 0; i < N; i++) rm[i] = 1 / sqrt(rm[i] + EPS);
        for (ptrdiff_t h = 0; h < H; h++) {  /* the weightings, per head: vectors of N */
            const ptrdiff_t bh = b * H + h;
            const REAL *restrict wp = prev + bh * N, *restrict s = shift_w + bh * S;
            const REAL g = gate[bh], gm = gamma[bh], bt = beta[bh], rkh = rk[h];
            REAL *restrict c = content + bh * N, *restrict u = shifted + bh * N, *restrict lu = log_shifted + bh * N;
            REAL *restrict w = weights + bh * N, *restrict csh = cs + h * N;
#pragma omp simd
            for (ptrdiff_t i = 0; i < N; i++) {
                csh[i] *= rm[i] * rkh;  /* eq. 6 */
                c[i] = bt * csh[i];
            }
            NAME(softmax_)(c, N);  /* eq. 5 */
#pragma omp simd
            for (ptrdiff_t i = 0; i < N; i++) {
                q[i] = wp[i] + g * (c[i] - wp[i]);  /* eq. 7 */
                u[i] = 0;
            }
            for (ptrdiff_t x = 0; x < S; x++) NAME(rotated_axpy)(u, q, s[x], R - x, N);  /* eq. 8 */
#pragma omp simd
            for (ptrdiff_t i = 0; i < N; i++) w[i] = gm * (lu[i] = LOG(u[i] + EPS));  /* eq. 9 */
            NAME(softmax_)(w, N);
        }
        const REAL *restrict w = weights + b * H * N;
        REAL *restrict r = reads + b * Hr * W, *restrict Mn = new_memory + b * N * W;
        for (ptrdiff_t x = 0; x < Hr * W; x++) r[x] = 0;
        for (ptrdiff_t i = 0; i < N; i++) {  /* pass 2: read (eq. 2), erase and add (eq. 3-4) */
            const REAL *restrict Mi = M + i * W;
            REAL *restrict Mni = Mn + i * W;
            for (ptrdiff_t h = 0; h < Hr; h++) {
                const REAL whi = w[h * N + i];
                REAL *restrict rh = r + h * W;
#pragma omp simd
                for (ptrdiff_t j = 0; j < W; j++) rh[j] += whi * Mi[j];
            }
            if (Hw == 1) {
                const REAL wi = w[Hr * N + i];
#pragma omp simd
                for (ptrdiff_t j = 0; j < W; j++) Mni[j] = Mi[j] * (1 - wi * e[j]) + wi * a[j];
            } else {
                for (ptrdiff_t j = 0; j < W; j++) {
                    REAL keep = 1, added = 0;
                    for (ptrdiff_t h = 0; h < Hw; h++) {
                        const REAL whi = w[(Hr + h) * N + i];
                        keep *= 1 - whi * e[h * W + j];
                        added += whi * a[h * W + j];
                    }
                    Mni[j] = Mi[j] * keep + added;
                }
            }
        }
    }
    free(q);
    return 0;
}

/* Backward. grad_weights, grad_reads, grad_new_memory may be NULL (no gradient: zeros). Writes the
 * gradients of memory, prev, keys, beta, gate, shift_w, gamma, erase and add (every one in full).
 *
 * Pass 1 over the rows: what the read and the write send to the weights (added to grad_weights: dw),
 * to e and a, and to M through them. Then per head, back through eq. 9, 8, 7 and 5 to d cos; then
 *   d dot_i = d cos_i rm_i rk,  d|M_i|^2 = -rm_i^2 / 2 sum_h d cos_hi cos_hi,  d|k|^2 = -rk^2 / 2 sum_i d cos_i cos_i
 * and pass 2 over the rows: dM_ij += sum_h d dot_hi k_hj + 2 M_ij d|M_i|^2,  dk_hj += sum_i d dot_hi M_ij.
 * Returns 0, or 1 where a buffer could not be allocated (nothing valid written then). */
ALWAYS_INLINE int NAME(ntm_backward_sized)(NTM_BACKWARD_PARAMS, ptrdiff_t B, ptrdiff_t N, ptrdiff_t W,
                                           ptrdiff_t Hr, ptrdiff_t Hw, ptrdiff_t S) {
    const ptrdiff_t H = Hr + Hw, R = S / 2;
    /* per batch element: dw and then d dot [H, N]; q, du, dq, d|M_i|^2 [N] */
    REAL *buffer = malloc(((H + 4) * N > 0 ? (H + 4) * N : 1) * sizeof(REAL));
    if (!buffer) return 1;
    REAL *restrict dw = buffer, *restrict q = buffer + H * N, *restrict du = q + N, *restrict dq = du + N;
    REAL *restrict dmm = dq + N;
    for (ptrdiff_t b = 0; b < B; b++) {
        const REAL *restrict M = memory + b * N * W, *restrict k = keys + b * H * W;
        const REAL *restrict e = erase + b * Hw * W, *restrict a = add + b * Hw * W;
        const REAL *restrict w = weights + b * H * N, *restrict cs = cosine + b * H * N;
        const REAL *restrict rm = mem_rnorm + b * N, *restrict rk = key_rnorm + b * H;
        const REAL *restrict gw = grad_weights ? grad_weights + b * H * N : NULL;
        const REAL *restrict gr = grad_reads ? grad_reads + b * Hr * W : NULL;
        const REAL *restrict gM = grad_new_memory ? grad_new_memory + b * N * W : NULL;
        REAL *restrict dM = d_memory + b * N * W, *restrict de = d_erase + b * Hw * W, *restrict da = d_add + b * Hw * W;
        for (ptrdiff_t x = 0; x < H * N; x++) dw[x] = gw ? gw[x] : 0;
        for (ptrdiff_t x = 0; x < Hw * W; x++) de[x] = da[x] = 0;
        for (ptrdiff_t i = 0; i < N; i++) {  /* pass 1: back through the write and the read */
            const REAL *restrict Mi = M + i * W, *restrict gMi = gM ? gM + i * W : NULL;
            REAL *restrict dMi = dM + i * W;
            if (!gMi) {
                for (ptrdiff_t j = 0; j < W; j++) dMi[j] = 0;
            } else if (Hw == 1) {
                const REAL wi = w[Hr * N + i];
                REAL dwi = 0;
#pragma omp simd reduction(+ : dwi)
                for (ptrdiff_t j = 0; j < W; j++) {
                    const REAL g = gMi[j];
                    dMi[j] = g * (1 - wi * e[j]);      /* dM = dM' (1 - w e) */
                    dwi += g * (a[j] - Mi[j] * e[j]);  /* dw_i += dM' (a - M e) */
                    de[j] -= g * Mi[j] * wi;           /* de -= dM' M w_i */
                    da[j] += g * wi;                   /* da += dM' w_i */
                }
                dw[Hr * N + i] += dwi;
            } else {
                for (ptrdiff_t j = 0; j < W; j++) {
                    const REAL g = gMi[j];
                    REAL keep = 1;
                    for (ptrdiff_t h = 0; h < Hw; h++) keep *= 1 - w[(Hr + h) * N + i] * e[h * W + j];
                    dMi[j] = g * keep;
                    for (ptrdiff_t h = 0; h < Hw; h++) {
                        const REAL whi = w[(Hr + h) * N + i];
                        REAL others = 1;  /* prod over the other write heads, without dividing by a possible 0 */
                        for (ptrdiff_t o = 0; o < Hw; o++)
                            if (o != h) others *= 1 - w[(Hr + o) * N + i] * e[o * W + j];
                        dw[(Hr + h) * N + i] += g * (a[h * W + j] - Mi[j] * e[h * W + j] * others);
                        de[h * W + j] -= g * Mi[j] * whi * others;
                        da[h * W + j] += g * whi;
                    }
                }
            }
            if (gr) {  /* (the read's dM_i += w_i dr is added in pass 2: each row of dM is stored once a pass) */
                for (ptrdiff_t h = 0; h < Hr; h++) {
                    const REAL *restrict grh = gr + h * W;
                    REAL dwi = 0;
#pragma omp simd reduction(+ : dwi)
                    for (ptrdiff_t j = 0; j < W; j++) dwi += grh[j] * Mi[j];  /* dw_i += dr . M_i */
                    dw[h * N + i] += dwi;
                }
            }
        }
        for (ptrdiff_t i = 0; i < N; i++) dmm[i] = 0;
        for (ptrdiff_t h = 0; h < H; h++) {  /* per head, back through eq. 9, 8, 7, 5 */
            const ptrdiff_t bh = b * H + h;
            const REAL *restrict wp = prev + bh * N, *restrict s = shift_w + bh * S, *restrict c = content + bh * N;
            const REAL *restrict u = shifted + bh * N, *restrict lu = log_shifted + bh * N;
            const REAL *restrict wh = w + h * N, *restrict csh = cs + h * N;
            const REAL g = gate[bh], gm = gamma[bh], bt = beta[bh], rkh = rk[h];
            REAL *restrict dwh = dw + h * N, *restrict ds = d_shift + bh * S, *restrict dwp = d_prev + bh * N;
            REAL wdw = 0, dgm = 0, dg = 0, cdc = 0, dbt = 0, dkk = 0;
#pragma omp simd reduction(+ : wdw)
            for (ptrdiff_t i = 0; i < N; i++) wdw += wh[i] * dwh[i];
#pragma omp simd reduction(+ : dgm)
            for (ptrdiff_t i = 0; i < N; i++) {  /* eq. 9: w = softmax(l), l = gamma log(u + EPS) */
                const REAL dl = wh[i] * (dwh[i] - wdw);
                dgm += dl * lu[i];
                du[i] = dl * gm / (u[i] + EPS);
                q[i] = wp[i] + g * (c[i] - wp[i]);
                dq[i] = 0;
            }
            for (ptrdiff_t x = 0; x < S; x++) {  /* eq. 8 */
                ds[x] = NAME(rotated_dot)(du, q, R - x, N);
                NAME(rotated_axpy)(dq, du, s[x], x - R, N);
            }
#pragma omp simd reduction(+ : dg, cdc)
            for (ptrdiff_t i = 0; i < N; i++) {  /* eq. 7; dq becomes dc */
                dg += dq[i] * (c[i] - wp[i]);
                dwp[i] = (1 - g) * dq[i];
                dq[i] *= g;
                cdc += c[i] * dq[i];
            }
#pragma omp simd reduction(+ : dbt, dkk)
            for (ptrdiff_t i = 0; i < N; i++) {  /* eq. 5, then eq. 6's norms; dwh becomes d dot */
                const REAL dz = c[i] * (dq[i] - cdc), dcos = bt * dz;
                dbt += dz * csh[i];
                dkk += dcos * csh[i];
                dmm[i] -= rm[i] * rm[i] / 2 * dcos * csh[i];
                dwh[i] = dcos * rm[i] * rkh;
            }
            d_gamma[bh] = dgm;
            d_gate[bh] = dg;
            d_beta[bh] = dbt;
            dkk *= -rkh * rkh / 2;
            REAL *restrict dk = d_keys + bh * W;
            for (ptrdiff_t j = 0; j < W; j++) dk[j] = 2 * k[h * W + j] * dkk;
        }
        REAL *restrict dk = d_keys + b * H * W;
        const ptrdiff_t Hg = gr ? Hr : 0;  /* the read heads whose dr is given */
        for (ptrdiff_t i = 0; i < N; i++) {  /* pass 2: back through eq. 6 to M and k; the read's dM */
            const REAL *restrict Mi = M + i * W;
            REAL *restrict dMi = dM + i * W;
            const REAL twice_dmm = 2 * dmm[i];
#pragma omp simd
            for (ptrdiff_t j = 0; j < W; j++) {
                REAL acc = dMi[j] + twice_dmm * Mi[j];
                for (ptrdiff_t h = 0; h < H; h++) acc += dw[h * N + i] * k[h * W + j];  /* d dot_hi k_h */
                for (ptrdiff_t h = 0; h < Hg; h++) acc += w[h * N + i] * gr[h * W + j];  /* w_hi dr_h */
                dMi[j] = acc;
            }
            for (ptrdiff_t h = 0; h < H; h++) {
                const REAL ddot = dw[h * N + i];
                REAL *restrict dkh = dk + h * W;
#pragma omp simd
                for (ptrdiff_t j = 0; j < W; j++) dkh[j] += ddot * Mi[j];
            }
        }
    }
    free(buffer);
    return 0;
}

/* The exported functions. The NTM paper's word size (W = 20) with one read and one write head, and W = 20
 * with any heads, get copies compiled for those constants: with constant bounds the compiler lays out the
 * row loops (W = 20: two vectors of 8 and one of 4) and the head loops, 1.5-3 times faster than the same
 * code with the sizes known only at run time (measured at batch 32, N = 128). */
int NAME(ntm_access_forward)(NTM_FORWARD_PARAMS, ptrdiff_t B, ptrdiff_t N, ptrdiff_t W, ptrdiff_t Hr,
                             ptrdiff_t Hw, ptrdiff_t S) {
    if (W == 20 && Hr == 1 && Hw == 1) return NAME(ntm_forward_sized)(NTM_FORWARD_ARGS, B, N, 20, 1, 1, S);
    if (W == 20) return NAME(ntm_forward_sized)(NTM_FORWARD_ARGS, B, N, 20, Hr, Hw, S);
    return NAME(ntm_forward_sized)(NTM_FORWARD_ARGS, B, N, W, Hr, Hw, S);
}

int NAME(ntm_access_backward)(NTM_BACKWARD_PARAMS, ptrdiff_t B, ptrdiff_t N, ptrdiff_t W, ptrdiff_t Hr,
                              ptrdiff_t Hw, ptrdiff_t S) {
    if (W == 20 && Hr == 1 && Hw == 1) return NAME(ntm_backward_sized)(NTM_BACKWARD_ARGS, B, N, 20, 1, 1, S);
    if (W == 20) return NAME(ntm_backward_sized)(NTM_BACKWARD_ARGS, B, N, 20, Hr, Hw, S);
    return NAME(ntm_backward_sized)(NTM_BACKWARD_ARGS, B, N, W, Hr, Hw, S);
}
