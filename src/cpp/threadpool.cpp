#include "threadpool.h"

#include <chrono>
#include <string>

#include "error.h"

namespace pyllama {

namespace {

// How an idle worker waits for the next region: it spins on the region counter for
// kWorkerSpin (the gaps inside a forward pass are microseconds), then also yields its core at
// each check until kWorkerYield (the gap between the tokens of a generation loop: sampling,
// detokenizing, the Python caller; yielding lets the caller's thread have this core when the
// machine is busy and both share one), then sleeps until woken, so an idle pool uses no CPU.
constexpr auto kWorkerSpin = std::chrono::microseconds(50);
constexpr auto kWorkerYield = std::chrono::milliseconds(4);
// How long the caller spins waiting for a chunk that a worker has started before it starts
// yielding its core (the worker may have been preempted, and may need this very core).
constexpr auto kCallerSpin = std::chrono::microseconds(200);
// Pause instructions between clock reads while spinning.
constexpr int kPausesPerCheck = 64;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

using Clock = std::chrono::steady_clock;

}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads) {
    if (n_threads < 1) throw Error("n_threads must be at least 1, got " + std::to_string(n_threads));
    workers_.reserve(n_threads - 1);
    for (int i = 1; i < n_threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
    stop_.store(true);
    claim_.fetch_add(uint64_t{1} << 32);  // a new generation wakes every worker, which sees stop_
    { std::lock_guard<std::mutex> lock(mutex_); }
    wake_.notify_all();
    for (std::thread& t : workers_) t.join();
}

void ThreadPool::work(uint64_t generation, int thread) {
    int64_t ran = 0;
    uint64_t claim = claim_.load(std::memory_order_acquire);
    for (;;) {
        const int64_t chunk = chunk_of(claim);
        if (generation_of(claim) != generation || chunk >= n_chunks_.load(std::memory_order_relaxed)) break;
        if (!claim_.compare_exchange_weak(claim, claim + 1, std::memory_order_acq_rel, std::memory_order_acquire))
            continue;
        // The chunk is ours; the region cannot end before we report it done, so fn_ and ctx_
        // (written before the region started) are still its own.
        if (!failed_.load(std::memory_order_relaxed)) {
            try {
                fn_(ctx_, chunk, thread);
            } catch (...) {
                std::lock_guard<std::mutex> lock(error_mutex_);
                if (!error_) error_ = std::current_exception();
                failed_.store(true, std::memory_order_relaxed);
            }
        }
        ++ran;
        claim = claim_.load(std::memory_order_acquire);
    }
    // Reported once, when every chunk is claimed: one write to the shared counter per thread
    // instead of one per chunk.
    if (ran > 0) done_.fetch_add(ran, std::memory_order_acq_rel);
}

void ThreadPool::dispatch(int64_t n_chunks, ChunkFn fn, void* ctx) {
    if (n_chunks > 0x7fffffff) throw Error("thread pool: too many chunks (" + std::to_string(n_chunks) + ")");
    fn_ = fn;
    ctx_ = ctx;
    n_chunks_.store(n_chunks, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    failed_.store(false, std::memory_order_relaxed);
    error_ = nullptr;
    // The new generation, chunk 0: publishes the fields above to the workers that see it.
    const uint64_t generation = generation_of(claim_.load(std::memory_order_relaxed)) + 1;
    claim_.store(generation << 32, std::memory_order_seq_cst);
    // Paired with the seq_cst increment in worker_loop: either the worker sees the new
    // generation before it sleeps, or we see it counted as a sleeper and wake it.
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
        { std::lock_guard<std::mutex> lock(mutex_); }
        wake_.notify_all();
    }
    work(generation, 0);
    if (done_.load(std::memory_order_acquire) < n_chunks) {
        // Every chunk is claimed; some still run on workers.
        const Clock::time_point start = Clock::now();
        bool yield = false;
        for (int i = 1; done_.load(std::memory_order_acquire) < n_chunks; ++i) {
            if (yield) {
                std::this_thread::yield();
            } else {
                cpu_relax();
                if (i % kPausesPerCheck == 0) yield = Clock::now() - start > kCallerSpin;
            }
        }
    }
    if (error_) std::rethrow_exception(error_);
}

void ThreadPool::worker_loop(int thread) {
    uint64_t seen = 0;  // the constructor's generation, even if this thread starts late
    for (;;) {
        uint64_t generation = generation_of(claim_.load(std::memory_order_acquire));
        if (generation == seen) {
            const Clock::time_point start = Clock::now();
            bool yield = false;
            for (int i = 1;; ++i) {
                if (yield) std::this_thread::yield();
                else cpu_relax();
                generation = generation_of(claim_.load(std::memory_order_acquire));
                if (generation != seen) break;
                if (yield || i % kPausesPerCheck == 0) {
                    const auto waited = Clock::now() - start;
                    if (waited > kWorkerYield) break;
                    yield = waited > kWorkerSpin;
                }
            }
        }
        if (generation == seen) {
            sleepers_.fetch_add(1, std::memory_order_seq_cst);
            {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [&] { return generation_of(claim_.load(std::memory_order_seq_cst)) != seen; });
            }
            sleepers_.fetch_sub(1, std::memory_order_relaxed);
            generation = generation_of(claim_.load(std::memory_order_acquire));
        }
        if (stop_.load()) return;
        seen = generation;
        work(generation, thread);
    }
}

}  // namespace pyllama
