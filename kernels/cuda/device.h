/* device.h: CUDA device discovery, callable from C. Built only when nvcc is found. */
#ifndef PG_CUDA_DEVICE_H
#define PG_CUDA_DEVICE_H

/* @return the number of usable CUDA devices: 0 without a driver or GPU (never an error). */
int pg_cuda_device_count(void);

#endif
