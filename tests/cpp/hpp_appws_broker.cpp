// hpp_appws_broker: exercises wsb::AppWebsocketClient, wsb::AppService, wsb::Broker and the
// wsb::appws crypto from wsbroker.hpp against real peers: the AppWebsocket client logs in to the
// app service (and to the broker's AppWebsocket listener), over wss:// too; a wsb::Client speaks
// Achex to the broker's in-process service, to a wss:// listener and plays the webtalk browser.
// Run under ASan + UBSan.
//   usage: hpp_appws_broker PKI_DIR    (made by tests/pki.sh)
// Exit status 0 only when every CHECK held.
#include "test_util.hpp"
#include "wsbroker.hpp"

#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

constexpr auto kWait = 10s;
const std::string kChallenge = "0123456789abcdef";
const std::string kKey = "d58c77eae0c1c1f37a9f545e207643c926ad9ea4932016a83a4a01029de37760";

// A thread-safe queue of strings the handlers fill and the main thread drains.
class Inbox {
  public:
    void put(std::string s) {
        std::lock_guard<std::mutex> g(m_);
        q_.push_back(std::move(s));
        cv_.notify_all();
    }
    std::optional<std::string> get(std::chrono::milliseconds wait = kWait) {
        std::unique_lock<std::mutex> g(m_);
        if (!cv_.wait_for(g, wait, [this] { return !q_.empty(); })) {
            return std::nullopt;
        }
        std::string s = std::move(q_.front());
        q_.pop_front();
        return s;
    }

  private:
    std::mutex m_;
    std::condition_variable cv_;
    std::deque<std::string> q_;
};

void crypto_vectors() {
    std::string out;
    CHECK(wsb::appws::session_key(kChallenge, "pwd", out).ok() && out == kKey);
    CHECK(wsb::appws::encrypt(kKey, "seed1", "hello", out).ok() && out == "970a852834");
    CHECK(wsb::appws::decrypt(kKey, "seed1", "970A852834", out).ok() && out == "hello");
    CHECK(wsb::appws::hash(kKey, "seed1", "hello", out).ok() &&
          out == "f677f09a186944407a62adc3b8b7dae0a421233bfc63b20a33b7cc9cde95d533");
    CHECK(wsb::appws::digest("myapp", "", "myapp", "00000000000000000000000000000000", "Admin", std::nullopt, kChallenge,
                             "pwd", out)
              .ok() &&
          out == "54ef6250b93b761b5af73332fb9d149322b0aa2967151d2436e9f02cecafe03f");
    CHECK(wsb::appws::digest("pbxadminapi", "", "", "", "", std::string_view("{}"), kChallenge, "pwd", out).ok() &&
          out == "57b23fe824b9222a7ac879597cb509bcdc865a1bfeb057d9d12118cef0c3ba34");
    CHECK(wsb::appws::decrypt(kKey, "seed1", "abc", out).code() == wsb::Code::InvalidArgument);
    CHECK(wsb::appws::hash(kKey, std::string_view("a\0b", 3), "x", out).code() == wsb::Code::InvalidArgument);
}

