// barracuda_wss.hpp: source-level shim for code written against Barracuda's WSS/WSSCB
// WebSocket server API (PROTOCOLS.md §6), running on wsbroker.
//
// What stays: the names WSSCB, WSS, WSSCB_Frame/_Ping/_Close, the callback signatures, the
// WSSCB(frameFp, closeFp, pingFp = 0) and WSS(cb, disp, startSize, expandSize) constructors,
// write(data, len, isTxt) returning 0 / negative, close(status = 1000), isValid(),
// upgrade(HttpRequest*) and connect(HttpConnection*) returning 0 / negative. Callbacks receive
// the exact WSSCB* and WSS* registered, so `static_cast<MyClient *>(o)` keeps working; the close
// callback is not called after the host's own close() or when the WSS is destroyed, and the
// WSS (and the object holding it) may be deleted inside the close callback.
//
// What changes (binary compatibility is impossible, the originals embed Barracuda's HTTP server):
//   * `SoDisp` is a `WssServer`: it owns a wsbroker server, accepts WebSocket upgrades itself
//     and calls your upgrade hook with an `HttpRequest*` for each new connection. Inside the hook,
//     construct your WSS and call `wss->upgrade(req)` (or `connect(req->getConnection())`).
//     A connection no WSS claims during the hook is closed with 1008 "not accepted".
//   * `startSize`/`expandSize` are accepted and ignored (buffers grow on demand); messages of any
//     size up to the configured limit arrive whole, fragmented or not (16 MiB by default;
//     `ServerConfig::max_message_size(65535)` restores Barracuda's limit).
//   * Callbacks run on a wsbroker I/O thread with the dispatcher lock held (never two at once),
//     as on Barracuda's dispatcher thread. From another thread, write/close/isValid are safe
//     without a lock; construct or delete WSS objects there only under `WssServer::lock()`, and
//     never while holding a lock your callbacks take.
//   * `data` given to the frame and ping callbacks is a private copy (writable, like Barracuda's
//     buffer, and NUL-terminated), valid only during the callback. Ping data is NULL when empty.
//   * write() never blocks: 0 means queued. It fails (negative) on an invalid or closing
//     connection, text that is not UTF-8, or a slow consumer over its outbound budget. The
//     negative value is -wsb_result.
//   * Close status: > 0 the peer's code or wsbroker's own failure code (1002, 1007, 1008, 1009),
//     0 a close frame without a code, -1 a dropped transport.
//   * Destroy every WSS before, or after, its WssServer: the WssServer's destructor closes all
//     connections with 1001 (no close callbacks) and detaches the remaining WSS objects, whose
//     destructors then do nothing.
//
// Names are declared in wsb::compat::barracuda and, unless WSB_BARRACUDA_NO_GLOBAL is defined,
// brought into the global namespace as Barracuda had them.
#ifndef WSBROKER_COMPAT_BARRACUDA_WSS_HPP
#define WSBROKER_COMPAT_BARRACUDA_WSS_HPP

#include "../wsbroker.hpp"

#include <atomic>
#include <climits>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace wsb {
namespace compat {
namespace barracuda {

struct WSSCB;
struct WSS;
class WssServer;
class HttpRequest;

typedef void (*WSSCB_Frame)(struct WSSCB *o, struct WSS *wss, void *data, int len, int text);
typedef void (*WSSCB_Ping)(struct WSSCB *o, struct WSS *wss, void *data, int len);
typedef void (*WSSCB_Close)(struct WSSCB *o, struct WSS *wss, int status);

// Barracuda's socket dispatcher; here the wsbroker-backed server.
typedef WssServer SoDisp;

// WebSocket Server Connection Callback Interface. Usually a base class of the host's
// per-connection object, so callbacks can cast `o` back.
struct WSSCB {
    WSSCB(WSSCB_Frame frame, WSSCB_Close close, WSSCB_Ping ping = 0) : frameFp(frame), closeFp(close), pingFp(ping) {}
    WSSCB_Frame frameFp;
    WSSCB_Close closeFp;
    WSSCB_Ping pingFp;
};

// An accepted WebSocket connection waiting for its WSS (valid during the upgrade hook only).
class HttpConnection {
  public:
    ConnId connId() const noexcept { return conn_; }
    SoDisp *getDispatcher() const noexcept { return disp_; }

  private:
    friend class WssServer;
    friend class HttpRequest;
    friend struct WSS;
    HttpConnection(WssServer *disp, wsb_server *srv, ConnId conn) noexcept : disp_(disp), srv_(srv), conn_(conn) {}
    WssServer *disp_;
    wsb_server *srv_;
    ConnId conn_;
    WSS *claimed_ = nullptr;
};

// The upgrade request of an accepted connection (valid during the upgrade hook only).
class HttpRequest {
  public:
    HttpConnection *getConnection() noexcept { return &con_; }
    // Request target, with query.
    const char *getPath() const noexcept { return path_.c_str(); }
    const char *getRemoteAddr() const noexcept { return remote_.c_str(); }
    // Selected subprotocol, "" if none.
    const char *getProtocol() const noexcept { return protocol_.c_str(); }

