// hpp_client: exercises wsb::Client from wsbroker.hpp against a real peer, the `websockets`
// server that client_peer.py runs (echo; "/close CODE REASON" closes; "/burst N" sends N
// numbered messages; it offers the subprotocols "chat.v2" and "chat"), and
// wsb::AppWebsocketClient against client_peer.py's silent server (it never answers; it checks
// the upgrade's X-App-Test header and the AppChallenge request).
//   usage: hpp_client ws://127.0.0.1:PORT ws://127.0.0.1:CLOSED_PORT ws://127.0.0.1:SILENT_PORT
// Exit status 0 only when every CHECK held.
#include "test_util.hpp"
#include "wsbroker.hpp"

#include <condition_variable>
#include <cstdio>
#include <deque>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

using namespace std::chrono_literals;

namespace {

constexpr auto kWait = 10s;

// An event copied out of its borrowed views.
struct Owned {
    wsb::ClientEventType type = wsb::ClientEventType::Connected;
    std::string data;
    bool is_text = false;
    bool closed_by_host = false;
    int32_t close_status = 0;
    wsb::Result error;
    uint32_t attempt = 0;
    std::string protocol;

    explicit Owned(const wsb::ClientEvent &e)
        : type(e.type), data(e.data), is_text(e.is_text), closed_by_host(e.closed_by_host),
          close_status(e.close_status), error(e.error), attempt(e.attempt), protocol(e.protocol) {}
};

// Collects callback-mode events for the main thread.
class Recorder {
  public:
    void add(const wsb::ClientEvent &ev) {
        std::lock_guard<std::mutex> g(m_);
        q_.emplace_back(ev);
        cv_.notify_all();
    }
    // The next event of `type` (others before it are dropped), or nullopt after `wait`.
    std::optional<Owned> next(wsb::ClientEventType type, std::chrono::milliseconds wait = kWait) {
        std::unique_lock<std::mutex> g(m_);
        auto end = std::chrono::steady_clock::now() + wait;
        while (true) {
            while (!q_.empty()) {
                Owned ev = q_.front();
                q_.pop_front();
                if (ev.type == type) {
                    return ev;
                }
            }
            if (cv_.wait_until(g, end) == std::cv_status::timeout && q_.empty()) {
                return std::nullopt;
            }
        }
    }
    wsb::ClientHandlers handlers() {
        auto h = [this](wsb::ClientRef, const wsb::ClientEvent &ev) { add(ev); };
        wsb::ClientHandlers hs;
        hs.on_connected(h).on_message(h).on_pong(h).on_sent(h).on_drain(h).on_closed(h).on_error(h).on_reconnecting(h);
        return hs;
    }

  private:
    std::mutex m_;
    std::condition_variable cv_;
    std::deque<Owned> q_;
};

// Queue mode: the next event of `type`, polling for at most kWait.
std::optional<Owned> next_polled(const wsb::Client &c, wsb::ClientEventType type, std::chrono::milliseconds wait = kWait) {
    auto end = std::chrono::steady_clock::now() + wait;
    while (std::chrono::steady_clock::now() < end) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
        std::optional<wsb::ClientEvent> ev = c.poll(left);
        if (ev && ev->type == type) {
            return Owned(*ev);
        }
    }
    return std::nullopt;
}

