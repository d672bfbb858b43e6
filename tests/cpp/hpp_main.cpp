// hpp_test: exercises wsbroker.hpp. Modes:
//   unit      self-contained checks (results, configuration errors, modes, ownership);
//   callback  an echo server in callback mode, driven by drive.py;
//   queue     the same echo server in queue mode (poll loop on the main thread).
// Exit status 0 only when every CHECK held.
#include "compat/barracuda_wss.hpp"
#include "hpp_test.hpp"
#include "test_util.hpp"
#include "wsbroker.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

using namespace std::chrono_literals;

namespace {

void unit() {
    wsb::Result bp(WSB_RESULT_BACKPRESSURE);
    CHECK(!bp.ok() && bp.queued() && !static_cast<bool>(bp));
    CHECK(std::strcmp(bp.message(), wsb_result_str(WSB_RESULT_BACKPRESSURE)) == 0);
    CHECK(wsb::Result(wsb::Code::Ok).ok() && wsb::Result().ok());
    CHECK(wsb::Result(WSB_RESULT_NOT_FOUND) == wsb::Code::NotFound);
    CHECK(wsb::version_matches());
    CHECK(std::strcmp(wsb_version(), WSB_VERSION_STRING) == 0);

    {
        wsb::ServerConfig cfg;
        cfg.threads(0).bind("127.0.0.1:0");
        CHECK(cfg.status() == wsb::Code::InvalidArgument);
        CHECK(cfg.error_detail().rfind("threads: ", 0) == 0);
        auto token = std::make_shared<int>(0);
        wsb::Server s;
        wsb::Result r = wsb::Server::try_create(cfg, wsb::ServerHandlers().on_open([token](wsb::ServerRef, const wsb::Event &) {}), s);
        CHECK(r == wsb::Code::InvalidArgument && !s);
        CHECK(token.use_count() == 1);
    }
    {
        wsb::ServerConfig cfg;
        cfg.handshake_timeout(-5ms);
        CHECK(cfg.status() == wsb::Code::InvalidArgument && cfg.error_detail() == "handshake_timeout: negative duration");
        wsb::ServerConfig nul;
        nul.bind(std::string("127.0.0.1:0\0x", 13));
        CHECK(nul.status() == wsb::Code::InvalidArgument);
        wsb::ServerConfig bad;
        bad.bind("not an address");
        CHECK(!bad.status().ok() && !bad.error_detail().empty());
    }

    wsb::Server a;
    CHECK(wsb::Server::try_create(test_config(), a).ok());
    CHECK(a && a.port() != 0);
    {
        wsb::ServerConfig cfg;
        cfg.bind("127.0.0.1:" + std::to_string(a.port()));
        auto token = std::make_shared<int>(0);
        wsb::Server b;
        wsb::Result r = wsb::Server::try_create(cfg, wsb::ServerHandlers().on_close([token](wsb::ServerRef, const wsb::Event &) {}), b);
        CHECK(r == wsb::Code::AddrInUse && !b);
        // wsb_server_new released the handlers on failure.
        CHECK(token.use_count() == 1);
        bool thrown = false;
        try {
            wsb::Server c = wsb::Server::create(cfg);
        } catch (const wsb::Error &e) {
            thrown = e.result() == wsb::Code::AddrInUse && std::string(e.what()).find("wsb::Server::create: ") == 0;
        }
        CHECK(thrown);
    }

    wsb::Event ev;
    CHECK(!a.poll(0ms).has_value());
    CHECK(a.poll(10ms, ev) == wsb::Code::Timeout);
    CHECK(a.interrupt().ok());
    CHECK(a.poll(wsb::forever, ev) == wsb::Code::Interrupted);
    CHECK(a.write_text(12345, "x") == wsb::Code::NotFound);
    CHECK(!a.is_valid(12345));
    auto st = a.stats();
    CHECK(st.has_value() && st->connections_open == 0);

    uint16_t port = a.port();
    wsb::Server moved(std::move(a));
    CHECK(!a && moved.port() == port && moved.ref().port() == port);
    CHECK(moved.shutdown().ok() && !moved);
    CHECK(moved.shutdown().ok()); // wsb_server_free(NULL)

    {
        auto token = std::make_shared<int>(0);
        wsb::Server cb = wsb::Server::create(test_config(), wsb::ServerHandlers().on_message([token](wsb::ServerRef, const wsb::Event &) {}));
        CHECK(cb.poll(0ms, ev) == wsb::Code::InvalidState);
        CHECK(token.use_count() == 2);
        cb = wsb::Server();
        CHECK(token.use_count() == 1);
    }
}

void reply(wsb::ServerRef s, wsb::ConnId conn, const std::string &text) {
    wsb::Result r = s.write_text(conn, text);
    CHECK(r.queued());
}

// The message handling both modes share; returns false for a message it did not handle.
bool command(wsb::ServerRef s, const wsb::Event &ev) {
    std::string_view d = ev.data;
    if (!ev.is_text || d.empty() || d[0] != '/') {
        return false;
    }
    if (d.rfind("/close ", 0) == 0) {
        std::string rest(d.substr(7));
        char *end = nullptr;
        long code = std::strtol(rest.c_str(), &end, 10);
        std::string reason = (*end == ' ') ? std::string(end + 1) : std::string(end);
        CHECK(s.close(ev.conn, static_cast<int32_t>(code), reason).ok());
        CHECK(!s.is_valid(ev.conn));
        CHECK(s.write_text(ev.conn, "late") == wsb::Code::Closed);
        return true;
    }
    if (d == "/stats") {
        auto st = s.stats();
        CHECK(st.has_value());
        reply(s, ev.conn, "stats open=" + std::to_string(st ? st->connections_open : 0));
        return true;
    }
    if (d == "/badping") {
        CHECK(s.ping(ev.conn, std::string(126, 'p')) == wsb::Code::TooBig);
        CHECK(s.close(ev.conn, 1000, std::string(124, 'r')) == wsb::Code::TooBig);
        CHECK(s.close(ev.conn, 1000, std::string("a\0b", 3)) == wsb::Code::InvalidArgument);
        CHECK(s.write(ev.conn, "\xff\xfe", true) == wsb::Code::InvalidUtf8);
        reply(s, ev.conn, "badping ok");
        return true;
    }
    return false;
}

void echo(wsb::ServerRef s, const wsb::Event &ev) {
    // The library NUL-terminates every message, binary included.
    CHECK(ev.data.data() != nullptr && ev.data.data()[ev.data.size()] == '\0');
    if (!command(s, ev)) {
        CHECK(s.write(ev.conn, ev.data, ev.is_text).queued());
    }
}

void print(const wsb::Event &ev) {
    std::printf("%s\n", describe(ev).c_str());
    std::fflush(stdout);
}

wsb::Server *g_server = nullptr;

int callback_mode() {
    wsb::ServerHandlers h;
    h.on_open([](wsb::ServerRef, const wsb::Event &ev) { print(ev); })
        .on_message([](wsb::ServerRef s, const wsb::Event &ev) {
            if (ev.is_text && ev.data == "/throw") {
                throw std::runtime_error("handler failure");
            }
            if (ev.is_text && ev.data == "/reentrant") {
                // Freeing a server from its own handler is refused and changes nothing.
                CHECK(g_server->shutdown() == wsb::Code::Reentrant);
                CHECK(static_cast<bool>(*g_server) && s.is_valid(ev.conn));
                reply(s, ev.conn, "reentrant ok");
                return;
            }
            echo(s, ev);
        })
        .on_ping([](wsb::ServerRef, const wsb::Event &ev) { print(ev); })
        .on_close([](wsb::ServerRef s, const wsb::Event &ev) {
            CHECK(!s.is_valid(ev.conn));
            print(ev);
        });
    wsb::Server server = wsb::Server::create(test_config(), std::move(h));
    g_server = &server;
    std::printf("listening on 127.0.0.1:%u\n", static_cast<unsigned>(server.port()));
    std::fflush(stdout);
    test_util::wait_for_stop();
    // Destruction joins the I/O thread first, so no handler can see g_server dangle.
    return 0;
}

int queue_mode() {
    wsb::Server server;
    wsb::Result r = wsb::Server::try_create(test_config(), server);
    if (!r.ok()) {
        std::printf("create: %s (%s)\n", r.message(), wsb::last_error().c_str());
        return 1;
    }
    std::printf("listening on 127.0.0.1:%u\n", static_cast<unsigned>(server.port()));
    std::fflush(stdout);
    auto end = std::chrono::steady_clock::now() + 60s;
    while (!test_util::stop && std::chrono::steady_clock::now() < end) {
        std::optional<wsb::Event> ev = server.poll(50ms);
        if (!ev) {
            continue;
        }
        if (ev->type == wsb::EventType::Message) {
            echo(server.ref(), *ev);
        } else {
            print(*ev);
        }
    }
    return 0;
}

} // namespace

