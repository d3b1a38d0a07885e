/* test_optim.c: the optimizers of lib/optim.c against independent float64 computations:
 * Adam over a hand-written trace, Muon's momentum/Nesterov buffers and scale, Newton–Schulz
 * against a float64 iteration written the other way round (right-multiplied for tall matrices)
 * with its singular values checked by a Jacobi eigen-solver, the transpose rule, the bfloat16
 * rounding on known bit patterns, the LR and momentum schedules on the spec's numbers, gradient
 * clipping, and bit-exact resume through the serialized state (with its rejections); the record
 * stack's switches: Polar Express Newton–Schulz against a float64 iteration with the spec's
 * tuples written here (and shown to catch any one wrong coefficient), its orthogonality against
 * classic NS5, MuonEq-R and decoupled weight decay (Muon, AdamW) against float64 steps, and the
 * defaults giving the old bits. */
#include "../tap.h"

#include "../../lib/err.h"
#include "../../lib/optim.h"
#include "../../lib/quant.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static unsigned long long rng_state = 7;
static double urand(void) /* uniform in [-1, 1) */
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng_state >> 11) * 0x1.0p-53 * 2 - 1;
}

static uint32_t bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}
static float from_bits(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* ---- bfloat16 ---- */

static void test_bf16(void)
{
    is_int(bits(pg_bf16_round(1.0f)), 0x3F800000, "bf16: 1.0 exact");
    is_int(bits(pg_bf16_round(1.00390625f)), 0x3F800000, "bf16: 1 + 2^-8 is a tie, goes to even 1.0");
    is_int(bits(pg_bf16_round(1.01171875f)), bits(1.015625f), "bf16: 1 + 3·2^-8 is a tie, goes to even 1 + 2^-6");
    ok(pg_bf16_round(1.00390625f + 0x1p-20f) == 1.0078125f, "bf16: just above a tie rounds up");
    ok(pg_bf16_round(3.14159f) == 3.140625f, "bf16: 3.14159 -> 3.140625");
    ok(pg_bf16_round(-3.14159f) == -3.140625f, "bf16: -3.14159 -> -3.140625");
    is_int(bits(pg_bf16_round(from_bits(0x3F80FFFFu))), 0x3F810000, "bf16: carry into the next mantissa");
    is_int(bits(pg_bf16_round(from_bits(0x00018000u))), 0x00020000, "bf16: subnormal tie to even (up)");
    is_int(bits(pg_bf16_round(from_bits(0x00008000u))), 0x00000000, "bf16: subnormal tie to even (down)");
    ok(isinf(pg_bf16_round(FLT_MAX)) && pg_bf16_round(FLT_MAX) > 0, "bf16: FLT_MAX rounds to +inf");
    ok(isinf(pg_bf16_round(-INFINITY)), "bf16: -inf stays");
    ok(isnan(pg_bf16_round(from_bits(0x7F800001u))), "bf16: a NaN with only low payload bits stays NaN");
}

/* ---- Adam ---- */

static void test_adam_trace(void)
{
    float p1[3] = {0.5f, -0.25f, 1.0f}, p2[2] = {0.1f, -2.0f}, g1[3], g2[2];
    struct pg_opt_tensor t[2] = {{p1, g1, 3, 0, 3}, {p2, g2, 2, 0, 2}};
    struct pg_adam a;
    is_int(pg_adam_init(&a, t, 2, 0.9, 0.95, 1e-8), 0, "adam: init");
    /* The expected trace, textbook form: m̂ = m/(1−β1^t), v̂ = v/(1−β2^t), p −= lr·m̂/(√v̂ + ε). */
    double P[5] = {0.5, -0.25, 1.0, 0.1, -2.0}, M[5] = {0}, V[5] = {0};
    const double lrs[4] = {0.05, 0.04, 0.03, 0.02}, b1 = 0.9, b2 = 0.95, eps = 1e-8;
    double maxerr_p = 0, maxerr_m = 0, maxerr_v = 0;
    for (int s = 0; s < 4; s++) {
        /* A tiny gradient (1e-7) makes eps matter: it moves that update by ~10%. */
        double G[5] = {0.3 * (1 + s), -0.2 / (1 + s), 1e-7, (s % 2 ? -1.5 : 0.7), 0.01 * s};
        for (int i = 0; i < 3; i++) g1[i] = (float)G[i];
        for (int i = 0; i < 2; i++) g2[i] = (float)G[3 + i];
        pg_adam_step(&a, lrs[s]);
        double t1 = s + 1;
        for (int i = 0; i < 5; i++) {
            double g = (double)(float)G[i];
            M[i] = b1 * M[i] + (1 - b1) * g;
            V[i] = b2 * V[i] + (1 - b2) * g * g;
            double mh = M[i] / (1 - pow(b1, t1)), vh = V[i] / (1 - pow(b2, t1));
            P[i] -= lrs[s] * mh / (sqrt(vh) + eps);
            double p = i < 3 ? p1[i] : p2[i - 3];
            maxerr_p = fmax(maxerr_p, fabs(p - P[i]));
            maxerr_m = fmax(maxerr_m, fabs(a.m[i] - M[i]) / fmax(fabs(M[i]), 1e-30));
            maxerr_v = fmax(maxerr_v, fabs(a.v[i] - V[i]) / fmax(fabs(V[i]), 1e-30));
        }
    }
    ok(maxerr_p < 1e-6, "adam: params follow the float64 trace over 4 steps (max err %.3g)", maxerr_p);
    ok(maxerr_m < 1e-6 && maxerr_v < 1e-6, "adam: m and v follow the trace (rel err %.3g, %.3g)", maxerr_m, maxerr_v);
    is_int(a.step, 4, "adam: step counter");
    /* The eps-sensitive element: without eps it would have moved by exactly Σ lr = 0.14. */
    ok(fabs((1.0 - p1[2]) - 0.14) > 1e-3, "adam: eps changes the tiny-gradient update (moved %.6f)", 1.0 - p1[2]);
    /* First step: |update| = lr·|g|/(|g| + eps) for every element (bias correction exact). */
    pg_adam_free(&a);
    float p = 0, g = -0.5f;
    struct pg_opt_tensor one = {&p, &g, 1, 0, 1};
    pg_adam_init(&a, &one, 1, 0.9, 0.95, 1e-8);
    pg_adam_step(&a, 0.01);
    is_close(p, 0.01 * 0.5 / (0.5 + 1e-8), 1e-9, 1e-6, "adam: first step is lr·sign(g)");
    pg_adam_free(&a);
    pg_adam_free(&a); /* idempotent */
    is_int(pg_adam_init(&a, &one, 1, 1.0, 0.95, 1e-8), PG_E_INVAL, "adam: beta1 = 1 rejected");
    is_int(pg_adam_init(&a, &one, 1, 0.9, 0.95, -1), PG_E_INVAL, "adam: eps < 0 rejected");
    struct pg_opt_tensor bad = {NULL, &g, 1, 0, 1};
    is_int(pg_adam_init(&a, &bad, 1, 0.9, 0.95, 1e-8), PG_E_INVAL, "adam: NULL param rejected");
    pg_adam_free(&a);
}

/* ---- Newton–Schulz: float64 reference and eigenvalues ---- */

/* Y[r×c] = P[r×q]·Q[q×c] in double. */
static void mm(double *Y, const double *P, const double *Q, int r, int q, int c)
{
    for (int i = 0; i < r; i++)
        for (int j = 0; j < c; j++) {
            double s = 0;
            for (int l = 0; l < q; l++) s += P[i * q + l] * Q[l * c + j];
            Y[i * c + j] = s;
        }
}
static void tr(double *Y, const double *X, int r, int c)
{
    for (int i = 0; i < r; i++)
        for (int j = 0; j < c; j++) Y[j * r + i] = X[i * c + j];
}

/* The same polynomial written without any transpose: wide X ← aX + (bA + cA²)X with A = XXᵀ;
 * tall X ← aX + X(bA + cA²) with A = XᵀX. Mathematically equal to the transposed form. */
static void ns_ref_coeffs(double *X, int r, int c, int steps, const double (*co)[3], int nco);
static void ns_ref(double *X, int r, int c, int steps)
{
    static const double classic[1][3] = {{3.4445, -4.7750, 2.0315}};
    ns_ref_coeffs(X, r, c, steps, classic, 1);
}

/* Polar Express (spec/techniques.md §3.1), written out here rather than read from the library. */
static const double polar_ref[5][3] = {
    {8.156554524902461, -22.48329292557795, 15.878769915207462},
    {4.042929935166739, -2.808917465908714, 0.5000178451051316},
    {3.8916678022926607, -2.772484153217685, 0.5060648178503393},
    {3.285753657755655, -2.3681294933425376, 0.46449024233003106},
    {2.3465413258596377, -1.7097828382687081, 0.42323551169305323},
};

/* ns_ref with step k's (a, b, c) = co[min(k, nco - 1)] (classic: one row, every step). */
static void ns_ref_coeffs(double *X, int r, int c, int steps, const double (*co)[3], int nco)
{
    int n = r * c, tall = r > c, m = tall ? c : r;
    double s = 0;
    for (int i = 0; i < n; i++) s += X[i] * X[i];
    s = sqrt(s) + 1e-7;
    for (int i = 0; i < n; i++) X[i] /= s;
    double *Xt = malloc(n * sizeof *Xt), *A = malloc(m * m * sizeof *A), *A2 = malloc(m * m * sizeof *A2),
           *Y = malloc(n * sizeof *Y);
    for (int k = 0; k < steps; k++) {
        const double *abc = co[k < nco ? k : nco - 1], a = abc[0], b = abc[1], cc = abc[2];
        tr(Xt, X, r, c);
        if (tall) mm(A, Xt, X, c, r, c);
        else mm(A, X, Xt, r, c, r);
        mm(A2, A, A, m, m, m);
        for (int i = 0; i < m * m; i++) A2[i] = b * A[i] + cc * A2[i];
        if (tall) mm(Y, X, A2, r, c, c);
        else mm(Y, A2, X, r, r, c);
        for (int i = 0; i < n; i++) X[i] = a * X[i] + Y[i];
    }
    free(Xt), free(A), free(A2), free(Y);
}

/* The bf16 emulation written out for a wide matrix (r <= c): pointwise work in float rounded to
 * bfloat16 where the compiled reference stores a tensor, products accumulated in double (the
 * library's sgemm accumulates in float, so a rare last-bit difference is expected). */
static float bf(double x) { return pg_bf16_round((float)x); }
static void ns_ref_bf16(float *X, int r, int c, int steps)
{
    const float a = 3.4445f, b = -4.7750f, cc = 2.0315f;
    int n = r * c;
    double s = 0;
    for (int i = 0; i < n; i++) X[i] = bf(X[i]), s += (double)X[i] * X[i];
    float d = bf(sqrt(s)) + 1e-7f;
    for (int i = 0; i < n; i++) X[i] = bf(X[i] / d);
    float *A = malloc(r * r * sizeof *A), *T = malloc(r * r * sizeof *T), *B = malloc(r * r * sizeof *B);
    for (int k = 0; k < steps; k++) {
        for (int i = 0; i < r; i++)
            for (int j = 0; j < r; j++) {
                double acc = 0;
                for (int l = 0; l < c; l++) acc += (double)X[i * c + l] * X[j * c + l];
                A[i * r + j] = bf(acc);
            }
        for (int i = 0; i < r * r; i++) T[i] = bf(cc * A[i]);
        for (int i = 0; i < r; i++)
            for (int j = 0; j < r; j++) {
                double acc = 0;
                for (int l = 0; l < r; l++) acc += (double)T[i * r + l] * A[l * r + j];
                B[i * r + j] = bf(b * A[i * r + j] + bf(acc));
            }
        float Y[16 * 64];
        for (int i = 0; i < r; i++)
            for (int j = 0; j < c; j++) {
                double acc = 0;
                for (int l = 0; l < r; l++) acc += (double)B[i * r + l] * X[l * c + j];
                Y[i * c + j] = bf(acc);
            }
        for (int i = 0; i < n; i++) X[i] = bf(a * X[i] + Y[i]);
    }
    free(A), free(T), free(B);
}

/* Eigenvalues of a symmetric m×m matrix (cyclic Jacobi), into ev, in place over S. */
static void jacobi_eig(double *S, int m, double *ev)
{
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0;
        for (int p = 0; p < m; p++)
            for (int q = p + 1; q < m; q++) off += S[p * m + q] * S[p * m + q];
        if (off < 1e-26) break;
        for (int p = 0; p < m; p++)
            for (int q = p + 1; q < m; q++) {
                if (fabs(S[p * m + q]) < 1e-300) continue;
                double th = (S[q * m + q] - S[p * m + p]) / (2 * S[p * m + q]);
                double t = (th >= 0 ? 1 : -1) / (fabs(th) + sqrt(th * th + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < m; k++) { /* columns p, q */
                    double kp = S[k * m + p], kq = S[k * m + q];
                    S[k * m + p] = c * kp - s * kq, S[k * m + q] = s * kp + c * kq;
                }
                for (int k = 0; k < m; k++) { /* rows p, q */
                    double pk = S[p * m + k], qk = S[q * m + k];
                    S[p * m + k] = c * pk - s * qk, S[q * m + k] = s * pk + c * qk;
                }
            }
    }
    for (int i = 0; i < m; i++) ev[i] = S[i * m + i];
}

/* Singular values of X (r×c) from the eigenvalues of its small Gram matrix: [*lo, *hi]. */
static void sv_range(const float *X, int r, int c, double *lo, double *hi)
{
    int m = r < c ? r : c;
    /* Dt by calloc: tr() fills it, but gcc -fsanitize cannot see that (-Wmaybe-uninitialized). */
    double *D = malloc((size_t)r * c * sizeof *D), *Dt = calloc((size_t)r * c, sizeof *Dt),
           *S = malloc((size_t)m * m * sizeof *S), ev[64];
    for (int i = 0; i < r * c; i++) D[i] = X[i];
    tr(Dt, D, r, c);
    if (r <= c) mm(S, D, Dt, r, c, r);
    else mm(S, Dt, D, c, r, c);
    jacobi_eig(S, m, ev);
    *lo = INFINITY, *hi = 0;
    for (int i = 0; i < m; i++) *lo = fmin(*lo, sqrt(fmax(ev[i], 0))), *hi = fmax(*hi, sqrt(fmax(ev[i], 0)));
    free(D), free(Dt), free(S);
}

/* A random r×c matrix; square ones get +4·I so that they are well conditioned (a random square
 * matrix can be nearly singular, and NS5 does not lift a singular value of 1e-5 into range). */
static void rand_matrix(float *G, int r, int c)
{
    for (int i = 0; i < r * c; i++) G[i] = (float)urand();
    if (r == c)
        for (int i = 0; i < r; i++) G[i * c + i] += 4;
}

static void test_newton_schulz(void)
{
    static const int shapes[][2] = {{8, 4}, {6, 6}, {4, 8}, {16, 8}, {8, 16}, {32, 64}, {2, 7}, {1, 5}};
    float work[2 * 64 * 32 + 3 * 32 * 32], G[32 * 64], X[32 * 64];
    double D[32 * 64];
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int r = shapes[s][0], c = shapes[s][1], n = r * c;
        rand_matrix(G, r, c);
        for (int i = 0; i < n; i++) D[i] = G[i], X[i] = G[i];
        pg_newton_schulz5(X, r, c, 5, 0, work);
        ns_ref(D, r, c, 5);
        double err = 0, mx = 0;
        for (int i = 0; i < n; i++) err = fmax(err, fabs(X[i] - D[i])), mx = fmax(mx, fabs(D[i]));
        ok(err <= 1e-5 * mx, "NS5 %dx%d: matches the float64 iteration (max err %.3g of %.3g)", r, c, err, mx);
        double lo, hi;
        sv_range(X, r, c, &lo, &hi);
        ok(lo >= 0.6 && hi <= 1.2, "NS5 %dx%d: singular values in [%.3f, %.3f] within [0.6, 1.2]", r, c, lo, hi);
    }
    /* steps = 0 is the plain normalization: the Frobenius norm becomes 1. */
    rand_matrix(G, 4, 8);
    pg_newton_schulz5(G, 4, 8, 0, 0, work);
    double fro = 0;
    for (int i = 0; i < 32; i++) fro += (double)G[i] * G[i];
    is_close(sqrt(fro), 1, 1e-6, 0, "NS0: unit Frobenius norm");

    /* Transpose rule: a tall matrix is worked on as its transpose, so NS(G) = NS(Gᵀ)ᵀ bit for
     * bit, in both precisions. */
    for (int bf = 0; bf < 2; bf++) {
        float Gt[8 * 4], Y[8 * 4];
        rand_matrix(G, 8, 4);
        for (int i = 0; i < 8; i++)
            for (int j = 0; j < 4; j++) Gt[j * 8 + i] = G[i * 4 + j];
        pg_newton_schulz5(G, 8, 4, 5, bf, work);
        pg_newton_schulz5(Gt, 4, 8, 5, bf, work);
        for (int i = 0; i < 8; i++)
            for (int j = 0; j < 4; j++) Y[i * 4 + j] = Gt[j * 8 + i];
        ok(memcmp(Y, G, sizeof Y) == 0, "NS5 %s: 8x4 equals the transpose of NS5 of its 4x8 transpose",
           bf ? "bf16" : "fp32");
    }

    /* bf16 emulation: every output is a bfloat16, and close to the fp32 result. */
    float B[16 * 8];
    rand_matrix(G, 16, 8);
    memcpy(B, G, sizeof B);
    pg_newton_schulz5(G, 16, 8, 5, 0, work);
    pg_newton_schulz5(B, 16, 8, 5, 1, work);
    int all_bf16 = 1;
    double diff = 0;
    for (int i = 0; i < 128; i++) all_bf16 &= (bits(B[i]) & 0xffff) == 0, diff = fmax(diff, fabs(B[i] - G[i]));
    ok(all_bf16, "NS5 bf16: every output element is a bfloat16");
    ok(diff < 0.05 && diff > 0, "NS5 bf16: within 0.05 of fp32 and not identical (max diff %.3g)", diff);
    double lo, hi;
    sv_range(B, 16, 8, &lo, &hi);
    ok(lo >= 0.6 && hi <= 1.2, "NS5 bf16 16x8: singular values in [%.3f, %.3f]", lo, hi);
    /* Against the written-out emulation: almost every element identical, the rest one bf16 ulp. */
    static const int wide[][2] = {{8, 16}, {16, 64}, {4, 8}};
    for (int s = 0; s < 3; s++) {
        int r = wide[s][0], c = wide[s][1], n = r * c, same = 0;
        float R[16 * 64];
        rand_matrix(G, r, c);
        memcpy(R, G, n * sizeof *R);
        pg_newton_schulz5(G, r, c, 5, 1, work);
        ns_ref_bf16(R, r, c, 5);
        double worst = 0;
        for (int i = 0; i < n; i++) same += G[i] == R[i], worst = fmax(worst, fabs(G[i] - R[i]) / fabs(R[i]));
        ok(same >= n * 0.97 && worst <= 1.0 / 64, "NS5 bf16 %dx%d: %d of %d elements equal the emulation written out, "
           "worst rel diff %.3g", r, c, same, n, worst);
    }
    is_int((long long)pg_newton_schulz5_work(1024, 512), 2LL * 512 * 1024 + 3LL * 512 * 512, "NS work size");
}

