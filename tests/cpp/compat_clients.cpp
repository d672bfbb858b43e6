// The Achex and innovaphone client shims against real peers in the same process: a wsbroker
// echo server (achex_client.hpp) and a wsbroker app service (appwebsocket_client.hpp).
// Self-checking; every wait is bounded. Run under ASan + UBSan by run.sh.
#include "compat/achex_client.hpp"
#include "compat/appwebsocket_client.hpp"

#include "test_util.hpp"

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <dirent.h>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;

// ---- Achex: an echo server; "bye" closes with 4000, "bin" answers with a binary frame ----

// Not UTF-8, with a NUL: only a binary frame can carry it.
const std::string kBinary("\x00\xff\x80" "bin\x00", 7);

void echo_event(void *, wsb_server *s, const wsb_event *ev) {
    if (ev->kind != WSB_EVENT_TYPE_MESSAGE) {
        return;
    }
    if (ev->is_text && ev->len == 3 && std::memcmp(ev->data, "bye", 3) == 0) {
        (void)wsb_server_close(s, ev->conn, 4000, "bye");
        return;
    }
    if (ev->is_text && ev->len == 3 && std::memcmp(ev->data, "bin", 3) == 0) {
        (void)wsb_server_write(s, ev->conn, reinterpret_cast<const uint8_t *>(kBinary.data()), kBinary.size(), false);
        return;
    }
    (void)wsb_server_write(s, ev->conn, ev->data, ev->len, ev->is_text);
}

void achex_test() {
    wsb_server_config *cfg = wsb_server_config_new();
    wsb_server *srv = nullptr;
    CHECK(wsb_server_new(cfg, echo_event, nullptr, nullptr, &srv) == WSB_RESULT_OK);
    wsb_server_config_free(cfg);
    int port = wsb_server_port(srv);

    {
        WS_Client_Connection c(port, "127.0.0.1");
        CHECK(c.is_connected());
        CHECK(c.ws_send("one") == 0);
        CHECK(c.ws_send("two") == 0);
        CHECK(c.ws_send(std::string("th\0ree", 6)) == 0);
        CHECK(c.ws_send("bin") == 0);
        std::vector<std::string> got;
        int retval = 1;
        for (int i = 0; i < 100 && got.size() < 4; i++) {
            if (c.ws_incomming_data(100, &retval)) {
                WS_Frame_Queue q = c.ws_recv();
                while (!q.empty()) {
                    got.push_back(q.front());
                    q.pop();
                }
            }
            CHECK(retval == 0);
        }
        CHECK(got.size() == 4);
        CHECK(got.size() == 4 && got[0] == "one" && got[1] == "two" && got[2] == std::string("th\0ree", 6));
        // A binary frame arrives as its exact bytes, in order; the queue has no text flag.
        CHECK(got.size() == 4 && got[3] == kBinary);
        CHECK(c.ws_recv().empty());
        // Nothing queued: false after the timeout, still usable.
        CHECK(!c.ws_incomming_data(50, retval));
        CHECK(retval == 0);

        CHECK(c.ws_send("bye") == 0);
        for (int i = 0; i < 100 && retval == 0; i++) {
            (void)c.ws_incomming_data(100, retval);
        }
        CHECK(retval < 0);
        CHECK(c.close_status() == 4000);
        CHECK(c.ws_send("late") < 0);
    }
    {
        WS_Client_Connection c(port, "127.0.0.1");
        CHECK(c.close() == 0);
        int retval = 0;
        for (int i = 0; i < 100 && retval == 0; i++) {
            (void)c.ws_incomming_data(100, retval);
        }
        CHECK(retval < 0);
    }
    (void)wsb_server_free(srv);
    {
        // Nobody listens any more: the connection fails, and says so.
        WS_Client_Connection c(port, "127.0.0.1", 3000);
        int retval = 0;
        CHECK(!c.ws_incomming_data(10, retval));
        CHECK(retval < 0);
        CHECK(!c.is_connected());
    }
}

// ---- innovaphone: an app service answering mt+"Result"; "Burst" gets two messages ----

void service_event(void *, wsb_appws_service *s, const wsb_appws_service_event *ev) {
    if (ev->kind != WSB_APPWS_SERVICE_EVENT_TYPE_MESSAGE) {
        return;
    }
    std::string mt(ev->mt);
    if (mt == "Burst") {
        (void)wsb_appws_service_reply(s, ev->conn, ev->src, "{\"mt\":\"B1\"}");
        (void)wsb_appws_service_reply(s, ev->conn, ev->src, "{\"mt\":\"B2\"}");
        return;
    }
    std::string reply = "{\"mt\":\"" + mt + "Result\"}";
    (void)wsb_appws_service_reply(s, ev->conn, ev->src, reply.c_str());
}

// The threads of this process: a released client leaves none behind.
int thread_count() {
    int n = 0;
    if (DIR *d = opendir("/proc/self/task")) {
        while (dirent *e = readdir(d)) {
            n += e->d_name[0] != '.';
        }
        closedir(d);
    }
    return n;
}

