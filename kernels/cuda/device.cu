// device.cu: how many CUDA devices this process can use. The first piece of the CUDA backend
// (issue: the CUDA backend); it lets a command say "no GPU" (exit 3) instead of crashing on a
// machine without a driver, which is every CI machine.
#include <cuda_runtime.h>

extern "C" int pg_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); // clear the sticky "no driver" error
        return 0;
    }
    return n;
}