/* ---- Muon ---- */

/* Momentum and Nesterov against a float64 trace: with 0 Newton–Schulz steps the update is the
 * normalized G', so every buffer and weight can be followed by hand. */
static void muon_trace(int r, int c, int nesterov)
{
    float W[6], g[6];
    double Wd[6], buf[6] = {0};
    for (int i = 0; i < 6; i++) W[i] = (float)urand(), Wd[i] = W[i];
    struct pg_opt_tensor t = {W, g, r, c, 6};
    struct pg_muon mu;
    is_int(pg_muon_init(&mu, &t, 1, 0, nesterov, 0), 0, "muon %dx%d: init", r, c);
    const double moms[3] = {0.85, 0.9, 0.95}, lr = 0.1, scale = sqrt(fmax(1.0, (double)r / c));
    double err_b = 0, err_w = 0;
    for (int s = 0; s < 3; s++) {
        double Gp[6], nrm = 0;
        for (int i = 0; i < 6; i++) g[i] = (float)urand();
        pg_muon_step(&mu, lr, moms[s]);
        for (int i = 0; i < 6; i++) {
            buf[i] = moms[s] * buf[i] + g[i];
            Gp[i] = nesterov ? g[i] + moms[s] * buf[i] : g[i];
            nrm += Gp[i] * Gp[i];
        }
        nrm = sqrt(nrm) + 1e-7;
        for (int i = 0; i < 6; i++) {
            Wd[i] -= lr * scale * Gp[i] / nrm;
            err_b = fmax(err_b, fabs(mu.buf[i] - buf[i]));
            err_w = fmax(err_w, fabs(W[i] - Wd[i]));
        }
    }
    ok(err_b < 1e-6, "muon %dx%d nesterov=%d: momentum buffer follows the trace (err %.3g)", r, c, nesterov, err_b);
    ok(err_w < 1e-6, "muon %dx%d nesterov=%d: weights follow the trace, scale %.4f (err %.3g)", r, c, nesterov, scale,
       err_w);
    pg_muon_free(&mu);
}

