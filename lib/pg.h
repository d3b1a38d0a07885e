/* pg.h: the public interface of libpg, the core library of pgolf, in one include.
 *
 * Conventions shared by every module: functions return 0 or a negative PG_E_* code and leave a
 * one-line message (pg_error_message) naming the file and the problem; nothing in the library
 * exits or prints on its own (progress lines aside, when asked for); every output file is
 * written atomically (outfile.h); every exported name starts with pg_.
 */
#ifndef PG_H
#define PG_H

#include "bpb.h"      /* val_bpb byte accounting */
#include "backend.h"  /* the operation table of the model */
#include "config.h"   /* model and training configuration */
#include "ckpt.h"     /* checkpoints */
#include "docs.h"     /* JSONL / text document input */
#include "eval.h"     /* val_loss / val_bpb */
#include "loader.h"   /* training batches and val windows */
#include "err.h"      /* error codes, messages, exit statuses */
#include "mapfile.h"  /* mmap'd input */
#include "opt.h"      /* checked number parsing */
#include "optim.h"    /* Adam, Muon, schedules */
#include "outfile.h"  /* atomic output */
#include "progress.h" /* progress line */
#include "model.h"    /* the GPT, forward and backward */
#include "rng.h"      /* deterministic RNG */
#include "safetensors.h" /* checkpoints */
#include "shard.h"    /* parameter-golf token shards */
#include "tok.h"      /* SentencePiece tokenizer */
#include "tokenize.h" /* train / encode / decode / info */
#include "utf8.h"     /* UTF-8 validation */
#include "xio.h"      /* checked allocation and I/O */
#include "quant.h"    /* quantization and dequantization */
#include "pgq.h"      /* the quantized model file */
#include "codec.h"    /* zlib, lzma, brotli, lrzip */
#include "bytes_xform.h" /* transpose, byte shuffle, row ordering */
#include "pga.h"      /* the artifact container */
#include "pack.h"     /* .pgq into .pga and back */
#include "modelfile.h" /* load a model from a checkpoint, .pgq or .pga */
#include "sgd.h"      /* SGD with momentum */
#include "ttt.h"      /* score-first test-time training */

#endif