// Queue-mode client against a callback-mode service that replies from its handler.
void client_and_service() {
    Inbox logins, closes;
    wsb::AppServiceHandlers h;
    h.on_login([&](wsb::AppServiceRef, const wsb::AppServiceEvent &ev) {
         logins.put(std::string(ev.app) + "|" + std::string(ev.sip) + "|" + std::string(ev.dn) + "|" +
                    std::string(ev.info));
     })
        .on_message([](wsb::AppServiceRef s, const wsb::AppServiceEvent &ev) {
            if (ev.mt == "Throw") {
                throw std::runtime_error("handler failure"); // the session is closed with 1011
            }
            (void)s.reply(ev.conn, ev.src, "{\"mt\":\"" + std::string(ev.mt) + "Result\",\"len\":" +
                                               std::to_string(ev.data.size()) + "}");
        })
        .on_closed([&](wsb::AppServiceRef, const wsb::AppServiceEvent &ev) { closes.put(std::to_string(ev.close_status)); });
    wsb::AppService svc;
    CHECK(wsb::AppService::try_create(wsb::AppServiceConfig().app("myapp", "pwd"), std::move(h), svc).ok());
    CHECK(svc.port() != 0);
    const std::string url = "ws://127.0.0.1:" + std::to_string(svc.port()) + "/";

    wsb::AppWebsocketIdentity id;
    id.sip = "alice";
    id.dn = "Alice";
    id.info = "{\"cn\":\"A\"}";
    wsb::AppWebsocketClient c;
    CHECK(wsb::AppWebsocketClient::try_create(wsb::AppWebsocketClientConfig(url, "myapp", "pwd").identity(id), c).ok());
    auto ev = c.poll(kWait);
    CHECK(ev && ev->type == wsb::AppWebsocketClientEventType::Connected);
    CHECK(c.is_connected());
    CHECK(logins.get() == std::optional<std::string>("myapp|alice|Alice|{\"cn\":\"A\"}"));
    CHECK(c.send("{\"mt\":\"Ping\",\"src\":\"s1\"}").queued());
    ev = c.poll(kWait);
    CHECK(ev && ev->type == wsb::AppWebsocketClientEventType::Message && ev->mt == "PingResult" && ev->src == "s1");
    CHECK(c.send("not json").code() == wsb::Code::InvalidArgument);
    std::string hex, back, hashed;
    CHECK(c.encrypt("seed", "hello", hex).ok() && hex.size() == 10);
    CHECK(c.decrypt("seed", hex, back).ok() && back == "hello");
    CHECK(c.hash("seed", "x", hashed).ok() && hashed.size() == 64);
    // A throwing service handler closes that session with 1011.
    CHECK(c.send("{\"mt\":\"Throw\"}").queued());
    ev = c.poll(kWait);
    CHECK(ev && ev->type == wsb::AppWebsocketClientEventType::Closed && ev->close_status == 1011);
    CHECK(closes.get().has_value());
    CHECK(c.poll(0ms, *ev).code() == wsb::Code::ShutDown);

    // Wrong password: LoginFailed, then Closed.
    wsb::AppWebsocketClient bad;
    CHECK(wsb::AppWebsocketClient::try_create(wsb::AppWebsocketClientConfig(url, "myapp", "nope"), bad).ok());
    ev = bad.poll(kWait);
    CHECK(ev && ev->type == wsb::AppWebsocketClientEventType::LoginFailed);
    ev = bad.poll(kWait);
    CHECK(ev && ev->type == wsb::AppWebsocketClientEventType::Closed);
    CHECK(svc.shutdown().ok());
}

// Callback-mode client in authenticator mode against an echo service.
void authenticator_against_echo() {
    wsb::AppService svc;
    CHECK(wsb::AppService::try_create(wsb::AppServiceConfig().app("app", "hostpw").echo(true), svc).ok());
    const std::string url = "ws://127.0.0.1:" + std::to_string(svc.port()) + "/";
    Inbox got;
    wsb::AppWebsocketClientHandlers h;
    h.on_challenge([&](wsb::AppWebsocketClientRef c, const wsb::AppWebsocketClientEvent &ev) {
         wsb::AppWebsocketIdentity id;
         id.sip = "bob";
         std::string dg, key;
         if (wsb::appws::digest("app", id.domain, id.sip, id.guid, id.dn, std::nullopt, ev.text, "hostpw", dg).ok() &&
             wsb::appws::session_key(ev.text, "hostpw", key).ok()) {
             (void)c.authenticate(id, dg, key);
         }
     })
        .on_connected([](wsb::AppWebsocketClientRef c, const wsb::AppWebsocketClientEvent &) {
            (void)c.send("{\"mt\":\"Echo\",\"src\":\"7\"}");
        })
        .on_message([&](wsb::AppWebsocketClientRef, const wsb::AppWebsocketClientEvent &ev) {
            got.put(std::string(ev.mt) + "/" + std::string(ev.src));
        })
        .on_closed([&](wsb::AppWebsocketClientRef, const wsb::AppWebsocketClientEvent &) { got.put("closed"); });
    wsb::AppWebsocketClient c = wsb::AppWebsocketClient::create(wsb::AppWebsocketClientConfig(url, "app", std::nullopt), std::move(h));
    CHECK(got.get() == std::optional<std::string>("EchoResult/7"));
    CHECK(c.close().ok());
    CHECK(got.get() == std::optional<std::string>("closed"));
    CHECK(c.close().code() == wsb::Code::NotConnected);
}

