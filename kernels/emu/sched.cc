// sched.cc: kernel launches on the host: every CUDA thread of a block is a fiber, the fibers
// of a block take turns on one OS thread, blocks are spread over a few OS threads.
//
// Scheduling. A block's threads start in order 0, 1, 2, ... and each runs until it must wait
// (a barrier or a warp exchange that not every participant has reached) or ends; it then
// switches directly to the next thread in round-robin order that has not ended. The last
// thread to reach a barrier or to join an exchange releases the others and keeps running, so
// in the usual patterns every switch makes progress. The order never depends on timing: a
// block's run is deterministic, and so is a launch whose blocks are independent (blocks go to
// OS threads in whatever order, but do not share results except through atomics).
//
// Deadlock. A thread that is resumed and must still wait counts an unproductive turn; any
// arrival, release or exit resets the count. One full round of unproductive turns (as many as
// there are live threads) proves that every one of them waits for something no one left can
// do; after twice that (a margin), the launch is reported and the process aborts (a GPU would
// hang or return undefined values).
//
// Fibers run on mmap'd stacks with a guard page below, kept per worker and reused across blocks
// and launches. On x86-64 a switch is a few instructions (ctx_switch below: the callee-saved
// registers, the SSE and x87 control words, the stack pointer); glibc's swapcontext also saves
// the signal mask with a system call at every switch, which took 80% of the parity tests' time.
// Elsewhere (or with -DPG_EMU_UCONTEXT) the fibers are ucontext contexts. Under
// AddressSanitizer the switches are announced with __sanitizer_start/finish_switch_fiber so
// ASan follows the stack changes.
#include "cuda_emu.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define PG_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PG_EMU_ASAN 1
#endif
#endif
#ifdef PG_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if defined(__x86_64__) && !defined(PG_EMU_UCONTEXT)
#define PG_EMU_ASM_SWITCH 1
// ctx_switch(save, to): pushes the callee-saved registers and the control words on the running
// stack, stores its pointer in *save, loads `to` (a pointer stored the same way, or a new
// fiber's prepared frame) and pops them back, returning into the other context.
extern "C" void pg_emu_ctx_switch(void **save, void *to);
__asm__(".text\n"
        ".globl pg_emu_ctx_switch\n"
        ".hidden pg_emu_ctx_switch\n"
        ".type pg_emu_ctx_switch,@function\n"
        "pg_emu_ctx_switch:\n"
        "    pushq %rbp\n"
        "    pushq %rbx\n"
        "    pushq %r12\n"
        "    pushq %r13\n"
        "    pushq %r14\n"
        "    pushq %r15\n"
        "    subq $8, %rsp\n"
        "    stmxcsr (%rsp)\n"
        "    fnstcw 4(%rsp)\n"
        "    movq %rsp, (%rdi)\n"
        "    movq %rsi, %rsp\n"
        "    ldmxcsr (%rsp)\n"
        "    fldcw 4(%rsp)\n"
        "    addq $8, %rsp\n"
        "    popq %r15\n"
        "    popq %r14\n"
        "    popq %r13\n"
        "    popq %r12\n"
        "    popq %rbx\n"
        "    popq %rbp\n"
        "    ret\n"
        ".size pg_emu_ctx_switch,.-pg_emu_ctx_switch\n");
#endif