void config_errors(const std::string &url) {
    CHECK(wsb::Code::NotConnected == wsb::Result(WSB_RESULT_NOT_CONNECTED));
    CHECK(static_cast<uint32_t>(wsb::ClientEventType::Reconnecting) == 8);
    {
        auto token = std::make_shared<int>(0);
        wsb::ClientHandlers h;
        h.on_message([token](wsb::ClientRef, const wsb::ClientEvent &) {});
        wsb::Client c;
        wsb::Result r = wsb::Client::try_create(wsb::ClientConfig("http://nowhere/"), std::move(h), c);
        CHECK(r == wsb::Code::InvalidArgument && !c);
        CHECK(token.use_count() == 1); // released by wsb_client_new on failure
    }
    {
        wsb::ClientConfig cfg(url);
        cfg.connect_timeout(-1ms);
        CHECK(cfg.status() == wsb::Code::InvalidArgument && cfg.error_detail() == "connect_timeout: negative duration");
        wsb::ClientConfig hdr(url);
        hdr.header("Bad Name", "x").subprotocol("never applied");
        CHECK(hdr.status() == wsb::Code::InvalidArgument && hdr.error_detail().rfind("header: ", 0) == 0);
        wsb::ClientConfig nul(std::string("ws://a\0b", 8));
        CHECK(nul.status() == wsb::Code::InvalidArgument);
        wsb::Client c;
        CHECK(wsb::Client::try_create(hdr, c) == wsb::Code::InvalidArgument && !c);
        bool thrown = false;
        try {
            wsb::Client t = wsb::Client::create(hdr);
        } catch (const wsb::Error &e) {
            thrown = e.result() == wsb::Code::InvalidArgument && std::string(e.what()).find("wsb::Client::create: ") == 0;
        }
        CHECK(thrown);
        wsb::ClientConfig ca("wss://127.0.0.1:1/");
        ca.ca_file("/nonexistent/ca.pem");
        CHECK(wsb::Client::try_create(ca, c) == wsb::Code::InvalidArgument && !wsb::last_error().empty());
    }
}

void queue_mode(const std::string &url) {
    wsb::ClientConfig cfg(url + "/q?x=1");
    cfg.subprotocol("chat").header("X-Test", "1").ping_interval(0ms).send_results(false);
    wsb::Client c = wsb::Client::create(cfg);
    CHECK(c.send_text("early") == wsb::Code::NotConnected);
    CHECK(!c.last_error().empty());
    auto up = next_polled(c, wsb::ClientEventType::Connected);
    CHECK(up && up->protocol == "chat");
    CHECK(c.is_connected());

    CHECK(c.send_text("héllo").ok());
    auto m = next_polled(c, wsb::ClientEventType::Message);
    CHECK(m && m->is_text && m->data == "héllo");
    const std::string bin("\x00\x01\xff", 3);
    CHECK(c.send_binary(bin).ok());
    m = next_polled(c, wsb::ClientEventType::Message);
    CHECK(m && !m->is_text && m->data == bin);
    std::string big(4u << 20, '\0');
    for (size_t i = 0; i < big.size(); i++) {
        big[i] = static_cast<char>(i * 31 + 7);
    }
    CHECK(c.send(big.data(), big.size(), false).queued());
    m = next_polled(c, wsb::ClientEventType::Message);
    CHECK(m && m->data == big);

    CHECK(c.ping("p1").ok());
    auto pong = next_polled(c, wsb::ClientEventType::Pong);
    CHECK(pong && pong->data == "p1");
    CHECK(c.ping(std::string(126, 'p')) == wsb::Code::TooBig);
    CHECK(c.send("\xff\xfe", true) == wsb::Code::InvalidUtf8);
    CHECK(c.close(1000, std::string("a\0b", 3)) == wsb::Code::InvalidArgument);

    wsb::ClientEvent ev;
    CHECK(c.poll(20ms, ev) == wsb::Code::Timeout);
    CHECK(c.interrupt().ok());
    CHECK(c.poll(wsb::forever, ev) == wsb::Code::Interrupted);

    CHECK(c.send_text("/close 4001 bye now").ok());
    auto closed = next_polled(c, wsb::ClientEventType::Closed);
    CHECK(closed && closed->close_status == 4001 && closed->data == "bye now" && !closed->closed_by_host);
    CHECK(!c.is_connected());
    CHECK(c.send_text("late") == wsb::Code::NotConnected);

    wsb::Client moved(std::move(c));
    CHECK(!c && moved);
    CHECK(moved.shutdown().ok() && !moved);
    CHECK(moved.shutdown().ok()); // wsb_client_free(NULL)
}

