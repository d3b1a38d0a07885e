// The emulated build's <cublas_v2.h>: the cuBLAS subset on CBLAS.
#include "../cublas_emu.h"
