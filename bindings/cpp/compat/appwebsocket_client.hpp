// appwebsocket_client.hpp: source-level shim for code written against innovaphone's
// IAppWebsocketClient / UAppWebsocketClient (PROTOCOLS.md §6.5), running on wsbroker's
// AppWebsocket client (wsb_appws_client_*).
//
// What stays: IAppWebsocketClient::Create(iomux, user, tcp, tls, dns, log); Connect(uri,
// password, app, domain, sip, guid, dn) with the §5.4 login (digest and session key from the
// password, no info); Connect(uri, app, authenticator) where the host answers the challenge;
// MessageSend, MessageSendText, MessageComplete (the shim runs in manual flow control, like
// the original: call MessageComplete after each message); Encrypt, Decrypt and Hash(seed,
// data, out, outLen); Close(); and the four UAppWebsocketClient callbacks.
// AppWebsocketClientClosed comes exactly once per Connect (after Close(), a remote close, a
// dropped or failed connection, or a failed login), and the client may be deleted inside it.
// Connect while a connection is live ends that one first: it is closed (1000) and its Closed
// is delivered from inside Connect, before the new connection starts (a client deleted in that
// Closed starts nothing). Deleting the client ends its connection without a Closed.
//
// What changes:
//   * The platform objects (IIoMux, ISocketProvider, IDns, IInstanceLog) are accepted and
//     ignored: each client runs on its own wsbroker thread, and callbacks run there (never two
//     at once for one client). Calls are safe from any thread.
//   * Messages are JSON text instead of json_io: AppWebsocketClientMessage gets the message as
//     a NUL-terminated string, `base` is always 0; MessageSend takes JSON text (`buffer` is
//     accepted and ignored).
//   * The authenticator is UAppWebsocketAuthenticator::AppWebsocketAuthenticatorChallenge,
//     answered with IAppWebsocketClient::Authenticate(domain, sip, guid, dn, info, digest,
//     sessionKey) — the session key travels in clear (§7 open point 10).
//   * Encrypt/Decrypt/Hash need one more output byte than the vendor's 2x, 1/2 and 64, for the
//     NUL (§5.2); a buffer that is too small gets "".
//   * A client deleted inside one of its own callbacks (or reconnected there) is released by
//     one shared release thread once the callback has returned (wsbroker cannot stop a client
//     from its own thread). FinishReleases() waits for those releases; it also runs at exit,
//     and that thread is joined then.
//
// Names are declared in wsb::compat::innovaphone and, unless WSB_INNOVAPHONE_NO_GLOBAL is
// defined, brought into the global namespace.
#ifndef WSBROKER_COMPAT_APPWEBSOCKET_CLIENT_HPP
#define WSBROKER_COMPAT_APPWEBSOCKET_CLIENT_HPP

#include "wsbroker.h"

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