// The next text message a queue-mode wsb::Client receives, or "" after kWait.
std::string next_text(const wsb::Client &ws) {
    auto end = std::chrono::steady_clock::now() + kWait;
    while (std::chrono::steady_clock::now() < end) {
        auto ev = ws.poll(100ms);
        if (ev && ev->type == wsb::ClientEventType::Message) {
            return std::string(ev->data);
        }
        if (ev && (ev->type == wsb::ClientEventType::Closed || ev->type == wsb::ClientEventType::Error)) {
            return "<closed " + std::to_string(ev->close_status) + ">";
        }
    }
    return "";
}

bool connected(const wsb::Client &ws) {
    auto ev = ws.poll(kWait);
    return ev && ev->type == wsb::ClientEventType::Connected;
}

void broker_achex() {
    Inbox events;
    wsb::BrokerHandlers h;
    h.on_service_message([&](wsb::BrokerRef b, const wsb::BrokerEvent &ev) {
         events.put("msg " + std::string(ev.name));
         (void)b.send_to_session(ev.service, ev.sid, "{\"got\":" + std::string(ev.data) + "}");
     })
        .on_login([&](wsb::BrokerRef, const wsb::BrokerEvent &ev) { events.put("login " + std::string(ev.name)); })
        .on_logout([&](wsb::BrokerRef, const wsb::BrokerEvent &ev) { events.put("logout " + std::string(ev.name)); });
    wsb::Broker broker;
    CHECK(wsb::Broker::try_create(
              wsb::BrokerConfig().auth([](std::string_view name, std::string_view, std::string &reason) {
                  reason = "only alice";
                  return name == "alice";
              }),
              std::move(h), broker)
              .ok());
    CHECK(broker.port(wsb::Listener::Achex) != 0 && broker.port(wsb::Listener::Wschat) == 0);
    uint64_t svc = 0, again = 0;
    CHECK(broker.register_service("svc", svc).ok());
    CHECK(broker.register_service("svc", again).code() == wsb::Code::InvalidState);
    CHECK(broker.set_events(true).ok());

    wsb::Client ws = wsb::Client::create(wsb::ClientConfig("ws://127.0.0.1:" + std::to_string(broker.port()) + "/"));
    CHECK(connected(ws));
    CHECK(next_text(ws).rfind("{\"SID\":", 0) == 0);
    CHECK(ws.send_text("{\"setID\":\"eve\",\"passwd\":\"x\"}").ok());
    CHECK(next_text(ws) == "{\"auth\":\"failed\",\"error\":\"only alice\"}");
    CHECK(ws.send_text("{\"setID\":\"alice\",\"passwd\":\"a\"}").ok());
    CHECK(next_text(ws) == "{\"auth\":\"ok\"}");
    CHECK(events.get() == std::optional<std::string>("login alice"));
    CHECK(ws.send_text("{\"to\":\"svc\",\"x\":1}").ok());
    CHECK(next_text(ws) == "{\"got\":{\"to\":\"svc\",\"x\":1,\"FROM\":\"alice\",\"sID\":2},\"FROM\":\"svc\",\"sID\":1}");
    CHECK(events.get() == std::optional<std::string>("msg alice"));
    CHECK(broker.send(svc, wsb::Target::Name, "alice", "{\"hi\":1}").ok());
    CHECK(next_text(ws) == "{\"hi\":1,\"FROM\":\"svc\",\"sID\":1}");
    CHECK(broker.send(svc, wsb::Target::Name, "nobody", "{}").code() == wsb::Code::NotFound);
    CHECK(broker.send(svc, wsb::Target::Name, "alice", "[1]").code() == wsb::Code::InvalidArgument);
    CHECK(broker.join(svc, "T1", true).ok());
    CHECK(ws.send_text("{\"joinHub\":\"T1\"}").ok());
    CHECK(next_text(ws) == "{\"joinHub\":\"OK\"}");
    CHECK(broker.leave(svc, "T1", true).ok());
    CHECK(next_text(ws) == "{\"leftHub\":\"T1\",\"user\":\"svc\",\"sID\":1}");
    auto st = broker.stats();
    CHECK(st && st->sessions == 1 && st->messages_in >= 3);
    CHECK(ws.close().ok());
    CHECK(events.get() == std::optional<std::string>("logout alice"));
    CHECK(broker.unregister_service(svc).ok());
}

