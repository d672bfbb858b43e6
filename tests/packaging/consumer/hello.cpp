// Uses the installed C++ headers: starts a queue-mode server, prints its port, stops.
#include <wsbroker/compat/barracuda_wss.hpp>
#include <wsbroker/wsbroker.hpp>

#include <cstdio>

int main() {
    wsb::Server server;
    wsb::Result r = wsb::Server::try_create(wsb::ServerConfig().bind("127.0.0.1:0"), server);
    if (!r.ok()) {
        std::printf("create: %s\n", r.message());
        return 1;
    }
    std::printf("hello from wsbroker %s on port %u\n", wsb_version(), static_cast<unsigned>(server.port()));
    return server.port() != 0 && wsb::version_matches() ? 0 : 1;
}
