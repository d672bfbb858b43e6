// wsbroker.hpp: header-only C++17 binding of the wsbroker C API (include/wsbroker.h).
//
// One move-only RAII class per C handle (`ServerConfig`, `Server`, `ClientConfig`, `Client`,
// `AppWebsocketClientConfig`, `AppWebsocketClient`, `AppServiceConfig`, `AppService`,
// `BrokerConfig`, `Broker`),
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

// Reads a string through a `(char *buf, size_t len, size_t *needed)` call that reports the size it
// needs (NUL included) with BufferTooSmall.
template <class F> std::string read_sized(F &&call) {
    size_t needed = 0;
    char small[256];
    if (call(small, sizeof small, &needed) == WSB_RESULT_OK) {
        return small;
    }
    std::string buf(needed, '\0');
    if (needed == 0 || call(buf.data(), buf.size(), &needed) != WSB_RESULT_OK) {
        return {};
    }
    buf.resize(needed - 1);
    return buf;
}

// The setter chain every *Config class builds on: the first failure sticks (status(),
// error_detail()) and later setters are not applied, so the first failure is the one reported.
// C is the C config type, Deleter frees it.
template <class Derived, class C, class Deleter> class ConfigBase {
  public:
    // Ok, or the first failed setter's result.
    Result status() const noexcept { return status_; }
    // "<setter>: <detail>" for the first failure, "" while status() is Ok.
    const std::string &error_detail() const noexcept { return detail_; }
    const C *get() const noexcept { return cfg_.get(); }

  protected:
    ConfigBase() = default;
    explicit ConfigBase(C *cfg) : cfg_(cfg) {}

    // A failure found before asking the library: InvalidArgument with this exact detail.
    Derived &fail(std::string detail) {
        status_ = Code::InvalidArgument;
        detail_ = std::move(detail);
        return self();
    }
    Derived &apply(wsb_result r, const char *what) {
        if (status_.ok() && r != WSB_RESULT_OK) {
            status_ = Result(r);
            detail_ = std::string(what) + ": " + wsb::last_error();
        }
        return self();
    }
    Derived &str(wsb_result (*set)(C *, const char *), const std::string &s, const char *what) {
        if (!status_.ok()) {
            return self();
        }
        if (has_nul(s)) {
            return fail(std::string(what) + ": embedded NUL");
        }
        return apply(set(cfg_.get(), s.c_str()), what);
    }
    Derived &str2(wsb_result (*set)(C *, const char *, const char *), const std::string &a, const std::string &b,
                  const char *what) {
        if (!status_.ok()) {
            return self();
        }
        if (has_nul(a) || has_nul(b)) {
            return fail(std::string(what) + ": embedded NUL");
        }
        return apply(set(cfg_.get(), a.c_str(), b.c_str()), what);
    }
    Derived &ms(wsb_result (*set)(C *, uint32_t), std::chrono::milliseconds t, const char *what) {
        if (!status_.ok()) {
            return self();
        }
        uint32_t v = 0;
        if (!ms_u32(t, v)) {
            return fail(std::string(what) + ": negative duration");
        }
        return apply(set(cfg_.get(), v), what);
    }

    std::unique_ptr<C, Deleter> cfg_;
    Result status_;
    std::string detail_;

  private:
    Derived &self() noexcept { return static_cast<Derived &>(*this); }
};

// The C setters of the two client configurations (wsb_client_config, wsb_appws_client_config),
// for ConnectionConfig.
struct ClientConnectionApi {
    static constexpr auto add_header = wsb_client_config_add_header;
    static constexpr auto set_connect_timeout_ms = wsb_client_config_set_connect_timeout_ms;
    static constexpr auto set_ca_file = wsb_client_config_set_ca_file;
    static constexpr auto set_system_roots = wsb_client_config_set_system_roots;
    static constexpr auto set_client_cert = wsb_client_config_set_client_cert;
    static constexpr auto set_insecure = wsb_client_config_set_insecure;
    static constexpr auto set_proxy = wsb_client_config_set_proxy;
};
struct AppwsClientConnectionApi {
    static constexpr auto add_header = wsb_appws_client_config_add_header;
    static constexpr auto set_connect_timeout_ms = wsb_appws_client_config_set_connect_timeout_ms;
    static constexpr auto set_ca_file = wsb_appws_client_config_set_ca_file;
    static constexpr auto set_system_roots = wsb_appws_client_config_set_system_roots;
    static constexpr auto set_client_cert = wsb_appws_client_config_set_client_cert;
    static constexpr auto set_insecure = wsb_appws_client_config_set_insecure;
    static constexpr auto set_proxy = wsb_appws_client_config_set_proxy;
};

// The connection settings ClientConfig and AppWebsocketClientConfig share: upgrade headers,
// connect timeout, TLS trust, client certificate and proxy, applied through Api's setters.
template <class Derived, class C, class Deleter, class Api> class ConnectionConfig : public ConfigBase<Derived, C, Deleter> {
  public:
    // A request header of the WebSocket upgrade (name: token characters; value without CR/LF).
    Derived &header(const std::string &name, const std::string &value) {
        return this->str2(Api::add_header, name, value, "header");
    }
    // TCP connect, proxy, TLS and upgrade together. Default 10 s.
    Derived &connect_timeout(std::chrono::milliseconds t) { return this->ms(Api::set_connect_timeout_ms, t, "connect_timeout"); }
    // Also trust the CA certificates in this PEM file (read at creation).
    Derived &ca_file(const std::string &path) { return this->str(Api::set_ca_file, path, "ca_file"); }
    // Trust the operating system's root certificates (default true). Off and no ca_file: a wss://
    // URL is refused at creation.
    Derived &system_roots(bool enable) {
        return this->apply(Api::set_system_roots(this->cfg_.get(), enable), "system_roots");
    }
    // Present this PEM certificate chain and key (read at creation) when the server asks for one.
    Derived &client_cert(const std::string &chain_pem, const std::string &key_pem) {
        return this->str2(Api::set_client_cert, chain_pem, key_pem, "client_cert");
    }
    // Accept any server certificate. For development only.
    Derived &insecure(bool enable) { return this->apply(Api::set_insecure(this->cfg_.get(), enable), "insecure"); }
    // http://[user:password@]host:port, tunnelled with CONNECT; "" disables proxies altogether.
    Derived &proxy(const std::string &url) { return this->str(Api::set_proxy, url, "proxy"); }
    // Back to the default: the environment decides (never for loopback hosts).
    Derived &proxy_from_environment() { return this->apply(Api::set_proxy(this->cfg_.get(), nullptr), "proxy"); }
};

// The callback-mode handler table every *Handlers class builds on: Derived holds one Handler per
// event type and provides `pick` (the slot for a type, nullptr for a type newer than this header)
// and `unhandled` (what an escaped exception does when no on_exception is set). `trampoline` and
// `release` are what the C constructor receives; userdata is a heap Derived.
template <class Derived, class Ref, class Raw, class Ev, class CEv> class HandlerTable {
  public:
    using Handler = std::function<void(Ref, const Ev &)>;
    using ExceptionHandler = std::function<void(Ref, const Ev &, std::exception_ptr)>;

    Derived &on_exception(ExceptionHandler h) {
        exception_ = std::move(h);
        return static_cast<Derived &>(*this);
    }

  protected:
    Derived &set(Handler &slot, Handler h) {
        slot = std::move(h);
        return static_cast<Derived &>(*this);
    }

  private:
    template <class, class> friend class Owner;

    static void trampoline(void *userdata, Raw *raw, const CEv *event) noexcept {
        if (userdata == nullptr || event == nullptr) {
            return;
        }
        const auto &self = *static_cast<const Derived *>(userdata);
        const Ev ev = Ev::from_c(*event);
        const Handler *h = self.pick(ev.type);
        if (h == nullptr || !*h) {
            return;
        }
#if WSB_HPP_CATCH_HANDLERS
        try {
            (*h)(Ref(raw), ev);
        } catch (...) {
            self.failed(raw, ev, std::current_exception());
        }
#else
        (*h)(Ref(raw), ev);
#endif
    }

#if WSB_HPP_CATCH_HANDLERS
    void failed(Raw *raw, const Ev &ev, std::exception_ptr e) const noexcept {
        if (exception_) {
            try {
                exception_(Ref(raw), ev, e);
            } catch (...) {
                // Nothing may cross into C, and there is nobody left to tell.
            }
            return;
        }
        Derived::unhandled(raw, ev);
    }
#endif

    static void release(void *userdata) noexcept { delete static_cast<Derived *>(userdata); }

    ExceptionHandler exception_;
};

