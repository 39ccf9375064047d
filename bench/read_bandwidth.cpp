// Read bandwidth from DRAM with 1..N threads: the ceiling of memory-bound generation, which reads
// every weight once per token. Each thread sums its own slice of a buffer far larger than the
// caches; the figure is bytes read over wall time, median of several passes.
//
//   g++ -O3 -march=native -pthread bench/read_bandwidth.cpp -o /tmp/read_bandwidth
//   /tmp/read_bandwidth [threads=1] [MiB=2048] [passes=9]
//
// bench/bench.py builds and runs this itself when a C++ compiler is available.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace {

// Sums 64-bit words in eight independent lanes so the loads, not the adds, limit the speed.
uint64_t sum_words(const uint64_t* p, size_t n) {
    uint64_t acc[8] = {};
    for (size_t i = 0; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; ++k) acc[k] += p[i + k];
    uint64_t s = 0;
    for (uint64_t a : acc) s += a;
    return s;
}

}  // namespace

int main(int argc, char** argv) {
    const int n_threads = argc > 1 ? std::atoi(argv[1]) : 1;
    const size_t mib = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 2048;
    const int passes = argc > 3 ? std::atoi(argv[3]) : 9;
    if (n_threads < 1 || mib < 64 || passes < 1) {
        std::fprintf(stderr, "usage: %s [threads>=1] [MiB>=64] [passes>=1]\n", argv[0]);
        return 2;
    }
    const size_t n_words = mib * (1 << 20) / 8;
    std::vector<uint64_t> buf(n_words);
    for (size_t i = 0; i < n_words; ++i) buf[i] = i;  // touch every page before timing

    std::vector<double> gbps;
    volatile uint64_t sink = 0;
    for (int pass = 0; pass < passes; ++pass) {
        std::vector<uint64_t> partial(n_threads);
        std::vector<std::thread> threads;
        const auto t0 = std::chrono::steady_clock::now();
        for (int t = 0; t < n_threads; ++t)
            threads.emplace_back([&, t] {
                const size_t begin = n_words * t / n_threads, end = n_words * (t + 1) / n_threads;
                partial[t] = sum_words(buf.data() + begin, end - begin);
            });
        for (std::thread& th : threads) th.join();
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        for (uint64_t p : partial) sink = sink + p;
        gbps.push_back(n_words * 8.0 / s / 1e9);
    }
    std::sort(gbps.begin(), gbps.end());
    std::printf("%.1f\n", gbps[gbps.size() / 2]);  // GB/s, median pass
    return 0;
}
