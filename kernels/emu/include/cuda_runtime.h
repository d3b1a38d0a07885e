// The emulated build's <cuda_runtime.h> (kernels/emu/include is first on its include path).
#include "../cuda_emu.h"