// The owning side of one C handle, shared by Server, Client, AppWebsocketClient, AppService and
// Broker: creation in callback or queue mode, shutdown, and the ownership accessors. Traits names
// the C handle (Raw), the public Config, Handlers and Ref classes, the constructor (make) and
// destructor (destroy), the name create() reports (what), and whether a create() failure spells
// out a header/library version mismatch (explain_version) or leaves it to wsb_last_error.
template <class Derived, class Traits> class Owner {
    using Raw = typename Traits::Raw;
    using Config = typename Traits::Config;
    using Handlers = typename Traits::Handlers;
    using Ref = typename Traits::Ref;

  public:
    // Callback mode: events go to `handlers` on the handle's own thread(s).
    static Result try_create(const Config &config, Handlers handlers, Derived &out) {
        if (Result pre = precheck(config); !pre.ok()) {
            return pre;
        }
        auto *box = new Handlers(std::move(handlers));
        Raw *h = nullptr;
        // The C constructor owns box from here: it calls release() on failure too.
        Result r(Traits::make(config.get(), &Handlers::trampoline, box, &Handlers::release, &h));
        if (r.ok()) {
            static_cast<Owner &>(out).h_.reset(h);
        }
        return r;
    }
    // Without handlers: events wait for poll() (a Broker's in-process services receive nothing).
    static Result try_create(const Config &config, Derived &out) {
        if (Result pre = precheck(config); !pre.ok()) {
            return pre;
        }
        Raw *h = nullptr;
        Result r(Traits::make(config.get(), nullptr, nullptr, nullptr, &h));
        if (r.ok()) {
            static_cast<Owner &>(out).h_.reset(h);
        }
        return r;
    }

#if !defined(WSB_NO_EXCEPTIONS)
    // As try_create, throwing wsb::Error on failure.
    static Derived create(const Config &config, Handlers handlers) {
        Derived d;
        check(try_create(config, std::move(handlers), d), config);
        return d;
    }
    static Derived create(const Config &config) {
        Derived d;
        check(try_create(config, d), config);
        return d;
    }
#endif

    // Stops and frees the handle now. On Reentrant (called from its own handler) it is kept and
    // still owned.
    Result shutdown() noexcept {
        Result r(Traits::destroy(h_.get()));
        if (r.code() != Code::Reentrant) {
            (void)h_.release();
        }
        return r;
    }

    explicit operator bool() const noexcept { return h_ != nullptr; }
    Raw *get() const noexcept { return h_.get(); }
    Ref ref() const noexcept { return Ref(h_.get()); }
    // Gives up ownership; the caller must free the handle once.
    Raw *release() noexcept { return h_.release(); }

  private:
    static Result precheck(const Config &config) noexcept {
        if (!config.status().ok()) {
            return config.status();
        }
        return version_matches() ? Result(Code::Ok) : Result(Code::InvalidState);
    }

#if !defined(WSB_NO_EXCEPTIONS)
    static void check(Result r, const Config &config) {
        if (r.ok()) {
            return;
        }
        std::string detail;
        if (!config.status().ok()) {
            detail = config.error_detail();
        } else if (Traits::explain_version && !version_matches()) {
            detail = std::string("library ") + wsb_version() + " does not match header " WSB_VERSION_STRING;
        } else {
            detail = wsb::last_error();
        }
        throw Error(r, Traits::what, detail);
    }
#endif

    // A failure here (Reentrant: destroyed from its own handler) cannot be reported from a
    // destructor; shutdown() shows it.
    struct Deleter {
        void operator()(Raw *h) const noexcept { (void)Traits::destroy(h); }
    };
    std::unique_ptr<Raw, Deleter> h_;
};

// Queue mode's poll and interrupt, for the handles that have them (Traits::poll, interrupt, Ev
// and CEv). Timeout, Interrupted and InvalidState (callback mode) leave `out` untouched; the
// event's views stay valid until the next poll on the same handle.
template <class Derived, class Traits> class Queue {
    using Ev = typename Traits::Ev;

  public:
    // Waits up to `timeout` (wsb::forever, or 0 to just check).
    Result poll(std::chrono::milliseconds timeout, Ev &out) const noexcept {
        typename Traits::CEv raw{};
        Result r(Traits::poll(self().get(), ms_i32(timeout), &raw));
        if (r.ok()) {
            out = Ev::from_c(raw);
        }
        return r;
    }
    // As above; std::nullopt for every non-Ok result (timeout, interrupt, ...).
    std::optional<Ev> poll(std::chrono::milliseconds timeout) const noexcept {
        Ev ev;
        if (!poll(timeout, ev).ok()) {
            return std::nullopt;
        }
        return ev;
    }
    // Makes the current or next poll return Interrupted.
    Result interrupt() const noexcept { return Result(Traits::interrupt(self().get())); }

  private:
    const Derived &self() const noexcept { return static_cast<const Derived &>(*this); }
};

struct ConfigDeleter {
    void operator()(wsb_server_config *c) const noexcept { wsb_server_config_free(c); }
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
        return read_sized([this](char *b, size_t n, size_t *need) { return wsb_server_last_error(raw(), b, n, need); });
    }

  private:
    wsb_server *raw() const noexcept { return static_cast<const Derived *>(this)->get(); }
};

} // namespace detail

// Server settings (wsb_server_config). Setters chain; the first failure sticks and is what
// `status()` and `Server::try_create` return, with `error_detail()` from wsb_last_error.
class ServerConfig : public detail::ConfigBase<ServerConfig, wsb_server_config, detail::ConfigDeleter> {
  public:
    ServerConfig() : ConfigBase(wsb_server_config_new()) {
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
    // Serve wss:// with this PEM certificate chain (leaf first) and its PEM private key, read now:
    // a bad file makes status() InvalidArgument with error_detail() naming it.
    ServerConfig &tls(const std::string &cert_chain_pem_path, const std::string &key_pem_path) {
        return str2(wsb_server_config_set_tls, cert_chain_pem_path, key_pem_path, "tls");
    }
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
class ServerHandlers : public detail::HandlerTable<ServerHandlers, ServerRef, wsb_server, Event, wsb_event> {
  public:
    ServerHandlers &on_open(Handler h) { return set(open_, std::move(h)); }
    ServerHandlers &on_message(Handler h) { return set(message_, std::move(h)); }
    ServerHandlers &on_ping(Handler h) { return set(ping_, std::move(h)); }
    ServerHandlers &on_pong(Handler h) { return set(pong_, std::move(h)); }
    ServerHandlers &on_drain(Handler h) { return set(drain_, std::move(h)); }
    ServerHandlers &on_close(Handler h) { return set(close_, std::move(h)); }

  private:
    friend HandlerTable;

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

    // An escaped exception closes the event's connection, unless the event is its Close.
    static void unhandled(wsb_server *server, const Event &ev) noexcept {
        if (ev.type != EventType::Close) {
            (void)wsb_server_close(server, ev.conn, 1011, "internal error");
        }
    }

    Handler open_, message_, ping_, pong_, drain_, close_;
};

namespace detail {
struct ServerTraits {
    using Raw = wsb_server;
    using Config = ServerConfig;
    using Handlers = ServerHandlers;
    using Ref = ServerRef;
    static constexpr auto make = wsb_server_new;
    static constexpr auto destroy = wsb_server_free;
    static constexpr const char *what = "wsb::Server::create";
    static constexpr bool explain_version = true;
    using Ev = Event;
    using CEv = wsb_event;
    static constexpr auto poll = wsb_server_poll;
    static constexpr auto interrupt = wsb_server_interrupt;
};
} // namespace detail

// A running server (wsb_server). Callback mode (try_create/create with ServerHandlers): events go
// to the handlers on an I/O thread. Queue mode (without): events wait for poll(). Move-only;
// destruction closes every connection with 1001 and joins the I/O threads (do not destroy it from
// one of its own handlers: use shutdown() to see the Reentrant result instead of leaking silently).
class Server : public detail::ServerOps<Server>,
               public detail::Owner<Server, detail::ServerTraits>,
               public detail::Queue<Server, detail::ServerTraits> {
  public:
    Server() noexcept = default;
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
    GaveUp = WSB_CLIENT_EVENT_TYPE_GAVE_UP,
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
    // Reconnecting: attempt number (from 1) and the delay before it. GaveUp: the attempts made.
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
        return read_sized([this](char *b, size_t n, size_t *need) { return wsb_client_last_error(raw(), b, n, need); });
    }

  private:
    wsb_client *raw() const noexcept { return static_cast<const Derived *>(this)->get(); }
};

} // namespace detail