  private:
    friend class WssServer;
    HttpRequest(WssServer *disp, wsb_server *srv, const Event &ev)
        : con_(disp, srv, ev.conn), path_(ev.path), remote_(ev.remote_addr), protocol_(ev.protocol) {}
    HttpConnection con_;
    std::string path_, remote_, protocol_;
};

// Owns a wsbroker server in callback mode and routes its events to WSS objects.
// Not copyable or movable (its callbacks hold `this`).
class WssServer {
  public:
    using UpgradeHook = std::function<void(WssServer *disp, HttpRequest *req)>;

    // Non-throwing construction: check ok() (and result()) afterwards.
    WssServer(const ServerConfig &config, UpgradeHook hook) : hook_(std::move(hook)) {
        ServerHandlers h;
        h.on_open([this](ServerRef s, const Event &ev) { onOpen(s, ev); })
            .on_message([this](ServerRef s, const Event &ev) { onFrame(s, ev); })
            .on_ping([this](ServerRef, const Event &ev) { onPing(ev); })
            .on_close([this](ServerRef, const Event &ev) { onClose(ev); });
        result_ = Server::try_create(config, std::move(h), server_);
    }
    WssServer(const WssServer &) = delete;
    WssServer &operator=(const WssServer &) = delete;

    ~WssServer() {
        // Freeing first joins the I/O threads, so no callback races the detaching below.
        (void)server_.shutdown();
        std::lock_guard<std::recursive_mutex> g(mutex_);
        for (auto &kv : conns_) {
            detach(kv.second);
        }
        conns_.clear();
    }

    bool ok() const noexcept { return static_cast<bool>(server_); }
    Result result() const noexcept { return result_; }
    uint16_t port() const noexcept { return server_.port(); }
    Server &server() noexcept { return server_; }
    // The dispatcher lock, held while callbacks run (recursive).
    std::recursive_mutex &lock() noexcept { return mutex_; }

  private:
    friend struct WSS;

    void onOpen(ServerRef s, const Event &ev) {
        std::lock_guard<std::recursive_mutex> g(mutex_);
        HttpRequest req(this, s.get(), ev);
        if (hook_) {
            hook_(this, &req);
        }
        if (req.con_.claimed_ == nullptr) {
            (void)s.close(ev.conn, 1008, "not accepted");
        }
    }

    void onFrame(ServerRef s, const Event &ev) {
        std::lock_guard<std::recursive_mutex> g(mutex_);
        WSS *wss = find(ev.conn);
        if (wss == nullptr) {
            return;
        }
        if (ev.data.size() > static_cast<size_t>(INT_MAX)) {
            // Barracuda's `int len` cannot express it; the configured limit allowed it.
            (void)s.close(ev.conn, 1009, "message too big");
            return;
        }
        char *data = copy(ev.data);
        WSSCB *cb = cbOf(wss);
        if (cb->frameFp != nullptr) {
            cb->frameFp(cb, wss, data, static_cast<int>(ev.data.size()), ev.is_text ? 1 : 0);
        }
    }

    void onPing(const Event &ev) {
        std::lock_guard<std::recursive_mutex> g(mutex_);
        WSS *wss = find(ev.conn);
        if (wss == nullptr) {
            return;
        }
        WSSCB *cb = cbOf(wss);
        if (cb->pingFp != nullptr) {
            void *data = ev.data.empty() ? nullptr : copy(ev.data);
            cb->pingFp(cb, wss, data, static_cast<int>(ev.data.size()));
        }
    }

    void onClose(const Event &ev) {
        std::lock_guard<std::recursive_mutex> g(mutex_);
        auto it = conns_.find(ev.conn);
        if (it == conns_.end()) {
            return;
        }
        WSS *wss = it->second;
        conns_.erase(it);
        detach(wss);
        // A host close through the raw server API counts as the host's own close too.
        if (ev.closed_by_host) {
            return;
        }
        WSSCB *cb = cbOf(wss);
        // The last use of wss and cb: the callback may delete either.
        if (cb->closeFp != nullptr) {
            cb->closeFp(cb, wss, ev.close_status);
        }
    }

    WSS *find(ConnId conn) const {
        auto it = conns_.find(conn);
        return it == conns_.end() ? nullptr : it->second;
    }

    // A writable, NUL-terminated copy; the event's bytes belong to the library.
    char *copy(std::string_view data) {
        scratch_.assign(data.begin(), data.end());
        scratch_.push_back('\0');
        return scratch_.data();
    }

    static inline WSSCB *cbOf(WSS *wss) noexcept;
    static inline void detach(WSS *wss) noexcept;

    UpgradeHook hook_;
    std::recursive_mutex mutex_;
    std::unordered_map<ConnId, WSS *> conns_;
    std::vector<char> scratch_;
    Result result_;
    Server server_;
};

// WebSocket Server connection. Not copyable or movable (the dispatcher holds its address).
struct WSS {
    // `disp` may be NULL: upgrade() then takes the request's dispatcher. startSize and
    // expandSize are ignored.
    WSS(WSSCB *cb, SoDisp *disp, int startSize = 0, int expandSize = 0) noexcept : cb_(cb), disp_(disp) {
        (void)startSize;
        (void)expandSize;
    }
    WSS(const WSS &) = delete;
    WSS &operator=(const WSS &) = delete;

