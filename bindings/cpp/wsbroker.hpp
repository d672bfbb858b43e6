// wsbroker.hpp: header-only C++17 binding of the wsbroker C API (include/wsbroker.h).
//
// One move-only RAII class per C handle (`ServerConfig`, `Server`, `ClientConfig`, `Client`),
// each holding a std::unique_ptr with a deleter that calls the matching `wsb_*_free`. Fallible
// calls return `wsb::Result`, a [[nodiscard]] value. Exceptions are optional:
//   * `Server::try_create` and `Client::try_create` never throw a wsbroker error; `create`
//     throws `wsb::Error`.
//   * Define WSB_NO_EXCEPTIONS (or build with -fno-exceptions) to remove every throwing entry point.
//
// Lifetimes of borrowed data (std::string_view fields of `Event` and `ClientEvent`):
//   * callback mode: valid only until the handler returns;
//   * queue mode: valid until the next `poll` on the same server or client, or its destruction.
// Copy (`std::string(ev.data)`) to keep anything longer.
//
// Threading: handlers run on a library I/O thread, never two at once for one server or client.
// They must not block. `write`, `ping`, `close`, `is_valid`, `port`, `stats` and `interrupt` (and
// the client's `send`, `ping`, `close`, `message_complete`, `is_connected`, `interrupt`) are safe
// from any thread at any time and never block.
//
// Exceptions thrown by a handler never cross into C: the trampoline catches them. If an
// `on_exception` handler is set it is called with the event and the std::exception_ptr; otherwise
// the event's connection is closed with 1011 "internal error" (when it is still open). Either
// way later events keep coming. An exception thrown by `on_exception` itself is swallowed. For a
// client, the default closes its connection with 1011 the same way.
#ifndef WSBROKER_HPP
#define WSBROKER_HPP

#include "wsbroker.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#if !defined(WSB_NO_EXCEPTIONS) && !(defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND))
#define WSB_NO_EXCEPTIONS
#endif

#if !defined(WSB_NO_EXCEPTIONS)
#include <stdexcept>
#endif

// Handlers are guarded whenever the compiler has exceptions, even under WSB_NO_EXCEPTIONS:
// that macro removes throwing API, it does not make user code exception-free.
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
#define WSB_HPP_CATCH_HANDLERS 1
#else
#define WSB_HPP_CATCH_HANDLERS 0
#endif

namespace wsb {

// The result codes of include/wsbroker.h, scoped.
enum class Code : uint32_t {
    Ok = WSB_RESULT_OK,
    Panic = WSB_RESULT_PANIC,
    NullPointer = WSB_RESULT_NULL_POINTER,
    InvalidArgument = WSB_RESULT_INVALID_ARGUMENT,
    NotFound = WSB_RESULT_NOT_FOUND,
    Closed = WSB_RESULT_CLOSED,
    Backpressure = WSB_RESULT_BACKPRESSURE,
    WouldOverflow = WSB_RESULT_WOULD_OVERFLOW,
    InvalidUtf8 = WSB_RESULT_INVALID_UTF8,
    TooBig = WSB_RESULT_TOO_BIG,
    Timeout = WSB_RESULT_TIMEOUT,
    Reentrant = WSB_RESULT_REENTRANT,
    InvalidState = WSB_RESULT_INVALID_STATE,
    Io = WSB_RESULT_IO,
    AddrInUse = WSB_RESULT_ADDR_IN_USE,
    BufferTooSmall = WSB_RESULT_BUFFER_TOO_SMALL,
    SlowConsumer = WSB_RESULT_SLOW_CONSUMER,
    ShutDown = WSB_RESULT_SHUT_DOWN,
    Interrupted = WSB_RESULT_INTERRUPTED,
    ResolveFailed = WSB_RESULT_RESOLVE_FAILED,
    ConnectionRefused = WSB_RESULT_CONNECTION_REFUSED,
    Unreachable = WSB_RESULT_UNREACHABLE,
    ConnectTimeout = WSB_RESULT_CONNECT_TIMEOUT,
    CertificateInvalid = WSB_RESULT_CERTIFICATE_INVALID,
    TlsFailed = WSB_RESULT_TLS_FAILED,
    HandshakeFailed = WSB_RESULT_HANDSHAKE_FAILED,
    ProxyFailed = WSB_RESULT_PROXY_FAILED,
    NotConnected = WSB_RESULT_NOT_CONNECTED,
};

// The outcome of a call. Every function returning it is therefore [[nodiscard]].
class [[nodiscard]] Result {
  public:
    constexpr Result() noexcept = default;
    constexpr explicit Result(wsb_result raw) noexcept : raw_(static_cast<uint32_t>(raw)) {}
    constexpr Result(Code code) noexcept : raw_(static_cast<uint32_t>(code)) {}

    constexpr bool ok() const noexcept { return raw_ == WSB_RESULT_OK; }
    constexpr explicit operator bool() const noexcept { return ok(); }
    // True when a write/ping was accepted: OK, or queued above the soft limit (a drain follows).
    constexpr bool queued() const noexcept { return raw_ == WSB_RESULT_OK || raw_ == WSB_RESULT_BACKPRESSURE; }
    constexpr Code code() const noexcept { return static_cast<Code>(raw_); }
    constexpr uint32_t raw() const noexcept { return raw_; }
    // Static text from wsb_result_str (never NULL).
    const char *message() const noexcept { return wsb_result_str(raw_); }