// Client settings (wsb_client_config) for a ws:// or wss:// URL; the connection settings (header,
// connect_timeout, ca_file, system_roots, client_cert, insecure, proxy) are detail::ConnectionConfig's.
// Setters chain; the first failure sticks and is what `status()` and `Client::try_create` return,
// with `error_detail()`. Defaults: 10 s connect timeout, system roots, proxy from the environment
// (never for loopback), no reconnection, automatic flow control, no Sent events, 16 MiB messages,
// 30 s pings.
class ClientConfig : public detail::ConnectionConfig<ClientConfig, wsb_client_config, detail::ClientConfigDeleter,
                                                     detail::ClientConnectionApi> {
  public:
    explicit ClientConfig(const std::string &url) {
        if (detail::has_nul(url)) {
            fail("url: embedded NUL");
            return;
        }
        cfg_.reset(wsb_client_config_new(url.c_str()));
        if (!cfg_) {
            fail("url: not UTF-8");
        }
    }

    // Offered in the order added.
    ClientConfig &subprotocol(const std::string &p) { return str(wsb_client_config_add_subprotocol, p, "subprotocol"); }
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
class ClientHandlers : public detail::HandlerTable<ClientHandlers, ClientRef, wsb_client, ClientEvent, wsb_client_event> {
  public:
    ClientHandlers &on_connected(Handler h) { return set(connected_, std::move(h)); }
    ClientHandlers &on_message(Handler h) { return set(message_, std::move(h)); }
    ClientHandlers &on_pong(Handler h) { return set(pong_, std::move(h)); }
    ClientHandlers &on_sent(Handler h) { return set(sent_, std::move(h)); }
    ClientHandlers &on_drain(Handler h) { return set(drain_, std::move(h)); }
    ClientHandlers &on_closed(Handler h) { return set(closed_, std::move(h)); }
    // A connection attempt failed before it opened; ev.error says why.
    ClientHandlers &on_error(Handler h) { return set(error_, std::move(h)); }
    ClientHandlers &on_reconnecting(Handler h) { return set(reconnecting_, std::move(h)); }
    // Reconnection stopped after ev.attempt failed attempts in a row; nothing follows.
    ClientHandlers &on_gave_up(Handler h) { return set(gave_up_, std::move(h)); }

  private:
    friend HandlerTable;

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
        case ClientEventType::GaveUp: return &gave_up_;
        }
        return nullptr; // an event type newer than this header
    }

    static void unhandled(wsb_client *client, const ClientEvent &) noexcept {
        if (wsb_client_is_connected(client)) {
            (void)wsb_client_close(client, 1011, "internal error");
        }
    }

    Handler connected_, message_, pong_, sent_, drain_, closed_, error_, reconnecting_, gave_up_;
};

namespace detail {
struct ClientTraits {
    using Raw = wsb_client;
    using Config = ClientConfig;
    using Handlers = ClientHandlers;
    using Ref = ClientRef;
    static constexpr auto make = wsb_client_new;
    static constexpr auto destroy = wsb_client_free;
    static constexpr const char *what = "wsb::Client::create";
    static constexpr bool explain_version = true;
    using Ev = ClientEvent;
    using CEv = wsb_client_event;
    static constexpr auto poll = wsb_client_poll;
    static constexpr auto interrupt = wsb_client_interrupt;
};
} // namespace detail

// A WebSocket client (wsb_client). It starts connecting in the background on creation and never
// blocks on the network; a failed attempt is an Error event. Callback-mode events come on the
// client's thread; in queue mode with automatic flow control, polling a message completes it.
// Move-only; destruction closes the connection with 1000 and joins the client's thread (not from
// its own handlers: shutdown() then returns Reentrant instead).
class Client : public detail::ClientOps<Client>,
               public detail::Owner<Client, detail::ClientTraits>,
               public detail::Queue<Client, detail::ClientTraits> {
  public:
    Client() noexcept = default;
};

// ---- AppWebsocket (PROTOCOLS.md §5) -------------------------------------------------------------

namespace detail {

// A NUL-terminated copy of a view, refused (false) when it holds a NUL itself.
inline bool cstr(std::string_view s, std::string &out) {
    if (has_nul(s)) {
        return false;
    }
    out.assign(s.data(), s.size());
    return true;
}

// Runs a crypto call into a buffer of `size` bytes and keeps the first `keep` bytes.
template <class F> Result crypto_out(size_t size, size_t keep, std::string &out, F &&call) {
    std::string buf(size, '\0');
    Result r(call(buf.data(), buf.size()));
    if (r.ok()) {
        buf.resize(keep);
        out = std::move(buf);
    }
    return r;
}

} // namespace detail