void broker_webtalk_and_appws() {
    wsb::Broker broker;
    CHECK(wsb::Broker::try_create(wsb::BrokerConfig()
                                      .listener(wsb::Listener::Achex, "off")
                                      .listener(wsb::Listener::Webtalk, "127.0.0.1:0")
                                      .listener(wsb::Listener::Appws, "127.0.0.1:0")
                                      .appws_app("myapp", "pw"),
                                  broker)
              .ok());
    uint64_t user = 0, chan = 0;
    std::string salt;
    CHECK(broker.webtalk_create_user(user, salt).ok() && user == 1 && salt.size() == 20);
    CHECK(broker.webtalk_whisper(99, "x").code() == wsb::Code::NotFound);
    CHECK(broker.webtalk_kill_channel(1).code() == wsb::Code::InvalidArgument);
    CHECK(broker.webtalk_whisper(user, "one").ok());
    CHECK(broker.webtalk_create_channel(chan).ok() && chan == 2);
    CHECK(broker.webtalk_join(chan, user).ok());
    CHECK(broker.webtalk_shout(chan, "two").ok());
    wsb::Client browser = wsb::Client::create(
        wsb::ClientConfig("ws://127.0.0.1:" + std::to_string(broker.port(wsb::Listener::Webtalk)) + "/webtalk"));
    CHECK(connected(browser));
    CHECK(browser.send_text(std::to_string(user) + "!" + salt).ok());
    CHECK(next_text(browser) == "one");
    CHECK(next_text(browser) == "two");
    CHECK(broker.webtalk_leave(chan, user).ok());
    CHECK(broker.webtalk_shout(chan, "not for you").ok());
    CHECK(broker.webtalk_whisper(user, "three").ok());
    CHECK(next_text(browser) == "three");
    std::string value;
    CHECK(broker.webtalk_store("k", "v1").ok());
    CHECK(broker.webtalk_retrieve("k", value).ok() && value == "v1");
    CHECK(broker.webtalk_store("big", std::string(1000, 'x')).ok());
    CHECK(broker.webtalk_retrieve("big", value).ok() && value == std::string(1000, 'x'));
    CHECK(broker.webtalk_clear("k").ok());
    CHECK(broker.webtalk_retrieve("k", value).code() == wsb::Code::NotFound);
    CHECK(broker.webtalk_kill_user(user).ok());
    CHECK(next_text(browser) == "<closed 4003>");

    // The broker's AppWebsocket listener (built-in echo) for the AppWebsocket client.
    wsb::AppWebsocketClient c;
    const std::string url = "ws://127.0.0.1:" + std::to_string(broker.port(wsb::Listener::Appws)) + "/";
    CHECK(wsb::AppWebsocketClient::try_create(wsb::AppWebsocketClientConfig(url, "myapp", "pw"), c).ok());
    auto ev = c.poll(kWait);
    CHECK(ev && ev->type == wsb::AppWebsocketClientEventType::Connected);
    CHECK(c.send("{\"mt\":\"Echo\",\"src\":\"1\"}").queued());
    ev = c.poll(kWait);
    CHECK(ev && ev->mt == "EchoResult" && ev->src == "1");

    // Bad configurations fail at creation.
    wsb::Broker nope;
    CHECK(wsb::Broker::try_create(wsb::BrokerConfig().listener(wsb::Listener::WebtalkAdmin, "127.0.0.1:0"), nope).code() ==
          wsb::Code::InvalidArgument);
    CHECK(!nope);
    bool threw = false;
    try {
        (void)wsb::Broker::create(wsb::BrokerConfig().listener(wsb::Listener::Achex, std::string("a\0b", 3)));
    } catch (const wsb::Error &e) {
        threw = e.result().code() == wsb::Code::InvalidArgument;
    }
    CHECK(threw);
}

