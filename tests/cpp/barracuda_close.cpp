// Close semantics of barracuda_wss.hpp (PROTOCOLS.md §6.1-6.2), driven by drive.py:
//   "/close N"   the host closes with N: no close callback may follow;
//   "/delete"    the host deletes the connection object inside the frame callback: close 1000,
//                no close callback;
//   "/report"    answers "report closes=C live=L" (close callbacks so far, live objects);
//   an empty frame prints "empty-frame text=T" (its data must be a non-NULL "") and is echoed;
//   other frames are echoed; pings are echoed as a text "ping:<payload>".
// The upgrade hook leaves connections to "/refuse" unclaimed (the shim closes them with 1008).
// The close callback prints "close-cb STATUS" and deletes its object. Objects still open at
// exit outlive the dispatcher, exercising its detach path. Every callback checks that it got the
// exact WSSCB* and WSS* registered.
#include "compat/barracuda_wss.hpp"
#include "test_util.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>

namespace {

int close_callbacks = 0; // touched only by callbacks, which never run two at once
std::set<struct Conn *> live;

constexpr unsigned kMagic = 0x5753u;

struct Conn : public WSSCB {
    explicit Conn(SoDisp *disp) : WSSCB(on_frame, on_close, on_ping), wss(this, disp, 0, 0) { live.insert(this); }
    ~Conn() { live.erase(this); }

    static Conn *self(WSSCB *o, WSS *wss) {
        Conn *c = static_cast<Conn *>(o);
        CHECK(c->magic == kMagic && &c->wss == wss && live.count(c) == 1);
        return c;
    }

    static void on_frame(WSSCB *o, WSS *wss, void *data, int len, int text) {
        Conn *c = self(o, wss);
        const char *s = static_cast<const char *>(data);
        CHECK(data != nullptr && s[len] == '\0');
        if (len == 0) {
            // PROTOCOLS.md 6.1: never NULL, "" when empty.
            CHECK(data != nullptr && s[0] == '\0');
            std::printf("empty-frame text=%d\n", text);
            CHECK(wss->write(data, 0, text != 0) == 0);
        } else if (text && std::strncmp(s, "/close ", 7) == 0) {
            CHECK(wss->close(std::atoi(s + 7)) == 0);
            CHECK(!wss->isValid());
            CHECK(wss->write("x", 1, true) < 0);
            CHECK(wss->close() < 0); // already closing
            std::printf("host-close\n");
        } else if (text && std::strcmp(s, "/delete") == 0) {
            delete c;
            std::printf("deleted\n");
        } else if (text && std::strcmp(s, "/report") == 0) {
            std::string r = "report closes=" + std::to_string(close_callbacks) + " live=" + std::to_string(live.size());
            CHECK(wss->write(r.data(), static_cast<int>(r.size()), true) == 0);
        } else {
            // Writable like Barracuda's buffer: flip it and flip it back before echoing.
            for (int i = 0; i < len; i++) {
                static_cast<char *>(data)[i] = static_cast<char>(~s[i]);
                static_cast<char *>(data)[i] = static_cast<char>(~s[i]);
            }
            CHECK(wss->write(data, len, text != 0) == 0);
        }
        std::fflush(stdout);
    }

    static void on_ping(WSSCB *o, WSS *wss, void *data, int len) {
        self(o, wss);
        CHECK((len == 0) == (data == nullptr) && len <= 125);
        std::string r = "ping:" + std::string(static_cast<const char *>(data ? data : ""), static_cast<size_t>(len));
        CHECK(wss->write(r.data(), static_cast<int>(r.size()), true) == 0);
    }

    static void on_close(WSSCB *o, WSS *wss, int status) {
        Conn *c = self(o, wss);
        CHECK(!wss->isValid());
        CHECK(wss->write("x", 1, true) < 0);
        close_callbacks++;
        std::printf("close-cb %d\n", status);
        std::fflush(stdout);
        delete c;
    }

    unsigned magic = kMagic;
    WSS wss;
};

} // namespace

int main() {
    test_util::install_signals();
    std::set<Conn *> survivors;
    {
        wsb::ServerConfig cfg;
        cfg.bind("127.0.0.1:0").ping_interval(std::chrono::milliseconds(0)).close_timeout(std::chrono::seconds(2));
        WssServer disp(cfg, [](WssServer *d, HttpRequest *req) {
            if (std::strcmp(req->getPath(), "/refuse") == 0) {
                std::printf("not claimed\n");
                std::fflush(stdout);
                return;
            }
            // Barracuda style: the connection object is built on the request and deleted if the
            // upgrade fails.
            Conn *c = new Conn(d);
            if (c->wss.upgrade(req) != 0) {
                delete c;
                return;
            }
            CHECK(c->wss.isValid());
            CHECK(c->wss.upgrade(req) < 0); // one WSS per connection
            Conn other(d);
            CHECK(other.wss.upgrade(req) < 0);
        });
        if (!disp.ok()) {
            std::printf("server: %s\n", disp.result().message());
            return 1;
        }
        std::printf("listening on 127.0.0.1:%u\n", static_cast<unsigned>(disp.port()));
        std::fflush(stdout);
        test_util::wait_for_stop();
        std::lock_guard<std::recursive_mutex> g(disp.lock());
        survivors = live;
        // The dispatcher is destroyed here, with survivors still holding their WSS.
    }
    for (Conn *c : survivors) {
        CHECK(!c->wss.isValid());
        CHECK(c->wss.write("x", 1, true) < 0);
        delete c;
    }
    std::printf("survivors %zu, checks failed: %d\n", survivors.size(), test_util::failures.load());
    return test_util::failures.load() == 0 ? 0 : 1;
}