// The connection-free §5.1/§5.2 crypto. Each returns InvalidArgument for a string holding a NUL.
namespace appws {

// The §5.1 login digest (64 lowercase hex characters); `info` is the exact JSON text sent, or
// std::nullopt for none.
[[nodiscard]] inline Result digest(std::string_view app, std::string_view domain, std::string_view sip,
                                   std::string_view guid, std::string_view dn, std::optional<std::string_view> info,
                                   std::string_view challenge, std::string_view password, std::string &out) {
    std::string a, d, s, g, n, i, c, p;
    if (!detail::cstr(app, a) || !detail::cstr(domain, d) || !detail::cstr(sip, s) || !detail::cstr(guid, g) ||
        !detail::cstr(dn, n) || (info && !detail::cstr(*info, i)) || !detail::cstr(challenge, c) ||
        !detail::cstr(password, p)) {
        return Code::InvalidArgument;
    }
    return detail::crypto_out(65, 64, out, [&](char *buf, size_t len) {
        return wsb_appws_digest(a.c_str(), d.c_str(), s.c_str(), g.c_str(), n.c_str(), info ? i.c_str() : nullptr,
                                c.c_str(), p.c_str(), buf, len);
    });
}

// The §5.2 session key (64 lowercase hex characters).
[[nodiscard]] inline Result session_key(std::string_view challenge, std::string_view password, std::string &out) {
    std::string c, p;
    if (!detail::cstr(challenge, c) || !detail::cstr(password, p)) {
        return Code::InvalidArgument;
    }
    return detail::crypto_out(65, 64, out,
                              [&](char *buf, size_t len) { return wsb_appws_session_key(c.c_str(), p.c_str(), buf, len); });
}

// §5.2 Encrypt: lowercase hex of RC4 (key `seed:session_key`) over `data`.
[[nodiscard]] inline Result encrypt(std::string_view session_key, std::string_view seed, std::string_view data,
                                    std::string &out) {
    std::string k, s, d;
    if (!detail::cstr(session_key, k) || !detail::cstr(seed, s) || !detail::cstr(data, d)) {
        return Code::InvalidArgument;
    }
    return detail::crypto_out(2 * d.size() + 1, 2 * d.size(), out, [&](char *buf, size_t len) {
        return wsb_appws_encrypt(k.c_str(), s.c_str(), d.c_str(), buf, len);
    });
}

// §5.2 Decrypt: the raw bytes behind `hex` (either case); odd length or non-hex: InvalidArgument.
[[nodiscard]] inline Result decrypt(std::string_view session_key, std::string_view seed, std::string_view hex,
                                    std::string &out) {
    std::string k, s, h;
    if (!detail::cstr(session_key, k) || !detail::cstr(seed, s) || !detail::cstr(hex, h)) {
        return Code::InvalidArgument;
    }
    return detail::crypto_out(h.size() / 2 + 1, h.size() / 2, out, [&](char *buf, size_t len) {
        return wsb_appws_decrypt(k.c_str(), s.c_str(), h.c_str(), buf, len);
    });
}

// §5.2 Hash: lowercase hex SHA-256 of `seed:session_key:data`.
[[nodiscard]] inline Result hash(std::string_view session_key, std::string_view seed, std::string_view data,
                                 std::string &out) {
    std::string k, s, d;
    if (!detail::cstr(session_key, k) || !detail::cstr(seed, s) || !detail::cstr(data, d)) {
        return Code::InvalidArgument;
    }
    return detail::crypto_out(65, 64, out, [&](char *buf, size_t len) {
        return wsb_appws_hash(k.c_str(), s.c_str(), d.c_str(), buf, len);
    });
}

} // namespace appws

// The wsb_appws_client_event_type values.
enum class AppWebsocketClientEventType : uint32_t {
    Connected = WSB_APPWS_CLIENT_EVENT_TYPE_CONNECTED,
    LoginFailed = WSB_APPWS_CLIENT_EVENT_TYPE_LOGIN_FAILED,
    Message = WSB_APPWS_CLIENT_EVENT_TYPE_MESSAGE,
    Sent = WSB_APPWS_CLIENT_EVENT_TYPE_SENT,
    Closed = WSB_APPWS_CLIENT_EVENT_TYPE_CLOSED,
    Challenge = WSB_APPWS_CLIENT_EVENT_TYPE_CHALLENGE,
};

// One AppWebsocket client event; every view is borrowed (as for ClientEvent).
struct AppWebsocketClientEvent {
    AppWebsocketClientEventType type = AppWebsocketClientEventType::Connected;
    // Message: the JSON text (json.data()[json.size()] is 0), its `mt` and `src` ("" if absent).
    std::string_view json;
    std::string_view mt;
    std::string_view src;
    // LoginFailed: the reason; Closed: the close reason or error message; Challenge: the challenge.
    std::string_view text;
    // Closed: the server's code, 0 without one, the host's code when closed_by_host, -1 when the
    // transport dropped or never connected.
    int32_t close_status = 0;
    bool closed_by_host = false;
    // Closed: why the connection never opened (ConnectionRefused, ...), else Ok.
    Result error;

    static AppWebsocketClientEvent from_c(const wsb_appws_client_event &e) noexcept {
        AppWebsocketClientEvent ev;
        ev.type = static_cast<AppWebsocketClientEventType>(e.kind);
        if (e.json != nullptr) {
            ev.json = std::string_view(e.json, e.len);
        }
        ev.mt = view(e.mt);
        ev.src = view(e.src);
        ev.text = view(e.text);
        ev.close_status = e.close_status;
        ev.closed_by_host = e.closed_by_host;
        ev.error = Result(static_cast<wsb_result>(e.error));
        return ev;
    }

  private:
    static std::string_view view(const char *s) noexcept { return s != nullptr ? std::string_view(s) : std::string_view(); }
};

// A login identity (password mode: AppWebsocketClientConfig::identity; authenticator mode:
// AppWebsocketClientRef::authenticate). `info` is JSON text, or std::nullopt for none.
struct AppWebsocketIdentity {
    std::string domain;
    std::string sip;
    std::string guid = "00000000000000000000000000000000";
    std::string dn = "Admin";
    std::optional<std::string> info;
};

namespace detail {

struct AppwsClientConfigDeleter {
    void operator()(wsb_appws_client_config *c) const noexcept { wsb_appws_client_config_free(c); }
};

inline bool identity_cstr(const AppWebsocketIdentity &id) noexcept {
    return !has_nul(id.domain) && !has_nul(id.sip) && !has_nul(id.guid) && !has_nul(id.dn) &&
           !(id.info && has_nul(*id.info));
}

// The calls shared by the owning AppWebsocketClient and the borrowed AppWebsocketClientRef.
template <class Derived> class AppwsClientOps {
  public:
    // Sends one JSON message (must be JSON, else InvalidArgument). Ok or Backpressure mean
    // queued; NotConnected before Connected or after Closed.
    Result send(std::string_view json) const {
        std::string j;
        if (!cstr(json, j)) {
            return Code::InvalidArgument;
        }
        return Result(wsb_appws_client_send(raw(), j.c_str()));
    }
    // One text frame without a JSON check (MessageSendText); must be UTF-8.
    Result send_text(std::string_view text) const noexcept {
        return Result(wsb_appws_client_send_text(raw(), reinterpret_cast<const uint8_t *>(text.data()), text.size()));
    }
    // Manual flow control: done with the last Message; the next may be delivered.
    Result message_complete() const noexcept { return Result(wsb_appws_client_message_complete(raw())); }
    // Authenticator mode: answers the Challenge with a digest and session key computed elsewhere.
    Result authenticate(const AppWebsocketIdentity &id, std::string_view digest, std::string_view session_key) const {
        std::string d, k;
        if (!identity_cstr(id) || !cstr(digest, d) || !cstr(session_key, k)) {
            return Code::InvalidArgument;
        }
        return Result(wsb_appws_client_authenticate(raw(), id.domain.c_str(), id.sip.c_str(), id.guid.c_str(),
                                                    id.dn.c_str(), id.info ? id.info->c_str() : nullptr, d.c_str(),
                                                    k.c_str()));
    }
    // §5.2 with this login's session key (after Connected, else NotConnected).
    Result encrypt(std::string_view seed, std::string_view data, std::string &out) const {
        std::string s, d;
        if (!cstr(seed, s) || !cstr(data, d)) {
            return Code::InvalidArgument;
        }
        return crypto_out(2 * d.size() + 1, 2 * d.size(), out, [&](char *buf, size_t len) {
            return wsb_appws_client_encrypt(raw(), s.c_str(), d.c_str(), buf, len);
        });
    }
    Result decrypt(std::string_view seed, std::string_view hex, std::string &out) const {
        std::string s, h;
        if (!cstr(seed, s) || !cstr(hex, h)) {
            return Code::InvalidArgument;
        }
        return crypto_out(h.size() / 2 + 1, h.size() / 2, out, [&](char *buf, size_t len) {
            return wsb_appws_client_decrypt(raw(), s.c_str(), h.c_str(), buf, len);
        });
    }
    Result hash(std::string_view seed, std::string_view data, std::string &out) const {
        std::string s, d;
        if (!cstr(seed, s) || !cstr(data, d)) {
            return Code::InvalidArgument;
        }
        return crypto_out(65, 64, out, [&](char *buf, size_t len) {
            return wsb_appws_client_hash(raw(), s.c_str(), d.c_str(), buf, len);
        });
    }
    // Closes the connection (1000); Closed follows. NotConnected once Closed was reported.
    Result close() const noexcept { return Result(wsb_appws_client_close(raw())); }
    // True from Connected until the end or close().
    bool is_connected() const noexcept { return wsb_appws_client_is_connected(raw()); }
    // The detail of the last failed call on this client ("" if none).
    std::string last_error() const {
        return read_sized([this](char *b, size_t n, size_t *need) { return wsb_appws_client_last_error(raw(), b, n, need); });
    }

  private:
    wsb_appws_client *raw() const noexcept { return static_cast<const Derived *>(this)->get(); }
};

} // namespace detail