namespace pg_emu {

__thread const ThreadId *t_thread;
__thread const BlockId *t_block;

void fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("cuda-emu: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
    abort();
}

// Set a launch failure as the calling thread's last error (runtime.cc).
void set_last_error(cudaError_t e);
int dynamic_smem_limit(const void *func);

namespace {

enum Wait { NONE, BARRIER, WARP };

struct Fiber {
#ifdef PG_EMU_ASM_SWITCH
    void *sp = nullptr; // the saved stack pointer (pg_emu_ctx_switch's frame)
#else
    ucontext_t ctx;
#endif
    void *map = nullptr; // the mapping: guard page, then the stack
    size_t map_size = 0;
    char *stack = nullptr;
    size_t stack_size = 0;
    ThreadId id;
    bool done = false;
    Wait wait = NONE;
    void *fake_stack = nullptr; // ASan's per-fiber fake stack handle
};

struct Warp {
    uint64_t val[32], out[32];
    unsigned ballot[32];
    int8_t src[32];
    unsigned exists, live, waiting;
    struct Group {
        unsigned mask, arrived;
    } groups[32];
    int ngroups;
    // warp_gather: each lane's bytes as deposited, the lanes arrived, and the completed gather's
    // copy that every lane reads (rewritten only when all have deposited again, after reading it)
    unsigned gathering;
    unsigned char gather_in[32][GATHER_BYTES], gather_out[32][GATHER_BYTES];
};

size_t stack_bytes()
{
    static const size_t bytes = [] {
        const char *e = getenv("PG_EMU_STACK_KB");
        long kb = e ? strtol(e, nullptr, 10) : 0;
        // Kernels keep little on the stack; printf needs a few KiB. The parity tests pass with
        // 16 KiB even under ASan (whose redzones make frames larger); 64 leaves a margin, and
        // more costs time under ASan, which clears a stack's shadow at every switch to it.
        if (kb <= 0) kb = 64;
        return (size_t)kb * 1024;
    }();
    return bytes;
}

struct Worker {
    std::vector<std::unique_ptr<Fiber>> fibers;
#ifdef PG_EMU_ASM_SWITCH
    void *sched_sp = nullptr; // the OS thread's own context, resumed when the block ends
#else
    ucontext_t sched;
#endif
    void *sched_fake = nullptr; // ASan
    const void *sched_bottom = nullptr;
    size_t sched_size = 0;
    BlockId block;
    const Launch *launch = nullptr;
    int nthreads = 0, live = 0, cur = 0;
    unsigned bar_arrived = 0, bar_gen = 0;
    unsigned unproductive = 0;
    Warp warps[32];
    unsigned char *smem = nullptr;

