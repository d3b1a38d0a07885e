# pgolf: build, test and install the pg-* toolchain.
#
#   make              build libpg.a and bin/pg-*
#   make check        install missing dependencies, build, run every test
#   make check SANITIZE=1   the same under ASan + UBSan (objects in build-san/)
#   make demo         the whole pipeline on the embedded demo corpus
#   make install PREFIX=/usr/local
#   make clean
#
# Optional features are found by compile-and-link probes (scripts/probe-features.sh), cached in
# $(O)/features.mk: HAVE_BLAS (OpenBLAS), HAVE_CUDA (nvcc + cuBLAS under CUDA_HOME), HAVE_NCCL,
# HAVE_MPI (MPI_CFLAGS, MPI_LIBS from pkg-config).
# Force one with HAVE_CUDA=1 (the build then fails if it is missing) or turn it off with =0.

CC ?= gcc
CXX ?= g++
CUDA_HOME ?= /usr/local/cuda
CUDA_ARCH ?= 90a
NVCC ?= $(CUDA_HOME)/bin/nvcc
PREFIX ?= /usr/local
SANITIZE ?= 0

ifeq ($(SANITIZE),1)
O := build-san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
BIN := $(O)/bin
else
O := build
SANFLAGS :=
BIN := bin
endif

WARN := -Wall -Wextra -Wshadow -Wno-unused-parameter
CFLAGS ?= -O3 -g
CXXFLAGS ?= -O2 -g
PG_CFLAGS := -std=c11 $(WARN) -pthread -fopenmp -fno-trapping-math -MMD -MP $(SANFLAGS)
PG_CXXFLAGS := -std=c++17 $(WARN) -pthread -MMD -MP $(SANFLAGS)
LDFLAGS ?=
LDLIBS := -lsentencepiece -lsentencepiece_train -ljansson -lbrotlienc -lbrotlidec -llzma -lz -llapacke -lstdc++ -lpthread -lm

# ---- feature probes -------------------------------------------------------------------------

-include $(O)/features.mk
# Every object depends on the probes' results: a re-probe (install-deps.sh removes the cache after
# installing) rebuilds what was compiled without a feature, e.g. lib/dist.c before MPI was there.
$(O)/features.mk: scripts/probe-features.sh
	@mkdir -p $(O)
	@sh scripts/probe-features.sh $@ "$(CC)" "$(CUDA_HOME)"

yesno = $(if $(filter 1,$(1)),yes,no)
FEATURES_LINE = features: OpenBLAS $(call yesno,$(HAVE_BLAS)), CUDA $(call yesno,$(HAVE_CUDA)) ($(CUDA_HOME), sm_$(CUDA_ARCH)), NCCL $(call yesno,$(HAVE_NCCL)), MPI $(call yesno,$(HAVE_MPI))

ifeq ($(HAVE_BLAS),1)
PG_CFLAGS += -DPG_HAVE_BLAS=1
LDLIBS += -lopenblas
endif
# MPI (lib/dist.c): mpirun/srun start pg-train as ranks of one job; without it one process trains
ifeq ($(HAVE_MPI),1)
PG_CFLAGS += -DPG_HAVE_MPI=1 $(MPI_CFLAGS)
LDLIBS += $(MPI_LIBS)
endif

# ---- sources --------------------------------------------------------------------------------