// AppWebsocket client settings for `url` and `app`. With a password the client logs in by itself
// (the JS library's identity unless identity() is set); without one (std::nullopt) it runs in
// authenticator mode. The connection settings (header, connect_timeout, ca_file, system_roots,
// client_cert, insecure, proxy) are the same as ClientConfig's. Setters chain; the first failure
// sticks (status(), error_detail()). Defaults: automatic flow control, no Sent events, no
// keep-alive, 10 s connect and login timeouts, system roots, proxy from the environment.
class AppWebsocketClientConfig
    : public detail::ConnectionConfig<AppWebsocketClientConfig, wsb_appws_client_config,
                                      detail::AppwsClientConfigDeleter, detail::AppwsClientConnectionApi> {
  public:
    AppWebsocketClientConfig(const std::string &url, const std::string &app, std::optional<std::string> password) {
        if (detail::has_nul(url) || detail::has_nul(app) || (password && detail::has_nul(*password))) {
            fail("url/app/password: embedded NUL");
            return;
        }
        cfg_.reset(wsb_appws_client_config_new(url.c_str(), app.c_str(), password ? password->c_str() : nullptr));
        if (!cfg_) {
            fail("url/app: not UTF-8");
        }
    }

    // Password mode only (InvalidState in authenticator mode); `info` must be JSON.
    AppWebsocketClientConfig &identity(const AppWebsocketIdentity &id) {
        if (!status_.ok()) {
            return *this;
        }
        if (!detail::identity_cstr(id)) {
            return fail("identity: embedded NUL");
        }
        return apply(wsb_appws_client_config_set_identity(cfg_.get(), id.domain.c_str(), id.sip.c_str(), id.guid.c_str(),
                                                          id.dn.c_str(), id.info ? id.info->c_str() : nullptr),
                     "identity");
    }
    AppWebsocketClientConfig &manual_complete(bool manual) {
        return apply(wsb_appws_client_config_set_manual_complete(cfg_.get(), manual), "manual_complete");
    }
    AppWebsocketClientConfig &send_results(bool enable) {
        return apply(wsb_appws_client_config_set_send_results(cfg_.get(), enable), "send_results");
    }
    // Sends {"mt":"KeepAlive"} after this long without sending; 0 turns it off.
    AppWebsocketClientConfig &keep_alive(std::chrono::milliseconds t) {
        return ms(wsb_appws_client_config_set_keep_alive_ms, t, "keep_alive");
    }
    // From the WebSocket's opening to AppLoginResult (> 0; default 10 s). When it passes,
    // LoginFailed says what was still awaited and Closed follows.
    AppWebsocketClientConfig &login_timeout(std::chrono::milliseconds t) {
        return ms(wsb_appws_client_config_set_login_timeout_ms, t, "login_timeout");
    }
};

// A borrowed AppWebsocket client pointer, as handlers receive it.
class AppWebsocketClientRef : public detail::AppwsClientOps<AppWebsocketClientRef> {
  public:
    explicit AppWebsocketClientRef(wsb_appws_client *c) noexcept : c_(c) {}
    wsb_appws_client *get() const noexcept { return c_; }

  private:
    wsb_appws_client *c_;
};

class AppWebsocketClient;

// Callback-mode handlers. An exception a handler throws goes to on_exception if set; otherwise
// the connection is closed (as by close()).
class AppWebsocketClientHandlers : public detail::HandlerTable<AppWebsocketClientHandlers, AppWebsocketClientRef, wsb_appws_client, AppWebsocketClientEvent, wsb_appws_client_event> {
  public:
    AppWebsocketClientHandlers &on_connected(Handler h) { return set(connected_, std::move(h)); }
    AppWebsocketClientHandlers &on_login_failed(Handler h) { return set(login_failed_, std::move(h)); }
    AppWebsocketClientHandlers &on_message(Handler h) { return set(message_, std::move(h)); }
    AppWebsocketClientHandlers &on_sent(Handler h) { return set(sent_, std::move(h)); }
    AppWebsocketClientHandlers &on_closed(Handler h) { return set(closed_, std::move(h)); }
    AppWebsocketClientHandlers &on_challenge(Handler h) { return set(challenge_, std::move(h)); }

  private:
    friend HandlerTable;

    const Handler *pick(AppWebsocketClientEventType t) const noexcept {
        switch (t) {
        case AppWebsocketClientEventType::Connected: return &connected_;
        case AppWebsocketClientEventType::LoginFailed: return &login_failed_;
        case AppWebsocketClientEventType::Message: return &message_;
        case AppWebsocketClientEventType::Sent: return &sent_;
        case AppWebsocketClientEventType::Closed: return &closed_;
        case AppWebsocketClientEventType::Challenge: return &challenge_;
        }
        return nullptr; // an event type newer than this header
    }

    static void unhandled(wsb_appws_client *client, const AppWebsocketClientEvent &) noexcept {
        if (wsb_appws_client_is_connected(client)) {
            (void)wsb_appws_client_close(client);
        }
    }

    Handler connected_, login_failed_, message_, sent_, closed_, challenge_;
};

namespace detail {
struct AppwsClientTraits {
    using Raw = wsb_appws_client;
    using Config = AppWebsocketClientConfig;
    using Handlers = AppWebsocketClientHandlers;
    using Ref = AppWebsocketClientRef;
    static constexpr auto make = wsb_appws_client_new;
    static constexpr auto destroy = wsb_appws_client_free;
    static constexpr const char *what = "wsb::AppWebsocketClient::create";
    static constexpr bool explain_version = false;
    using Ev = AppWebsocketClientEvent;
    using CEv = wsb_appws_client_event;
    static constexpr auto poll = wsb_appws_client_poll;
    static constexpr auto interrupt = wsb_appws_client_interrupt;
};
} // namespace detail

// An AppWebsocket client (wsb_appws_client): connects and logs in in the background on creation;
// Closed comes exactly once and ends it (poll then returns ShutDown). Move-only; destruction
// closes and joins its thread (not from its own handlers: shutdown() then returns Reentrant).
class AppWebsocketClient : public detail::AppwsClientOps<AppWebsocketClient>,
                           public detail::Owner<AppWebsocketClient, detail::AppwsClientTraits>,
                           public detail::Queue<AppWebsocketClient, detail::AppwsClientTraits> {
  public:
    AppWebsocketClient() noexcept = default;
};

// ---- app service -------------------------------------------------------------------------------

enum class AppServiceEventType : uint32_t {
    Login = WSB_APPWS_SERVICE_EVENT_TYPE_LOGIN,
    Message = WSB_APPWS_SERVICE_EVENT_TYPE_MESSAGE,
    Binary = WSB_APPWS_SERVICE_EVENT_TYPE_BINARY,
    Closed = WSB_APPWS_SERVICE_EVENT_TYPE_CLOSED,
};

// One app-service event; every view is borrowed (as for Event).
struct AppServiceEvent {
    AppServiceEventType type = AppServiceEventType::Login;
    ConnId conn = 0;
    // Login: the app and the login's identity; `info` is JSON text ("" when it had none).
    std::string_view app, domain, sip, guid, dn, info;
    // Message: its `mt` and `src` ("" if absent).
    std::string_view mt, src;
    // Message: the JSON text; Binary: the bytes; Closed: the reason. data.data()[data.size()] is 0.
    std::string_view data;
    int32_t close_status = 0;
    bool closed_by_host = false;

