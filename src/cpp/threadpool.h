// A persistent pool of worker threads for the core's parallel loops.
//
// A parallel region is a number of chunks that the threads claim one at a time from a shared
// counter; the calling thread claims chunks too. The caller never waits for a worker that has
// not started: a worker that is slow to wake (preempted by another process on a shared machine)
// finds every chunk claimed and takes none, so the region costs what its chunks cost on the
// threads that did run. The caller only waits for chunks that a worker has started.
//
// Workers spin for a while after each region (the next one of a forward pass, or of the next
// generated token, follows within microseconds; waking a sleeping thread costs tens of them) and
// then sleep, so an idle pool uses no CPU. A region of one chunk, or on a pool of one thread,
// runs inline without touching the workers.
#pragma once
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace pyllama {

class ThreadPool {
public:
    explicit ThreadPool(int n_threads);  // n_threads >= 1; the caller counts as thread 0
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return n_threads_; }

    // Calls fn(chunk, thread) once for every chunk in [0, n_chunks) and returns when all calls
    // have returned. `thread` in [0, size()) names the thread making the call: calls that run at
    // the same time have different values, so it can index per-thread scratch. Chunks are
    // claimed in increasing order (put the most expensive first). The first exception thrown by
    // a call is rethrown here; chunks not yet started when it was thrown are skipped.
    // One region at a time: not to be called from inside a chunk, nor from two threads at once.
    template <class Fn>
    void run_chunks(int64_t n_chunks, Fn&& fn) {
        if (n_chunks <= 0) return;
        if (n_threads_ == 1 || n_chunks == 1) {
            for (int64_t c = 0; c < n_chunks; ++c) fn(c, 0);
            return;
        }
        using F = std::remove_reference_t<Fn>;
        dispatch(n_chunks, [](void* f, int64_t chunk, int thread) { (*static_cast<F*>(f))(chunk, thread); },
                 const_cast<void*>(static_cast<const void*>(&fn)));
    }

    // Runs task(ith, nth) for every ith in [0, nth = size()) and returns when all have finished.
    // Each ith runs exactly once, though not necessarily on thread ith (a late worker's share
    // is run by the others).
    template <class Task>
    void run(Task&& task) {
        const int nth = n_threads_;
        run_chunks(nth, [&](int64_t chunk, int) { task(static_cast<int>(chunk), nth); });
    }

    // Calls body(begin, end) over [0, n) in chunks of `grain` items.
    template <class Body>
    void parallel_for(int64_t n, int64_t grain, Body&& body) {
        if (n <= 0) return;
        if (grain < 1) grain = 1;
        run_chunks((n + grain - 1) / grain,
                   [&](int64_t chunk, int) { body(chunk * grain, std::min(n, (chunk + 1) * grain)); });
    }

    // Regions that woke at least one worker, since construction (for measuring).
    uint64_t regions_run() const { return generation_of(claim_.load(std::memory_order_relaxed)); }

private:
    using ChunkFn = void (*)(void* ctx, int64_t chunk, int thread);
    void dispatch(int64_t n_chunks, ChunkFn fn, void* ctx);
    // Claims and runs chunks of the region `generation` until none is left (or the region is
    // over), then adds the number it ran to done_.
    void work(uint64_t generation, int thread);
    void worker_loop(int thread);

    // claim_ packs the region's generation (high 32 bits) with the next unclaimed chunk (low 32
    // bits), so that a worker can only claim a chunk of the region it saw start.
    static uint64_t generation_of(uint64_t claim) { return claim >> 32; }
    static int64_t chunk_of(uint64_t claim) { return static_cast<int64_t>(claim & 0xffffffffu); }

    int n_threads_;
    std::vector<std::thread> workers_;

    // The current region: written by the caller before claim_ moves to its generation. A worker
    // reads fn_ and ctx_ only once it holds a chunk; n_chunks_ it may read while the next region
    // is being set up (its claim then fails), hence atomic.
    ChunkFn fn_ = nullptr;
    void* ctx_ = nullptr;
    std::atomic<int64_t> n_chunks_{0};
    alignas(64) std::atomic<uint64_t> claim_{0};
    alignas(64) std::atomic<int64_t> done_{0};  // chunks finished (or skipped), added up per thread
    std::atomic<bool> failed_{false};
    std::exception_ptr error_;
    std::mutex error_mutex_;

    alignas(64) std::atomic<int> sleepers_{0};  // workers waiting on wake_
    std::atomic<bool> stop_{false};
    std::mutex mutex_;
    std::condition_variable wake_;
};

}  // namespace pyllama