    friend constexpr bool operator==(Result a, Result b) noexcept { return a.raw_ == b.raw_; }
    friend constexpr bool operator!=(Result a, Result b) noexcept { return a.raw_ != b.raw_; }

  private:
    uint32_t raw_ = WSB_RESULT_OK;
};

// The detail of the most recent failed wsb_ call on this thread ("" if none).
inline std::string last_error() {
    size_t needed = 0;
    char small[256];
    if (wsb_last_error(small, sizeof small, &needed) == WSB_RESULT_OK) {
        return small;
    }
    std::string buf(needed, '\0');
    if (needed == 0 || wsb_last_error(buf.data(), buf.size(), &needed) != WSB_RESULT_OK) {
        return {};
    }
    buf.resize(needed - 1);
    return buf;
}

// True when the loaded library has the major.minor version this header was generated for
// (0.x minors may change the ABI). Server::try_create refuses a mismatch with InvalidState.
inline bool version_matches() noexcept {
    return wsb_version_number() / 100 == WSB_VERSION_NUMBER / 100;
}

#if !defined(WSB_NO_EXCEPTIONS)
// Thrown by the throwing entry points; what() is "<context>: <result message> (<detail>)".
class Error : public std::runtime_error {
  public:
    Error(Result result, const std::string &context, const std::string &detail)
        : std::runtime_error(context + ": " + result.message() + (detail.empty() ? "" : " (" + detail + ")")),
          result_(result) {}
    Result result() const noexcept { return result_; }

  private:
    Result result_;
};
#endif

using ConnId = wsb_conn_id;
using Stats = wsb_stats;

// Negative timeout for poll: wait until an event or an interrupt.
inline constexpr std::chrono::milliseconds forever{-1};

enum class EventType : uint32_t {
    Open = WSB_EVENT_TYPE_OPEN,
    Message = WSB_EVENT_TYPE_MESSAGE,
    Ping = WSB_EVENT_TYPE_PING,
    Pong = WSB_EVENT_TYPE_PONG,
    Drain = WSB_EVENT_TYPE_DRAIN,
    Close = WSB_EVENT_TYPE_CLOSE,
};

// One event; every view is borrowed (see the lifetimes at the top of this file). Fields that do
// not apply to the type are empty/0/false; see wsb_event_type in wsbroker.h for each type.
struct Event {
    EventType type = EventType::Open;
    ConnId conn = 0;
    // Message, ping and pong payload, close reason. For messages data.data()[data.size()] is 0.
    std::string_view data;
    bool is_text = false;
    bool closed_by_host = false;
    // Close: the peer's code, 0 without one, wsbroker's own failure code, the host's code when
    // closed_by_host, or negative when the transport dropped.
    int32_t close_status = 0;
    // Open: peer address, request target (with query) and selected subprotocol ("" if none).
    std::string_view remote_addr;
    std::string_view path;
    std::string_view protocol;

    static Event from_c(const wsb_event &e) noexcept {
        Event ev;
        ev.type = static_cast<EventType>(e.kind);
        ev.conn = e.conn;
        if (e.data != nullptr) {
            ev.data = std::string_view(reinterpret_cast<const char *>(e.data), e.len);
        }
        ev.is_text = e.is_text;
        ev.closed_by_host = e.closed_by_host;
        ev.close_status = e.close_status;
        ev.remote_addr = view(e.remote_addr);
        ev.path = view(e.path);
        ev.protocol = view(e.protocol);
        return ev;
    }