    static AppServiceEvent from_c(const wsb_appws_service_event &e) noexcept {
        AppServiceEvent ev;
        ev.type = static_cast<AppServiceEventType>(e.kind);
        ev.conn = e.conn;
        ev.app = view(e.app);
        ev.domain = view(e.domain);
        ev.sip = view(e.sip);
        ev.guid = view(e.guid);
        ev.dn = view(e.dn);
        ev.info = view(e.info);
        ev.mt = view(e.mt);
        ev.src = view(e.src);
        if (e.data != nullptr) {
            ev.data = std::string_view(reinterpret_cast<const char *>(e.data), e.len);
        }
        ev.close_status = e.close_status;
        ev.closed_by_host = e.closed_by_host;
        return ev;
    }

  private:
    static std::string_view view(const char *s) noexcept { return s != nullptr ? std::string_view(s) : std::string_view(); }
};

namespace detail {

struct AppServiceConfigDeleter {
    void operator()(wsb_appws_service_config *c) const noexcept { wsb_appws_service_config_free(c); }
};

template <class Derived> class AppServiceOps {
  public:
    // Answers a request: `json` goes to `conn` with `src` set ("" leaves it out). Ok or
    // Backpressure mean queued; Closed, NotFound, InvalidArgument (not JSON).
    Result reply(ConnId conn, std::string_view src, std::string_view json) const {
        std::string s, j;
        if (!cstr(src, s) || !cstr(json, j)) {
            return Code::InvalidArgument;
        }
        return Result(wsb_appws_service_reply(raw(), conn, s.c_str(), j.c_str()));
    }
    // One frame, text (UTF-8) or binary; data is copied.
    Result send(ConnId conn, std::string_view data, bool is_text) const noexcept {
        return Result(wsb_appws_service_send(raw(), conn, reinterpret_cast<const uint8_t *>(data.data()), data.size(), is_text));
    }
    Result close(ConnId conn, int32_t code = 1000, std::string_view reason = {}) const {
        std::string r;
        if (!cstr(reason, r)) {
            return Code::InvalidArgument;
        }
        return Result(wsb_appws_service_close(raw(), conn, code, r.c_str()));
    }
    Result message_complete(ConnId conn) const noexcept { return Result(wsb_appws_service_message_complete(raw(), conn)); }
    uint16_t port() const noexcept { return wsb_appws_service_port(raw()); }
    std::string last_error() const {
        return read_sized([this](char *b, size_t n, size_t *need) { return wsb_appws_service_last_error(raw(), b, n, need); });
    }

  private:
    wsb_appws_service *raw() const noexcept { return static_cast<const Derived *>(this)->get(); }
};

} // namespace detail

// App-service settings. Defaults: 127.0.0.1:0, no apps (every login fails), 64 KiB messages,
// automatic flow control, no echo. Setters chain; the first failure sticks.
class AppServiceConfig
    : public detail::ConfigBase<AppServiceConfig, wsb_appws_service_config, detail::AppServiceConfigDeleter> {
  public:
    AppServiceConfig() : ConfigBase(wsb_appws_service_config_new()) {
        if (!cfg_) {
            status_ = Code::NullPointer;
            detail_ = "wsb_appws_service_config_new: out of memory";
        }
    }
    AppServiceConfig &bind(const std::string &addr) {
        return str(wsb_appws_service_config_set_bind, addr, "bind");
    }
    AppServiceConfig &app(const std::string &name, const std::string &password) {
        return str2(wsb_appws_service_config_add_app, name, password, "app");
    }
    // A password accepted for any app from logins with this `domain`.
    AppServiceConfig &domain_password(const std::string &domain, const std::string &password) {
        return str2(wsb_appws_service_config_add_domain_password, domain, password, "domain_password");
    }
    AppServiceConfig &manual_complete(bool manual) {
        return apply(wsb_appws_service_config_set_manual_complete(cfg_.get(), manual), "manual_complete");
    }
    // The built-in echo: each message comes back with mt+"Result" and is not reported.
    AppServiceConfig &echo(bool on) { return apply(wsb_appws_service_config_set_echo(cfg_.get(), on), "echo"); }
    AppServiceConfig &max_message_size(size_t bytes) {
        return apply(wsb_appws_service_config_set_max_message_size(cfg_.get(), bytes), "max_message_size");
    }
    // Serve wss:// with this PEM certificate chain (leaf first) and its PEM private key, read now:
    // a bad file makes status() InvalidArgument with error_detail() naming it.
    AppServiceConfig &tls(const std::string &cert_chain_pem_path, const std::string &key_pem_path) {
        return str2(wsb_appws_service_config_set_tls, cert_chain_pem_path, key_pem_path, "tls");
    }
};

class AppServiceRef : public detail::AppServiceOps<AppServiceRef> {
  public:
    explicit AppServiceRef(wsb_appws_service *s) noexcept : s_(s) {}
    wsb_appws_service *get() const noexcept { return s_; }

  private:
    wsb_appws_service *s_;
};

class AppService;

// Callback-mode handlers. An exception a handler throws goes to on_exception if set; otherwise
// the event's session is closed with 1011 "internal error".
class AppServiceHandlers : public detail::HandlerTable<AppServiceHandlers, AppServiceRef, wsb_appws_service, AppServiceEvent, wsb_appws_service_event> {
  public:
    AppServiceHandlers &on_login(Handler h) { return set(login_, std::move(h)); }
    AppServiceHandlers &on_message(Handler h) { return set(message_, std::move(h)); }
    AppServiceHandlers &on_binary(Handler h) { return set(binary_, std::move(h)); }
    AppServiceHandlers &on_closed(Handler h) { return set(closed_, std::move(h)); }

  private:
    friend HandlerTable;

    const Handler *pick(AppServiceEventType t) const noexcept {
        switch (t) {
        case AppServiceEventType::Login: return &login_;
        case AppServiceEventType::Message: return &message_;
        case AppServiceEventType::Binary: return &binary_;
        case AppServiceEventType::Closed: return &closed_;
        }
        return nullptr; // an event type newer than this header
    }

    static void unhandled(wsb_appws_service *service, const AppServiceEvent &ev) noexcept {
        if (ev.type != AppServiceEventType::Closed) {
            (void)wsb_appws_service_close(service, ev.conn, 1011, "internal error");
        }
    }

    Handler login_, message_, binary_, closed_;
};

namespace detail {
struct AppServiceTraits {
    using Raw = wsb_appws_service;
    using Config = AppServiceConfig;
    using Handlers = AppServiceHandlers;
    using Ref = AppServiceRef;
    static constexpr auto make = wsb_appws_service_new;
    static constexpr auto destroy = wsb_appws_service_free;
    static constexpr const char *what = "wsb::AppService::create";
    static constexpr bool explain_version = false;
    using Ev = AppServiceEvent;
    using CEv = wsb_appws_service_event;
    static constexpr auto poll = wsb_appws_service_poll;
    static constexpr auto interrupt = wsb_appws_service_interrupt;
};
} // namespace detail

// A running app service (wsb_appws_service): listens on creation, runs the challenge and login
// itself, reports sessions. Move-only; destruction stops it (not from its own handlers).
class AppService : public detail::AppServiceOps<AppService>,
                   public detail::Owner<AppService, detail::AppServiceTraits>,
                   public detail::Queue<AppService, detail::AppServiceTraits> {
  public:
    AppService() noexcept = default;
};

// ---- broker ------------------------------------------------------------------------------------

enum class Listener : uint32_t {
    Achex = WSB_LISTENER_ACHEX,
    Wschat = WSB_LISTENER_WSCHAT,
    Webtalk = WSB_LISTENER_WEBTALK,
    WebtalkAdmin = WSB_LISTENER_WEBTALK_ADMIN,
    Appws = WSB_LISTENER_APPWS,
};

enum class Target : uint32_t {
    Name = WSB_TARGET_NAME,
    Group = WSB_TARGET_GROUP,
    Hub = WSB_TARGET_HUB,
};