    ~Worker()
    {
        for (auto &f : fibers)
            if (f->map && munmap(f->map, f->map_size) != 0) perror("cuda-emu: munmap");
    }
};

thread_local Worker *t_worker;

// The pool of workers (their fiber stacks) reused by later launches.
std::mutex pool_mu;
std::vector<std::unique_ptr<Worker>> pool;

std::unique_ptr<Worker> take_worker()
{
    std::lock_guard<std::mutex> g(pool_mu);
    if (pool.empty()) return std::unique_ptr<Worker>(new Worker);
    std::unique_ptr<Worker> w = std::move(pool.back());
    pool.pop_back();
    return w;
}

void give_worker(std::unique_ptr<Worker> w)
{
    std::lock_guard<std::mutex> g(pool_mu);
    pool.push_back(std::move(w));
}

Fiber *new_fiber()
{
    std::unique_ptr<Fiber> f(new Fiber);
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) page = 4096;
    f->stack_size = stack_bytes();
    f->map_size = f->stack_size + (size_t)page;
    f->map = mmap(nullptr, f->map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (f->map == MAP_FAILED) fatal("mmap of a %zu-byte fiber stack: %s", f->map_size, strerror(errno));
    // The stack grows down: a page without access below it turns an overflow into a crash.
    if (mprotect(f->map, (size_t)page, PROT_NONE) != 0) fatal("mprotect of a stack guard: %s", strerror(errno));
    f->stack = (char *)f->map + page;
#ifndef PG_EMU_ASM_SWITCH
    if (getcontext(&f->ctx) != 0) fatal("getcontext: %s", strerror(errno));
#endif
    return f.release();
}

void fiber_main();

// Makes the fiber start at fiber_main on its own stack when next switched to.
void prepare_fiber(Fiber *f)
{
#ifdef PG_EMU_ASM_SWITCH
    // From the top (16-byte aligned): a zero return address for fiber_main (it never returns),
    // fiber_main's address for pg_emu_ctx_switch's ret, six zero registers, the control words
    // of the calling thread. fiber_main is entered with rsp = top − 8, as after a call.
    // Each thread's stack starts (64·linear) mod 4096 bytes below the top: stacks a whole number
    // of pages apart would put every fiber's live frames in the same few L1 sets (8% of the
    // emulated training tests' time).
    uintptr_t top = ((uintptr_t)f->stack + f->stack_size - (f->id.linear % 64) * 64) & ~(uintptr_t)15;
    uint64_t *p = (uint64_t *)top;
    *--p = 0;
    *--p = (uint64_t)(uintptr_t)&fiber_main;
    for (int i = 0; i < 6; i++) *--p = 0;
    uint32_t ctl[2] = {0, 0};
    __asm__ volatile("stmxcsr %0" : "=m"(ctl[0]));
    __asm__ volatile("fnstcw %0" : "=m"(ctl[1]));
    *--p = (uint64_t)ctl[0] | (uint64_t)(ctl[1] & 0xffff) << 32;
    f->sp = p;
#else
    f->ctx.uc_stack.ss_sp = f->stack;
    f->ctx.uc_stack.ss_size = f->stack_size;
    f->ctx.uc_link = nullptr;
    makecontext(&f->ctx, fiber_main, 0);
#endif
}

// Switches from the running context (a fiber, or the worker's own when from is null) to
// fiber `to`, or to the worker's own context when `to` is null. `from_ends`: the running fiber
// has finished and will never be resumed.
void switch_to(Worker *w, Fiber *from, Fiber *to, bool from_ends = false)
{
    if (to) t_thread = &to->id;
#ifdef PG_EMU_ASAN
    void **fake = from_ends ? nullptr : from ? &from->fake_stack : &w->sched_fake;
    __sanitizer_start_switch_fiber(fake, to ? to->stack : w->sched_bottom, to ? to->stack_size : w->sched_size);
#else
    (void)from_ends;
#endif
#ifdef PG_EMU_ASM_SWITCH
    pg_emu_ctx_switch(from ? &from->sp : &w->sched_sp, to ? to->sp : w->sched_sp);
#else
    if (swapcontext(from ? &from->ctx : &w->sched, to ? &to->ctx : &w->sched) != 0)
        fatal("swapcontext: %s", strerror(errno));
#endif
    // Resumed: whoever switched here set t_thread to this fiber.
#ifdef PG_EMU_ASAN
    __sanitizer_finish_switch_fiber(from ? from->fake_stack : w->sched_fake, nullptr, nullptr);
#endif
}

// The next thread after `i` in round-robin order that has not ended (i itself if it is the
// only one), or null when all have ended.
Fiber *next_live(Worker *w, int i)
{
    for (int k = 1; k <= w->nthreads; k++) {
        int j = (i + k) % w->nthreads;
        if (!w->fibers[j]->done) {
            w->cur = j;
            return w->fibers[j].get();
        }
    }
    return nullptr;
}

[[noreturn]] void deadlock(Worker *w)
{
    const Launch *l = w->launch;
    fprintf(stderr,
            "cuda-emu: deadlock in kernel %s (launched at %s:%d), block (%u,%u,%u): every live thread waits for "
            "threads that cannot come\n",
            l->name, l->file, l->line, w->block.idx.x, w->block.idx.y, w->block.idx.z);
    int shown = 0;
    for (int i = 0; i < w->nthreads && shown < 8; i++) {
        Fiber *f = w->fibers[i].get();
        if (f->done) continue;
        shown++;
        const Warp &wp = w->warps[f->id.warp];
        unsigned mask = 0, arrived = 0;
        for (int g = 0; g < wp.ngroups; g++)
            if (wp.groups[g].arrived >> f->id.lane & 1) mask = wp.groups[g].mask, arrived = wp.groups[g].arrived;
        if (wp.gathering >> f->id.lane & 1) mask = 0xffffffffu, arrived = wp.gathering; // warp_gather
        if (f->wait == BARRIER)
            fprintf(stderr, "  thread (%u,%u,%u) waits at __syncthreads (%u of %d arrived)\n", f->id.idx.x,
                    f->id.idx.y, f->id.idx.z, w->bar_arrived, w->live);
        else
            fprintf(stderr,
                    "  thread (%u,%u,%u) waits in a warp operation of warp %u: mask %#010x, arrived %#010x, lanes "
                    "alive %#010x\n",
                    f->id.idx.x, f->id.idx.y, f->id.idx.z, f->id.warp, mask, arrived, wp.live);
    }
    fflush(stderr);
    abort();
}

// Gives the other threads turns until `still_waiting()` is false.
template <class F> void wait_while(Worker *w, Fiber *me, Wait why, F still_waiting)
{
    me->wait = why;
    while (still_waiting()) {
        if (++w->unproductive > 2u * (unsigned)w->live + 2u) deadlock(w);
        Fiber *next = next_live(w, w->cur);
        if (next != me) switch_to(w, me, next); // whoever resumes us has set w->cur back to us
    }
    me->wait = NONE;
}

Fiber *current(Worker *w) { return w->fibers[w->cur].get(); }

// Releases a barrier whose live threads have all arrived (also after an exit).
bool barrier_complete(Worker *w)
{
    if (w->bar_arrived == 0 || w->bar_arrived < (unsigned)w->live) return false;
    w->bar_arrived = 0;
    w->bar_gen++;
    return true;
}

void thread_exit(Worker *w, Fiber *me)
{
    me->done = true;
    w->live--;
    w->unproductive = 0;
    Warp &wp = w->warps[me->id.warp];
    wp.live &= ~(1u << me->id.lane);
    for (int g = 0; g < wp.ngroups; g++)
        if (wp.groups[g].mask >> me->id.lane & 1)
            fatal("kernel %s (launched at %s:%d): thread (%u,%u,%u) exited while lanes %#010x of warp %u wait for it "
                  "in a warp operation (mask %#010x)",
                  w->launch->name, w->launch->file, w->launch->line, me->id.idx.x, me->id.idx.y, me->id.idx.z,
                  wp.groups[g].arrived, me->id.warp, wp.groups[g].mask);
    if (wp.gathering)
        fatal("kernel %s (launched at %s:%d): thread (%u,%u,%u) exited while lanes %#010x of warp %u wait for it in a "
              "warp-wide gather",
              w->launch->name, w->launch->file, w->launch->line, me->id.idx.x, me->id.idx.y, me->id.idx.z,
              wp.gathering, me->id.warp);
    barrier_complete(w); // exited threads count as arrived, as on Volta and later
    Fiber *next = next_live(w, (int)me->id.linear);
    switch_to(w, me, next, true); // never returns: the fiber is done
    fatal("a finished fiber was resumed");
}

void fiber_main()
{
    Worker *w = t_worker;
    Fiber *me = current(w);
#ifdef PG_EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
    w->launch->body(w->launch->ctx);
    thread_exit(w, me);
}

void run_block(Worker *w, uint3 bidx)
{
    w->block.idx = bidx;
    w->live = w->nthreads;
    w->bar_arrived = 0;
    w->unproductive = 0;
    const dim3 &bd = w->block.dim;
    int nwarps = (w->nthreads + 31) / 32;
    for (int i = 0; i < nwarps; i++) {
        Warp &wp = w->warps[i];
        int lanes = w->nthreads - 32 * i < 32 ? w->nthreads - 32 * i : 32;
        wp.exists = wp.live = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
        wp.waiting = 0;
        wp.ngroups = 0;
        wp.gathering = 0;
    }
    if (w->launch->smem) memset(w->smem, 0xff, w->launch->smem); // "uninitialized": NaN floats
    for (int i = 0; i < w->nthreads; i++) {
        Fiber *f = w->fibers[i].get();
        f->done = false;
        f->wait = NONE;
        f->id.linear = (unsigned)i;
        f->id.warp = (unsigned)i / 32;
        f->id.lane = (unsigned)i % 32;
        f->id.idx = uint3{(unsigned)i % bd.x, (unsigned)i / bd.x % bd.y, (unsigned)i / (bd.x * bd.y)};
#ifdef PG_EMU_ASAN
        // frames of the fiber's last run that never returned leave poisoned redzones behind
        ASAN_UNPOISON_MEMORY_REGION(f->stack, f->stack_size);
#endif
        prepare_fiber(f);
    }
    w->cur = 0;
    switch_to(w, nullptr, w->fibers[0].get());
    // every thread of the block has ended
}

struct Grid {
    const Launch *l;
    unsigned long long nblocks;
    std::atomic<unsigned long long> next{0};
};

void worker_run(Worker *w, Grid *g)
{
    t_worker = w;
    t_block = &w->block;
    const Launch &l = *g->l;
    w->launch = &l;
    w->block.dim = l.block;
    w->block.grid = l.grid;
    w->nthreads = (int)(l.block.x * l.block.y * l.block.z);
    while ((int)w->fibers.size() < w->nthreads) w->fibers.emplace_back(new_fiber());
    std::unique_ptr<unsigned char, void (*)(void *)> smem(nullptr, free);
    if (l.smem) {
        // exactly the requested size, so that ASan sees an access past the end
        smem.reset((unsigned char *)malloc(l.smem));
        if (!smem) fatal("out of memory for %zu bytes of dynamic shared memory", l.smem);
    }
    w->smem = smem.get();
#ifdef PG_EMU_ASAN
    pthread_attr_t attr;
    void *addr = nullptr;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        if (pthread_attr_getstack(&attr, &addr, &size) != 0) addr = nullptr, size = 0;
        pthread_attr_destroy(&attr);
    }
    w->sched_bottom = addr;
    w->sched_size = size;
#endif
    for (;;) {
        unsigned long long b = g->next.fetch_add(1, std::memory_order_relaxed);
        if (b >= g->nblocks) break;
        uint3 bidx{(unsigned)(b % l.grid.x), (unsigned)(b / l.grid.x % l.grid.y),
                   (unsigned)(b / ((unsigned long long)l.grid.x * l.grid.y))};
        run_block(w, bidx);
    }
    w->smem = nullptr;
    w->launch = nullptr;
    t_worker = nullptr;
    t_block = nullptr;
    t_thread = nullptr;
}

int emu_threads()
{
    static const int n = [] {
        const char *e = getenv("PG_EMU_THREADS");
        long v = e ? strtol(e, nullptr, 10) : 0;
        if (v <= 0) v = (long)std::thread::hardware_concurrency();
        if (v <= 0) v = 1;
        return (int)(v < 8 ? v : 8);
    }();
    return n;
}

} // namespace