// A loopback port nobody listens on: a server's, once it has stopped.
uint16_t closed_port() {
    wsb::Server s = wsb::Server::create(wsb::ServerConfig());
    uint16_t port = s.port();
    CHECK(s.shutdown().ok());
    return port;
}

// The app service over wss://, and the AppWebsocket client's trust settings and certificate.
void appws_tls(const std::string &pki) {
    auto f = [&pki](const char *name) { return pki + "/" + name; };
    wsb::AppService svc;
    CHECK(wsb::AppService::try_create(
              wsb::AppServiceConfig().app("myapp", "pw").echo(true).tls(f("server.pem"), f("server.key")), svc)
              .ok());
    const std::string url = "wss://localhost:" + std::to_string(svc.port()) + "/";
    {
        // Only the CA file is trusted; a client certificate is presented (not asked for here).
        wsb::AppWebsocketClientConfig cfg(url, "myapp", "pw");
        cfg.ca_file(f("ca.pem")).system_roots(false).client_cert(f("client.pem"), f("client.key"));
        wsb::AppWebsocketClient c;
        CHECK(wsb::AppWebsocketClient::try_create(cfg, c).ok());
        auto ev = c.poll(kWait);
        CHECK(ev && ev->type == wsb::AppWebsocketClientEventType::Connected);
        CHECK(c.send("{\"mt\":\"Ping\",\"src\":\"tls\"}").queued());
        ev = c.poll(kWait);
        CHECK(ev && ev->mt == "PingResult" && ev->src == "tls");
    }
    {
        // The system roots alone do not know the test CA.
        wsb::AppWebsocketClient c = wsb::AppWebsocketClient::create(wsb::AppWebsocketClientConfig(url, "myapp", "pw"));
        auto ev = c.poll(kWait);
        CHECK(ev && ev->type == wsb::AppWebsocketClientEventType::Closed && ev->error == wsb::Code::CertificateInvalid);
    }
    wsb::AppWebsocketClient none;
    CHECK(wsb::AppWebsocketClient::try_create(wsb::AppWebsocketClientConfig("wss://localhost:1/", "a", "p").system_roots(false),
                                              none)
              .code() == wsb::Code::InvalidArgument);
    wsb::AppWebsocketClientConfig missing("wss://localhost:1/", "a", "p");
    missing.client_cert(f("none.pem"), f("client.key"));
    CHECK(wsb::AppWebsocketClient::try_create(missing, none).code() == wsb::Code::InvalidArgument);
    wsb::AppServiceConfig bad;
    bad.tls(f("none.pem"), f("server.key"));
    CHECK(bad.status() == wsb::Code::InvalidArgument && bad.error_detail().find("none.pem") != std::string::npos);
}