/* The √max(1, rows/cols) scale and the lr, bit for bit against NS5 of the same G'. */
static void test_muon_scale(int bf16)
{
    static const int shapes[2][2] = {{16, 8}, {8, 16}};
    float W[2][128], g[2][128], Gp[128], work[2 * 16 * 8 + 3 * 8 * 8];
    struct pg_opt_tensor t[2];
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 128; i++) W[k][i] = 0, g[k][i] = (float)urand();
        t[k] = (struct pg_opt_tensor){W[k], g[k], shapes[k][0], shapes[k][1], 128};
    }
    struct pg_muon mu;
    pg_muon_init(&mu, t, 2, 5, 1, bf16);
    pg_muon_step(&mu, 0.5, 0.9);
    for (int k = 0; k < 2; k++) {
        const float mom = 0.9f, scale = k == 0 ? (float)sqrt(2.0) : 1.0f;
        for (int i = 0; i < 128; i++) {
            float b = mom * 0.0f + g[k][i];
            Gp[i] = g[k][i] + mom * b;
        }
        pg_newton_schulz5(Gp, shapes[k][0], shapes[k][1], 5, bf16, work);
        int same = 1;
        for (int i = 0; i < 128; i++) {
            float u = Gp[i] * scale;
            if (bf16) u = pg_bf16_round(u);
            same &= W[k][i] == 0.0f - 0.5f * u;
        }
        ok(same, "muon %s %dx%d: W = -lr * %.4f * NS5(G + mu*buf), bit for bit", bf16 ? "bf16" : "fp32",
           shapes[k][0], shapes[k][1], scale);
    }
    pg_muon_free(&mu);
}

/* pg_muon_shard: three ranks divide five matrices of different sizes (every matrix one owner, the
 * largest spread first); each rank's step updates every momentum buffer and only its own
 * matrices; the owners' matrices put together equal one undivided step bit for bit, and so do
 * the momenta on every rank. */