  private:
    static std::string_view view(const char *s) noexcept { return s != nullptr ? std::string_view(s) : std::string_view(); }
};

namespace detail {

// Milliseconds for the uint32 setters: negative is refused, larger than 2^32-1 saturates.
inline bool ms_u32(std::chrono::milliseconds ms, uint32_t &out) noexcept {
    if (ms.count() < 0) {
        return false;
    }
    auto max = static_cast<std::chrono::milliseconds::rep>(std::numeric_limits<uint32_t>::max());
    out = static_cast<uint32_t>(ms.count() > max ? max : ms.count());
    return true;
}

// Poll timeout: negative means forever, anything over INT32_MAX saturates.
inline int32_t ms_i32(std::chrono::milliseconds ms) noexcept {
    if (ms.count() < 0) {
        return -1;
    }
    auto max = static_cast<std::chrono::milliseconds::rep>(std::numeric_limits<int32_t>::max());
    return static_cast<int32_t>(ms.count() > max ? max : ms.count());
}

inline bool has_nul(std::string_view s) noexcept { return s.find('\0') != std::string_view::npos; }

struct ConfigDeleter {
    void operator()(wsb_server_config *c) const noexcept { wsb_server_config_free(c); }
};
struct ServerDeleter {
    // A failure here (REENTRANT: destroyed from its own handler) cannot be reported from a
    // destructor; use Server::shutdown() to see it.
    void operator()(wsb_server *s) const noexcept { (void)wsb_server_free(s); }
};

// The calls shared by the owning Server and the borrowed ServerRef handlers receive.
template <class Derived> class ServerOps {
  public:
    // Sends one message (text must be UTF-8); data is copied. Ok or Backpressure mean queued.
    Result write(ConnId conn, std::string_view data, bool is_text) const noexcept {
        return Result(wsb_server_write(raw(), conn, reinterpret_cast<const uint8_t *>(data.data()), data.size(), is_text));
    }
    Result write(ConnId conn, const void *data, size_t len, bool is_text) const noexcept {
        return Result(wsb_server_write(raw(), conn, static_cast<const uint8_t *>(data), len, is_text));
    }
    Result write_text(ConnId conn, std::string_view text) const noexcept { return write(conn, text, true); }
    Result write_binary(ConnId conn, std::string_view bytes) const noexcept { return write(conn, bytes, false); }
    // At most 125 bytes of payload (else TooBig).
    Result ping(ConnId conn, std::string_view payload = {}) const noexcept {
        return Result(wsb_server_ping(raw(), conn, reinterpret_cast<const uint8_t *>(payload.data()), payload.size()));
    }
    // Starts the closing handshake; the Close event (closed_by_host) follows. The reason is at
    // most 123 bytes of UTF-8 (else TooBig) without NUL bytes (else InvalidArgument).
    Result close(ConnId conn, int32_t code = 1000, std::string_view reason = {}) const {
        if (has_nul(reason)) {
            return Code::InvalidArgument;
        }
        std::string r(reason);
        return Result(wsb_server_close(raw(), conn, code, r.c_str()));
    }
    bool is_valid(ConnId conn) const noexcept { return wsb_server_is_valid(raw(), conn); }
    // The listening port (the real one when port 0 was asked); 0 for an empty Server.
    uint16_t port() const noexcept { return wsb_server_port(raw()); }
    std::optional<Stats> stats() const noexcept {
        Stats st{};
        if (wsb_server_stats(raw(), &st) != WSB_RESULT_OK) {
            return std::nullopt;
        }
        return st;
    }
    // The detail of the last failed call on this server ("" if none).
    std::string last_error() const {
        size_t needed = 0;
        char small[256];
        if (wsb_server_last_error(raw(), small, sizeof small, &needed) == WSB_RESULT_OK) {
            return small;
        }
        std::string buf(needed, '\0');
        if (needed == 0 || wsb_server_last_error(raw(), buf.data(), buf.size(), &needed) != WSB_RESULT_OK) {
            return {};
        }
        buf.resize(needed - 1);
        return buf;
    }

  private:
    wsb_server *raw() const noexcept { return static_cast<const Derived *>(this)->get(); }
};

} // namespace detail

// Server settings (wsb_server_config). Setters chain; the first failure sticks and is what
// `status()` and `Server::try_create` return, with `error_detail()` from wsb_last_error.
class ServerConfig {
  public:
    ServerConfig() : cfg_(wsb_server_config_new()) {
        if (!cfg_) {
            status_ = Code::NullPointer;
            detail_ = "wsb_server_config_new: out of memory";
        }
    }

    // "IP:PORT", port 0 = ephemeral. Default "127.0.0.1:0".
    ServerConfig &bind(const std::string &addr) { return str(wsb_server_config_set_bind, addr, "bind"); }
    ServerConfig &threads(uint32_t n) { return apply(wsb_server_config_set_threads(cfg_.get(), n), "threads"); }
    ServerConfig &max_message_size(size_t bytes) {
        return apply(wsb_server_config_set_max_message_size(cfg_.get(), bytes), "max_message_size");
    }
    ServerConfig &max_frame_size(size_t bytes) {
        return apply(wsb_server_config_set_max_frame_size(cfg_.get(), bytes), "max_frame_size");
    }
    ServerConfig &handshake_timeout(std::chrono::milliseconds t) {
        return ms(wsb_server_config_set_handshake_timeout_ms, t, "handshake_timeout");
    }
    // 0 disables.
    ServerConfig &ping_interval(std::chrono::milliseconds t) {
        return ms(wsb_server_config_set_ping_interval_ms, t, "ping_interval");
    }
    // 0 disables.
    ServerConfig &idle_timeout(std::chrono::milliseconds t) {
        return ms(wsb_server_config_set_idle_timeout_ms, t, "idle_timeout");
    }
    ServerConfig &close_timeout(std::chrono::milliseconds t) {
        return ms(wsb_server_config_set_close_timeout_ms, t, "close_timeout");
    }
    ServerConfig &max_connections(uint32_t n) {
        return apply(wsb_server_config_set_max_connections(cfg_.get(), n), "max_connections");
    }
    ServerConfig &outbound_limits(size_t soft, size_t hard) {
        return apply(wsb_server_config_set_outbound_limits(cfg_.get(), soft, hard), "outbound_limits");
    }
    ServerConfig &refuse_on_overflow(bool refuse) {
        return apply(wsb_server_config_set_refuse_on_overflow(cfg_.get(), refuse), "refuse_on_overflow");
    }
    ServerConfig &allow_origin(const std::string &origin) {
        return str(wsb_server_config_add_allowed_origin, origin, "allow_origin");
    }
    ServerConfig &subprotocol(const std::string &protocol) {
        return str(wsb_server_config_add_subprotocol, protocol, "subprotocol");
    }
    ServerConfig &path(const std::string &p) { return str(wsb_server_config_set_path, p, "path"); }
    ServerConfig &any_path() { return apply(wsb_server_config_set_path(cfg_.get(), nullptr), "any_path"); }
    ServerConfig &event_queue_capacity(uint32_t n) {
        return apply(wsb_server_config_set_event_queue_capacity(cfg_.get(), n), "event_queue_capacity");
    }

    // Ok, or the first failed setter's result.
    Result status() const noexcept { return status_; }
    // "<setter>: <detail>" for the first failure, "" while status() is Ok.
    const std::string &error_detail() const noexcept { return detail_; }
    const wsb_server_config *get() const noexcept { return cfg_.get(); }