void manual_flow_control(const std::string &url) {
    wsb::ClientConfig cfg(url);
    cfg.manual_complete(true);
    wsb::Client c;
    CHECK(wsb::Client::try_create(cfg, c).ok());
    CHECK(next_polled(c, wsb::ClientEventType::Connected).has_value());
    CHECK(c.send_text("/burst 3").ok());
    auto m = next_polled(c, wsb::ClientEventType::Message);
    CHECK(m && m->data == "m0");
    CHECK(!c.poll(400ms).has_value()); // held until message_complete
    CHECK(c.message_complete().ok());
    m = next_polled(c, wsb::ClientEventType::Message);
    CHECK(m && m->data == "m1");
    CHECK(!c.poll(300ms).has_value());
    CHECK(c.message_complete().ok());
    m = next_polled(c, wsb::ClientEventType::Message);
    CHECK(m && m->data == "m2");
}

wsb::Client *g_client = nullptr;

void callback_mode(const std::string &url) {
    Recorder rec;
    wsb::ClientHandlers h = rec.handlers();
    h.on_message([&rec](wsb::ClientRef c, const wsb::ClientEvent &ev) {
        // The library NUL-terminates every message, binary included.
        CHECK(ev.data.data() != nullptr && ev.data.data()[ev.data.size()] == '\0');
        if (ev.data == "reentrant") {
            CHECK(g_client->shutdown() == wsb::Code::Reentrant);
            CHECK(static_cast<bool>(*g_client) && c.is_connected());
            CHECK(c.send_text("reentrant ok").ok());
            return;
        }
        if (ev.data == "throw") {
            throw std::runtime_error("handler failure");
        }
        rec.add(ev);
    });
    wsb::ClientConfig cfg(url);
    cfg.subprotocol("chat.v2").send_results(true);
    wsb::Client c = wsb::Client::create(cfg, std::move(h));
    g_client = &c;
    auto up = rec.next(wsb::ClientEventType::Connected);
    CHECK(up && up->protocol == "chat.v2");
    wsb::ClientEvent ev;
    CHECK(c.poll(0ms, ev) == wsb::Code::InvalidState);
    CHECK(c.interrupt() == wsb::Code::InvalidState);

    CHECK(c.send_text("one").ok());
    CHECK(rec.next(wsb::ClientEventType::Sent).has_value());
    auto m = rec.next(wsb::ClientEventType::Message);
    CHECK(m && m->data == "one");
    CHECK(c.send_text("reentrant").ok());
    m = rec.next(wsb::ClientEventType::Message);
    CHECK(m && m->data == "reentrant ok");

    // Without on_exception, a throwing handler closes the connection with 1011.
    CHECK(c.send_text("throw").ok());
    auto closed = rec.next(wsb::ClientEventType::Closed);
    CHECK(closed && closed->close_status == 1011 && closed->closed_by_host);
    g_client = nullptr;
}

void exception_handler(const std::string &url) {
    Recorder rec;
    std::string caught;
    std::mutex mu;
    wsb::ClientHandlers h = rec.handlers();
    h.on_message([](wsb::ClientRef, const wsb::ClientEvent &) { throw std::runtime_error("from on_message"); })
        .on_exception([&](wsb::ClientRef c, const wsb::ClientEvent &ev, std::exception_ptr e) {
            try {
                std::rethrow_exception(e);
            } catch (const std::exception &x) {
                std::lock_guard<std::mutex> g(mu);
                caught = x.what();
            }
            CHECK(c.is_connected() && ev.type == wsb::ClientEventType::Message);
            (void)c.close(4003, "handled");
        });
    wsb::Client c = wsb::Client::create(wsb::ClientConfig(url), std::move(h));
    CHECK(rec.next(wsb::ClientEventType::Connected).has_value());
    CHECK(c.send_text("x").ok());
    auto closed = rec.next(wsb::ClientEventType::Closed);
    CHECK(closed && closed->close_status == 4003);
    std::lock_guard<std::mutex> g(mu);
    CHECK(caught == "from on_message");
}