bool launch_ok(const Launch &l)
{
    if (t_worker) fatal("kernel %s launched from inside a kernel (%s:%d): not emulated", l.name, l.file, l.line);
    unsigned long long threads = (unsigned long long)l.block.x * l.block.y * l.block.z;
    unsigned long long blocks = (unsigned long long)l.grid.x * l.grid.y * l.grid.z;
    if (threads == 0 || threads > 1024 || l.block.x > 1024 || l.block.y > 1024 || l.block.z > 64 || blocks == 0 ||
        l.grid.x > 0x7fffffffu || l.grid.y > 65535 || l.grid.z > 65535) {
        set_last_error(cudaErrorInvalidConfiguration);
        return false;
    }
    if (l.smem > (size_t)dynamic_smem_limit(l.func)) {
        set_last_error(cudaErrorInvalidValue);
        return false;
    }
    return true;
}

cudaError_t launch(const Launch &l)
{
    if (!launch_ok(l)) return cudaPeekAtLastError();
    unsigned long long blocks = (unsigned long long)l.grid.x * l.grid.y * l.grid.z;
    Grid g;
    g.l = &l;
    g.nblocks = blocks;
    int nw = emu_threads();
    if ((unsigned long long)nw > blocks) nw = (int)blocks;
    std::vector<std::unique_ptr<Worker>> workers;
    for (int i = 0; i < nw; i++) workers.push_back(take_worker());
    std::vector<std::thread> helpers; // the calling thread is worker 0
    for (int i = 1; i < nw; i++) {
        try {
            helpers.emplace_back(worker_run, workers[i].get(), &g);
        } catch (const std::system_error &) {
            break; // fewer OS threads: the others take the remaining blocks
        }
    }
    worker_run(workers[0].get(), &g);
    for (auto &t : helpers) t.join();
    for (auto &w : workers) give_worker(std::move(w));
    return cudaSuccess;
}