enum class BrokerEventType : uint32_t {
    ServiceMessage = WSB_BROKER_EVENT_TYPE_SERVICE_MESSAGE,
    Login = WSB_BROKER_EVENT_TYPE_LOGIN,
    Logout = WSB_BROKER_EVENT_TYPE_LOGOUT,
    Join = WSB_BROKER_EVENT_TYPE_JOIN,
    Leave = WSB_BROKER_EVENT_TYPE_LEAVE,
};

using BrokerCounts = wsb_broker_counts;

// One broker event; every view is borrowed until the handler returns.
struct BrokerEvent {
    BrokerEventType type = BrokerEventType::ServiceMessage;
    // ServiceMessage: the receiving service's SID.
    uint64_t service = 0;
    // The sender's (ServiceMessage) or the session's Achex SID and name.
    uint64_t sid = 0;
    std::string_view name;
    // Join/Leave: the group or hub.
    std::string_view place;
    bool is_hub = false;
    // Login: a service login.
    bool is_service = false;
    // ServiceMessage: the stamped JSON (data.data()[data.size()] is 0).
    std::string_view data;

    static BrokerEvent from_c(const wsb_broker_event &e) noexcept {
        BrokerEvent ev;
        ev.type = static_cast<BrokerEventType>(e.kind);
        ev.service = e.service;
        ev.sid = e.sid;
        ev.name = e.name != nullptr ? std::string_view(e.name) : std::string_view();
        ev.place = e.place != nullptr ? std::string_view(e.place) : std::string_view();
        ev.is_hub = e.is_hub;
        ev.is_service = e.is_service;
        if (e.data != nullptr) {
            ev.data = std::string_view(reinterpret_cast<const char *>(e.data), e.len);
        }
        return ev;
    }
};

namespace detail {

struct BrokerConfigDeleter {
    void operator()(wsb_broker_config *c) const noexcept { wsb_broker_config_free(c); }
};

inline const uint8_t *bytes(std::string_view s) noexcept { return reinterpret_cast<const uint8_t *>(s.data()); }

// Every broker call: safe from any thread, inside the event handler included.
template <class Derived> class BrokerOps {
  public:
    // The port a listener serves on; 0 when it is off.
    uint16_t port(Listener l = Listener::Achex) const noexcept { return wsb_broker_port(raw(), static_cast<uint32_t>(l)); }
    // An in-process service under an exclusive Achex name (InvalidState: name in use).
    Result register_service(std::string_view name, uint64_t &sid) const {
        std::string n;
        if (!cstr(name, n)) {
            return Code::InvalidArgument;
        }
        return Result(wsb_broker_register_service(raw(), n.c_str(), &sid));
    }
    Result unregister_service(uint64_t service) const noexcept { return Result(wsb_broker_unregister_service(raw(), service)); }
    // A JSON object from `service` to a name, group or hub (NotFound: unknown name).
    Result send(uint64_t service, Target kind, std::string_view target, std::string_view json) const {
        std::string t;
        if (!cstr(target, t)) {
            return Code::InvalidArgument;
        }
        return Result(wsb_broker_send(raw(), service, static_cast<uint32_t>(kind), t.c_str(), bytes(json), json.size()));
    }
    Result send_to_session(uint64_t service, uint64_t sid, std::string_view json) const noexcept {
        return Result(wsb_broker_send_to_session(raw(), service, sid, bytes(json), json.size()));
    }
    Result join(uint64_t service, std::string_view place, bool is_hub = false) const {
        std::string p;
        if (!cstr(place, p)) {
            return Code::InvalidArgument;
        }
        return Result(wsb_broker_join(raw(), service, is_hub, p.c_str()));
    }
    Result leave(uint64_t service, std::string_view place, bool is_hub = false) const {
        std::string p;
        if (!cstr(place, p)) {
            return Code::InvalidArgument;
        }
        return Result(wsb_broker_leave(raw(), service, is_hub, p.c_str()));
    }
    // Login/Logout/Join/Leave events on or off (default off).
    Result set_events(bool on) const noexcept { return Result(wsb_broker_set_events(raw(), on)); }
    std::optional<BrokerCounts> stats() const noexcept {
        BrokerCounts c{};
        if (wsb_broker_stats(raw(), &c) != WSB_RESULT_OK) {
            return std::nullopt;
        }
        return c;
    }
    std::string last_error() const {
        return read_sized([this](char *b, size_t n, size_t *need) { return wsb_broker_last_error(raw(), b, n, need); });
    }

    // webtalk [newuser]: the browser logs in with "<user>!<salt>".
    Result webtalk_create_user(uint64_t &user, std::string &salt) const {
        char buf[32] = {};
        Result r(wsb_broker_webtalk_create_user(raw(), &user, buf, sizeof buf));
        if (r.ok()) {
            salt = buf;
        }
        return r;
    }
    Result webtalk_kill_user(uint64_t user) const noexcept { return Result(wsb_broker_webtalk_kill_user(raw(), user)); }
    // One frame (text, or binary when not UTF-8); queued while offline (WouldOverflow when full).
    Result webtalk_whisper(uint64_t user, std::string_view message) const noexcept {
        return Result(wsb_broker_webtalk_whisper(raw(), user, bytes(message), message.size()));
    }
    Result webtalk_create_channel(uint64_t &channel) const noexcept {
        return Result(wsb_broker_webtalk_create_channel(raw(), &channel));
    }
    Result webtalk_kill_channel(uint64_t channel) const noexcept {
        return Result(wsb_broker_webtalk_kill_channel(raw(), channel));
    }
    Result webtalk_shout(uint64_t channel, std::string_view message) const noexcept {
        return Result(wsb_broker_webtalk_shout(raw(), channel, bytes(message), message.size()));
    }
    Result webtalk_join(uint64_t channel, uint64_t user) const noexcept {
        return Result(wsb_broker_webtalk_join(raw(), channel, user));
    }
    Result webtalk_leave(uint64_t channel, uint64_t user) const noexcept {
        return Result(wsb_broker_webtalk_leave(raw(), channel, user));
    }
    Result webtalk_store(std::string_view key, std::string_view value) const {
        std::string k;
        if (!cstr(key, k)) {
            return Code::InvalidArgument;
        }
        return Result(wsb_broker_webtalk_store(raw(), k.c_str(), bytes(value), value.size()));
    }
    Result webtalk_clear(std::string_view key) const {
        std::string k;
        if (!cstr(key, k)) {
            return Code::InvalidArgument;
        }
        return Result(wsb_broker_webtalk_clear(raw(), k.c_str()));
    }
    // NotFound when nothing is stored under `key`.
    Result webtalk_retrieve(std::string_view key, std::string &out) const {
        std::string k;
        if (!cstr(key, k)) {
            return Code::InvalidArgument;
        }
        size_t needed = 0;
        std::string buf(256, '\0');
        for (int attempt = 0; attempt < 4; ++attempt) { // the value may grow between two calls
            Result r(wsb_broker_webtalk_retrieve(raw(), k.c_str(), buf.data(), buf.size(), &needed));
            if (r.ok()) {
                buf.resize(needed > 0 ? needed - 1 : 0);
                out = std::move(buf);
                return r;
            }
            if (r.code() != Code::BufferTooSmall) {
                return r;
            }
            buf.assign(needed > buf.size() ? needed : buf.size() * 2, '\0');
        }
        return Code::BufferTooSmall;
    }

  private:
    wsb_broker *raw() const noexcept { return static_cast<const Derived *>(this)->get(); }
};

} // namespace detail

// Decides a user login: return true to accept; to refuse, return false and optionally set
// `reason` (the client sees {"auth":"failed","error":reason}). Runs on an I/O thread; must not
// block. An exception refuses the login.
using AuthHandler = std::function<bool(std::string_view name, std::string_view password, std::string &reason)>;