static void test_muon_shard(void)
{
    enum { NT = 5, RANKS = 3, MAXN = 24 * 16 };
    static const int shapes[NT][2] = {{24, 16}, {8, 8}, {16, 24}, {8, 8}, {12, 8}};
    static float W[RANKS + 1][NT][MAXN], g[NT][MAXN];
    struct pg_opt_tensor t[RANKS + 1][NT];
    for (int k = 0; k < NT; k++) {
        int n = shapes[k][0] * shapes[k][1];
        for (int i = 0; i < n; i++) {
            g[k][i] = (float)urand();
            W[0][k][i] = (float)urand() * 0.1f;
            for (int r = 1; r <= RANKS; r++) W[r][k][i] = W[0][k][i];
        }
        for (int r = 0; r <= RANKS; r++) t[r][k] = (struct pg_opt_tensor){W[r][k], g[k], shapes[k][0], shapes[k][1], (size_t)n};
    }
    struct pg_muon mu[RANKS + 1]; /* [0]: undivided; [1 + r]: rank r of RANKS */
    int rc = 0;
    for (int r = 0; r <= RANKS; r++) rc |= pg_muon_init(&mu[r], t[r], NT, 5, 1, 0);
    for (int r = 0; r < RANKS; r++) rc |= pg_muon_shard(&mu[1 + r], r, RANKS);
    is_int(rc, 0, "muon shard: set up one undivided and three ranks");
    int owned[RANKS] = {0}, same_owner = 1;
    for (int k = 0; k < NT; k++) {
        owned[mu[1].owner[k]]++;
        for (int r = 1; r < RANKS; r++) same_owner &= mu[1 + r].owner[k] == mu[1].owner[k];
    }
    ok(same_owner && owned[0] >= 1 && owned[1] >= 1 && owned[2] >= 1,
       "muon shard: every rank owns a matrix (%d, %d, %d), the same choice on every rank", owned[0], owned[1], owned[2]);
    ok(mu[1].owner[0] != mu[1].owner[2], "muon shard: the two largest matrices go to different ranks");
    for (int step = 0; step < 2; step++)
        for (int r = 0; r <= RANKS; r++) pg_muon_step(&mu[r], 0.05, 0.9);
    int same = 1, untouched = 1, momenta = 1;
    for (int k = 0; k < NT; k++) {
        size_t n = t[0][k].n, bytes = n * sizeof(float);
        int o = mu[1].owner[k];
        same &= memcmp(W[1 + o][k], W[0][k], bytes) == 0;
        for (int r = 0; r < RANKS; r++)
            if (r != o) untouched &= memcmp(W[1 + r][k], W[0][k], bytes) != 0;
        for (int r = 0; r < RANKS; r++)
            momenta &= memcmp(mu[1 + r].buf + mu[1 + r].off[k], mu[0].buf + mu[0].off[k], bytes) == 0;
    }
    ok(same, "muon shard: each owner's matrices equal the undivided step's, bit for bit");
    ok(untouched, "muon shard: a rank leaves the matrices it does not own as they were");
    ok(momenta, "muon shard: every rank's momentum buffers equal the undivided step's");
    for (int r = 0; r <= RANKS; r++) pg_muon_free(&mu[r]);
}

static void test_muon(void)
{
    muon_trace(2, 3, 1);
    muon_trace(3, 2, 1);
    muon_trace(2, 3, 0);
    test_muon_scale(0);
    test_muon_scale(1);
    float p[6], g[6];
    struct pg_opt_tensor bad = {p, g, 2, 2, 6};
    struct pg_muon mu;
    is_int(pg_muon_init(&mu, &bad, 1, 5, 1, 0), PG_E_INVAL, "muon: n != rows*cols rejected");
    ok(strstr(pg_error_message(), "2 x 2") != NULL, "muon: message names the shape: %s", pg_error_message());
    struct pg_opt_tensor vec = {p, g, 6, 0, 6};
    is_int(pg_muon_init(&mu, &vec, 1, 5, 1, 0), PG_E_INVAL, "muon: 1-D tensor rejected");
    pg_muon_free(&mu);
}

/* ---- record-stack switches (spec/techniques.md §3.1-3.2) ---- */

/* ‖X·Xᵀ − I‖_F of a wide r×c matrix (r <= c), in double: 0 for orthonormal rows. */
static double gram_dev(const float *X, int r, int c)
{
    double s = 0;
    for (int i = 0; i < r; i++)
        for (int j = 0; j < r; j++) {
            double acc = 0;
            for (int l = 0; l < c; l++) acc += (double)X[i * c + l] * X[j * c + l];
            acc -= i == j;
            s += acc * acc;
        }
    return sqrt(s);
}

/* Max |pg − ref| over n elements relative to max |ref|. */
static double rel_err(const float *X, const double *D, int n)
{
    double err = 0, mx = 0;
    for (int i = 0; i < n; i++) err = fmax(err, fabs(X[i] - D[i])), mx = fmax(mx, fabs(D[i]));
    return err / mx;
}

static void test_polar_express(void)
{
    /* The library's table is the spec's, literal for literal. */
    int same = 1;
    for (int k = 0; k < 5; k++) {
        double abc[3];
        pg_newton_schulz_coeffs(PG_NS_POLAR_EXPRESS, k, abc);
        for (int j = 0; j < 3; j++) same &= abc[j] == polar_ref[k][j];
    }
    ok(same, "polar express: the 5 (a, b, c) tuples are the spec's");
    double cl[3];
    pg_newton_schulz_coeffs(PG_NS_CLASSIC, 3, cl);
    ok(cl[0] == 3.4445 && cl[1] == -4.7750 && cl[2] == 2.0315, "classic: (3.4445, -4.7750, 2.0315) at every step");

    static const int shapes[][2] = {{4, 8}, {8, 4}, {16, 64}, {6, 6}, {1, 5}};
    float work[2 * 64 * 32 + 3 * 32 * 32], G[16 * 64], X[16 * 64];
    double D[16 * 64], M[16 * 64];
    const double tol = 1e-5;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int r = shapes[s][0], c = shapes[s][1], n = r * c;
        rand_matrix(G, r, c);
        for (int i = 0; i < n; i++) D[i] = G[i], X[i] = G[i];
        pg_newton_schulz(X, r, c, 5, PG_NS_POLAR_EXPRESS, 0, work);
        ns_ref_coeffs(D, r, c, 5, polar_ref, 5);
        double err = rel_err(X, D, n);
        ok(err <= tol, "polar express %dx%d: matches the float64 iteration (rel err %.3g)", r, c, err);
        if (r != 16) continue;
        /* The comparison notices any one coefficient off by 1e-3 (relative), at every step. */
        int caught = 0;
        double least = INFINITY;
        for (int k = 0; k < 15; k++) {
            double bad[5][3];
            memcpy(bad, polar_ref, sizeof bad);
            bad[k / 3][k % 3] *= 1 + 1e-3;
            for (int i = 0; i < n; i++) M[i] = G[i];
            ns_ref_coeffs(M, r, c, 5, (const double(*)[3])bad, 5);
            double e = rel_err(X, M, n);
            caught += e > tol, least = fmin(least, e);
        }
        is_int(caught, 15, "polar express %dx%d: each of the 15 coefficients off by 1e-3 fails the comparison "
               "(smallest rel err %.3g > %.g)", r, c, least, tol);
    }
    /* Orthogonalization quality on wide random matrices: singular values nearer 1 than classic NS5. */
    static const int wide[][2] = {{16, 64}, {8, 16}, {4, 32}};
    for (int s = 0; s < 3; s++) {
        int r = wide[s][0], c = wide[s][1], n = r * c;
        float C[16 * 64];
        rand_matrix(G, r, c);
        memcpy(C, G, n * sizeof *C);
        pg_newton_schulz(G, r, c, 5, PG_NS_POLAR_EXPRESS, 0, work);
        pg_newton_schulz(C, r, c, 5, PG_NS_CLASSIC, 0, work);
        double dp = gram_dev(G, r, c), dc = gram_dev(C, r, c), lo, hi;
        sv_range(G, r, c, &lo, &hi);
        ok(dp <= dc, "polar express %dx%d: |XX^T - I|_F %.4f <= classic's %.4f; singular values in [%.3f, %.3f]", r,
           c, dp, dc, lo, hi);
    }
    /* Classic through the general entry point is pg_newton_schulz5, bit for bit; bf16 works too. */
    float B[16 * 64];
    rand_matrix(G, 8, 16);
    memcpy(X, G, 128 * sizeof *X), memcpy(B, G, 128 * sizeof *B);
    pg_newton_schulz(G, 8, 16, 5, PG_NS_CLASSIC, 1, work);
    pg_newton_schulz5(X, 8, 16, 5, 1, work);
    ok(memcmp(G, X, 128 * sizeof *G) == 0, "pg_newton_schulz(PG_NS_CLASSIC) = pg_newton_schulz5, bit for bit");
    float P[128];
    memcpy(P, B, sizeof P);
    pg_newton_schulz(B, 8, 16, 5, PG_NS_POLAR_EXPRESS, 1, work);
    pg_newton_schulz(P, 8, 16, 5, PG_NS_POLAR_EXPRESS, 0, work);
    int all_bf16 = 1;
    double diff = 0;
    for (int i = 0; i < 128; i++) all_bf16 &= (bits(B[i]) & 0xffff) == 0, diff = fmax(diff, fabs(B[i] - P[i]));
    ok(all_bf16 && diff < 0.1, "polar express bf16: bfloat16 outputs within 0.1 of fp32 (max diff %.3g)", diff);
}

/* One Muon step with the switches against float64: G' = g + μ·g (zero buffer), rows normalized
 * when row_norm, the float64 Newton–Schulz, W·(1 − lr·wd) − lr·scale·X. */