void syncthreads()
{
    Worker *w = t_worker;
    if (!w) fatal("__syncthreads called outside a kernel");
    w->unproductive = 0;
    w->bar_arrived++;
    if (barrier_complete(w)) return;
    unsigned gen = w->bar_gen;
    Fiber *me = current(w);
    wait_while(w, me, BARRIER, [&] { return w->bar_gen == gen; });
}

uint64_t warp_exchange(unsigned mask, uint64_t value, int src, unsigned *ballot)
{
    Worker *w = t_worker;
    if (!w) fatal("warp operation called outside a kernel");
    Fiber *me = current(w);
    int lane = (int)me->id.lane;
    Warp &wp = w->warps[me->id.warp];
    const Launch *l = w->launch;
    if (!(mask >> lane & 1))
        fatal("kernel %s (%s:%d): lane %d calls a warp operation whose mask %#010x leaves it out", l->name, l->file,
              l->line, lane, mask);
    if (mask & ~wp.exists)
        fatal("kernel %s (%s:%d): warp operation mask %#010x names lanes that the block does not have (%#010x)",
              l->name, l->file, l->line, mask, wp.exists);
    if (mask & ~wp.live)
        fatal("kernel %s (%s:%d): warp operation mask %#010x names lanes that have exited (alive: %#010x)", l->name,
              l->file, l->line, mask, wp.live);
    if (src < 0) src = lane;
    if (!(mask >> src & 1))
        fatal("kernel %s (%s:%d): lane %d reads lane %d, outside the mask %#010x (undefined on a GPU)", l->name,
              l->file, l->line, lane, src, mask);
    if (wp.gathering)
        fatal("kernel %s (%s:%d): lane %d calls a warp operation while lanes %#010x of its warp wait in a gather",
              l->name, l->file, l->line, lane, wp.gathering);
    wp.val[lane] = value;
    wp.src[lane] = (int8_t)src;
    int g = 0;
    while (g < wp.ngroups && wp.groups[g].mask != mask) g++;
    if (g == wp.ngroups) wp.groups[wp.ngroups++] = Warp::Group{mask, 0};
    wp.groups[g].arrived |= 1u << lane;
    w->unproductive = 0;
    if (wp.groups[g].arrived == mask) {
        // The last lane completes the exchange for everyone: each lane's result is set now,
        // so later exchanges of other masks cannot overwrite a value before it is read.
        unsigned bits = 0;
        for (int i = 0; i < 32; i++)
            if ((mask >> i & 1) && wp.val[i]) bits |= 1u << i;
        for (int i = 0; i < 32; i++)
            if (mask >> i & 1) {
                wp.out[i] = wp.val[wp.src[i]];
                wp.ballot[i] = bits;
            }
        wp.waiting &= ~mask;
        wp.groups[g] = wp.groups[--wp.ngroups];
    } else {
        wp.waiting |= 1u << lane;
        wait_while(w, me, WARP, [&] { return (wp.waiting >> lane & 1) != 0; });
    }
    if (ballot) *ballot = wp.ballot[lane];
    return wp.out[lane];
}

