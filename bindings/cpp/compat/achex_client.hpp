// achex_client.hpp: source-level shim for code written against the announced Achex C++
// client, `WS_Client_Connection` (PROTOCOLS.md §6.4), running on wsbroker's client.
//
// What stays: WS_Client_Connection(port, "domain") connects to ws://domain:port/;
// ws_send(msg) sends one text frame; bool ws_incomming_data(polltimeout, retval) (spelling
// kept) waits up to `polltimeout` ms and tells whether a frame is queued, with retval 0, or
// negative once the connection is closed or failed; ws_recv() returns and empties the queue
// of every frame received so far, oldest first; close() closes with 1000.
//
// How it runs: the announced design's receiving thread is wsbroker's client thread; frames
// wait in the library's queue (queue mode) and move into the std::queue in
// ws_incomming_data. The constructor waits (at most `connect_timeout_ms`, default 10 s) for
// the connection, so ws_send works right after it; check is_connected() or retval.
//
// What changes: frames are std::string (binary frames too; the bytes are kept exactly);
// ws_send returns 0 once queued and -wsb_result on failure; retval is -1 after a failed
// connect and the negated close status otherwise (the status is in close_status()).
// One thread at a time may call ws_incomming_data/ws_recv; ws_send and close are safe from
// any thread.
//
// Names are declared in wsb::compat::achex and, unless WSB_ACHEX_NO_GLOBAL is defined,
// brought into the global namespace.
#ifndef WSBROKER_COMPAT_ACHEX_CLIENT_HPP
#define WSBROKER_COMPAT_ACHEX_CLIENT_HPP

#include "wsbroker.h"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <queue>
#include <string>

namespace wsb {
namespace compat {
namespace achex {

typedef std::queue<std::string> WS_Frame_Queue;

class WS_Client_Connection {
  public:
    WS_Client_Connection(int port, const char *domain, int connect_timeout_ms = 10000) {
        char url[512];
        std::snprintf(url, sizeof url, "ws://%s:%d/", domain != nullptr ? domain : "", port);
        wsb_client_config *cfg = wsb_client_config_new(url);
        if (cfg == nullptr) {
            state_ = -1;
            return;
        }
        wsb_client *c = nullptr;
        wsb_result r = wsb_client_new(cfg, nullptr, nullptr, nullptr, &c);
        wsb_client_config_free(cfg);
        if (r != WSB_RESULT_OK) {
            state_ = -1;
            return;
        }
        client_ = c;
        auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(connect_timeout_ms);
        while (state_ == 0 && !connected_) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) {
                state_ = -1;
                break;
            }
            pump(static_cast<int32_t>(left.count()));
        }
    }
    WS_Client_Connection(const WS_Client_Connection &) = delete;
    WS_Client_Connection &operator=(const WS_Client_Connection &) = delete;

    // Closes (1000) if open and stops the client.
    ~WS_Client_Connection() { (void)wsb_client_free(client_); }

    // Sends one text frame: 0 once queued, -wsb_result on failure.
    int ws_send(const std::string &msg) {
        if (client_ == nullptr) {
            return -static_cast<int>(WSB_RESULT_NOT_CONNECTED);
        }
        wsb_result r = wsb_client_send(client_, reinterpret_cast<const uint8_t *>(msg.data()), msg.size(), true);
        return r == WSB_RESULT_OK || r == WSB_RESULT_BACKPRESSURE ? 0 : -static_cast<int>(r);
    }

    // Waits up to `polltimeout` ms (negative: 0) for frames; true when at least one is queued.
    // `retval` is 0 while the connection is usable, negative once it is closed or failed.
    bool ws_incomming_data(int polltimeout, int &retval) {
        if (frames_.empty() && state_ == 0) {
            pump(polltimeout < 0 ? 0 : polltimeout);
        }
        // Gather whatever else has arrived, without waiting.
        while (state_ == 0 && pump(0)) {
        }
        retval = state_;
        return !frames_.empty();
    }

    bool ws_incomming_data(int polltimeout, int *retval) {
        int r = 0;
        bool has = ws_incomming_data(polltimeout, r);
        if (retval != nullptr) {
            *retval = r;
        }
        return has;
    }

    // Returns every frame received so far, oldest first, and empties the queue.
    WS_Frame_Queue ws_recv() {
        WS_Frame_Queue out;
        out.swap(frames_);
        return out;
    }

    // Closes with 1000: 0 once the close frame is queued, -wsb_result otherwise.
    int close() {
        if (client_ == nullptr) {
            return -static_cast<int>(WSB_RESULT_NOT_CONNECTED);
        }
        wsb_result r = wsb_client_close(client_, 1000, nullptr);
        return r == WSB_RESULT_OK ? 0 : -static_cast<int>(r);
    }

    bool is_connected() const { return client_ != nullptr && wsb_client_is_connected(client_); }
    // The close status once closed (-1: dropped or never connected), else 0.
    int close_status() const { return close_status_; }

  private:
    // Takes one event; false when none came within `timeout_ms`.
    bool pump(int32_t timeout_ms) {
        if (client_ == nullptr) {
            return false;
        }
        wsb_client_event ev;
        wsb_result r = wsb_client_poll(client_, timeout_ms, &ev);
        if (r != WSB_RESULT_OK) {
            if (r != WSB_RESULT_TIMEOUT && r != WSB_RESULT_INTERRUPTED) {
                fail(-1);
            }
            return false;
        }
        switch (ev.kind) {
        case WSB_CLIENT_EVENT_TYPE_CONNECTED:
            connected_ = true;
            break;
        case WSB_CLIENT_EVENT_TYPE_MESSAGE:
            frames_.push(std::string(reinterpret_cast<const char *>(ev.data), ev.len));
            break;
        case WSB_CLIENT_EVENT_TYPE_CLOSED:
            fail(ev.close_status > 0 ? -ev.close_status : -1);
            close_status_ = ev.close_status;
            break;
        case WSB_CLIENT_EVENT_TYPE_ERROR:
            fail(-1);
            close_status_ = -1;
            break;
        default:
            break;
        }
        return true;
    }

    void fail(int state) {
        if (state_ == 0) {
            state_ = state;
        }
    }

    wsb_client *client_ = nullptr;
    WS_Frame_Queue frames_;
    bool connected_ = false;
    int state_ = 0;
    int close_status_ = 0;
};

} // namespace achex
} // namespace compat
} // namespace wsb

#if !defined(WSB_ACHEX_NO_GLOBAL)
using wsb::compat::achex::WS_Client_Connection;
using wsb::compat::achex::WS_Frame_Queue;
#endif

#endif // WSBROKER_COMPAT_ACHEX_CLIENT_HPP
