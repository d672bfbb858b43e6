/* achex_service PORT [NAME]: an Achex relay with an in-process service.
 *
 * Clients connect to ws://127.0.0.1:PORT and speak Achex (PROTOCOLS.md §2).
 * The service NAME (default "echo-service") answers every message it
 * receives, to the sender's session: {"service":NAME,"got":<the message>}.
 * Runs until SIGINT or SIGTERM. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wsbroker.h"

static volatile sig_atomic_t stop = 0;
static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

static const char *service_name = "echo-service";

/* Runs on a broker thread, one event at a time. Answering from here is
 * allowed: the reply is delivered in order. */
static void on_event(void *userdata, wsb_broker *broker, const wsb_broker_event *ev) {
    (void)userdata;
    switch (ev->kind) {
    case WSB_BROKER_EVENT_TYPE_SERVICE_MESSAGE: {
        size_t cap = ev->len + strlen(service_name) + 64;
        char *reply = malloc(cap);
        if (!reply) {
            return;
        }
        int n = snprintf(reply, cap, "{\"service\":\"%s\",\"got\":%.*s}", service_name, (int)ev->len,
                         (const char *)ev->data);
        wsb_result r = wsb_broker_send_to_session(broker, ev->service, ev->sid, (const uint8_t *)reply, (size_t)n);
        if (r != WSB_RESULT_OK) {
            fprintf(stderr, "reply to %llu: %s\n", (unsigned long long)ev->sid, wsb_result_str(r));
        }
        free(reply);
        break;
    }
    case WSB_BROKER_EVENT_TYPE_LOGIN:
        printf("login %llu %s\n", (unsigned long long)ev->sid, ev->name);
        fflush(stdout);
        break;
    case WSB_BROKER_EVENT_TYPE_LOGOUT:
        printf("logout %llu %s\n", (unsigned long long)ev->sid, ev->name);
        fflush(stdout);
        break;
    default:
        break;
    }
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s PORT [SERVICE-NAME]\n", argv[0]);
        return 2;
    }
    if (argc == 3) {
        service_name = argv[2];
    }
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%s", argv[1]);

    wsb_broker_config *cfg = wsb_broker_config_new();
    wsb_result r = wsb_broker_config_set_listener(cfg, WSB_LISTENER_ACHEX, addr);
    wsb_broker *broker = NULL;
    if (r == WSB_RESULT_OK) {
        r = wsb_broker_new(cfg, on_event, NULL, NULL, &broker);
    }
    wsb_broker_config_free(cfg);
    if (r != WSB_RESULT_OK) {
        char why[256];
        wsb_last_error(why, sizeof why, NULL);
        fprintf(stderr, "cannot start: %s (%s)\n", wsb_result_str(r), why);
        return 1;
    }
    uint64_t sid = 0;
    r = wsb_broker_register_service(broker, service_name, &sid);
    if (r != WSB_RESULT_OK) {
        fprintf(stderr, "cannot register %s: %s\n", service_name, wsb_result_str(r));
        wsb_broker_free(broker);
        return 1;
    }
    wsb_broker_set_events(broker, true);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    printf("achex listening on 127.0.0.1:%u\n", (unsigned)wsb_broker_port(broker, WSB_LISTENER_ACHEX));
    printf("service %s sid %llu\n", service_name, (unsigned long long)sid);
    fflush(stdout);
    while (!stop) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return wsb_broker_free(broker) == WSB_RESULT_OK ? 0 : 1;
}
