/* quant.h: post-training quantization of a model's parameters, and its inverse.
 *
 * Two schemes (spec/baseline.md §5.1, spec/techniques.md §4.1, §4.4, §4.5):
 *
 *   int8-baseline  parameter-golf's quantize_state_dict_int8, bit for bit: every float tensor of
 *                  more than keep_float_max (65,536) elements becomes per-row int8 with the clip
 *                  c = torch.quantile(|row|, 0.9999984) (fp32, linear interpolation), the step
 *                  s = max(c/127, 1/127) and q = clamp(round_half_even(clamp(w, -c, c)/s), ±127)
 *                  computed with the fp32 s, the scale stored as fp16(s); smaller tensors pass
 *                  through, control tensors as fp32 and any other as fp16.
 *   intN           per-row round-to-nearest with N = 2..8 bits per tensor class (attn, mlp,
 *                  embed), Q = 2^(N-1) - 1 and a clip rule: SDClip (s = k·std(row)/Q, std with
 *                  PyTorch's default correction 1), max-abs (s = max|row|/Q) or the baseline
 *                  quantile (s = c/Q, no floor). The step is rounded to fp16 first and q =
 *                  clamp(round_half_even(w/s16), -Q, Q) uses that rounded step, so dequantization
 *                  sees the step q was computed with. Control tensors and tensors of at most
 *                  keep_float_max elements pass through as fp16 (§4.5).
 *
 * Integers are kept one per int8 byte (pg-pack's entropy coder compresses them). Dequantization
 * is W = q · fp32(fp16 scale) in fp32 for every scheme. pgolf keeps every parameter in fp32, so
 * tok_emb is quantized from its fp32 values (PyTorch keeps it in bf16, whose fp32 conversion is
 * exact, so a PyTorch-trained checkpoint quantizes the same) and dequantized to fp32 (PyTorch casts
 * it back to bf16; pgolf's model is fp32 throughout and does not).
 *
 * A 1-D tensor above the threshold is quantized as one row (parameter-golf would use a per-tensor
 * fp32 scale; no parameter-golf model has one). Non-finite weights are refused.
 */
#ifndef PG_QUANT_H
#define PG_QUANT_H

#include "config.h"
#include "gptq.h"
#include "lqer.h"
#include "model.h"

#include <stddef.h>
#include <stdint.h>

enum pg_qscheme { PG_QSCHEME_INT8_BASELINE = 1, PG_QSCHEME_INTN = 2, PG_QSCHEME_TERNARY = 3, PG_QSCHEME_QUINARY = 4 };

/* How a quantized tensor is stored (the values are the .pgq file's). */
/* TERN / QUIN (.pgq version 2): codes in −1..1 / −2..2 with one fp16 scale per group of 128
 * along a row (trit.h), packed by pg_trit_pack_best: data_len is the packed size. */
enum pg_qkind { PG_QKIND_INT = 1, PG_QKIND_F32 = 2, PG_QKIND_F16 = 3, PG_QKIND_TERN = 4, PG_QKIND_QUIN = 5 };

/* The clip rule of an integer tensor (0 for a float one). */
/* SEARCH (GPTQ-lite, spec/techniques.md §4.3; .pgq version 2): per row, the clip among the
 * |w| quantiles 0.999, 0.9995, 0.9999, 0.99999 and max|w| whose rounding error is lowest. */
enum pg_qclip { PG_QCLIP_NONE = 0, PG_QCLIP_QUANTILE = 1, PG_QCLIP_SDCLIP = 2, PG_QCLIP_MAXABS = 3, PG_QCLIP_SEARCH = 4 };

/* Tensor classes, which carry their own bit width and SDClip k. */
enum pg_qclass { PG_QCLASS_ATTN, PG_QCLASS_MLP, PG_QCLASS_EMBED, PG_QCLASS_N };

/* What a tensor is in the model: pg-pack groups the integer tensors by it. */
enum pg_qrole {
    PG_QROLE_OTHER = 0, /* control tensors */
    PG_QROLE_TOK_EMB = 1,
    PG_QROLE_C_Q = 2,
    PG_QROLE_C_K = 3,
    PG_QROLE_C_V = 4,
    PG_QROLE_ATTN_PROJ = 5,
    PG_QROLE_MLP_FC = 6,
    PG_QROLE_MLP_PROJ = 7,
    PG_QROLE_LM_HEAD = 8,
    PG_QROLE_N
};

