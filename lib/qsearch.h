/* qsearch.h: bit widths per tensor chosen by measured sensitivity under a packed-size budget
 * (issue 16 §3; the records' mixed int5/int6/int7 by layer, #1732's int8/int6/int4 by sensitivity).
 *
 * The model is quantized at every width from min to max bits (with every other option: GPTQ,
 * clip, scales). For each integer tensor t and width b that gives its cost E_t(b), the layer's
 * output error on the calibration inputs tr(ΔW H ΔWᵀ) (out_err² · tr(W H Wᵀ); ‖ΔW‖²_F without
 * calibration statistics: val is never read), and an estimate of its packed bytes s_t(b), the
 * empirical entropy of its integer codes plus its row steps. From every tensor at max bits, a
 * greedy path lowers one tensor by one bit at a time, always the step with the smallest cost
 * increase per estimated byte saved, down to every tensor at min bits. A binary search over the
 * path, packing each probe exactly as pg-pack does (qfit.h), finds the first point whose
 * artifact is at most the target; the point before it (over the target by less than one step)
 * is then pruned to the target by qfit's ±1 pruning when that reaches it, else the first point
 * is kept. The path does not depend on the target, so a tighter target takes a point no earlier
 * on it. */
#ifndef PG_QSEARCH_H
#define PG_QSEARCH_H

#include "qfit.h"

struct pg_bits_search_report {
    int min_bits, max_bits;
    int steps;              /* the path's length: Σ over integer tensors of max − min */
    int chosen;             /* the point taken: how many one-bit steps were made */
    int packs;              /* packs of the search (the pruning's are in fit) */
    int pruned_point;       /* 1: the point before the first fitting one was pruned to the target */
    double cost;            /* Σ E_t at the point taken, before pruning */
    struct pg_fit_report fit; /* the final pruning (start = the point's size) */
};

/* Quantizes m with o (intN; per-tensor bit overrides and LQER are not allowed: the search sets
 * the widths) at widths min..max (2 <= min < max <= 8) and returns in *qm the model of the point
 * chosen for target bytes packed with po, its tensors' bits the widths chosen. o->calib, when
 * not NULL, weights the costs (and GPTQ, when o->method asks for it).
 * @return 0; PG_E_INVAL for a bad argument, or a target that even min bits with every ±1 pruned
 * cannot reach (the message gives that size); PG_E_NOMEM; or a quantizer's or packer's error. */
int pg_bits_search(const struct pg_model *m, const struct pg_quant_opts *o, int min_bits, int max_bits,
                   uint64_t target, const struct pg_pack_opts *po, struct pg_qmodel *qm,
                   struct pg_bits_search_report *rep, void (*progress)(void *ctx, int done, int total), void *ctx);

#endif