// Broker settings: Achex on 127.0.0.1:0, the other listeners off, open login. Setters chain; the
// first failure sticks.
class BrokerConfig : public detail::ConfigBase<BrokerConfig, wsb_broker_config, detail::BrokerConfigDeleter> {
  public:
    BrokerConfig() : ConfigBase(wsb_broker_config_new()) {
        if (!cfg_) {
            status_ = Code::NullPointer;
            detail_ = "wsb_broker_config_new: out of memory";
        }
    }
    // "IP:PORT" (port 0: ephemeral) or "off".
    BrokerConfig &listener(Listener l, const std::string &addr) {
        if (!status_.ok()) {
            return *this;
        }
        if (detail::has_nul(addr)) {
            return fail("listener: embedded NUL");
        }
        return apply(wsb_broker_config_set_listener(cfg_.get(), static_cast<uint32_t>(l), addr.c_str()), "listener");
    }
    // The largest message a WebSocket listener accepts (1 byte to 1 GiB; default 65536); a larger
    // one gets close 1009. Listener::WebtalkAdmin (plain TCP) is refused with InvalidArgument.
    BrokerConfig &max_message_size(Listener l, size_t bytes) {
        return apply(wsb_broker_config_set_max_message(cfg_.get(), static_cast<uint32_t>(l), bytes), "max_message_size");
    }
    // Serve wss:// on a WebSocket listener with this PEM certificate chain (leaf first) and its PEM
    // private key, read now: a bad file makes status() InvalidArgument with error_detail() naming it.
    BrokerConfig &tls(Listener l, const std::string &cert_chain_pem_path, const std::string &key_pem_path) {
        if (!status_.ok()) {
            return *this;
        }
        if (detail::has_nul(cert_chain_pem_path) || detail::has_nul(key_pem_path)) {
            return fail("tls: embedded NUL");
        }
        return apply(wsb_broker_config_set_listener_tls(cfg_.get(), static_cast<uint32_t>(l), cert_chain_pem_path.c_str(),
                                                        key_pem_path.c_str()),
                     "tls");
    }
    BrokerConfig &achex_quiet(bool quiet) { return apply(wsb_broker_config_set_achex_quiet(cfg_.get(), quiet), "achex_quiet"); }
    BrokerConfig &service_credentials(const std::string &name, const std::string &password) {
        return pair(name, password, "service_credentials", wsb_broker_config_add_service_credentials);
    }
    // Once any is added, logins are checked against this table only.
    BrokerConfig &credentials(const std::string &name, const std::string &password) {
        return pair(name, password, "credentials", wsb_broker_config_add_credentials);
    }
    // The first one replaces the default demo/demo app.
    BrokerConfig &appws_app(const std::string &name, const std::string &password) {
        return pair(name, password, "appws_app", wsb_broker_config_add_appws_app);
    }
    // std::nullopt removes the requirement.
    BrokerConfig &webtalk_admin_secret(const std::optional<std::string> &secret) {
        if (!status_.ok()) {
            return *this;
        }
        if (secret && detail::has_nul(*secret)) {
            return fail("webtalk_admin_secret: embedded NUL");
        }
        return apply(wsb_broker_config_set_webtalk_admin_secret(cfg_.get(), secret ? secret->c_str() : nullptr),
                     "webtalk_admin_secret");
    }
    // Lets `check` decide every user login (over a credentials table); an empty one restores open mode.
    BrokerConfig &auth(AuthHandler check) {
        if (!status_.ok()) {
            return *this;
        }
        if (!check) {
            return apply(wsb_broker_config_set_auth_callback(cfg_.get(), nullptr, nullptr, nullptr), "auth");
        }
        // The library owns the box from here (release runs when neither config nor broker needs it).
        auto *box = new AuthHandler(std::move(check));
        return apply(wsb_broker_config_set_auth_callback(cfg_.get(), &auth_trampoline, box, &auth_release), "auth");
    }

  private:
    static bool auth_trampoline(void *userdata, const char *name, const char *password, char *reason,
                                size_t reason_len) noexcept {
        if (userdata == nullptr || name == nullptr || password == nullptr) {
            return false;
        }
        std::string why;
        bool ok = false;
#if WSB_HPP_CATCH_HANDLERS
        try {
            ok = (*static_cast<const AuthHandler *>(userdata))(name, password, why);
        } catch (...) {
            return false;
        }
#else
        ok = (*static_cast<const AuthHandler *>(userdata))(name, password, why);
#endif
        if (!ok && !why.empty() && reason != nullptr && reason_len > 0) {
            size_t n = why.size() < reason_len - 1 ? why.size() : reason_len - 1;
            // Never cut a UTF-8 sequence in two: back off over continuation bytes.
            while (n > 0 && n < why.size() && (static_cast<unsigned char>(why[n]) & 0xC0U) == 0x80U) {
                --n;
            }
            why.copy(reason, n);
            reason[n] = '\0';
        }
        return ok;
    }
    static void auth_release(void *userdata) noexcept { delete static_cast<AuthHandler *>(userdata); }

    // As str2, but the NUL refusal's detail does not name the setter.
    BrokerConfig &pair(const std::string &a, const std::string &b, const char *what,
                       wsb_result (*set)(wsb_broker_config *, const char *, const char *)) {
        if (!status_.ok()) {
            return *this;
        }
        if (detail::has_nul(a) || detail::has_nul(b)) {
            return fail("embedded NUL");
        }
        return apply(set(cfg_.get(), a.c_str(), b.c_str()), what);
    }
};

class BrokerRef : public detail::BrokerOps<BrokerRef> {
  public:
    explicit BrokerRef(wsb_broker *b) noexcept : b_(b) {}
    wsb_broker *get() const noexcept { return b_; }

  private:
    wsb_broker *b_;
};

class Broker;

// Event handlers. An exception a handler throws goes to on_exception if set; otherwise it is
// dropped (a broker event has no connection of the host's to close).
class BrokerHandlers : public detail::HandlerTable<BrokerHandlers, BrokerRef, wsb_broker, BrokerEvent, wsb_broker_event> {
  public:
    BrokerHandlers &on_service_message(Handler h) { return set(message_, std::move(h)); }
    BrokerHandlers &on_login(Handler h) { return set(login_, std::move(h)); }
    BrokerHandlers &on_logout(Handler h) { return set(logout_, std::move(h)); }
    BrokerHandlers &on_join(Handler h) { return set(join_, std::move(h)); }
    BrokerHandlers &on_leave(Handler h) { return set(leave_, std::move(h)); }

  private:
    friend HandlerTable;

    const Handler *pick(BrokerEventType t) const noexcept {
        switch (t) {
        case BrokerEventType::ServiceMessage: return &message_;
        case BrokerEventType::Login: return &login_;
        case BrokerEventType::Logout: return &logout_;
        case BrokerEventType::Join: return &join_;
        case BrokerEventType::Leave: return &leave_;
        }
        return nullptr; // an event type newer than this header
    }

    static void unhandled(wsb_broker *, const BrokerEvent &) noexcept {}

    Handler message_, login_, logout_, join_, leave_;
};

namespace detail {
struct BrokerTraits {
    using Raw = wsb_broker;
    using Config = BrokerConfig;
    using Handlers = BrokerHandlers;
    using Ref = BrokerRef;
    static constexpr auto make = wsb_broker_new;
    static constexpr auto destroy = wsb_broker_free;
    static constexpr const char *what = "wsb::Broker::create";
    static constexpr bool explain_version = false;
};
} // namespace detail

// A running broker (wsb_broker): its listeners serve from creation; without handlers, in-process
// services receive nothing. Move-only; destruction stops every listener (close 1001). Not from its
// own handlers: shutdown() then returns Reentrant.
class Broker : public detail::BrokerOps<Broker>, public detail::Owner<Broker, detail::BrokerTraits> {
  public:
    Broker() noexcept = default;
};

} // namespace wsb

#endif // WSBROKER_HPP
