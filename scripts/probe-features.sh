#!/bin/sh
# probe-features.sh OUT.mk CC CUDA_HOME: detect optional build features by compiling and linking
# tiny programs (never by looking for packages or directories), and write make variables.
# The Makefile includes the result and prints it; delete the file (make clean) to probe again.
set -u
out=$1 cc=$2 cuda_home=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

probe_c() { # name, source, link flags
    printf '%s\n' "$2" > "$tmp/$1.c"
    $cc -o "$tmp/$1" "$tmp/$1.c" $3 >/dev/null 2>&1
}

have_blas=0
probe_c blas '#include <cblas.h>
int main(void){float a=1,b=1,c=0;cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,1,1,1,1.f,&a,1,&b,1,0.f,&c,1);return c!=1.f;}' \
    -lopenblas && have_blas=1

# MPI (Open MPI or MPICH): its flags from pkg-config, checked by building a program with them
have_mpi=0 mpi_cflags="" mpi_libs=""
for pc in ompi-c mpich mpi; do
    if pkg-config --exists "$pc" 2>/dev/null; then
        mpi_cflags=$(pkg-config --cflags "$pc") mpi_libs=$(pkg-config --libs "$pc")
        probe_c mpi '#include <mpi.h>
int main(void){int v=0,s=0;MPI_Get_version(&v,&s);return v<1;}' "$mpi_cflags $mpi_libs" && have_mpi=1 && break
    fi
done
[ $have_mpi = 1 ] || mpi_cflags="" mpi_libs=""

nvcc="$cuda_home/bin/nvcc"
have_cuda=0 have_nccl=0
if [ -x "$nvcc" ]; then
    printf '%s\n' '#include <cuda_runtime.h>
#include <cublas_v2.h>
__global__ void k(int *p){*p=1;}
int main(void){int n=0;cudaGetDeviceCount(&n);cublasHandle_t h;(void)h;k<<<1,1>>>(0);return 0;}' > "$tmp/c.cu"
    "$nvcc" -o "$tmp/c" "$tmp/c.cu" -lcublas >/dev/null 2>&1 && have_cuda=1
    if [ $have_cuda = 1 ]; then
        printf '%s\n' '#include <nccl.h>
int main(void){int v=0;ncclGetVersion(&v);return v<=0;}' > "$tmp/n.cu"
        "$nvcc" -o "$tmp/n" "$tmp/n.cu" -lnccl >/dev/null 2>&1 && have_nccl=1
    fi
fi

{
    echo "# written by scripts/probe-features.sh; remove it to probe again"
    echo "HAVE_BLAS := $have_blas"
    echo "HAVE_CUDA := $have_cuda"
    echo "HAVE_NCCL := $have_nccl"
    echo "HAVE_MPI := $have_mpi"
    echo "MPI_CFLAGS := $mpi_cflags"
    echo "MPI_LIBS := $mpi_libs"
} > "$out.tmp" && mv "$out.tmp" "$out"