static void muon_variant(int r, int c, int coeffs, int row_norm, double wd)
{
    float W[128], g[128];
    double Wd[128], Gp[128];
    int n = r * c;
    for (int i = 0; i < n; i++) W[i] = (float)urand(), Wd[i] = W[i], g[i] = (float)urand();
    for (int j = 0; j < c; j++) g[j] = 0; /* a zero row: the 1e-7 clamp keeps it zero, not NaN */
    struct pg_opt_tensor t = {W, g, r, c, (size_t)n};
    struct pg_muon mu;
    pg_muon_init(&mu, &t, 1, 5, 1, 0);
    is_int(pg_muon_set_variant(&mu, coeffs, row_norm, wd), 0, "muon variant: set");
    const double lr = 0.05, mom = 0.9, scale = sqrt(fmax(1.0, (double)r / c));
    pg_muon_step(&mu, lr, mom);
    for (int i = 0; i < n; i++) Gp[i] = (double)g[i] + mom * (double)g[i];
    if (row_norm)
        for (int i = 0; i < r; i++) {
            double s = 0;
            for (int j = 0; j < c; j++) s += Gp[i * c + j] * Gp[i * c + j];
            s = fmax(sqrt(s), 1e-7);
            for (int j = 0; j < c; j++) Gp[i * c + j] /= s;
        }
    if (coeffs == PG_NS_POLAR_EXPRESS) ns_ref_coeffs(Gp, r, c, 5, polar_ref, 5);
    else ns_ref(Gp, r, c, 5);
    for (int i = 0; i < n; i++) Wd[i] = Wd[i] * (1 - lr * wd) - lr * scale * Gp[i];
    double err = 0;
    int finite = 1;
    for (int i = 0; i < n; i++) err = fmax(err, fabs(W[i] - Wd[i])), finite &= isfinite(W[i]);
    ok(finite && err < 2e-6, "muon %dx%d %s row_norm=%d wd=%g: one step matches float64 (max err %.3g)", r, c,
       coeffs == PG_NS_POLAR_EXPRESS ? "polar" : "classic", row_norm, wd, err);
    pg_muon_free(&mu);
}

/* Runs 3 Muon + Adam steps on copies of the same start, one plain and one with the switches set
 * to their baseline values explicitly: the weights must be the same bits. */
static void test_baseline_bits(void)
{
    float W[2][128], Wg[128], P[2][8], Pg[8];
    for (int i = 0; i < 128; i++) W[0][i] = W[1][i] = (float)urand();
    for (int i = 0; i < 8; i++) P[0][i] = P[1][i] = (float)urand();
    struct pg_muon mu[2];
    struct pg_adam ad[2];
    for (int k = 0; k < 2; k++) {
        struct pg_opt_tensor tm = {W[k], Wg, 8, 16, 128}, ta = {P[k], Pg, 8, 0, 8};
        pg_muon_init(&mu[k], &tm, 1, 5, 1, 0);
        pg_adam_init(&ad[k], &ta, 1, 0.9, 0.95, 1e-8);
    }
    is_int(pg_muon_set_variant(&mu[1], PG_NS_CLASSIC, 0, 0.0), 0, "baseline muon variant set");
    is_int(pg_adam_set_weight_decay(&ad[1], 0.0), 0, "adam weight decay 0 set");
    for (int s = 0; s < 3; s++) {
        for (int i = 0; i < 128; i++) Wg[i] = (float)urand();
        for (int i = 0; i < 8; i++) Pg[i] = (float)urand();
        for (int k = 0; k < 2; k++) pg_muon_step(&mu[k], 0.04, 0.9), pg_adam_step(&ad[k], 0.01);
    }
    ok(memcmp(W[0], W[1], sizeof W[0]) == 0 && memcmp(P[0], P[1], sizeof P[0]) == 0,
       "switches at their defaults: Muon and Adam weights are the old bits after 3 steps");
    for (int k = 0; k < 2; k++) pg_muon_free(&mu[k]), pg_adam_free(&ad[k]);
}

static void test_adamw(void)
{
    float p[4] = {0.5f, -0.25f, 1.0f, -3.0f}, g[4];
    struct pg_opt_tensor t = {p, g, 4, 0, 4};
    struct pg_adam a;
    pg_adam_init(&a, &t, 1, 0.9, 0.99, 1e-8);
    const double wd = 0.085, b1 = 0.9, b2 = 0.99, eps = 1e-8, lrs[3] = {0.03, 0.02, 0.01};
    is_int(pg_adam_set_weight_decay(&a, wd), 0, "adamw: set wd");
    /* torch.optim.AdamW: p ← p·(1 − lr·wd), then the Adam update of the decayed p. */
    double P[4] = {0.5, -0.25, 1.0, -3.0}, M[4] = {0}, V[4] = {0}, err = 0;
    for (int s = 0; s < 3; s++) {
        for (int i = 0; i < 4; i++) g[i] = (float)(0.2 * (i + 1) * (s % 2 ? -1 : 1));
        pg_adam_step(&a, lrs[s]);
        for (int i = 0; i < 4; i++) {
            double gi = g[i];
            P[i] *= 1 - lrs[s] * wd;
            M[i] = b1 * M[i] + (1 - b1) * gi;
            V[i] = b2 * V[i] + (1 - b2) * gi * gi;
            P[i] -= lrs[s] * (M[i] / (1 - pow(b1, s + 1))) / (sqrt(V[i] / (1 - pow(b2, s + 1))) + eps);
            err = fmax(err, fabs(p[i] - P[i]));
        }
    }
    ok(err < 1e-6, "adamw: 3 steps with wd %g follow the float64 trace (max err %.3g)", wd, err);
    /* The decay's own size: a zero gradient's element moves by exactly p·lr·wd on step 1. */
    pg_adam_free(&a);
    float q = 2.0f, z = 0;
    struct pg_opt_tensor one = {&q, &z, 1, 0, 1};
    pg_adam_init(&a, &one, 1, 0.9, 0.99, 1e-8);
    pg_adam_set_weight_decay(&a, 0.5);
    pg_adam_step(&a, 0.1);
    ok(q == (float)(2.0 - 0.1 * 0.5 * 2.0), "adamw: zero gradient, only the decay: 2 -> %.9g", q);
    is_int(pg_adam_set_weight_decay(&a, -0.1), PG_E_INVAL, "adamw: negative wd rejected");
    is_int(pg_adam_set_weight_decay(&a, NAN), PG_E_INVAL, "adamw: NaN wd rejected");
    ok(a.wd == 0.5, "adamw: a rejected wd leaves the old one");
    pg_adam_free(&a);
}

static void test_muon_variants(void)
{
    for (int rn = 0; rn < 2; rn++) {
        muon_variant(8, 16, PG_NS_CLASSIC, rn, 0);
        muon_variant(16, 8, PG_NS_POLAR_EXPRESS, rn, 0);
    }
    muon_variant(8, 16, PG_NS_CLASSIC, 0, 0.095);
    muon_variant(16, 8, PG_NS_POLAR_EXPRESS, 1, 0.095);
    muon_variant(6, 6, PG_NS_POLAR_EXPRESS, 1, 0.5);
    /* Row normalization changes the step: the rows of a tall matrix are its own, not its transpose's. */
    float W[2][128], g[128];
    for (int i = 0; i < 128; i++) g[i] = (float)urand() * (1 + i / 16), W[0][i] = W[1][i] = 0;
    for (int k = 0; k < 2; k++) {
        struct pg_opt_tensor t = {W[k], g, 16, 8, 128};
        struct pg_muon mu;
        pg_muon_init(&mu, &t, 1, 5, 1, 0);
        pg_muon_set_variant(&mu, PG_NS_CLASSIC, k, 0);
        pg_muon_step(&mu, 0.05, 0.9);
        pg_muon_free(&mu);
    }
    ok(memcmp(W[0], W[1], sizeof W[0]) != 0, "muon row norm: changes the update of rows of unequal norm");
    float p[8], gg[8];
    struct pg_opt_tensor t = {p, gg, 2, 4, 8};
    struct pg_muon mu;
    pg_muon_init(&mu, &t, 1, 6, 1, 0);
    is_int(pg_muon_set_variant(&mu, PG_NS_POLAR_EXPRESS, 0, 0), PG_E_INVAL, "muon: polar express with 6 steps rejected");
    is_int(pg_muon_set_variant(&mu, 7, 0, 0), PG_E_INVAL, "muon: unknown coefficient set rejected");
    is_int(pg_muon_set_variant(&mu, PG_NS_CLASSIC, 0, -1), PG_E_INVAL, "muon: negative wd rejected");
    ok(mu.coeffs == PG_NS_CLASSIC && mu.row_norm == 0 && mu.wd == 0, "muon: rejections leave the baseline");
    pg_muon_free(&mu);
}