const void *warp_gather(const void *mine, size_t bytes)
{
    Worker *w = t_worker;
    if (!w) fatal("warp gather called outside a kernel");
    Fiber *me = current(w);
    int lane = (int)me->id.lane;
    Warp &wp = w->warps[me->id.warp];
    const Launch *l = w->launch;
    if (bytes > GATHER_BYTES) fatal("warp gather of %zu bytes a lane: at most %d", bytes, GATHER_BYTES);
    if (wp.live != 0xffffffffu)
        fatal("kernel %s (%s:%d): a warp-wide gather needs all 32 lanes (alive: %#010x)", l->name, l->file, l->line,
              wp.live);
    for (int g = 0; g < wp.ngroups; g++)
        if (wp.groups[g].arrived)
            fatal("kernel %s (%s:%d): lane %d gathers while lanes %#010x of its warp wait in another warp operation",
                  l->name, l->file, l->line, lane, wp.groups[g].arrived);
    memcpy(wp.gather_in[lane], mine, bytes);
    wp.gathering |= 1u << lane;
    w->unproductive = 0;
    if (wp.gathering == 0xffffffffu) {
        memcpy(wp.gather_out, wp.gather_in, sizeof wp.gather_out);
        wp.gathering = 0;
        wp.waiting = 0;
    } else {
        wp.waiting |= 1u << lane;
        wait_while(w, me, WARP, [&] { return (wp.waiting >> lane & 1) != 0; });
    }
    return wp.gather_out;
}

unsigned active_mask()
{
    Worker *w = t_worker;
    if (!w) fatal("__activemask called outside a kernel");
    return w->warps[current(w)->id.warp].live;
}

void *dynamic_smem()
{
    Worker *w = t_worker;
    if (!w) fatal("dynamic shared memory used outside a kernel");
    return w->smem;
}

} // namespace pg_emu