// wss:// end to end: ServerConfig::tls on one side, a wsb::Client trusting only that
// certificate on the other (made by openssl for the test); a bad file is named in the error.
void tls_echo() {
    char dir[] = "/tmp/wsb-hpp-tls-XXXXXX";
    CHECK(mkdtemp(dir) != nullptr);
    const std::string d(dir), cert = d + "/cert.pem", key = d + "/key.pem";
    {
        wsb::ServerConfig bad;
        bad.tls(d + "/missing.pem", key);
        CHECK(bad.status() == wsb::Code::InvalidArgument);
        CHECK(bad.error_detail().rfind("tls: ", 0) == 0 && bad.error_detail().find("missing.pem") != std::string::npos);
    }
    // A CA and a leaf it signed: webpki refuses a CA certificate as the server's own.
    const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    const std::string make = "(cd " + d + " && openssl req -x509" + ec + " -days 1 -subj /CN=ca -keyout ca.key -out ca.pem" +
                             " && openssl req -new" + ec + " -subj /CN=localhost -keyout key.pem -out srv.csr" +
                             " && echo subjectAltName=DNS:localhost > ext.cnf" +
                             " && openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1" +
                             " -extfile ext.cnf -out cert.pem) >/dev/null 2>&1";
    CHECK(std::system(make.c_str()) == 0);
    wsb::ServerConfig cfg;
    cfg.tls(cert, key);
    CHECK(cfg.status().ok());
    wsb::Server server = wsb::Server::create(cfg, wsb::ServerHandlers().on_message([](wsb::ServerRef s, const wsb::Event &ev) {
        CHECK(s.write(ev.conn, ev.data, ev.is_text).ok());
    }));
    wsb::ClientConfig cc("wss://localhost:" + std::to_string(server.port()) + "/");
    cc.ca_file(d + "/ca.pem").system_roots(false);
    wsb::Client c = wsb::Client::create(cc);
    auto next = [&c](wsb::ClientEventType type) {
        for (int i = 0; i < 100; i++) {
            std::optional<wsb::ClientEvent> ev = c.poll(100ms);
            if (ev && ev->type == type) {
                return std::string(ev->data);
            }
            if (ev && ev->type == wsb::ClientEventType::Error) {
                std::fprintf(stderr, "client error: %.*s\n", static_cast<int>(ev->data.size()), ev->data.data());
                CHECK(false);
            }
        }
        return std::string("(timed out)");
    };
    next(wsb::ClientEventType::Connected);
    CHECK(c.is_connected());
    CHECK(c.send_text("over tls").ok());
    CHECK(next(wsb::ClientEventType::Message) == "over tls");
    CHECK(std::system(("rm -r " + d).c_str()) == 0);
}

int main(int argc, char **argv) {
    test_util::install_signals();
    std::string mode = argc > 1 ? argv[1] : "unit";
    int rc = 0;
    if (mode == "unit") {
        unit();
        tls_echo();
    } else if (mode == "callback") {
        rc = callback_mode();
    } else if (mode == "queue") {
        rc = queue_mode();
    } else {
        std::fprintf(stderr, "usage: %s [unit|callback|queue]\n", argv[0]);
        return 2;
    }
    int failed = test_util::failures.load();
    std::printf("checks failed: %d\n", failed);
    return rc != 0 ? rc : (failed == 0 ? 0 : 1);
}
