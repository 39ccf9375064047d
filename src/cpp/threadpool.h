// A persistent pool of worker threads for the core's parallel loops.
// Workers are created once; each run() wakes them, they spin briefly and then sleep,
// so a sequence of small ops (one per layer per token) costs no thread creation.
#pragma once
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace pyllama {

class ThreadPool {
public:
    explicit ThreadPool(int n_threads);  // n_threads >= 1; the caller counts as thread 0
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return n_threads_; }

    // Runs task(ith, nth) once on every thread and returns when all have finished.
    // An exception thrown by any task is rethrown here, in the caller's thread.
    void run(const std::function<void(int ith, int nth)>& task);

    // Calls body(begin, end) over [0, n) in chunks of `grain` items that the threads take
    // from a shared counter, so a thread slowed down (by another process, say) takes fewer
    // chunks and the threads still finish together.
    template <class Body>
    void parallel_for(int64_t n, int64_t grain, Body&& body) {
        if (n <= 0) return;
        if (grain < 1) grain = 1;
        std::atomic<int64_t> next{0};
        run([&](int, int) {
            for (;;) {
                const int64_t begin = next.fetch_add(grain, std::memory_order_relaxed);
                if (begin >= n) return;
                body(begin, std::min(n, begin + grain));
            }
        });
    }

private:
    void worker_loop(int ith);
    void execute(int ith);

    int n_threads_;
    std::vector<std::thread> workers_;
    const std::function<void(int, int)>* task_ = nullptr;
    std::atomic<uint64_t> generation_{0};  // bumped once per run(); workers wait for a change
    std::atomic<int> pending_{0};          // workers still busy with the current run
    std::atomic<bool> stop_{false};
    std::mutex mutex_;
    std::condition_variable wake_;
    std::exception_ptr error_;
    std::mutex error_mutex_;
};

}  // namespace pyllama