  private:
    ServerConfig &apply(wsb_result r, const char *what) {
        // After a failure (or without a config) later setters are not applied: the first
        // failure is the useful one.
        if (status_.ok() && r != WSB_RESULT_OK) {
            status_ = Result(r);
            detail_ = std::string(what) + ": " + wsb::last_error();
        }
        return *this;
    }
    ServerConfig &str(wsb_result (*set)(wsb_server_config *, const char *), const std::string &s, const char *what) {
        if (!status_.ok()) {
            return *this;
        }
        if (detail::has_nul(s)) {
            status_ = Code::InvalidArgument;
            detail_ = std::string(what) + ": embedded NUL";
            return *this;
        }
        return apply(set(cfg_.get(), s.c_str()), what);
    }
    ServerConfig &ms(wsb_result (*set)(wsb_server_config *, uint32_t), std::chrono::milliseconds t, const char *what) {
        if (!status_.ok()) {
            return *this;
        }
        uint32_t v = 0;
        if (!detail::ms_u32(t, v)) {
            status_ = Code::InvalidArgument;
            detail_ = std::string(what) + ": negative duration";
            return *this;
        }
        return apply(set(cfg_.get(), v), what);
    }

    std::unique_ptr<wsb_server_config, detail::ConfigDeleter> cfg_;
    Result status_;
    std::string detail_;
};

// A borrowed server pointer, as handlers receive it. Cheap to copy; valid while the Server
// lives (handlers never outlive it: the Server's destruction joins the I/O threads first).
class ServerRef : public detail::ServerOps<ServerRef> {
  public:
    explicit ServerRef(wsb_server *s) noexcept : s_(s) {}
    wsb_server *get() const noexcept { return s_; }

  private:
    wsb_server *s_;
};

class Server;

// Callback-mode handlers. Unset handlers ignore their event. See the top of this file for
// what happens to an exception a handler throws.
class ServerHandlers {
  public:
    using Handler = std::function<void(ServerRef, const Event &)>;
    using ExceptionHandler = std::function<void(ServerRef, const Event &, std::exception_ptr)>;

    ServerHandlers &on_open(Handler h) { return set(open_, std::move(h)); }
    ServerHandlers &on_message(Handler h) { return set(message_, std::move(h)); }
    ServerHandlers &on_ping(Handler h) { return set(ping_, std::move(h)); }
    ServerHandlers &on_pong(Handler h) { return set(pong_, std::move(h)); }
    ServerHandlers &on_drain(Handler h) { return set(drain_, std::move(h)); }
    ServerHandlers &on_close(Handler h) { return set(close_, std::move(h)); }
    ServerHandlers &on_exception(ExceptionHandler h) {
        exception_ = std::move(h);
        return *this;
    }

  private:
    friend class Server;

    ServerHandlers &set(Handler &slot, Handler h) {
        slot = std::move(h);
        return *this;
    }

    const Handler *pick(EventType t) const noexcept {
        switch (t) {
        case EventType::Open: return &open_;
        case EventType::Message: return &message_;
        case EventType::Ping: return &ping_;
        case EventType::Pong: return &pong_;
        case EventType::Drain: return &drain_;
        case EventType::Close: return &close_;
        }
        return nullptr; // an event type newer than this header
    }

    // The static trampoline wsb_server_new receives; userdata is a heap ServerHandlers.
    static void trampoline(void *userdata, wsb_server *server, const wsb_event *event) noexcept {
        if (userdata == nullptr || event == nullptr) {
            return;
        }
        const auto &self = *static_cast<const ServerHandlers *>(userdata);
        const Event ev = Event::from_c(*event);
        const Handler *h = self.pick(ev.type);
        if (h == nullptr || !*h) {
            return;
        }
#if WSB_HPP_CATCH_HANDLERS
        try {
            (*h)(ServerRef(server), ev);
        } catch (...) {
            self.failed(server, ev, std::current_exception());
        }
#else
        (*h)(ServerRef(server), ev);
#endif
    }

#if WSB_HPP_CATCH_HANDLERS
    void failed(wsb_server *server, const Event &ev, std::exception_ptr e) const noexcept {
        if (exception_) {
            try {
                exception_(ServerRef(server), ev, e);
            } catch (...) {
                // Nothing may cross into C, and there is nobody left to tell.
            }
            return;
        }
        if (ev.type != EventType::Close) {
            (void)wsb_server_close(server, ev.conn, 1011, "internal error");
        }
    }
#endif

    static void release(void *userdata) noexcept { delete static_cast<ServerHandlers *>(userdata); }

    Handler open_, message_, ping_, pong_, drain_, close_;
    ExceptionHandler exception_;
};

// A running server (wsb_server). Move-only; destruction closes every connection with 1001 and
// joins the I/O threads (do not destroy it from one of its own handlers: use shutdown() to see
// the Reentrant result instead of leaking silently).
class Server : public detail::ServerOps<Server> {
  public:
    Server() noexcept = default;

    // Callback mode: events go to `handlers` on an I/O thread.
    static Result try_create(const ServerConfig &config, ServerHandlers handlers, Server &out) {
        if (Result pre = precheck(config); !pre.ok()) {
            return pre;
        }
        auto *box = new ServerHandlers(std::move(handlers));
        wsb_server *s = nullptr;
        // wsb_server_new owns box from here: it calls release() on failure too.
        Result r(wsb_server_new(config.get(), &ServerHandlers::trampoline, box, &ServerHandlers::release, &s));
        if (r.ok()) {
            out.s_.reset(s);
        }
        return r;
    }
    // Queue mode: events wait for poll().
    static Result try_create(const ServerConfig &config, Server &out) {
        if (Result pre = precheck(config); !pre.ok()) {
            return pre;
        }
        wsb_server *s = nullptr;
        Result r(wsb_server_new(config.get(), nullptr, nullptr, nullptr, &s));
        if (r.ok()) {
            out.s_.reset(s);
        }
        return r;
    }

#if !defined(WSB_NO_EXCEPTIONS)
    // As try_create, throwing wsb::Error on failure.
    static Server create(const ServerConfig &config, ServerHandlers handlers) {
        Server s;
        check(try_create(config, std::move(handlers), s), config);
        return s;
    }
    static Server create(const ServerConfig &config) {
        Server s;
        check(try_create(config, s), config);
        return s;
    }
#endif