void refused(const std::string &closed_url) {
    {
        wsb::Client c = wsb::Client::create(wsb::ClientConfig(closed_url));
        auto err = next_polled(c, wsb::ClientEventType::Error);
        CHECK(err && err->error == wsb::Code::ConnectionRefused && !err->data.empty());
        CHECK(!c.poll(200ms).has_value()); // nothing follows without reconnection
    }
    {
        Recorder rec;
        wsb::Client c = wsb::Client::create(wsb::ClientConfig(closed_url), rec.handlers());
        auto err = rec.next(wsb::ClientEventType::Error);
        CHECK(err && err->error == wsb::Code::ConnectionRefused);
    }
    {
        wsb::ClientConfig cfg(closed_url);
        cfg.reconnect(50ms, 100ms, 2);
        wsb::Client c = wsb::Client::create(cfg);
        std::string seen;
        auto end = std::chrono::steady_clock::now() + 2s;
        while (std::chrono::steady_clock::now() < end) {
            auto ev = c.poll(100ms);
            if (ev) {
                seen += ev->type == wsb::ClientEventType::Error          ? "E"
                        : ev->type == wsb::ClientEventType::Reconnecting ? "R" + std::to_string(ev->attempt)
                        : ev->type == wsb::ClientEventType::GaveUp       ? "G" + std::to_string(ev->attempt)
                                                                         : "?";
            }
        }
        // G2: reconnection says it has stopped after the 2 attempts.
        CHECK(seen == "ER1ER2EG2");
        if (seen != "ER1ER2EG2") {
            std::printf("reconnect sequence: %s\n", seen.c_str());
        }
    }
}

// The login timeout against a service that never answers AppChallenge; the upgrade carries the
// header the silent peer requires.
void appws_login_timeout(const std::string &silent_url) {
    wsb::AppWebsocketClientConfig cfg(silent_url, "myapp", "pw");
    cfg.login_timeout(300ms).header("X-App-Test", "yes");
    auto start = std::chrono::steady_clock::now();
    wsb::AppWebsocketClient c = wsb::AppWebsocketClient::create(cfg);
    auto ev = c.poll(kWait);
    auto waited = std::chrono::steady_clock::now() - start;
    CHECK(ev && ev->type == wsb::AppWebsocketClientEventType::LoginFailed);
    CHECK(ev && ev->text == "login timed out: no AppChallengeResult within 300 ms");
    CHECK(waited >= 250ms && waited < 5s); // well within the 10 s default: the setting took effect
    ev = c.poll(kWait);
    CHECK(ev && ev->type == wsb::AppWebsocketClientEventType::Closed);
    wsb::AppWebsocketClientConfig negative(silent_url, "a", "p");
    negative.login_timeout(-1ms);
    CHECK(negative.status() == wsb::Code::InvalidArgument && negative.error_detail() == "login_timeout: negative duration");
    wsb::AppWebsocketClientConfig zero(silent_url, "a", "p");
    zero.login_timeout(0ms);
    CHECK(zero.status() == wsb::Code::InvalidArgument);
    wsb::AppWebsocketClientConfig header(silent_url, "a", "p");
    header.header("Bad Name", "x");
    CHECK(header.status() == wsb::Code::InvalidArgument && header.error_detail().rfind("header: ", 0) == 0);
}

} // namespace

int main(int argc, char **argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: %s ws://127.0.0.1:PORT ws://127.0.0.1:CLOSED_PORT ws://127.0.0.1:SILENT_PORT\n",
                     argv[0]);
        return 2;
    }
    const std::string url = argv[1], closed_url = argv[2], silent_url = argv[3];
    config_errors(url);
    queue_mode(url);
    manual_flow_control(url);
    callback_mode(url);
    exception_handler(url);
    refused(closed_url);
    appws_login_timeout(silent_url);
    int failed = test_util::failures.load();
    std::printf("checks failed: %d\n", failed);
    return failed == 0 ? 0 : 1;
}