/* ---- schedules ---- */

static void test_schedules(void)
{
    /* §4.3 at 43.54 ms/step, 1200 warmdown iterations, 600 s: warmdown_ms = 52,248, so the
     * decay starts when elapsed reaches 547,752 ms (≈547.8 s), between steps 12,580 and 12,581. */
    const double ms = 43.54, cap = 600000;
    is_close(pg_lr_mul_wallclock(12580, 12580 * ms, 1200, cap), 1.0, 0, 0, "lr wallclock: step 12580 still 1");
    is_close(pg_lr_mul_wallclock(12581, 12581 * ms, 1200, cap), 52223.26 / 52248.0, 1e-9, 0,
             "lr wallclock: step 12581 decays (0.99953)");
    is_close(pg_lr_mul_wallclock(13000, 13000 * ms, 1200, cap), 33980.0 / 52248.0, 1e-9, 0,
             "lr wallclock: step 13000 = 0.65036");
    is_close(pg_lr_mul_wallclock(13780, 600038, 1200, cap), 0.0, 0, 0, "lr wallclock: past the cap = 0");
    is_close(pg_lr_mul_wallclock(0, 0, 1200, cap), 1.0, 0, 0, "lr wallclock: step 0 = 1 (max(step, 1))");
    is_close(pg_lr_mul_wallclock(1, 599000, 1200, cap), 1000.0 / (1200 * 599000.0), 1e-15, 0,
             "lr wallclock: a slow first step decays at once");
    is_close(pg_lr_mul_wallclock(13000, 590000, 0, cap), 1.0, 0, 0, "lr wallclock: warmdown 0 = 1");
    is_close(pg_lr_mul_iterations(18799, 20000, 1200), 1.0, 0, 0, "lr iterations: 18799 = 1");
    is_close(pg_lr_mul_iterations(18800, 20000, 1200), 1.0, 0, 0, "lr iterations: 18800 = 1");
    is_close(pg_lr_mul_iterations(19400, 20000, 1200), 0.5, 0, 0, "lr iterations: 19400 = 0.5");
    is_close(pg_lr_mul_iterations(19999, 20000, 1200), 1.0 / 1200, 1e-15, 0, "lr iterations: 19999 = 1/1200");
    is_close(pg_lr_mul_iterations(20000, 20000, 1200), 1.0, 0, 0, "lr iterations: 20000 = 1 (the reference's)");
    is_close(pg_lr_mul_iterations(0, 1000, 1200), 1000.0 / 1200, 1e-15, 0, "lr iterations: short run starts decayed");
    is_close(pg_muon_momentum(0, 0.85, 0.95, 500), 0.85, 1e-15, 0, "momentum: step 0 = 0.85");
    is_close(pg_muon_momentum(250, 0.85, 0.95, 500), 0.90, 1e-15, 0, "momentum: step 250 = 0.90");
    is_close(pg_muon_momentum(500, 0.85, 0.95, 500), 0.95, 1e-15, 0, "momentum: step 500 = 0.95");
    is_close(pg_muon_momentum(9000, 0.85, 0.95, 500), 0.95, 1e-15, 0, "momentum: after warmup = 0.95");
    is_close(pg_muon_momentum(3, 0.85, 0.95, 0), 0.95, 0, 0, "momentum: no warmup = final");
}

/* ---- the record stack's schedule (spec/techniques.md §1.3, §3.3, §4.2) ---- */

static void test_record_schedule(void)
{
    /* training fraction: wall clock when capped, else steps */
    is_close(pg_train_frac(100, 1000, 150000, 600000), 0.25, 0, 0, "frac: wall clock 150 s of 600 s = 0.25");
    is_close(pg_train_frac(100, 1000, 150000, 0), 0.1, 0, 0, "frac: no cap, step 100 of 1000 = 0.1");
    is_close(pg_train_frac(5, 0, 0, 0), 0.0, 0, 0, "frac: no iterations = 0");
    /* lr by fraction, the Top record's W = 0.85, MIN_LR = 0.1 */
    is_close(pg_lr_mul_frac(0.0, 0.85, 0.1), 1.0, 0, 0, "lr frac: 0 = 1");
    is_close(pg_lr_mul_frac(0.149, 0.85, 0.1), 1.0, 0, 0, "lr frac: 0.149 < 1 - W = 1");
    is_close(pg_lr_mul_frac(0.15, 0.85, 0.1), 1.0, 1e-15, 0, "lr frac: 0.15 = 1 (the start of the decay)");
    is_close(pg_lr_mul_frac(0.575, 0.85, 0.1), 0.5, 1e-15, 0, "lr frac: 0.575 = 0.5");
    is_close(pg_lr_mul_frac(0.9, 0.85, 0.1), 0.1 / 0.85, 1e-15, 0, "lr frac: 0.9 = 0.1/0.85, above the floor");
    is_close(pg_lr_mul_frac(0.95, 0.85, 0.1), 0.1, 0, 0, "lr frac: 0.95 = min_lr");
    is_close(pg_lr_mul_frac(1.0, 0.85, 0.0), 0.0, 0, 0, "lr frac: 1 without a floor = 0");
    is_close(pg_lr_mul_frac(1.2, 0.5, 0.0), 0.0, 0, 0, "lr frac: past the end, floored at 0");
    is_close(pg_lr_mul_frac(0.9, 0.0, 0.1), 1.0, 0, 0, "lr frac: W = 0 = 1 (warmdown_iters instead)");
    /* every frac: continuous, non-increasing, in [min_lr, 1] */
    int mono = 1;
    for (int i = 1; i <= 1000; i++) {
        double a = pg_lr_mul_frac((i - 1) / 1000.0, 0.72, 0.05), b = pg_lr_mul_frac(i / 1000.0, 0.72, 0.05);
        if (b > a || a - b > 1.0 / 720 + 1e-12 || b < 0.05 || a > 1) mono = 0;
    }
    ok(mono, "lr frac: non-increasing, continuous, within [min_lr, 1] over [0, 1]");
    /* WD taper: the record's 1 until 0.70, then linear to 0.50 at 1 */
    is_close(pg_wd_taper(0.5, 0.7, 0.5), 1.0, 0, 0, "taper: 0.5 = 1");
    is_close(pg_wd_taper(0.7, 0.7, 0.5), 1.0, 1e-15, 0, "taper: 0.7 = 1");
    is_close(pg_wd_taper(0.85, 0.7, 0.5), 0.75, 1e-12, 0, "taper: 0.85 = 0.75");
    is_close(pg_wd_taper(1.0, 0.7, 0.5), 0.5, 1e-12, 0, "taper: 1 = 0.5");
    is_close(pg_wd_taper(1.3, 0.7, 0.5), 0.5, 1e-12, 0, "taper: past the end stays 0.5");
    is_close(pg_wd_taper(0.99, 1.0, 0.5), 1.0, 0, 0, "taper: start 1 = off");
    is_close(pg_wd_taper(0.5, 0.0, 2.0), 1.5, 1e-12, 0, "taper: start 0, final 2: 0.5 = 1.5");
    /* the record's momentum warmup 0.92 -> 0.97 over 1500 steps */
    is_close(pg_muon_momentum(0, 0.92, 0.97, 1500), 0.92, 1e-15, 0, "momentum record: step 0 = 0.92");
    is_close(pg_muon_momentum(750, 0.92, 0.97, 1500), 0.945, 1e-15, 0, "momentum record: step 750 = 0.945");
    is_close(pg_muon_momentum(1500, 0.92, 0.97, 1500), 0.97, 1e-15, 0, "momentum record: step 1500 = 0.97");
    is_close(pg_muon_momentum(4000, 0.92, 0.97, 1500), 0.97, 1e-15, 0, "momentum record: after = 0.97");
}

