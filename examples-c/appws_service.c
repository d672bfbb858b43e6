/* appws_service PORT [APP PASSWORD]: an innovaphone AppWebsocket app service.
 *
 * Clients log in to APP (default "demo", password "demo") with the challenge/digest
 * login; the library checks the digest. Each message {"mt":"X",...} is answered with
 * {"mt":"XResult"} through the reply helper, which copies the request's "src".
 * Prints "listening on PORT" once ready (PORT 0 picks a free one), then one line per
 * login, message and close. Runs until SIGINT or SIGTERM. */

/* sigaction and nanosleep are POSIX, not C11. */
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

static void die(const char *what, wsb_result r) {
    char detail[256];
    wsb_last_error(detail, sizeof detail, NULL);
    fprintf(stderr, "%s: %s (%s)\n", what, wsb_result_str(r), detail);
    exit(1);
}

/* Writes {"mt":"<mt>Result"} into out, escaping mt as a JSON string. */
static int result_json(const char *mt, char *out, size_t cap) {
    size_t n = 0;
    const char *head = "{\"mt\":\"", *tail = "Result\"}";
    for (const char *p = head; *p; p++) {
        if (n + 1 >= cap) return -1;
        out[n++] = *p;
    }
    for (const unsigned char *p = (const unsigned char *)mt; *p; p++) {
        if (n + 7 >= cap) return -1;
        if (*p == '"' || *p == '\\') {
            out[n++] = '\\';
            out[n++] = (char)*p;
        } else if (*p < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", *p);
        } else {
            out[n++] = (char)*p;
        }
    }
    for (const char *p = tail; *p; p++) {
        if (n + 1 >= cap) return -1;
        out[n++] = *p;
    }
    out[n] = '\0';
    return 0;
}

static void on_event(void *userdata, wsb_appws_service *svc, const wsb_appws_service_event *ev) {
    (void)userdata;
    switch (ev->kind) {
    case WSB_APPWS_SERVICE_EVENT_TYPE_LOGIN:
        printf("login %llu app=%s sip=%s dn=%s info=%s\n", (unsigned long long)ev->conn, ev->app, ev->sip,
               ev->dn, ev->info);
        break;
    case WSB_APPWS_SERVICE_EVENT_TYPE_MESSAGE: {
        char reply[512];
        printf("message %llu mt=%s src=%s %s\n", (unsigned long long)ev->conn, ev->mt, ev->src,
               (const char *)ev->data);
        if (result_json(ev->mt, reply, sizeof reply) != 0) {
            wsb_appws_service_close(svc, ev->conn, 1009, "mt too long");
            break;
        }
        /* ev->src is "" when the request had none: then the reply gets none either. */
        wsb_result r = wsb_appws_service_reply(svc, ev->conn, ev->src, reply);
        if (r != WSB_RESULT_OK && r != WSB_RESULT_BACKPRESSURE) {
            fprintf(stderr, "reply to %llu: %s\n", (unsigned long long)ev->conn, wsb_result_str(r));
        }
        break;
    }
    case WSB_APPWS_SERVICE_EVENT_TYPE_CLOSED:
        printf("closed %llu status=%d\n", (unsigned long long)ev->conn, ev->close_status);
        break;
    default:
        break;
    }
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc != 2 && argc != 4) {
        fprintf(stderr, "usage: %s PORT [APP PASSWORD]\n", argv[0]);
        return 2;
    }
    char bind[64];
    snprintf(bind, sizeof bind, "127.0.0.1:%s", argv[1]);
    const char *app = argc == 4 ? argv[2] : "demo";
    const char *password = argc == 4 ? argv[3] : "demo";

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    wsb_appws_service_config *cfg = wsb_appws_service_config_new();
    wsb_result r = wsb_appws_service_config_set_bind(cfg, bind);
    if (r != WSB_RESULT_OK) die("bind address", r);
    r = wsb_appws_service_config_add_app(cfg, app, password);
    if (r != WSB_RESULT_OK) die("add app", r);

    wsb_appws_service *svc = NULL;
    r = wsb_appws_service_new(cfg, on_event, NULL, NULL, &svc);
    wsb_appws_service_config_free(cfg);
    if (r != WSB_RESULT_OK) die("wsb_appws_service_new", r);
    printf("listening on %u\n", (unsigned)wsb_appws_service_port(svc));
    fflush(stdout);

    const struct timespec tick = {0, 50 * 1000 * 1000};
    while (!stop) {
        nanosleep(&tick, NULL);
    }
    r = wsb_appws_service_free(svc);
    if (r != WSB_RESULT_OK) die("wsb_appws_service_free", r);
    return 0;
}