    // Queue mode: waits up to `timeout` (wsb::forever, or 0 to just check). The event's views
    // stay valid until the next poll on this server. Timeout, Interrupted, InvalidState
    // (callback mode) leave `out` untouched.
    Result poll(std::chrono::milliseconds timeout, Event &out) const noexcept {
        wsb_event raw{};
        Result r(wsb_server_poll(get(), detail::ms_i32(timeout), &raw));
        if (r.ok()) {
            out = Event::from_c(raw);
        }
        return r;
    }
    // As above; std::nullopt for every non-Ok result (timeout, interrupt, ...).
    std::optional<Event> poll(std::chrono::milliseconds timeout) const noexcept {
        Event ev;
        if (!poll(timeout, ev).ok()) {
            return std::nullopt;
        }
        return ev;
    }
    // Makes the current or next poll return Interrupted.
    Result interrupt() const noexcept { return Result(wsb_server_interrupt(get())); }

    // Stops and frees the server now. On Reentrant (called from its own handler) the server is
    // kept and still owned.
    Result shutdown() noexcept {
        Result r(wsb_server_free(s_.get()));
        if (r.code() != Code::Reentrant) {
            (void)s_.release();
        }
        return r;
    }

    explicit operator bool() const noexcept { return s_ != nullptr; }
    wsb_server *get() const noexcept { return s_.get(); }
    ServerRef ref() const noexcept { return ServerRef(s_.get()); }
    // Gives up ownership; the caller must call wsb_server_free once.
    wsb_server *release() noexcept { return s_.release(); }

  private:
    static Result precheck(const ServerConfig &config) noexcept {
        if (!config.status().ok()) {
            return config.status();
        }
        if (!version_matches()) {
            return Code::InvalidState;
        }
        return Code::Ok;
    }

#if !defined(WSB_NO_EXCEPTIONS)
    static void check(Result r, const ServerConfig &config) {
        if (r.ok()) {
            return;
        }
        std::string detail;
        if (!config.status().ok()) {
            detail = config.error_detail();
        } else if (!version_matches()) {
            detail = std::string("library ") + wsb_version() + " does not match header " WSB_VERSION_STRING;
        } else {
            detail = wsb::last_error();
        }
        throw Error(r, "wsb::Server::create", detail);
    }
#endif

    std::unique_ptr<wsb_server, detail::ServerDeleter> s_;
};

// ---- client ------------------------------------------------------------------------------------

// The wsb_client_event_type values.
enum class ClientEventType : uint32_t {
    Connected = WSB_CLIENT_EVENT_TYPE_CONNECTED,
    Message = WSB_CLIENT_EVENT_TYPE_MESSAGE,
    Pong = WSB_CLIENT_EVENT_TYPE_PONG,
    Sent = WSB_CLIENT_EVENT_TYPE_SENT,
    Drain = WSB_CLIENT_EVENT_TYPE_DRAIN,
    Closed = WSB_CLIENT_EVENT_TYPE_CLOSED,
    Error = WSB_CLIENT_EVENT_TYPE_ERROR,
    Reconnecting = WSB_CLIENT_EVENT_TYPE_RECONNECTING,
};

// One client event; every view is borrowed (see the lifetimes at the top of this file). Fields
// that do not apply to the type are empty/0/false.
struct ClientEvent {
    ClientEventType type = ClientEventType::Connected;
    // Message and pong payload, close reason, error message. For messages data.data()[data.size()]
    // is 0.
    std::string_view data;
    bool is_text = false;
    bool closed_by_host = false;
    // Closed: the server's code, 0 without one, wsbroker's own failure code, the host's code when
    // closed_by_host, or -1 when the transport dropped.
    int32_t close_status = 0;
    // Error: why the attempt failed (ConnectionRefused, CertificateInvalid, HandshakeFailed, ...).
    Result error;
    // Reconnecting: attempt number (from 1) and the delay before it.
    uint32_t attempt = 0;
    std::chrono::milliseconds delay{0};
    // Connected: the subprotocol the server chose ("" if none).
    std::string_view protocol;