/* How an integer tensor's row steps are stored: fp16 each (2 bytes a row), or as a 5-bit
 * log-delta sequence (trit.h: an fp16 base, then one code byte a row; .pgq version 2), in which
 * case the integers are chosen with the decoded steps. */
enum pg_qscale { PG_QSCALE_FP16 = 0, PG_QSCALE_LOGDELTA = 1 };

/* How an integer tensor's values are chosen once its row steps are fixed. */
enum pg_qmethod { PG_QMETHOD_RTN = 0, PG_QMETHOD_GPTQ = 1 };

/* A per-tensor setting that overrides its class's: every integer tensor whose name starts with
 * `prefix` followed by '.' or the end ("blocks.10.mlp" covers blocks.10.mlp.fc.weight and
 * blocks.10.mlp.proj.weight); the latest matching override wins. */
struct pg_quant_override {
    char prefix[48];
    int bits;     /* 0: the class's */
    double k;     /* 0: the class's */
};
#define PG_QUANT_MAX_OVERRIDES 64

struct pg_calib;

#define PG_QUANT_BASELINE_Q 0.9999984     /* parameter-golf's INT8_CLIP_Q */
#define PG_QUANT_KEEP_FLOAT_MAX 65536     /* parameter-golf's INT8_KEEP_FLOAT_MAX_NUMEL */

struct pg_quant_opts {
    int scheme;                 /* PG_QSCHEME_* */
    int bits[PG_QCLASS_N];      /* intN: 2..8 per class */
    int clip;                   /* intN: PG_QCLIP_SDCLIP (default), _MAXABS, _QUANTILE or _SEARCH */
    double k[PG_QCLASS_N];      /* SDClip k per class: attn 13, mlp 11.5, embed 14 */
    int64_t keep_float_max;     /* tensors of at most this many elements pass through (65536) */
    int nov;                    /* per-tensor overrides of bits and k, applied in order */
    struct pg_quant_override ov[PG_QUANT_MAX_OVERRIDES];
    int method;                 /* PG_QMETHOD_RTN (default) or _GPTQ (intN only; needs calib) */
    struct pg_gptq_opts gptq;
    const struct pg_calib *calib; /* finished statistics for GPTQ and the output-error report, or NULL */
    int lqer_rank;              /* LQER: 0 (off), or the rank of the correction (1..64) */
    int lqer_top;               /* ... on this many integer tensors with the largest ‖W−Ŵ‖_F (3) */
    int lqer_mode;              /* PG_LQER_ASYM (the records') or PG_LQER_SYM */
    int scale_code;             /* PG_QSCALE_FP16 (default) or _LOGDELTA (intN only) */
    int xform;                  /* intN: PG_QXFORM_* flags (qxform.h): AWQ needs calib; 0 = none */
    uint64_t xform_seed;        /* Hadamard: tensor i's signs come from splitmix(seed + i) */
    void (*progress)(void *ctx, int done, int total); /* after each integer tensor, or NULL */
    void *progress_ctx;
};

/* One tensor of a quantized model. The data pointers are read-only views: into the arena of a
 * quantized model, a mapped file, or a caller's buffer (see pgq.h). */
