// A broadcast chat server written against barracuda_wss.hpp, in the shape of Barracuda's
// examples/WebSocket-Chat: one ChatClient per connection, derived from WSSCB and holding its
// WSS; the server keeps the clients in a list and sends every frame to all of them; the close
// callback unlinks and deletes the client. What differs from the original is marked "shim:".
//
// Prints "listening on 127.0.0.1:PORT", then "open PATH" and "close STATUS" per connection.
#include "compat/barracuda_wss.hpp"
#include "test_util.hpp"

#include <cstdio>
#include <list>

struct ChatServer;

struct ChatClient : public WSSCB {
    ChatClient(ChatServer *server, SoDisp *disp);
    static void frame(WSSCB *o, WSS *wss, void *data, int len, int text);
    static void close(WSSCB *o, WSS *wss, int status);

    WSS wss;
    ChatServer *server;
};

struct ChatServer {
    // Barracuda: HttpPage::service(HttpRequest*, HttpResponse*). shim: the dispatcher's
    // upgrade hook, called for each accepted WebSocket connection.
    void service(SoDisp *disp, HttpRequest *req) {
        ChatClient *client = new ChatClient(this, disp);
        if (client->wss.upgrade(req)) {
            delete client;
            return;
        }
        clients.push_back(client);
        std::printf("open %s\n", req->getPath());
        std::fflush(stdout);
    }

    void broadcast(const void *data, int len, int text) {
        for (ChatClient *c : clients) {
            // A client whose close is under way refuses writes; it leaves the list soon.
            if (c->wss.write(data, len, text != 0) != 0) {
                std::printf("write refused\n");
                std::fflush(stdout);
            }
        }
    }

    std::list<ChatClient *> clients;
};

ChatClient::ChatClient(ChatServer *s, SoDisp *disp) : WSSCB(frame, close), wss(this, disp, 1024, 512), server(s) {}

void ChatClient::frame(WSSCB *o, WSS *wss, void *data, int len, int text) {
    ChatClient *self = static_cast<ChatClient *>(o);
    CHECK(&self->wss == wss);
    CHECK(static_cast<char *>(data)[len] == '\0');
    self->server->broadcast(data, len, text);
}

void ChatClient::close(WSSCB *o, WSS *wss, int status) {
    ChatClient *self = static_cast<ChatClient *>(o);
    CHECK(&self->wss == wss);
    CHECK(!wss->isValid());
    self->server->clients.remove(self);
    std::printf("close %d\n", status);
    std::fflush(stdout);
    delete self;
}

int main() {
    test_util::install_signals();
    ChatServer chat;
    wsb::ServerConfig cfg;
    cfg.bind("127.0.0.1:0").ping_interval(std::chrono::milliseconds(0));
    SoDisp disp(cfg, [&chat](SoDisp *d, HttpRequest *req) { chat.service(d, req); });
    if (!disp.ok()) {
        std::printf("server: %s (%s)\n", disp.result().message(), wsb::last_error().c_str());
        return 1;
    }
    std::printf("listening on 127.0.0.1:%u\n", static_cast<unsigned>(disp.port()));
    std::fflush(stdout);
    test_util::wait_for_stop();
    std::size_t left = 0;
    {
        // The dispatcher lock keeps the list still while callbacks may still run.
        std::lock_guard<std::recursive_mutex> g(disp.lock());
        left = chat.clients.size();
        for (ChatClient *c : chat.clients) {
            delete c; // closes with 1000, no close callback
        }
        chat.clients.clear();
    }
    std::printf("deleted %zu, checks failed: %d\n", left, test_util::failures.load());
    return test_util::failures.load() == 0 ? 0 : 1;
}