/* Muon's weight decay set per step (the taper) equals a Muon set up with that decay. */
static void test_muon_wd_setter(void)
{
    enum { R = 12, C = 8 };
    float p1[R * C], p2[R * C], g[R * C];
    rand_matrix(p1, R, C);
    memcpy(p2, p1, sizeof p1);
    rand_matrix(g, R, C);
    struct pg_opt_tensor t1 = {p1, g, R, C, R * C}, t2 = {p2, g, R, C, R * C};
    struct pg_muon a, b;
    pg_muon_init(&a, &t1, 1, 5, 1, 0);
    pg_muon_init(&b, &t2, 1, 5, 1, 0);
    pg_muon_set_variant(&a, PG_NS_CLASSIC, 0, 0.095 * 0.75);
    pg_muon_set_variant(&b, PG_NS_CLASSIC, 0, 0.095);
    is_int(pg_muon_set_weight_decay(&b, 0.095 * 0.75), 0, "muon wd setter: accepted");
    is_int(pg_muon_set_weight_decay(&b, -1), PG_E_INVAL, "muon wd setter: negative refused");
    is_int(pg_muon_set_weight_decay(&b, NAN), PG_E_INVAL, "muon wd setter: NaN refused");
    pg_muon_step(&a, 0.02, 0.95);
    pg_muon_step(&b, 0.02, 0.95);
    ok(!memcmp(p1, p2, sizeof p1), "muon wd setter: same bits as the decay set at init");
    ok(b.coeffs == PG_NS_CLASSIC && b.wd == 0.095 * 0.75, "muon wd setter: changes the decay only");
    pg_muon_free(&a), pg_muon_free(&b);
}

/* EMA and SWA against their closed forms. */
static void test_ema_swa(void)
{
    enum { N = 40000, K = 3 }; /* N above the parallel threshold */
    const double d = 0.9;
    float *th[K + 1], *ema = malloc(N * sizeof *ema);
    double *sum = calloc(N, sizeof *sum);
    for (int k = 0; k <= K; k++) {
        th[k] = malloc(N * sizeof *th[k]);
        for (int i = 0; i < N; i++) th[k][i] = (float)urand();
    }
    memcpy(ema, th[0], N * sizeof *ema);
    for (int k = 1; k <= K; k++) pg_ema_update(ema, th[k], N, d);
    /* d^K·θ0 + Σ_k (1 − d)·d^(K−k)·θk, in double: a float rounding per step apart */
    double maxerr = 0;
    int exact1 = 1;
    for (int i = 0; i < N; i++) {
        double want = pow(d, K) * th[0][i];
        for (int k = 1; k <= K; k++) want += (1 - d) * pow(d, K - k) * th[k][i];
        maxerr = fmax(maxerr, fabs(ema[i] - want));
    }
    ok(maxerr < 4e-7, "ema: = d^K θ0 + Σ (1-d) d^(K-k) θk (max error %.3g)", maxerr);
    float e1[4] = {1, -2, 0.5f, 3}, t1[4] = {3, 2, 0.5f, -1};
    pg_ema_update(e1, t1, 4, 0.75);
    exact1 = e1[0] == 1.5f && e1[1] == -1.0f && e1[2] == 0.5f && e1[3] == 2.0f;
    ok(exact1, "ema: one step by hand (0.75·e + 0.25·θ)");
    float e2[2] = {1, 2}, t2[2] = {5, 7};
    pg_ema_update(e2, t2, 2, 1.0);
    ok(e2[0] == 1 && e2[1] == 2, "ema: decay 1 keeps the shadow");
    for (int k = 0; k <= K; k++) pg_swa_add(sum, th[k], N);
    double swerr = 0;
    for (int i = 0; i < N; i++) {
        double want = 0;
        for (int k = 0; k <= K; k++) want += th[k][i];
        swerr = fmax(swerr, fabs(sum[i] / (K + 1) - want / (K + 1)));
    }
    ok(swerr == 0, "swa: the sum of float snapshots is exact in double (max error %g)", swerr);
    double s2[3] = {0};
    pg_real r2[3] = {1, 2, 4};
    pg_swa_add_real(s2, r2, 3), pg_swa_add_real(s2, r2, 3);
    ok(s2[0] == 2 && s2[1] == 4 && s2[2] == 8, "swa: pg_swa_add_real accumulates");
    for (int k = 0; k <= K; k++) free(th[k]);
    free(ema), free(sum);
}

/* Late QAT's fake quantization against a straightforward per-element reference. */
static double round_half_even_ref(double x)
{
    double f = floor(x), r = x - f;
    if (r > 0.5) return f + 1;
    if (r < 0.5) return f;
    return fmod(f, 2) == 0 ? f : f + 1;
}

static void test_fake_quant(void)
{
    enum { R = 37, C = 53 };
    float *w = malloc(R * C * sizeof *w), *out = malloc(R * C * sizeof *out);
    for (int bits = 2; bits <= 8; bits++) {
        for (int i = 0; i < R * C; i++) w[i] = (float)(urand() * (1 + i % 7));
        for (int c = 0; c < C; c++) w[3 * C + c] = 0;                   /* a zero row */
        w[5 * C + 7] = 1.0f, w[5 * C + 8] = -1.0f;                      /* ties: row 5 ... */
        for (int c = 0; c < C; c++)
            if (c != 7 && c != 8) w[5 * C + c] = 0.5f / ((1 << (bits - 1)) - 1) * (c % 5 - 2);
        pg_fake_quant_rows(w, out, R, C, bits);
        const float Q = (float)((1 << (bits - 1)) - 1);
        int same = 1, onlev = 1, levels_ok = 1;
        double maxrel = 0;
        for (int r = 0; r < R; r++) {
            float amax = 0;
            for (int c = 0; c < C; c++) amax = fmaxf(amax, fabsf(w[r * C + c]));
            float s = amax / Q;
            int used[256] = {0}, nlev = 0;
            for (int c = 0; c < C; c++) {
                float want = 0;
                if (s > 0) {
                    double q = round_half_even_ref((double)(w[r * C + c] / s));
                    q = fmin(fmax(q, -Q - 1), Q);
                    want = (float)q * s;
                    int qi = (int)q + 128;
                    if (!used[qi]) used[qi] = 1, nlev++;
                    if (fabs(out[r * C + c] - w[r * C + c]) > s / 2 * (1 + 1e-6)) onlev = 0;
                    maxrel = fmax(maxrel, fabs(out[r * C + c] - w[r * C + c]) / amax);
                }
                if (out[r * C + c] != want) same = 0;
            }
            if (nlev > 2 * Q + 1) levels_ok = 0;
        }
        ok(same, "fake quant int%d: = per-row reference, half-even ties, zero row kept", bits);
        ok(onlev && levels_ok, "fake quant int%d: within half a step, at most %d levels (max rel %.3g)", bits,
           (int)(2 * Q + 1), maxrel);
        /* in place gives the same; quantizing twice changes nothing */
        memcpy(out, w, R * C * sizeof *w);
        pg_fake_quant_rows(out, out, R, C, bits);
        float *again = malloc(R * C * sizeof *again);
        pg_fake_quant_rows(out, again, R, C, bits);
        double idem = 0;
        for (int i = 0; i < R * C; i++) idem = fmax(idem, fabs(again[i] - out[i]) / (fabs(out[i]) + 1e-30));
        ok(idem < 1e-6, "fake quant int%d: in place, and (nearly) idempotent (rel %.3g)", bits, idem);
        free(again);
    }
    /* a hand row at int6: s = 31/31 = 1: 0.5 -> 0, 1.5 -> 2, -2.5 -> -2, 31 stays */
    float h[5] = {0.5f, 1.5f, -2.5f, 31.0f, -0.49f}, ho[5];
    pg_fake_quant_rows(h, ho, 1, 5, 6);
    ok(ho[0] == 0 && ho[1] == 2 && ho[2] == -2 && ho[3] == 31 && ho[4] == 0, "fake quant: hand row at int6 "
       "(%g %g %g %g %g)", ho[0], ho[1], ho[2], ho[3], ho[4]);
    free(w), free(out);
}

/* ---- clipping ---- */