struct pg_qtensor {
    char name[48];
    int kind;                   /* PG_QKIND_* */
    int role;                   /* PG_QROLE_* */
    int bits;                   /* 2..8 for PG_QKIND_INT, 2 TERN, 3 QUIN, 32 or 16 for the float kinds */
    int clip;                   /* PG_QCLIP_*, NONE for the float kinds */
    float clip_param;           /* SDClip k, the quantile q (fp32), or 0 */
    int ndim;                   /* 1 or 2 */
    int64_t shape[2];           /* shape[1] = 0 when ndim = 1 */
    int64_t rows, cols;         /* the per-row layout: 2-D rows × cols, 1-D 1 × n */
    const unsigned char *data;  /* INT: rows·cols int8; F32/F16: the values, little-endian */
    const unsigned char *scales;/* INT: rows fp16 steps (or the log-delta form); TERN/QUIN: group scales;
                                 * little-endian; else NULL */
    int scale_code;             /* INT: PG_QSCALE_* */
    uint64_t data_len, scale_len;
    uint64_t data_off, scale_off; /* their byte offsets in the serialized .pgq (pgq.h) */
    double rel_err;             /* ‖W−Ŵ‖/‖W‖ when quantized here; -1 when read from a file */
    /* when quantized here with calibration statistics (else -1 / RTN): */
    double out_err;             /* relative output error sqrt(tr(ΔW H ΔWᵀ) / tr(W H Wᵀ)) */
    int method;                 /* PG_QMETHOD_*: GPTQ where a Hessian exists, else RTN */
    double damp;                /* GPTQ's damping used */
    /* an LQER correction (INT only; .pgq version 2): lqer_rank 0 = none; else lqer points at its
     * file form (lqer.h, pg_lqer_bytes(lqer_mode, rows, cols, lqer_rank) bytes) */
    int lqer_mode, lqer_rank;
    const unsigned char *lqer;
    uint64_t lqer_len, lqer_off;
    double err_norm;            /* ‖W−Ŵ‖_F before any LQER, when quantized here */
    /* an input transform undone at dequantization (INT 2-D only; .pgq version 3; qxform.h):
     * xform 0 = none, else PG_QXFORM_* flags, and its blob of pg_qxform_bytes bytes, after the scales */
    int xform;
    const unsigned char *xform_blob;
    uint64_t xform_len, xform_off;
    double awq_alpha;           /* AWQ: the exponent chosen, when quantized here */
};

/* The tokenizer a model was quantized for (all zero: not recorded). */
struct pg_tok_id {
    uint32_t vocab;             /* number of pieces */
    uint32_t crc32;             /* zlib crc32 of the .model file's bytes */
    uint64_t size;              /* the .model file's length in bytes */
};

struct pg_qmodel {
    struct pg_config cfg;
    int scheme;                 /* PG_QSCHEME_* */
    struct pg_tok_id tok;
    int ntensors;
    struct pg_qtensor *t;       /* in the model's tensor order */
    void *arena;                /* owned data (quantized here), or NULL */
    void *lqer_arena;           /* owned LQER corrections (quantized here), or NULL */
    void *xform_arena;          /* owned transform blobs (quantized here), or NULL */
    void *map;                  /* owned struct pg_map (read from a file), or NULL */
};

/* Fills o with the defaults of `scheme`: int8-baseline, or intN with every class at `bits`
 * (2..8), SDClip and the k of techniques.md §4.4 (attn 13, mlp 11.5, embed 14). */
void pg_quant_opts_default(struct pg_quant_opts *o, int scheme, int bits);

/* Parses "int8-baseline" or "intN" (N = 2..8) into *scheme and *bits (8 for the baseline).
 * @return 0, or PG_E_INVAL naming the value. */
int pg_quant_parse_scheme(const char *s, int *scheme, int *bits);

/* Parses "sdclip", "maxabs" or "quantile". @return 0, or PG_E_INVAL. */
int pg_quant_parse_clip(const char *s, int *clip);

/* Parses bit widths "attn=6,mlp=6,embed=8" (any subset, any order; a bare "6" sets every class)
 * over o->bits; an item whose key is not a class is a per-tensor override keyed by a tensor-name
 * prefix ("blocks.10.mlp=4", "tok_emb=7"). @return 0, or PG_E_INVAL naming the bad item (o
 * unchanged). */
int pg_quant_parse_bits(struct pg_quant_opts *o, const char *spec);

/* Parses SDClip k "attn=13,mlp=11.5,embed=14" (or a bare number for every class), each in
 * (0, 1000], with per-tensor overrides as --bits ("blocks.0.attn=14"). @return 0, or PG_E_INVAL
 * (o unchanged). */
int pg_quant_parse_k(struct pg_quant_opts *o, const char *spec);

/* Parses "rtn" or "gptq". @return 0, or PG_E_INVAL. */
int pg_quant_parse_method(const char *s, int *method);
const char *pg_qmethod_name(int method);

/* Quantizes every parameter of m into qm (which owns its data; free with pg_qmodel_free),
 * recording each tensor's relative reconstruction error (and, with o->calib, its relative output
 * error). Under PG_QMETHOD_GPTQ every integer tensor with a Hessian in o->calib (calib.h: the
 * block matrices, and the head or tied embedding) is quantized by GPTQ with the row steps of
 * its clip rule; the others by rounding. Rows run in parallel (OpenMP); the result does not depend
 * on the thread count. @return 0, PG_E_INVAL for bad options (an override that matches no
 * integer tensor, GPTQ without statistics), PG_E_FORMAT naming a tensor with a non-finite value,
 * PG_E_LIB (GPTQ's factorization), or PG_E_NOMEM. */
