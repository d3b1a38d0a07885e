// The emulated build's <cuda_bf16.h>: the bf16 subset lives in cuda_emu.h.
#include "../cuda_emu.h"