namespace wsb {
namespace compat {
namespace innovaphone {

typedef unsigned short word;

// Platform types of the original API; only pointers to them are passed around.
class IIoMux;
class ISocketProvider;
class IDns;
class IInstanceLog;
class IAppWebsocketClient;
class AppWebsocketClient;

// Receives a client's events.
class UAppWebsocketClient {
  public:
    virtual ~UAppWebsocketClient() {}
    virtual void AppWebsocketClientConnectComplete(IAppWebsocketClient *appWebsocketClient) = 0;
    virtual void AppWebsocketClientMessage(IAppWebsocketClient *appWebsocketClient, const char *msg, word base,
                                           const char *mt, const char *src) = 0;
    virtual void AppWebsocketClientSendResult(IAppWebsocketClient *appWebsocketClient) = 0;
    virtual void AppWebsocketClientClosed(IAppWebsocketClient *appWebsocketClient) = 0;
};

// Supplies the login for Connect(uri, app, authenticator).
class UAppWebsocketAuthenticator {
  public:
    virtual ~UAppWebsocketAuthenticator() {}
    // The challenge arrived: compute the digest (wsb_appws_digest) and session key
    // (wsb_appws_session_key) and call client->Authenticate, now or later.
    virtual void AppWebsocketAuthenticatorChallenge(IAppWebsocketClient *appWebsocketClient,
                                                    const char *challenge) = 0;
};

class IAppWebsocketClient {
  public:
    static IAppWebsocketClient *Create(IIoMux *iomux, UAppWebsocketClient *user, ISocketProvider *tcpSocketProvider,
                                       ISocketProvider *tlsSocketProvider, IDns *dns, IInstanceLog *log);
    virtual ~IAppWebsocketClient() {}
    virtual void Connect(const char *uri, const char *pwd, const char *app, const char *domain, const char *sip,
                         const char *guid, const char *dn) = 0;
    virtual void Connect(const char *uri, const char *app, UAppWebsocketAuthenticator *authenticator) = 0;
    virtual bool Authenticate(const char *domain, const char *sip, const char *guid, const char *dn,
                              const char *info, const char *digest, const char *sessionKey) = 0;
    virtual void MessageComplete() = 0;
    virtual void MessageSend(const char *json, char *buffer = nullptr) = 0;
    virtual void MessageSendText(const char *buffer) = 0;
    virtual void Encrypt(const char *seed, const char *data, char *out, unsigned outLen) = 0;
    virtual void Decrypt(const char *seed, const char *data, char *out, unsigned outLen) = 0;
    virtual void Hash(const char *seed, const char *data, char *out, unsigned outLen) = 0;
    virtual void Close() = 0;
};

namespace detail {

// One Connect: the wsbroker client and what its callbacks need. Freed by the library's
// userdata_free, so it outlives every callback even when its owner is deleted in one.
struct Link {
    Link(AppWebsocketClient *o, UAppWebsocketClient *u, UAppWebsocketAuthenticator *a)
        : owner(o), user(u), authenticator(a) {}
    // Cleared when the owner lets go of this connection (deletion or a new Connect).
    std::atomic<AppWebsocketClient *> owner;
    UAppWebsocketClient *user;
    UAppWebsocketAuthenticator *authenticator;
    wsb_appws_client *client = nullptr;
    // The thread running one of this link's callbacks, if any.
    std::atomic<std::thread::id> callback_thread{};
    // Set by whoever delivers (or gives up) this connection's Closed: exactly once.
    std::atomic<bool> closed{false};
};

// Frees the clients that cannot be freed where they were let go of (inside their own
// callback): one worker thread, started on demand, that ends when nothing is left and is
// joined by the next release, by wait() or at exit.
class Releaser {
  public:
    static Releaser &instance() {
        static Releaser r;
        return r;
    }

    void release(wsb_appws_client *c) {
        std::lock_guard<std::mutex> g(m_);
        queue_.push_back(c);
        if (!running_) {
            // The previous worker has left its loop (running_ false); collect it.
            if (worker_.joinable()) {
                worker_.join();
            }
            running_ = true;
            worker_ = std::thread([this] { run(); });
        }
    }

    // Waits until every queued client has been freed and the worker has ended.
    void wait() {
        std::thread done;
        {
            std::unique_lock<std::mutex> g(m_);
            idle_.wait(g, [this] { return !running_; });
            done.swap(worker_);
        }
        if (done.joinable()) {
            done.join();
        }
    }

    ~Releaser() { wait(); }

  private:
    Releaser() = default;

    void run() {
        std::unique_lock<std::mutex> g(m_);
        while (!queue_.empty()) {
            wsb_appws_client *c = queue_.front();
            queue_.pop_front();
            g.unlock();
            // Waits for the callback that let go of it to return.
            (void)wsb_appws_client_free(c);
            g.lock();
        }
        running_ = false;
        idle_.notify_all();
    }

    std::mutex m_;
    std::condition_variable idle_;
    std::deque<wsb_appws_client *> queue_;
    std::thread worker_;
    bool running_ = false;
};

} // namespace detail

// Blocks until every client deleted (or reconnected) inside its own callback has been freed:
// its connection closed, its thread joined. Never call it from a client callback.
inline void FinishReleases() { detail::Releaser::instance().wait(); }

class AppWebsocketClient final : public IAppWebsocketClient {
  public:
    explicit AppWebsocketClient(UAppWebsocketClient *user) : user_(user) {}
    AppWebsocketClient(const AppWebsocketClient &) = delete;
    AppWebsocketClient &operator=(const AppWebsocketClient &) = delete;
    ~AppWebsocketClient() override {
        if (deleted_ != nullptr) {
            *deleted_ = true;
        }
        (void)end(false);
    }