LIB_C := $(wildcard lib/*.c) $(wildcard kernels/cpu/*.c)
LIB_CC := $(wildcard lib/*.cc)
LIB_OBJ := $(LIB_C:%.c=$(O)/%.o) $(LIB_CC:%.cc=$(O)/%.o)

CUDA_SRC := $(wildcard kernels/cuda/*.cu)
# The CUDA backend's C side (backend_cuda.c: the pg_backend_cuda table over ops.h), compiled by
# $(CC) like lib/*.c: into libpg with the nvcc objects, and into the emulated kernels' library.
CUDA_C := $(wildcard kernels/cuda/*.c)
ifeq ($(HAVE_CUDA),1)
CUDA_OBJ := $(CUDA_SRC:%.cu=$(O)/%.o) $(CUDA_C:%.c=$(O)/%.o)
PG_CFLAGS += -DPG_HAVE_CUDA=1 -I$(CUDA_HOME)/include
# cuBLAS is not linked: the CUDA backend loads it with dlopen at its first product
# (kernels/cuda/cublas_lazy.cu), since loading libcublasLt costs ~0.4 s at every program start
# even for a run on the CPU. The runtime is linked statically (it is small).
LDLIBS += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart_static -ldl -lrt
CUBLAS_SONAME := $(shell objdump -p $(CUDA_HOME)/lib64/libcublas.so 2>/dev/null | sed -n 's/^ *SONAME *//p')
else
CUDA_OBJ :=
endif
NVCCFLAGS := -O3 -std=c++17 -gencode arch=compute_$(CUDA_ARCH),code=sm_$(CUDA_ARCH) -Xcompiler -fPIC,-Wall \
	$(if $(CUBLAS_SONAME),-DPG_CUBLAS_SONAME='"$(CUBLAS_SONAME)"')

COMMANDS := tokenize train quantize pack eval ttt
BINS := $(COMMANDS:%=$(BIN)/pg-%)
CLI_OBJ := $(O)/cmd/cli.o

TEST_SRC := $(wildcard tests/unit/test_*.c)
TEST_BINS := $(TEST_SRC:tests/unit/%.c=$(O)/tests/%)
TOOLS := $(O)/tests/tools/ref_eval_f64 $(O)/tests/tools/blas_info $(O)/tests/tools/st_diff $(O)/tests/tools/synth_shard \
	$(O)/tests/tools/pga_exact $(O)/tests/tools/pgq_bound

LIBPG := $(O)/libpg.a

.PHONY: all features check check-gpu test demo install clean deps corpus
.DEFAULT_GOAL := all
.SECONDARY:

all: features $(LIBPG) $(BINS) $(TEST_BINS) $(TOOLS)

features: $(O)/features.mk
	@echo "$(FEATURES_LINE)"

$(O)/%.o: %.c $(O)/features.mk
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PG_CFLAGS) -c $< -o $@

$(O)/%.o: %.cc $(O)/features.mk
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS) $(PG_CXXFLAGS) -c $< -o $@

$(O)/%.o: %.cu $(O)/features.mk
	@mkdir -p $(@D)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(LIBPG): $(LIB_OBJ) $(CUDA_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

# pg-eval and pg-ttt share their model/tokenizer/val set-up (cmd/scoring.c).
$(BIN)/pg-eval $(BIN)/pg-ttt: $(O)/cmd/scoring.o
$(BIN)/pg-%: $(O)/cmd/pg-%.o $(CLI_OBJ) $(LIBPG)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SANFLAGS) -fopenmp $(LDFLAGS) -o $@ $(filter %.o,$^) $(filter %.a,$^) $(LDLIBS)