struct User : UAppWebsocketClient, UAppWebsocketAuthenticator {
    std::mutex m;
    std::condition_variable cv;
    int connected = 0, sent = 0, closed = 0;
    std::vector<std::string> messages; // "mt src json"
    bool complete_each = true;
    bool delete_on_close = false;
    // ConnectComplete calls Connect again (once) with these, from the client's own thread.
    std::string reconnect_uri;
    const char *password = "demo";

    void note() { cv.notify_all(); }
    template <class F> bool wait(F done, std::chrono::milliseconds limit = 10s) {
        std::unique_lock<std::mutex> g(m);
        return cv.wait_for(g, limit, done);
    }

    void AppWebsocketClientConnectComplete(IAppWebsocketClient *c) override {
        {
            std::lock_guard<std::mutex> g(m);
            connected++;
            note();
        }
        if (!reconnect_uri.empty()) {
            std::string uri;
            uri.swap(reconnect_uri);
            int before = closed_now();
            c->Connect(uri.c_str(), "demo", "demo", "", "demo", "00000000000000000000000000000000", "Admin");
            // The first connection's Closed came from inside Connect, before it returned.
            CHECK(closed_now() == before + 1);
        }
    }
    int closed_now() {
        std::lock_guard<std::mutex> g(m);
        return closed;
    }
    void AppWebsocketClientMessage(IAppWebsocketClient *c, const char *msg, word base, const char *mt,
                                   const char *src) override {
        CHECK(base == 0);
        {
            std::lock_guard<std::mutex> g(m);
            messages.push_back(std::string(mt) + " " + src + " " + msg);
            note();
        }
        if (complete_each) {
            c->MessageComplete();
        }
    }
    void AppWebsocketClientSendResult(IAppWebsocketClient *) override {
        std::lock_guard<std::mutex> g(m);
        sent++;
        note();
    }
    void AppWebsocketClientClosed(IAppWebsocketClient *c) override {
        if (delete_on_close) {
            delete c;
        }
        std::lock_guard<std::mutex> g(m);
        closed++;
        note();
    }
    void AppWebsocketAuthenticatorChallenge(IAppWebsocketClient *c, const char *challenge) override {
        char digest[65], key[65];
        CHECK(wsb_appws_digest("demo", "d.com", "bob", "g", "Bob", "{\"cn\":\"Bob\"}", challenge, password, digest,
                               sizeof digest) == WSB_RESULT_OK);
        CHECK(wsb_appws_session_key(challenge, password, key, sizeof key) == WSB_RESULT_OK);
        CHECK(c->Authenticate("d.com", "bob", "g", "Bob", "{\"cn\":\"Bob\"}", digest, key));
    }
};