    void Connect(const char *uri, const char *pwd, const char *app, const char *domain, const char *sip,
                 const char *guid, const char *dn) override {
        wsb_appws_client_config *cfg = wsb_appws_client_config_new(uri, app, pwd != nullptr ? pwd : "");
        if (cfg != nullptr &&
            wsb_appws_client_config_set_identity(cfg, domain != nullptr ? domain : "", sip != nullptr ? sip : "",
                                                 guid != nullptr ? guid : "", dn != nullptr ? dn : "",
                                                 nullptr) != WSB_RESULT_OK) {
            wsb_appws_client_config_free(cfg);
            cfg = nullptr;
        }
        start(cfg, nullptr);
    }

    void Connect(const char *uri, const char *app, UAppWebsocketAuthenticator *authenticator) override {
        start(wsb_appws_client_config_new(uri, app, nullptr), authenticator);
    }

    bool Authenticate(const char *domain, const char *sip, const char *guid, const char *dn, const char *info,
                      const char *digest, const char *sessionKey) override {
        wsb_appws_client *c = current();
        return c != nullptr &&
               wsb_appws_client_authenticate(c, domain, sip, guid, dn, info, digest, sessionKey) == WSB_RESULT_OK;
    }

    void MessageComplete() override {
        if (wsb_appws_client *c = current()) {
            (void)wsb_appws_client_message_complete(c);
        }
    }

    void MessageSend(const char *json, char *buffer = nullptr) override {
        (void)buffer;
        if (wsb_appws_client *c = current()) {
            (void)wsb_appws_client_send(c, json);
        }
    }

    void MessageSendText(const char *buffer) override {
        wsb_appws_client *c = current();
        if (c != nullptr && buffer != nullptr) {
            (void)wsb_appws_client_send_text(c, reinterpret_cast<const uint8_t *>(buffer), std::strlen(buffer));
        }
    }

    void Encrypt(const char *seed, const char *data, char *out, unsigned outLen) override {
        crypto(wsb_appws_client_encrypt, seed, data, out, outLen);
    }
    void Decrypt(const char *seed, const char *data, char *out, unsigned outLen) override {
        crypto(wsb_appws_client_decrypt, seed, data, out, outLen);
    }
    void Hash(const char *seed, const char *data, char *out, unsigned outLen) override {
        crypto(wsb_appws_client_hash, seed, data, out, outLen);
    }

    void Close() override {
        if (wsb_appws_client *c = current()) {
            (void)wsb_appws_client_close(c);
        }
    }

  private:
    typedef wsb_result (*CryptoFn)(wsb_appws_client *, const char *, const char *, char *, size_t);

    void crypto(CryptoFn fn, const char *seed, const char *data, char *out, unsigned outLen) {
        wsb_appws_client *c = current();
        if (c == nullptr || seed == nullptr || data == nullptr) {
            if (out != nullptr && outLen > 0) {
                out[0] = '\0';
            }
            return;
        }
        (void)fn(c, seed, data, out, outLen);
    }

    wsb_appws_client *current() const { return link_ != nullptr ? link_->client : nullptr; }

    // Lets go of the current connection: no further callback of it reaches the user, and its
    // client is freed (by the releaser when called from one of its own callbacks, where the
    // library cannot free it). Returns true when its Closed is still owed and `closed_owed`
    // asked for it; the caller then delivers it.
    bool end(bool closed_owed) {
        detail::Link *l = link_;
        link_ = nullptr;
        if (l == nullptr) {
            return false;
        }
        l->owner = nullptr;
        // Claims the Closed against a callback delivering it right now (only one side wins).
        bool owed = !l->closed.exchange(true) && closed_owed;
        wsb_appws_client *c = l->client;
        if (l->callback_thread.load() == std::this_thread::get_id()) {
            detail::Releaser::instance().release(c);
        } else {
            // Returns once a callback in progress has finished; `l` is deleted by then.
            (void)wsb_appws_client_free(c);
        }
        return owed;
    }