# Gradient checks build the model and the CPU backend again in double (lib/real.h), and the
# evaluation, whose host distributions read the model's pg_real buffers.
F64_SRC := $(wildcard kernels/cpu/*.c) lib/model.c lib/eval.c
F64_DEPS := tests/tap.h tests/record_configs.h $(F64_SRC) $(wildcard kernels/cpu/*.h) lib/backend.h lib/real.h lib/model.h $(LIBPG)
$(O)/tests/%_f64: tests/unit/%_f64.c $(F64_DEPS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PG_CFLAGS) -DPG_REAL_DOUBLE $(LDFLAGS) -o $@ $< $(F64_SRC) $(LIBPG) $(LDLIBS)

$(O)/tests/%: tests/unit/%.c tests/tap.h $(LIBPG)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PG_CFLAGS) $(LDFLAGS) -o $@ $< $(LIBPG) $(LDLIBS)

# Test tools (not tests themselves): blas_info (the OpenBLAS core, the CPU's level, one product's
# GFLOP/s) for tests/cli/test-blas-cores.sh and the benchmarks; the float64 reference evaluator
# of tests/cli/test-train.sh; pgq_bound (what models of scales or a shared direction leave in a
# .pgq's integers) for scripts/bench-pack.sh.
$(O)/tests/tools/blas_info $(O)/tests/tools/st_diff $(O)/tests/tools/synth_shard $(O)/tests/tools/pga_exact \
	$(O)/tests/tools/pgq_bound: $(O)/tests/tools/%: tests/tools/%.c $(LIBPG)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PG_CFLAGS) $(LDFLAGS) -o $@ $< $(LIBPG) $(LDLIBS)

$(O)/tests/tools/ref_eval_f64: tests/tools/ref_eval_f64.c $(F64_DEPS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PG_CFLAGS) -DPG_REAL_DOUBLE $(LDFLAGS) -o $@ $< $(F64_SRC) $(LIBPG) $(LDLIBS)

# ---- CUDA kernels without a GPU (kernels/emu, DESIGN.md principle 7) -------------------------
# kernels/cuda/*.cu are compiled a second time by the host C++ compiler against the emulator
# (kernels/emu/include holds its cuda_runtime.h, cuda_bf16.h, cublas_v2.h), into $(O)/emu/ and
# $(O)/libpg_cuda_emu.a, never into libpg.a; kernels/cuda/*.c (the pg_backend_cuda table) joins
# them there, compiled by $(CC) with the flags of lib/*.c. The tests in tests/emu/ link them as
# test_*_emu and run in every `make check`. With HAVE_CUDA=1 the same test sources are also built against the
# real kernels as test_*_gpu: they skip without a device and fail under `make check-gpu` if none.
EMU_FLAGS := -std=c++17 $(WARN) -pthread -MMD -MP $(SANFLAGS) -Ikernels/emu/include
# The kernels' debug information as C++ (their templates' types) was most of each emulated test
# program, 3 of its 4 MB in the GPU bundle (../shared/tools/gpu-bundle.sh, carried under 64 MiB):
# line tables only, which sanitizer and crash reports need; EMU_DEBUG=-g for a debugger's locals.
EMU_DEBUG ?= -g1
EMU_OBJ := $(CUDA_SRC:%.cu=$(O)/emu/%.o) $(CUDA_C:%.c=$(O)/emu/%.o) $(patsubst %.cc,$(O)/emu/%.o,$(wildcard kernels/emu/*.cc))
EMU_LIB := $(O)/libpg_cuda_emu.a
# Parity tests: each tests/emu/test_cuda_X.c (C, against kernels/cuda/ops.h) is built as
# test_cuda_X_emu (emulated kernels) and, with HAVE_CUDA=1, test_cuda_X_gpu (nvcc's kernels).
CUDA_PARITY := $(patsubst tests/emu/%.c,%,$(wildcard tests/emu/test_cuda_*.c))
CUDA_TESTS := $(O)/tests/test_cuda_emu $(CUDA_PARITY:%=$(O)/tests/%_emu)
CUBLAS_LIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas
ifeq ($(HAVE_CUDA),1)
CUDA_TESTS += $(O)/tests/test_cuda_emu_gpu $(CUDA_PARITY:%=$(O)/tests/%_gpu)
endif
all: $(CUDA_TESTS)
$(CUDA_OBJ): $(wildcard kernels/cuda/*.cuh) kernels/cuda/cublas_lazy.h kernels/cuda/ops.h kernels/cuda/optim_ops.h lib/backend.h lib/real.h lib/err.h # nvcc writes no .d files

$(O)/emu/%.o: %.cu $(O)/features.mk
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS) $(EMU_DEBUG) $(EMU_FLAGS) -x c++ -c $< -o $@

$(O)/emu/%.o: %.c $(O)/features.mk
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PG_CFLAGS) -c $< -o $@

$(O)/emu/%.o: %.cc $(O)/features.mk
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS) $(EMU_FLAGS) -c $< -o $@

$(EMU_LIB): $(EMU_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(O)/tests/test_cuda_emu: tests/emu/test_cuda_emu.cu tests/tap.h $(EMU_LIB)
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS) $(EMU_FLAGS) $(LDFLAGS) -o $@ -x c++ $< -x none $(EMU_LIB) $(LDLIBS)

$(O)/tests/%_emu: tests/emu/%.c tests/tap.h tests/emu/parity.h kernels/cuda/ops.h kernels/cuda/optim_ops.h $(EMU_LIB) $(LIBPG)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PG_CFLAGS) -DPG_CUDA_EMU=1 $(LDFLAGS) -o $@ $< $(EMU_LIB) $(LIBPG) $(LDLIBS)

$(O)/tests/test_cuda_emu_gpu: tests/emu/test_cuda_emu.cu tests/tap.h kernels/cuda/pg_cuda.cuh
	@mkdir -p $(@D)
	$(NVCC) $(NVCCFLAGS) -DPG_CUBLAS_DIRECT -o $@ $< -L$(CUDA_HOME)/lib64 -Xlinker -rpath,$(CUDA_HOME)/lib64 -lcublas

$(O)/tests/%_gpu: tests/emu/%.c tests/tap.h tests/emu/parity.h kernels/cuda/ops.h kernels/cuda/optim_ops.h $(LIBPG)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PG_CFLAGS) $(LDFLAGS) -o $@ $< $(LIBPG) $(LDLIBS) $(CUBLAS_LIBS)

# bench_attn (scripts/bench-gpu.sh's attention timing): on the emulator always (a smoke test of
# the tool for tests/cli/test-bench-gpu.sh), and on the GPU's kernels with CUDA.
ATTN_BENCH := $(O)/tests/tools/bench_attn_emu
ifeq ($(HAVE_CUDA),1)
ATTN_BENCH += $(O)/tests/tools/bench_attn
endif
$(O)/tests/tools/bench_attn_emu: tests/tools/bench_attn.c kernels/cuda/ops.h $(EMU_LIB) $(LIBPG)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PG_CFLAGS) $(LDFLAGS) -o $@ $< $(EMU_LIB) $(LIBPG) $(LDLIBS)

$(O)/tests/tools/bench_attn: tests/tools/bench_attn.c kernels/cuda/ops.h $(LIBPG)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PG_CFLAGS) $(LDFLAGS) -o $@ $< $(LIBPG) $(LDLIBS) $(CUBLAS_LIBS)

# The training and scoring commands linked against the emulated kernels (test tools, not
# installed): `--device cuda` runs on kernels/emu, so tests/cli/test-train-cuda.sh trains (and
# scores, test-time trains, and calibrates GPTQ) through
# the real command line in make check. backend_select.c is compiled again with the CUDA branch on.
EMU_SELECT := $(O)/emu/lib/backend_select.o
EMU_CMDS := $(O)/tests/tools/pg-train-emu $(O)/tests/tools/pg-eval-emu $(O)/tests/tools/pg-ttt-emu \
	$(O)/tests/tools/pg-quantize-emu
all: $(EMU_CMDS) $(ATTN_BENCH)
$(EMU_SELECT): lib/backend_select.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PG_CFLAGS) -DPG_HAVE_CUDA=1 -c $< -o $@
$(O)/tests/tools/pg-eval-emu $(O)/tests/tools/pg-ttt-emu: $(O)/cmd/scoring.o
$(O)/tests/tools/pg-%-emu: $(O)/cmd/pg-%.o $(CLI_OBJ) $(EMU_SELECT) $(EMU_LIB) $(LIBPG)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SANFLAGS) -fopenmp $(LDFLAGS) -o $@ $(filter %.o,$^) $(EMU_LIB) $(LIBPG) $(LDLIBS)

-include $(EMU_OBJ:.o=.d) $(CUDA_TESTS:=.d)

# ---- fuzzing (tests/fuzz) ----------------------------------------------------------------------
# Each tests/fuzz/fuzz_X.c is a libFuzzer harness for one reader, linked against libpg compiled a
# third time by clang with coverage, ASan and UBSan (objects in build-fuzz/). `make fuzz` runs every
# harness for FUZZ_SECONDS on a copy of its seed corpus (tests/fuzz/corpus/X) and fails on any crash
# or leak; `make check` builds them and tests/cli/test-fuzz.sh runs each for a few seconds. Without
# a clang that links -fsanitize=fuzzer (scripts/probe-fuzz.sh) nothing is built and the test skips.
FUZZ_CC ?= clang
FUZZ_CXX ?= clang++
FUZZ_O := build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_DEFS := $(if $(filter 1,$(HAVE_BLAS)),-DPG_HAVE_BLAS=1)
FUZZ_CFLAGS := -O1 -g -std=c11 $(WARN) -Wno-pass-failed -pthread -fopenmp -fno-trapping-math -MMD -MP $(FUZZ_SAN) \
	-fsanitize=fuzzer-no-link $(FUZZ_DEFS)
FUZZ_CXXFLAGS := -O1 -g -std=c++17 $(WARN) -pthread -MMD -MP $(FUZZ_SAN) -fsanitize=fuzzer-no-link
FUZZ_LDLIBS := -lsentencepiece -lsentencepiece_train -ljansson -lbrotlienc -lbrotlidec -llzma -lz -llapacke \
	-lstdc++ -lpthread -lm $(if $(filter 1,$(HAVE_BLAS)),-lopenblas)
FUZZ_NAMES := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS := $(FUZZ_NAMES:%=$(FUZZ_O)/fuzz_%)
FUZZ_LIB_OBJ := $(LIB_C:%.c=$(FUZZ_O)/%.o) $(LIB_CC:%.cc=$(FUZZ_O)/%.o)

.PHONY: fuzz fuzz-build
$(FUZZ_O)/%.o: %.c $(O)/features.mk
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@
$(FUZZ_O)/%.o: %.cc $(O)/features.mk
	@mkdir -p $(@D)
	$(FUZZ_CXX) $(FUZZ_CXXFLAGS) -c $< -o $@
$(FUZZ_O)/libpg.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^
# linked by clang++, which brings UBSan's C++ runtime (tok_spm.cc)
$(FUZZ_O)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(FUZZ_O)/libpg.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@.o
	$(FUZZ_CXX) $(FUZZ_SAN) -fsanitize=fuzzer -fopenmp -o $@ $@.o $(FUZZ_O)/libpg.a $(FUZZ_LDLIBS)

# Builds the harnesses when clang can (otherwise says why and succeeds: the fuzz test then skips).
fuzz-build: $(O)/features.mk
	@if sh scripts/probe-fuzz.sh "$(FUZZ_CC)"; then $(MAKE) --no-print-directory $(FUZZ_BINS); \
	else rm -f $(FUZZ_BINS); fi

fuzz: fuzz-build
	@FUZZ_O=$(FUZZ_O) sh scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_NAMES)

-include $(FUZZ_LIB_OBJ:.o=.d)


# ---- targets --------------------------------------------------------------------------------

# check, check-gpu and demo build with every core unless the user gave -j already (a -j given to
# the sub-make would override the outer jobserver).
NPROC := $(shell nproc 2>/dev/null || echo 2)
BUILD_ALL = $(MAKE) $(if $(filter -j%,$(MAKEFLAGS)),,-j$(NPROC)) --no-print-directory all
BUILD_FUZZ = $(MAKE) $(if $(filter -j%,$(MAKEFLAGS)),,-j$(NPROC)) --no-print-directory fuzz-build

deps:
	@sh scripts/install-deps.sh

# The demo corpus (about 1 minute after its package installs); tests/cli/test-demo-corpus.sh
# checks pg-tokenize against SentencePiece on it. PG_SKIP_CORPUS=1 skips building it.
corpus:
	@if [ "$${PG_SKIP_CORPUS:-0}" = 1 ]; then echo "corpus: skipped (PG_SKIP_CORPUS=1)"; \
	else sh scripts/fetch-corpus.sh; fi

check: deps corpus
	@$(BUILD_ALL)
	@$(BUILD_FUZZ)
	@PG_BIN=$(CURDIR)/$(BIN) PG_TESTBIN=$(CURDIR)/$(O)/tests PG_HAVE_CUDA=$(HAVE_CUDA) SANITIZE=$(SANITIZE) \
		sh tests/run.sh

check-gpu: deps
	@$(BUILD_ALL)
	@PG_EXPECT_GPU=1 PG_BIN=$(CURDIR)/$(BIN) PG_TESTBIN=$(CURDIR)/$(O)/tests PG_HAVE_CUDA=$(HAVE_CUDA) \
		SANITIZE=$(SANITIZE) sh tests/run.sh

test: all fuzz-build
	@PG_BIN=$(CURDIR)/$(BIN) PG_TESTBIN=$(CURDIR)/$(O)/tests PG_HAVE_CUDA=$(HAVE_CUDA) SANITIZE=$(SANITIZE) \
		sh tests/run.sh

demo: deps
	@$(BUILD_ALL)
	@sh scripts/demo.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/pg \
		$(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/man/man7
	install -m 755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(LIBPG) $(DESTDIR)$(PREFIX)/lib/
	install -m 644 lib/*.h $(DESTDIR)$(PREFIX)/include/pg/
	install -m 644 $(wildcard man/*.1) $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 644 $(wildcard man/*.5) $(DESTDIR)$(PREFIX)/share/man/man5/
	install -m 644 $(wildcard man/*.7) $(DESTDIR)$(PREFIX)/share/man/man7/

clean:
	rm -rf build build-san build-fuzz bin

-include $(LIB_OBJ:.o=.d) $(CUDA_C:%.c=$(O)/%.d) $(O)/cmd/*.d