    static ClientEvent from_c(const wsb_client_event &e) noexcept {
        ClientEvent ev;
        ev.type = static_cast<ClientEventType>(e.kind);
        if (e.data != nullptr) {
            ev.data = std::string_view(reinterpret_cast<const char *>(e.data), e.len);
        }
        ev.is_text = e.is_text;
        ev.closed_by_host = e.closed_by_host;
        ev.close_status = e.close_status;
        if (ev.type == ClientEventType::Error) {
            ev.error = Result(static_cast<wsb_result>(e.error));
        }
        ev.attempt = e.attempt;
        ev.delay = std::chrono::milliseconds(e.delay_ms);
        if (e.protocol != nullptr) {
            ev.protocol = std::string_view(e.protocol);
        }
        return ev;
    }
};

namespace detail {

struct ClientConfigDeleter {
    void operator()(wsb_client_config *c) const noexcept { wsb_client_config_free(c); }
};
struct ClientDeleter {
    // As for ServerDeleter: use Client::shutdown() to see a Reentrant result.
    void operator()(wsb_client *c) const noexcept { (void)wsb_client_free(c); }
};

// The calls shared by the owning Client and the borrowed ClientRef handlers receive.
template <class Derived> class ClientOps {
  public:
    // Sends one message (text must be UTF-8); data is copied. Ok or Backpressure mean queued;
    // NotConnected before the Connected event or after Closed.
    Result send(std::string_view data, bool is_text) const noexcept {
        return Result(wsb_client_send(raw(), reinterpret_cast<const uint8_t *>(data.data()), data.size(), is_text));
    }
    Result send(const void *data, size_t len, bool is_text) const noexcept {
        return Result(wsb_client_send(raw(), static_cast<const uint8_t *>(data), len, is_text));
    }
    Result send_text(std::string_view text) const noexcept { return send(text, true); }
    Result send_binary(std::string_view bytes) const noexcept { return send(bytes, false); }
    // At most 125 bytes of payload (else TooBig); a Pong event follows.
    Result ping(std::string_view payload = {}) const noexcept {
        return Result(wsb_client_ping(raw(), reinterpret_cast<const uint8_t *>(payload.data()), payload.size()));
    }
    // Starts the closing handshake and stops any reconnection; Closed follows. The reason is at
    // most 123 bytes of UTF-8 (else TooBig) without NUL bytes (else InvalidArgument).
    Result close(int32_t code = 1000, std::string_view reason = {}) const {
        if (has_nul(reason)) {
            return Code::InvalidArgument;
        }
        std::string r(reason);
        return Result(wsb_client_close(raw(), code, r.c_str()));
    }
    // Manual flow control: done with the last message; the next may be delivered.
    Result message_complete() const noexcept { return Result(wsb_client_message_complete(raw())); }
    // True between Connected and the end of that connection.
    bool is_connected() const noexcept { return wsb_client_is_connected(raw()); }
    // The detail of the last failed call on this client ("" if none).
    std::string last_error() const {
        size_t needed = 0;
        char small[256];
        if (wsb_client_last_error(raw(), small, sizeof small, &needed) == WSB_RESULT_OK) {
            return small;
        }
        std::string buf(needed, '\0');
        if (needed == 0 || wsb_client_last_error(raw(), buf.data(), buf.size(), &needed) != WSB_RESULT_OK) {
            return {};
        }
        buf.resize(needed - 1);
        return buf;
    }

  private:
    wsb_client *raw() const noexcept { return static_cast<const Derived *>(this)->get(); }
};

} // namespace detail

// Client settings (wsb_client_config) for a ws:// or wss:// URL. Setters chain; the first failure
// sticks and is what `status()` and `Client::try_create` return, with `error_detail()`. Defaults:
// 10 s connect timeout, system roots, proxy from the environment (never for loopback), no
// reconnection, automatic flow control, no Sent events, 16 MiB messages, 30 s pings.
class ClientConfig {
  public:
    explicit ClientConfig(const std::string &url) {
        if (detail::has_nul(url)) {
            status_ = Code::InvalidArgument;
            detail_ = "url: embedded NUL";
            return;
        }
        cfg_.reset(wsb_client_config_new(url.c_str()));
        if (!cfg_) {
            status_ = Code::InvalidArgument;
            detail_ = "url: not UTF-8";
        }
    }

    ClientConfig &header(const std::string &name, const std::string &value) {
        if (!status_.ok()) {
            return *this;
        }
        if (detail::has_nul(name) || detail::has_nul(value)) {
            return fail("header: embedded NUL");
        }
        return apply(wsb_client_config_add_header(cfg_.get(), name.c_str(), value.c_str()), "header");
    }
    // Offered in the order added.
    ClientConfig &subprotocol(const std::string &p) { return str(wsb_client_config_add_subprotocol, p, "subprotocol"); }
    ClientConfig &connect_timeout(std::chrono::milliseconds t) {
        return ms(wsb_client_config_set_connect_timeout_ms, t, "connect_timeout");
    }
    // Also trust the CA certificates in this PEM file (read by Client::try_create).
    ClientConfig &ca_file(const std::string &path) { return str(wsb_client_config_set_ca_file, path, "ca_file"); }
    ClientConfig &system_roots(bool enable) {
        return apply(wsb_client_config_set_system_roots(cfg_.get(), enable), "system_roots");
    }
    ClientConfig &client_cert(const std::string &chain_pem, const std::string &key_pem) {
        if (!status_.ok()) {
            return *this;
        }
        if (detail::has_nul(chain_pem) || detail::has_nul(key_pem)) {
            return fail("client_cert: embedded NUL");
        }
        return apply(wsb_client_config_set_client_cert(cfg_.get(), chain_pem.c_str(), key_pem.c_str()), "client_cert");
    }
    // Accept any server certificate. For development only.
    ClientConfig &insecure(bool enable) { return apply(wsb_client_config_set_insecure(cfg_.get(), enable), "insecure"); }
    // http://[user:password@]host:port, tunnelled with CONNECT; "" disables proxies altogether.
    ClientConfig &proxy(const std::string &url) { return str(wsb_client_config_set_proxy, url, "proxy"); }
    // Back to the default: the environment decides.
    ClientConfig &proxy_from_environment() { return apply(wsb_client_config_set_proxy(cfg_.get(), nullptr), "proxy"); }
    // Delays start at `initial`, double up to `max` (±20 % jitter); `max_attempts` in a row (0: no limit).
    ClientConfig &reconnect(std::chrono::milliseconds initial, std::chrono::milliseconds max, uint32_t max_attempts = 0) {
        if (!status_.ok()) {
            return *this;
        }
        uint32_t i = 0, m = 0;
        if (!detail::ms_u32(initial, i) || !detail::ms_u32(max, m)) {
            return fail("reconnect: negative duration");
        }
        return apply(wsb_client_config_set_reconnect(cfg_.get(), true, i, m, max_attempts), "reconnect");
    }
    ClientConfig &no_reconnect() { return apply(wsb_client_config_set_reconnect(cfg_.get(), false, 0, 0, 0), "reconnect"); }
    // Hold each further message until message_complete().
    ClientConfig &manual_complete(bool manual) {
        return apply(wsb_client_config_set_manual_complete(cfg_.get(), manual), "manual_complete");
    }
    // A Sent event per message once written to the socket.
    ClientConfig &send_results(bool enable) {
        return apply(wsb_client_config_set_send_results(cfg_.get(), enable), "send_results");
    }
    ClientConfig &max_message_size(size_t bytes) {
        return apply(wsb_client_config_set_max_message_size(cfg_.get(), bytes), "max_message_size");
    }
    // 0 disables.
    ClientConfig &ping_interval(std::chrono::milliseconds t) {
        return ms(wsb_client_config_set_ping_interval_ms, t, "ping_interval");
    }

