// The second translation unit of hpp_test: it includes every C++ header again, so a missing
// `inline` in them fails the link with a duplicate symbol.
#include "compat/achex_client.hpp"
#include "compat/appwebsocket_client.hpp"
#include "compat/barracuda_wss.hpp"
#include "hpp_test.hpp"
#include "wsbroker.hpp"

#include <string>

wsb::ServerConfig test_config() {
    wsb::ServerConfig cfg;
    cfg.bind("127.0.0.1:0").threads(1).ping_interval(std::chrono::milliseconds(0)).close_timeout(std::chrono::seconds(2));
    return cfg;
}

std::string describe(const wsb::Event &ev) {
    switch (ev.type) {
    case wsb::EventType::Open: return "open " + std::string(ev.path);
    case wsb::EventType::Message: return std::string(ev.is_text ? "text " : "binary ") + std::to_string(ev.data.size());
    case wsb::EventType::Ping: return "ping " + std::string(ev.data);
    case wsb::EventType::Pong: return "pong " + std::string(ev.data);
    case wsb::EventType::Drain: return "drain";
    case wsb::EventType::Close:
        return "close " + std::to_string(ev.close_status) + (ev.closed_by_host ? " host " : " peer ") + std::string(ev.data);
    }
    return "unknown";
}

int compat_second_tu() {
    IAppWebsocketClient *c = IAppWebsocketClient::Create(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr);
    char out[8] = "x";
    c->Hash("seed", "data", out, sizeof out); // not connected: ""
    delete c;
    FinishReleases();
    WS_Client_Connection refused(1, "127.0.0.1", 2000);
    int retval = 0;
    (void)refused.ws_incomming_data(0, retval);
    return out[0] == '\0' ? retval : 1;
}