    void start(wsb_appws_client_config *cfg, UAppWebsocketAuthenticator *authenticator) {
        // Each Connect is owed one Closed: the live connection's comes now, before the next one
        // starts. The user may delete this client in it (then nothing starts) or Connect again
        // (that connection is then ended the same way).
        while (link_ != nullptr) {
            if (end(true) && user_ != nullptr) {
                bool deleted = false;
                bool *outer = deleted_;
                deleted_ = &deleted;
                user_->AppWebsocketClientClosed(this);
                if (deleted) {
                    if (outer != nullptr) {
                        *outer = true;
                    }
                    wsb_appws_client_config_free(cfg);
                    return;
                }
                deleted_ = outer;
            }
        }
        auto *l = new detail::Link(this, user_, authenticator);
        wsb_result r = WSB_RESULT_INVALID_ARGUMENT;
        if (cfg != nullptr && wsb_appws_client_config_set_manual_complete(cfg, true) == WSB_RESULT_OK &&
            wsb_appws_client_config_set_send_results(cfg, true) == WSB_RESULT_OK) {
            // userdata_free deletes the link, also when creation fails.
            r = wsb_appws_client_new(cfg, &AppWebsocketClient::on_event, l, &AppWebsocketClient::free_link,
                                     &l->client);
        } else {
            delete l;
            l = nullptr;
        }
        wsb_appws_client_config_free(cfg);
        if (r == WSB_RESULT_OK) {
            link_ = l;
        } else if (user_ != nullptr) {
            // A URI or argument the library refused: the connection is over before it began.
            user_->AppWebsocketClientClosed(this);
        }
    }

    static void free_link(void *userdata) { delete static_cast<detail::Link *>(userdata); }

    static void on_event(void *userdata, wsb_appws_client *client, const wsb_appws_client_event *ev) {
        (void)client;
        auto *l = static_cast<detail::Link *>(userdata);
        AppWebsocketClient *self = l->owner;
        if (self == nullptr || l->user == nullptr) {
            return; // deleted (or reconnected) meanwhile
        }
        l->callback_thread = std::this_thread::get_id();
        switch (ev->kind) {
        case WSB_APPWS_CLIENT_EVENT_TYPE_CONNECTED:
            l->user->AppWebsocketClientConnectComplete(self);
            break;
        case WSB_APPWS_CLIENT_EVENT_TYPE_MESSAGE:
            l->user->AppWebsocketClientMessage(self, ev->json, 0, ev->mt, ev->src);
            break;
        case WSB_APPWS_CLIENT_EVENT_TYPE_SENT:
            l->user->AppWebsocketClientSendResult(self);
            break;
        case WSB_APPWS_CLIENT_EVENT_TYPE_CHALLENGE:
            if (l->authenticator != nullptr) {
                l->authenticator->AppWebsocketAuthenticatorChallenge(self, ev->text);
            }
            break;
        case WSB_APPWS_CLIENT_EVENT_TYPE_CLOSED:
            // The last use of self: the callback may delete it. Skipped when a Connect from
            // another thread has just claimed this Closed (it delivers it itself).
            if (!l->closed.exchange(true)) {
                l->user->AppWebsocketClientClosed(self);
            }
            break;
        default:
            break;
        }
        // `l` is alive until the client is freed, which waits for this callback.
        l->callback_thread = std::thread::id();
    }

    UAppWebsocketClient *user_;
    detail::Link *link_ = nullptr;
    // Set while Connect delivers a Closed: tells it whether the user deleted this client there.
    bool *deleted_ = nullptr;
};

inline IAppWebsocketClient *IAppWebsocketClient::Create(IIoMux *iomux, UAppWebsocketClient *user,
                                                        ISocketProvider *tcpSocketProvider,
                                                        ISocketProvider *tlsSocketProvider, IDns *dns,
                                                        IInstanceLog *log) {
    (void)iomux;
    (void)tcpSocketProvider;
    (void)tlsSocketProvider;
    (void)dns;
    (void)log;
    return new AppWebsocketClient(user);
}

} // namespace innovaphone
} // namespace compat
} // namespace wsb

#if !defined(WSB_INNOVAPHONE_NO_GLOBAL)
using wsb::compat::innovaphone::FinishReleases;
using wsb::compat::innovaphone::IAppWebsocketClient;
using wsb::compat::innovaphone::IDns;
using wsb::compat::innovaphone::IInstanceLog;
using wsb::compat::innovaphone::IIoMux;
using wsb::compat::innovaphone::ISocketProvider;
using wsb::compat::innovaphone::UAppWebsocketAuthenticator;
using wsb::compat::innovaphone::UAppWebsocketClient;
using wsb::compat::innovaphone::word;
#endif

#endif // WSBROKER_COMPAT_APPWEBSOCKET_CLIENT_HPP