    Result status() const noexcept { return status_; }
    const std::string &error_detail() const noexcept { return detail_; }
    const wsb_client_config *get() const noexcept { return cfg_.get(); }

  private:
    ClientConfig &fail(const char *detail) {
        status_ = Code::InvalidArgument;
        detail_ = detail;
        return *this;
    }
    ClientConfig &apply(wsb_result r, const char *what) {
        if (status_.ok() && r != WSB_RESULT_OK) {
            status_ = Result(r);
            detail_ = std::string(what) + ": " + wsb::last_error();
        }
        return *this;
    }
    ClientConfig &str(wsb_result (*set)(wsb_client_config *, const char *), const std::string &s, const char *what) {
        if (!status_.ok()) {
            return *this;
        }
        if (detail::has_nul(s)) {
            status_ = Code::InvalidArgument;
            detail_ = std::string(what) + ": embedded NUL";
            return *this;
        }
        return apply(set(cfg_.get(), s.c_str()), what);
    }
    ClientConfig &ms(wsb_result (*set)(wsb_client_config *, uint32_t), std::chrono::milliseconds t, const char *what) {
        if (!status_.ok()) {
            return *this;
        }
        uint32_t v = 0;
        if (!detail::ms_u32(t, v)) {
            status_ = Code::InvalidArgument;
            detail_ = std::string(what) + ": negative duration";
            return *this;
        }
        return apply(set(cfg_.get(), v), what);
    }

    std::unique_ptr<wsb_client_config, detail::ClientConfigDeleter> cfg_;
    Result status_;
    std::string detail_;
};

// A borrowed client pointer, as handlers receive it; valid while the Client lives.
class ClientRef : public detail::ClientOps<ClientRef> {
  public:
    explicit ClientRef(wsb_client *c) noexcept : c_(c) {}
    wsb_client *get() const noexcept { return c_; }

  private:
    wsb_client *c_;
};

class Client;

// Callback-mode handlers. Unset handlers ignore their event. An exception a handler throws goes
// to on_exception if set; otherwise the connection is closed with 1011 "internal error".
class ClientHandlers {
  public:
    using Handler = std::function<void(ClientRef, const ClientEvent &)>;
    using ExceptionHandler = std::function<void(ClientRef, const ClientEvent &, std::exception_ptr)>;

    ClientHandlers &on_connected(Handler h) { return set(connected_, std::move(h)); }
    ClientHandlers &on_message(Handler h) { return set(message_, std::move(h)); }
    ClientHandlers &on_pong(Handler h) { return set(pong_, std::move(h)); }
    ClientHandlers &on_sent(Handler h) { return set(sent_, std::move(h)); }
    ClientHandlers &on_drain(Handler h) { return set(drain_, std::move(h)); }
    ClientHandlers &on_closed(Handler h) { return set(closed_, std::move(h)); }
    // A connection attempt failed before it opened; ev.error says why.
    ClientHandlers &on_error(Handler h) { return set(error_, std::move(h)); }
    ClientHandlers &on_reconnecting(Handler h) { return set(reconnecting_, std::move(h)); }
    ClientHandlers &on_exception(ExceptionHandler h) {
        exception_ = std::move(h);
        return *this;
    }

  private:
    friend class Client;

    ClientHandlers &set(Handler &slot, Handler h) {
        slot = std::move(h);
        return *this;
    }

    const Handler *pick(ClientEventType t) const noexcept {
        switch (t) {
        case ClientEventType::Connected: return &connected_;
        case ClientEventType::Message: return &message_;
        case ClientEventType::Pong: return &pong_;
        case ClientEventType::Sent: return &sent_;
        case ClientEventType::Drain: return &drain_;
        case ClientEventType::Closed: return &closed_;
        case ClientEventType::Error: return &error_;
        case ClientEventType::Reconnecting: return &reconnecting_;
        }
        return nullptr; // an event type newer than this header
    }