    // Closes a still-open connection with 1000, without a close callback.
    ~WSS() {
        if (srv_ == nullptr) {
            return;
        }
        std::lock_guard<std::recursive_mutex> g(disp_->mutex_);
        if (srv_ == nullptr) {
            return; // the connection ended while we waited for the lock
        }
        disp_->conns_.erase(conn_.load());
        (void)wsb_server_close(srv_.load(), conn_.load(), 1000, nullptr);
    }

    // Binds this WSS to the request's accepted connection. 0 on success; negative when `req`
    // is NULL, the connection is already claimed or gone, this WSS is already connected, or
    // the dispatcher differs from the constructor's.
    int upgrade(HttpRequest *req) noexcept {
        return req == nullptr ? fail(WSB_RESULT_NULL_POINTER) : connect(req->getConnection());
    }

    int connect(HttpConnection *con) noexcept {
        if (con == nullptr || cb_ == nullptr) {
            return fail(WSB_RESULT_NULL_POINTER);
        }
        if (disp_ == nullptr) {
            disp_ = con->disp_;
        }
        if (disp_ != con->disp_ || srv_ != nullptr || con->claimed_ != nullptr) {
            return fail(WSB_RESULT_INVALID_STATE);
        }
        std::lock_guard<std::recursive_mutex> g(disp_->mutex_);
        if (!wsb_server_is_valid(con->srv_, con->conn_)) {
            return fail(WSB_RESULT_CLOSED);
        }
#if WSB_HPP_CATCH_HANDLERS
        try {
            disp_->conns_.emplace(con->conn_, this);
        } catch (...) {
            return fail(WSB_RESULT_PANIC);
        }
#else
        disp_->conns_.emplace(con->conn_, this);
#endif
        srv_ = con->srv_;
        conn_ = con->conn_;
        con->claimed_ = this;
        return 0;
    }

    // Sends one message; 0 once queued, -wsb_result on failure.
    int write(const void *data, int len, bool isTxt) noexcept {
        if (len < 0 || (data == nullptr && len > 0)) {
            return fail(WSB_RESULT_INVALID_ARGUMENT);
        }
        wsb_server *srv = srv_.load();
        if (srv == nullptr) {
            return fail(WSB_RESULT_CLOSED);
        }
        Result r(wsb_server_write(srv, conn_.load(), static_cast<const uint8_t *>(data), static_cast<size_t>(len), isTxt));
        return r.queued() ? 0 : -static_cast<int>(r.raw());
    }

    // Sends a close frame (status <= 0 and codes not allowed on the wire go out as 1000).
    // Afterwards isValid() is false, writes fail and the close callback is not called.
    int close(int statusCode = 1000) noexcept {
        if (srv_ == nullptr) {
            return fail(WSB_RESULT_CLOSED);
        }
        std::lock_guard<std::recursive_mutex> g(disp_->mutex_);
        if (srv_ == nullptr) {
            return fail(WSB_RESULT_CLOSED);
        }
        disp_->conns_.erase(conn_.load());
        Result r(wsb_server_close(srv_.load(), conn_.load(), statusCode, nullptr));
        srv_ = nullptr;
        conn_ = 0;
        return r.ok() ? 0 : -static_cast<int>(r.raw());
    }

    bool isValid() noexcept {
        wsb_server *srv = srv_.load();
        return srv != nullptr && wsb_server_is_valid(srv, conn_.load());
    }

    // wsbroker's connection id (0 before upgrade, after close() and after the end).
    ConnId connId() const noexcept { return conn_; }

  private:
    friend class WssServer;
    static int fail(wsb_result r) noexcept { return -static_cast<int>(r); }

    WSSCB *cb_;
    WssServer *disp_;
    // Set while bound to a live connection; cleared (under the dispatcher lock) when it ends,
    // on close(), and when the WssServer goes away.
    // Atomic because write()/isValid() from other threads read them without the lock.
    std::atomic<wsb_server *> srv_{nullptr};
    std::atomic<ConnId> conn_{0};
};

inline WSSCB *WssServer::cbOf(WSS *wss) noexcept { return wss->cb_; }
inline void WssServer::detach(WSS *wss) noexcept {
    wss->srv_ = nullptr;
    wss->conn_ = 0;
}

} // namespace barracuda
} // namespace compat
} // namespace wsb

#if !defined(WSB_BARRACUDA_NO_GLOBAL)
using wsb::compat::barracuda::HttpConnection;
using wsb::compat::barracuda::HttpRequest;
using wsb::compat::barracuda::SoDisp;
using wsb::compat::barracuda::WSS;
using wsb::compat::barracuda::WSSCB;
using wsb::compat::barracuda::WSSCB_Close;
using wsb::compat::barracuda::WSSCB_Frame;
using wsb::compat::barracuda::WSSCB_Ping;
using wsb::compat::barracuda::WssServer;
#endif

#endif // WSBROKER_COMPAT_BARRACUDA_WSS_HPP