int pg_quantize_model(const struct pg_model *m, const struct pg_quant_opts *o, struct pg_qmodel *qm);

/* calib's H for tensor t of m (calib.h), or NULL: no statistics (calib NULL), none for t, or not
 * of t's column count. */
const double *pg_qtensor_hessian(const struct pg_qtensor *t, const struct pg_calib *calib, const struct pg_model *m);

/* The steps of an integer tensor's rows, decoded (fp16 or log-delta) into steps[rows].
 * @return 0, or PG_E_FORMAT naming `what` and the tensor for a log-delta code out of range. */
int pg_qtensor_steps(const struct pg_qtensor *t, float *steps, const char *what);

/* Sets an integer tensor's rel_err from its stored integers and steps against the float weights
 * w, and its out_err against h (cols × cols; NULL: out_err = -1). @return 0 or PG_E_NOMEM. */
int pg_qtensor_measure(struct pg_qtensor *t, const pg_real *w, const double *h);

/* Checks a TERN/QUIN tensor read from a file: its packed codes unpack to exactly its elements
 * and its scales are positive finite fp16. @return 0, PG_E_NOMEM, or PG_E_FORMAT naming `what`
 * and the tensor. */
int pg_qtensor_check_trit(const struct pg_qtensor *t, const char *what);

/* Dequantizes one tensor into out (numel values), its LQER correction included.
 * @return 0, or PG_E_NOMEM (decoding a correction). */
int pg_qtensor_dequantize(const struct pg_qtensor *t, pg_real *out);

/* The fp16 step of row r of an integer tensor, as a float. */
float pg_qtensor_scale(const struct pg_qtensor *t, int64_t r);

/* Writes every tensor of qm into m's parameters; m's tensor table must match qm's (names and
 * shapes, in order). `what` names the source in errors. @return 0, or PG_E_FORMAT. */
int pg_qmodel_dequantize(const struct pg_qmodel *qm, struct pg_model *m, const char *what);

/* Bytes of the stored values: integers + scales + passthrough (parameter-golf's "payload"). */
uint64_t pg_qmodel_payload_bytes(const struct pg_qmodel *qm);

/* Releases what qm owns. Safe on a zeroed struct. */
void pg_qmodel_free(struct pg_qmodel *qm);

/* The role and class of a parameter-golf tensor name ("blocks.3.mlp.fc.weight": MLP_FC, MLP). */
int pg_qrole_of(const char *name);
int pg_qclass_of_role(int role);

/* Names for reports and the format: "tok_emb", "attn.c_q", ...; "int8-baseline" / "intN";
 * "sdclip" ...; "int" / "f32" / "f16"; "attn" / "mlp" / "embed". */
const char *pg_qrole_name(int role);
const char *pg_qscheme_name(int scheme);
const char *pg_qclip_name(int clip);
const char *pg_qkind_name(int kind);
const char *pg_qclass_name(int cls);

/* The fp32 quantile of n values (sorted ascending) as torch.quantile computes it on the CPU:
 * rank = fp32(q)·(n−1) in fp32, linear interpolation with torch.lerp's two-sided fused formula. */
float pg_quant_torch_quantile(const float *sorted, int64_t n, float q);

/* Quantizes one row of n values (the primitive under pg_quantize_model): writes q[n] and
 * returns the fp16 step. scheme/clip/bits/k as in pg_quant_opts; tmp holds n floats. */
uint16_t pg_quant_row(const float *w, int64_t n, int scheme, int clip, int bits, double k, int8_t *q, float *tmp);

/* Late QAT's fake quantization (spec/techniques.md §4.2), rows × cols row-major from w into out
 * (which may be w): per row, the step s = max|row| / Q with Q = 2^(bits−1) − 1 (pg_real, not
 * rounded to fp16), q = clamp(round_half_even(w/s), −Q−1, Q), out = q·s; an all-zero row stays
 * zero. bits is 2..8. Rows run in parallel; the result does not depend on the thread count. */
void pg_fake_quant_rows(const pg_real *w, pg_real *out, int64_t rows, int64_t cols, int bits);

#endif