static void test_clip(void)
{
    float g1[2] = {3, 4}, g2[1] = {12}, p[3];
    struct pg_opt_tensor t[2] = {{p, g1, 1, 2, 2}, {p + 2, g2, 1, 1, 1}};
    is_close(pg_clip_grad_norm(t, 2, 100), 13, 0, 0, "clip: total norm 13");
    ok(g1[0] == 3 && g1[1] == 4 && g2[0] == 12, "clip: max_norm 100 leaves grads alone");
    is_close(pg_clip_grad_norm(t, 2, 1), 13, 0, 0, "clip: returns the norm before clipping");
    float c = (float)(1.0 / (13 + 1e-6));
    ok(g1[0] == 3 * c && g1[1] == 4 * c && g2[0] == 12 * c, "clip: grads scaled by max_norm/(norm + 1e-6)");
    is_close(pg_clip_grad_norm(t, 2, 100), 1.0 / (1 + 1e-6 / 13), 1e-7, 0, "clip: new norm ~1");
    /* norm == max_norm still scales by max_norm/(norm + 1e-6) < 1, as PyTorch's clamp does. */
    g1[0] = 3, g1[1] = 4, g2[0] = 12;
    pg_clip_grad_norm(t, 2, 13);
    ok(g1[0] < 3 && g1[0] > 3 * 0.9999f, "clip: norm == max_norm scales by 13/(13 + 1e-6)");

    /* Fixed-order sum: the same bits with 1 and 4 threads. */
    size_t n = 200003;
    float *big = malloc(n * sizeof *big);
    for (size_t i = 0; i < n; i++) big[i] = (float)urand();
    struct pg_opt_tensor tb = {big, big, 1, 1, n};
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    double n1 = pg_clip_grad_norm(&tb, 1, 1e30);
    omp_set_num_threads(4);
    double n4 = pg_clip_grad_norm(&tb, 1, 1e30);
    omp_set_num_threads(threads);
    ok(memcmp(&n1, &n4, sizeof n1) == 0, "clip: norm identical with 1 and 4 threads");
    free(big);
}

/* ---- resume ---- */

struct rig {
    float pa[2][40], ga[2][40], pm[2][72], gm[2][72];
    struct pg_opt_tensor ta[2], tm[2];
};

static void rig_grads(struct rig *r, int step)
{
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 40; i++) r->ga[k][i] = (float)sin(0.37 * i + 1.3 * step + k);
        for (int i = 0; i < 72; i++) r->gm[k][i] = (float)cos(0.21 * i + 0.7 * step - k) + r->pm[k][i] * 0.1f;
    }
}

static void rig_steps(struct rig *r, struct pg_adam *a, struct pg_muon *mu, int from, int to)
{
    for (int s = from; s < to; s++) {
        rig_grads(r, s);
        double mul = pg_lr_mul_iterations(s, 8, 4);
        pg_adam_step(a, 0.05 * mul);
        pg_muon_step(mu, 0.04 * mul, pg_muon_momentum(s, 0.85, 0.95, 5));
    }
}

static void rig_init(struct rig *r, struct pg_adam *a, struct pg_muon *mu)
{
    for (int k = 0; k < 2; k++) {
        r->ta[k] = (struct pg_opt_tensor){r->pa[k], r->ga[k], 40, 0, 40};
        r->tm[k] = (struct pg_opt_tensor){r->pm[k], r->gm[k], k ? 6 : 12, k ? 12 : 6, 72};
    }
    pg_adam_init(a, r->ta, 2, 0.9, 0.95, 1e-8);
    pg_muon_init(mu, r->tm, 2, 5, 1, 1);
}

static void test_resume(void)
{
    static struct rig r;
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 40; i++) r.pa[k][i] = (float)urand();
        for (int i = 0; i < 72; i++) r.pm[k][i] = (float)urand() * 0.1f;
    }
    struct pg_adam a, a2;
    struct pg_muon mu, mu2;
    rig_init(&r, &a, &mu);
    rig_steps(&r, &a, &mu, 0, 3);

    size_t na = pg_adam_state_size(&a), nm = pg_muon_state_size(&mu);
    is_int((long long)na, 16 + 8 + 16 + 2 * 4 * 80, "state: adam size");
    is_int((long long)nm, 16 + 32 + 4 * 144, "state: muon size");
    unsigned char *sa = malloc(na), *sm = malloc(nm), *sa2 = malloc(na), *sm2 = malloc(nm);
    is_int(pg_adam_state_save(&a, sa, na), 0, "state: adam saved");
    is_int(pg_muon_state_save(&mu, sm, nm), 0, "state: muon saved");
    is_int(pg_adam_state_save(&a, sa2, na - 1), PG_E_INVAL, "state: short buffer rejected");
    ok(memcmp(sa, "PGAD", 4) == 0 && sa[4] == 1 && sa[8] == sizeof(pg_real) && sa[12] == 2 && sa[16] == 3,
       "state: adam header bytes (magic, version 1, scalar size, 2 tensors, step 3)");
    ok(memcmp(sm, "PGMU", 4) == 0 && sm[16] == 12 && sm[24] == 6 && sm[32] == 6 && sm[40] == 12,
       "state: muon header bytes (magic, shapes 12x6, 6x12)");
    struct rig saved = r;

    rig_steps(&r, &a, &mu, 3, 7);
    struct rig straight = r;
    pg_adam_state_save(&a, sa2, na);
    pg_muon_state_save(&mu, sm2, nm);

    /* A fresh process: new optimizers over restored parameters, the saved state loaded. */
    r = saved;
    rig_init(&r, &a2, &mu2);
    is_int(pg_adam_state_load(&a2, sa, na, "ck"), 0, "state: adam loaded");
    is_int(pg_muon_state_load(&mu2, sm, nm, "ck"), 0, "state: muon loaded");
    rig_steps(&r, &a2, &mu2, 3, 7);
    ok(memcmp(r.pa, straight.pa, sizeof r.pa) == 0 && memcmp(r.pm, straight.pm, sizeof r.pm) == 0,
       "resume: 4 more steps give bit-identical parameters");
    unsigned char *sa3 = malloc(na), *sm3 = malloc(nm);
    pg_adam_state_save(&a2, sa3, na);
    pg_muon_state_save(&mu2, sm3, nm);
    ok(memcmp(sa2, sa3, na) == 0 && memcmp(sm2, sm3, nm) == 0, "resume: and bit-identical optimizer states");

    /* Rejections leave the optimizer as it was. */
    int64_t step = a2.step;
    sa[0] ^= 1;
    is_int(pg_adam_state_load(&a2, sa, na, "ck.opt"), PG_E_FORMAT, "state: bad magic rejected");
    ok(strstr(pg_error_message(), "ck.opt") && strstr(pg_error_message(), "magic"), "state: message: %s",
       pg_error_message());
    sa[0] ^= 1;
    is_int(pg_adam_state_load(&a2, sa, na - 1, "ck"), PG_E_FORMAT, "state: truncated rejected");
    sa[8] = 8;
    is_int(pg_adam_state_load(&a2, sa, na, "ck"), PG_E_FORMAT, "state: other scalar size rejected");
    sa[8] = sizeof(pg_real);
    sa[4] = 2;
    is_int(pg_adam_state_load(&a2, sa, na, "ck"), PG_E_FORMAT, "state: other version rejected");
    sa[4] = 1;
    is_int(pg_muon_state_load(&mu2, sa, na, "ck"), PG_E_FORMAT, "state: adam state refused by muon");
    sm[16] = 6, sm[24] = 12; /* 6x12 instead of 12x6: same size, other shape */
    is_int(pg_muon_state_load(&mu2, sm, nm, "ck"), PG_E_FORMAT, "state: other shape rejected");
    ok(strstr(pg_error_message(), "6 x 12") != NULL, "state: message names the shape: %s", pg_error_message());
    is_int(a2.step, step, "state: a failed load changes nothing");
    struct pg_adam a3;
    pg_adam_init(&a3, r.ta, 1, 0.9, 0.95, 1e-8);
    is_int(pg_adam_state_load(&a3, sa, na, "ck"), PG_E_FORMAT, "state: other tensor count rejected");

    pg_adam_free(&a), pg_adam_free(&a2), pg_adam_free(&a3);
    pg_muon_free(&mu), pg_muon_free(&mu2);
    free(sa), free(sm), free(sa2), free(sm2), free(sa3), free(sm3);
}

int main(void)
{
    test_bf16();
    test_adam_trace();
    test_newton_schulz();
    test_muon();
    test_muon_shard();
    test_polar_express();
    test_muon_variants();
    test_adamw();
    test_baseline_bits();
    test_schedules();
    test_record_schedule();
    test_muon_wd_setter();
    test_ema_swa();
    test_fake_quant();
    test_clip();
    test_resume();
    return done_testing();
}