    static void trampoline(void *userdata, wsb_client *client, const wsb_client_event *event) noexcept {
        if (userdata == nullptr || event == nullptr) {
            return;
        }
        const auto &self = *static_cast<const ClientHandlers *>(userdata);
        const ClientEvent ev = ClientEvent::from_c(*event);
        const Handler *h = self.pick(ev.type);
        if (h == nullptr || !*h) {
            return;
        }
#if WSB_HPP_CATCH_HANDLERS
        try {
            (*h)(ClientRef(client), ev);
        } catch (...) {
            self.failed(client, ev, std::current_exception());
        }
#else
        (*h)(ClientRef(client), ev);
#endif
    }

#if WSB_HPP_CATCH_HANDLERS
    void failed(wsb_client *client, const ClientEvent &ev, std::exception_ptr e) const noexcept {
        if (exception_) {
            try {
                exception_(ClientRef(client), ev, e);
            } catch (...) {
                // Nothing may cross into C, and there is nobody left to tell.
            }
            return;
        }
        if (wsb_client_is_connected(client)) {
            (void)wsb_client_close(client, 1011, "internal error");
        }
    }
#endif

    static void release(void *userdata) noexcept { delete static_cast<ClientHandlers *>(userdata); }

    Handler connected_, message_, pong_, sent_, drain_, closed_, error_, reconnecting_;
    ExceptionHandler exception_;
};

// A WebSocket client (wsb_client). It starts connecting in the background on creation and never
// blocks on the network; a failed attempt is an Error event. Move-only; destruction closes the
// connection with 1000 and joins the client's thread (not from its own handlers: shutdown() then
// returns Reentrant instead).
class Client : public detail::ClientOps<Client> {
  public:
    Client() noexcept = default;

    // Callback mode: events go to `handlers` on the client's thread.
    static Result try_create(const ClientConfig &config, ClientHandlers handlers, Client &out) {
        if (Result pre = precheck(config); !pre.ok()) {
            return pre;
        }
        auto *box = new ClientHandlers(std::move(handlers));
        wsb_client *c = nullptr;
        // wsb_client_new owns box from here: it calls release() on failure too.
        Result r(wsb_client_new(config.get(), &ClientHandlers::trampoline, box, &ClientHandlers::release, &c));
        if (r.ok()) {
            out.c_.reset(c);
        }
        return r;
    }
    // Queue mode: events wait for poll().
    static Result try_create(const ClientConfig &config, Client &out) {
        if (Result pre = precheck(config); !pre.ok()) {
            return pre;
        }
        wsb_client *c = nullptr;
        Result r(wsb_client_new(config.get(), nullptr, nullptr, nullptr, &c));
        if (r.ok()) {
            out.c_.reset(c);
        }
        return r;
    }

#if !defined(WSB_NO_EXCEPTIONS)
    // As try_create, throwing wsb::Error on failure.
    static Client create(const ClientConfig &config, ClientHandlers handlers) {
        Client c;
        check(try_create(config, std::move(handlers), c), config);
        return c;
    }
    static Client create(const ClientConfig &config) {
        Client c;
        check(try_create(config, c), config);
        return c;
    }
#endif

    // Queue mode: waits up to `timeout` (wsb::forever, or 0 to just check). The event's views stay
    // valid until the next poll on this client. Timeout, Interrupted, InvalidState (callback
    // mode) leave `out` untouched. In automatic flow control, polling a message completes it.
    Result poll(std::chrono::milliseconds timeout, ClientEvent &out) const noexcept {
        wsb_client_event raw{};
        Result r(wsb_client_poll(get(), detail::ms_i32(timeout), &raw));
        if (r.ok()) {
            out = ClientEvent::from_c(raw);
        }
        return r;
    }
    // As above; std::nullopt for every non-Ok result (timeout, interrupt, ...).
    std::optional<ClientEvent> poll(std::chrono::milliseconds timeout) const noexcept {
        ClientEvent ev;
        if (!poll(timeout, ev).ok()) {
            return std::nullopt;
        }
        return ev;
    }
    // Queue mode: makes the current or next poll return Interrupted.
    Result interrupt() const noexcept { return Result(wsb_client_interrupt(get())); }

    // Closes (1000) and frees the client now. On Reentrant (called from its own handler) the
    // client is kept and still owned.
    Result shutdown() noexcept {
        Result r(wsb_client_free(c_.get()));
        if (r.code() != Code::Reentrant) {
            (void)c_.release();
        }
        return r;
    }

    explicit operator bool() const noexcept { return c_ != nullptr; }
    wsb_client *get() const noexcept { return c_.get(); }
    ClientRef ref() const noexcept { return ClientRef(c_.get()); }
    // Gives up ownership; the caller must call wsb_client_free once.
    wsb_client *release() noexcept { return c_.release(); }

  private:
    static Result precheck(const ClientConfig &config) noexcept {
        if (!config.status().ok()) {
            return config.status();
        }
        if (!version_matches()) {
            return Code::InvalidState;
        }
        return Code::Ok;
    }

#if !defined(WSB_NO_EXCEPTIONS)
    static void check(Result r, const ClientConfig &config) {
        if (r.ok()) {
            return;
        }
        std::string detail;
        if (!config.status().ok()) {
            detail = config.error_detail();
        } else if (!version_matches()) {
            detail = std::string("library ") + wsb_version() + " does not match header " WSB_VERSION_STRING;
        } else {
            detail = wsb::last_error();
        }
        throw Error(r, "wsb::Client::create", detail);
    }
#endif

    std::unique_ptr<wsb_client, detail::ClientDeleter> c_;
};

} // namespace wsb

#endif // WSBROKER_HPP
