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
//   * A client deleted inside one of its own callbacks is released on a short-lived thread
//     (wsbroker cannot stop a client from its own thread).
//
// Names are declared in wsb::compat::innovaphone and, unless WSB_INNOVAPHONE_NO_GLOBAL is
// defined, brought into the global namespace.
#ifndef WSBROKER_COMPAT_APPWEBSOCKET_CLIENT_HPP
#define WSBROKER_COMPAT_APPWEBSOCKET_CLIENT_HPP

#include "wsbroker.h"

#include <atomic>
#include <cstring>
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
};

} // namespace detail

class AppWebsocketClient final : public IAppWebsocketClient {
  public:
    explicit AppWebsocketClient(UAppWebsocketClient *user) : user_(user) {}
    AppWebsocketClient(const AppWebsocketClient &) = delete;
    AppWebsocketClient &operator=(const AppWebsocketClient &) = delete;
    ~AppWebsocketClient() override { release(); }

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

    // Frees the current connection's client. From inside its own callback the library cannot
    // stop it, so a short-lived thread does, once the callback has returned.
    void release() {
        detail::Link *l = link_;
        link_ = nullptr;
        if (l == nullptr) {
            return;
        }
        l->owner = nullptr;
        wsb_appws_client *c = l->client;
        if (l->callback_thread.load() == std::this_thread::get_id()) {
            std::thread([c] { (void)wsb_appws_client_free(c); }).detach();
        } else {
            (void)wsb_appws_client_free(c);
        }
    }

    void start(wsb_appws_client_config *cfg, UAppWebsocketAuthenticator *authenticator) {
        release();
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
            // The last use of self: the callback may delete it.
            l->user->AppWebsocketClientClosed(self);
            break;
        default:
            break;
        }
        // `l` is alive until the client is freed, which waits for this callback.
        l->callback_thread = std::thread::id();
    }

    UAppWebsocketClient *user_;
    detail::Link *link_ = nullptr;
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