// The proxy setting decides the route: "" goes straight to the service, a proxy nobody listens
// on keeps the same service out of reach.
void appws_proxy() {
    wsb::AppService svc;
    CHECK(wsb::AppService::try_create(wsb::AppServiceConfig().app("myapp", "pw").echo(true), svc).ok());
    const std::string url = "ws://127.0.0.1:" + std::to_string(svc.port()) + "/";
    wsb::AppWebsocketClient direct =
        wsb::AppWebsocketClient::create(wsb::AppWebsocketClientConfig(url, "myapp", "pw").proxy(""));
    auto ev = direct.poll(kWait);
    CHECK(ev && ev->type == wsb::AppWebsocketClientEventType::Connected);
    wsb::AppWebsocketClient via = wsb::AppWebsocketClient::create(
        wsb::AppWebsocketClientConfig(url, "myapp", "pw").proxy("http://127.0.0.1:" + std::to_string(closed_port())));
    ev = via.poll(kWait);
    CHECK(ev && ev->type == wsb::AppWebsocketClientEventType::Closed &&
          (ev->error == wsb::Code::ProxyFailed || ev->error == wsb::Code::ConnectionRefused));
    wsb::AppWebsocketClientConfig socks(url, "a", "p");
    socks.proxy("socks5://127.0.0.1:1");
    CHECK(socks.status() == wsb::Code::InvalidArgument && socks.error_detail().rfind("proxy: ", 0) == 0);
}

// A wss:// Achex listener with a 1000-byte message limit.
void broker_tls_and_limit(const std::string &pki) {
    auto f = [&pki](const char *name) { return pki + "/" + name; };
    wsb::Broker broker;
    CHECK(wsb::Broker::try_create(wsb::BrokerConfig()
                                      .tls(wsb::Listener::Achex, f("server.pem"), f("server.key"))
                                      .max_message_size(wsb::Listener::Achex, 1000),
                                  broker)
              .ok());
    wsb::Client ws = wsb::Client::create(
        wsb::ClientConfig("wss://localhost:" + std::to_string(broker.port()) + "/").ca_file(f("ca.pem")));
    CHECK(connected(ws));
    CHECK(next_text(ws).rfind("{\"SID\":", 0) == 0);
    // Exactly at the limit is served as usual...
    std::string login = "{\"setID\":\"alice\",\"passwd\":\"a\",\"pad\":\"\"}";
    login.insert(login.size() - 2, 1000 - login.size(), 'x');
    CHECK(login.size() == 1000);
    CHECK(ws.send_text(login).ok());
    CHECK(next_text(ws) == "{\"auth\":\"ok\"}");
    // ...one byte more (far below the 64 KiB default) ends the connection with 1009.
    login.insert(login.size() - 2, 1, 'x');
    CHECK(ws.send_text(login).ok());
    CHECK(next_text(ws) == "<closed 1009>");
    wsb::BrokerConfig admin;
    admin.tls(wsb::Listener::WebtalkAdmin, f("server.pem"), f("server.key"));
    CHECK(admin.status() == wsb::Code::InvalidArgument);
    CHECK(wsb::BrokerConfig().max_message_size(wsb::Listener::Achex, 0).status() == wsb::Code::InvalidArgument);
    wsb::BrokerConfig missing;
    missing.tls(wsb::Listener::Achex, f("none.pem"), f("server.key"));
    CHECK(missing.status() == wsb::Code::InvalidArgument && missing.error_detail().find("none.pem") != std::string::npos);
}

} // namespace

int main(int argc, char **argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s PKI_DIR\n", argv[0]);
        return 2;
    }
    const std::string pki = argv[1];
    crypto_vectors();
    client_and_service();
    authenticator_against_echo();
    broker_achex();
    broker_webtalk_and_appws();
    appws_tls(pki);
    appws_proxy();
    broker_tls_and_limit(pki);
    std::printf("%d failures\n", test_util::failures.load());
    return test_util::failures.load() == 0 ? 0 : 1;
}