void appws_test() {
    wsb_appws_service_config *cfg = wsb_appws_service_config_new();
    CHECK(wsb_appws_service_config_add_app(cfg, "demo", "demo") == WSB_RESULT_OK);
    wsb_appws_service *svc = nullptr;
    CHECK(wsb_appws_service_new(cfg, service_event, nullptr, nullptr, &svc) == WSB_RESULT_OK);
    wsb_appws_service_config_free(cfg);
    std::string uri = "ws://127.0.0.1:" + std::to_string(wsb_appws_service_port(svc)) + "/";
    const char *guid = "00000000000000000000000000000000";

    {
        // Password login, a message and its send result, crypto, Close -> Closed once.
        User u;
        IAppWebsocketClient *c = IAppWebsocketClient::Create(nullptr, &u, nullptr, nullptr, nullptr, nullptr);
        c->Connect(uri.c_str(), "demo", "demo", "", "demo", guid, "Admin");
        CHECK(u.wait([&] { return u.connected == 1; }));
        c->MessageSend("{\"mt\":\"Hello\",\"src\":\"a1\"}");
        CHECK(u.wait([&] { return u.messages.size() == 1 && u.sent == 1; }));
        CHECK(!u.messages.empty() && u.messages[0] == "HelloResult a1 {\"mt\":\"HelloResult\",\"src\":\"a1\"}");

        char hex[11], back[6], hash[65], small[10];
        c->Encrypt("seed1", "hello", hex, sizeof hex);
        CHECK(std::strlen(hex) == 10);
        c->Decrypt("seed1", hex, back, sizeof back);
        CHECK(std::strcmp(back, "hello") == 0);
        c->Hash("seed1", "hello", hash, sizeof hash);
        CHECK(std::strlen(hash) == 64);
        std::memset(small, 'x', sizeof small);
        c->Encrypt("seed1", "hello", small, sizeof small); // the vendor's 2x: one byte short
        CHECK(small[0] == '\0');

        c->Close();
        CHECK(u.wait([&] { return u.closed == 1; }));
        CHECK(!u.wait([&] { return u.closed != 1 || u.connected != 1; }, 100ms)); // nothing more
        delete c;
    }
    // Every client below is freed (and its thread joined) by the end of its block.
    const int threads = thread_count();
    {
        // Manual flow control: the second message waits for MessageComplete.
        User u;
        u.complete_each = false;
        IAppWebsocketClient *c = IAppWebsocketClient::Create(nullptr, &u, nullptr, nullptr, nullptr, nullptr);
        c->Connect(uri.c_str(), "demo", "demo", "", "demo", guid, "Admin");
        CHECK(u.wait([&] { return u.connected == 1; }));
        c->MessageSendText("{\"mt\":\"Burst\",\"src\":\"b\"}");
        CHECK(u.wait([&] { return u.messages.size() == 1; }));
        CHECK(!u.wait([&] { return u.messages.size() == 2; }, 300ms));
        c->MessageComplete();
        CHECK(u.wait([&] { return u.messages.size() == 2; }));
        CHECK(u.messages.size() == 2 && u.messages[1].rfind("B2 b ", 0) == 0);
        c->MessageComplete();
        // Deleting the client inside Closed: released once the callback returns, deterministically.
        u.delete_on_close = true;
        c->Close();
        CHECK(u.wait([&] { return u.closed == 1; }));
        FinishReleases();
        CHECK(thread_count() == threads);
    }
    {
        // A wrong password: Closed once, no ConnectComplete; the client may be reused.
        User u;
        IAppWebsocketClient *c = IAppWebsocketClient::Create(nullptr, &u, nullptr, nullptr, nullptr, nullptr);
        c->Connect(uri.c_str(), "wrong", "demo", "", "demo", guid, "Admin");
        CHECK(u.wait([&] { return u.closed == 1; }));
        CHECK(u.connected == 0);
        char out[65] = "x";
        c->Hash("s", "d", out, sizeof out);
        CHECK(out[0] == '\0');
        // Authenticator mode on the same object.
        c->Connect(uri.c_str(), "demo", &u);
        CHECK(u.wait([&] { return u.connected == 1; }));
        delete c; // no Closed after deletion
        CHECK(!u.wait([&] { return u.closed != 1; }, 100ms));
        CHECK(thread_count() == threads);
    }
    {
        // Connect while connected: the first connection's Closed comes from inside Connect,
        // before the second connection starts; each Connect gets exactly one Closed.
        User u;
        IAppWebsocketClient *c = IAppWebsocketClient::Create(nullptr, &u, nullptr, nullptr, nullptr, nullptr);
        c->Connect(uri.c_str(), "demo", "demo", "", "demo", guid, "Admin");
        CHECK(u.wait([&] { return u.connected == 1; }));
        c->Connect(uri.c_str(), "demo", "demo", "", "demo", guid, "Admin");
        CHECK(u.closed_now() == 1);
        CHECK(u.wait([&] { return u.connected == 2; }));
        c->MessageSend("{\"mt\":\"Again\",\"src\":\"s2\"}");
        CHECK(u.wait([&] { return u.messages.size() == 1; }));
        CHECK(!u.messages.empty() && u.messages[0].rfind("AgainResult s2 ", 0) == 0);
        c->Close();
        CHECK(u.wait([&] { return u.closed == 2; }));
        CHECK(!u.wait([&] { return u.closed != 2 || u.connected != 2; }, 100ms));

        // The same from the client's own thread: Connect inside ConnectComplete.
        u.reconnect_uri = uri;
        c->Connect(uri.c_str(), "demo", "demo", "", "demo", guid, "Admin");
        CHECK(u.wait([&] { return u.connected == 4; }));
        CHECK(u.closed_now() == 3);
        c->Close();
        CHECK(u.wait([&] { return u.closed == 4; }));

        // Deleting the client inside the Closed that Connect delivers: nothing starts.
        c->Connect(uri.c_str(), "demo", "demo", "", "demo", guid, "Admin");
        CHECK(u.wait([&] { return u.connected == 5; }));
        u.delete_on_close = true;
        c->Connect(uri.c_str(), "demo", "demo", "", "demo", guid, "Admin");
        CHECK(u.closed_now() == 5);
        CHECK(!u.wait([&] { return u.connected != 5 || u.closed != 5; }, 300ms));
        FinishReleases();
        CHECK(thread_count() == threads);
    }
    {
        // An authenticator with the wrong password fails like a password login.
        User u;
        u.password = "nope";
        IAppWebsocketClient *c = IAppWebsocketClient::Create(nullptr, &u, nullptr, nullptr, nullptr, nullptr);
        c->Connect(uri.c_str(), "demo", &u);
        CHECK(u.wait([&] { return u.closed == 1; }));
        CHECK(u.connected == 0);
        // A bad URI: Closed at once.
        c->Connect("http://x/", "demo", "demo", "", "demo", guid, "Admin");
        CHECK(u.closed == 2);
        delete c;
    }
    CHECK(wsb_appws_service_free(svc) == WSB_RESULT_OK);
}

} // namespace

int main() {
    achex_test();
    appws_test();
    std::printf("%s (%d failed checks)\n", test_util::failures == 0 ? "ok" : "FAILED", test_util::failures.load());
    return test_util::failures == 0 ? 0 : 1;
}
