// Shared by the C++ test programs: SIGTERM/SIGINT handling and a check counter.
#ifndef WSB_TEST_UTIL_HPP
#define WSB_TEST_UTIL_HPP

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <thread>

namespace test_util {

inline volatile std::sig_atomic_t stop = 0;
inline std::atomic<int> failures{0};

inline void on_signal(int) { stop = 1; }

inline void install_signals() {
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
}

// Waits for SIGTERM/SIGINT, at most `limit` so a lost driver cannot leave the server running.
inline void wait_for_stop(std::chrono::seconds limit = std::chrono::seconds(60)) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (!stop && std::chrono::steady_clock::now() < end) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

// Records a failed expectation; the program's exit status reports the count.
inline void check(bool ok, const char *what, int line) {
    if (!ok) {
        failures++;
        std::printf("CHECK FAILED line %d: %s\n", line, what);
        std::fflush(stdout);
    }
}

} // namespace test_util

#define CHECK(cond) test_util::check((cond), #cond, __LINE__)

#endif
