/* autobahn_client BASE_URL AGENT: runs every case of an Autobahn
 * fuzzingserver (kosoku -m fuzzingserver) with wsb_client_* in queue mode,
 * echoing each message with its type, then asks for the reports.
 *
 * Prints "cases N", then "case I STATUS" per case (the close status, or
 * "error CODE" when the connection failed), then "reports". Each
 * connection is given at most CASE_LIMIT_MS; a case that takes longer is
 * abandoned (the verdict is the fuzzingserver's to give). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wsbroker.h"

#define CASE_LIMIT_MS 60000

static long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)(t.tv_sec * 1000 + t.tv_nsec / 1000000);
}

/* Connects to `url`, echoes (or, with `first_text`, keeps the first text
 * message), and returns when the connection ends. The return value is the
 * close status, or -1000 - wsb_result when the attempt failed. */
static int run(const char *url, int echo, char *first_text, size_t first_size) {
    wsb_client_config *cfg = wsb_client_config_new(url);
    if (!cfg) {
        return -2000;
    }
    /* Autobahn sends up to 16 MiB; no pings of our own to disturb the cases. */
    wsb_client_config_set_max_message_size(cfg, 64u << 20);
    wsb_client_config_set_ping_interval_ms(cfg, 0);
    wsb_client_config_set_connect_timeout_ms(cfg, 10000);
    wsb_client *c = NULL;
    wsb_result r = wsb_client_new(cfg, NULL, NULL, NULL, &c);
    wsb_client_config_free(cfg);
    if (r != WSB_RESULT_OK) {
        return -1000 - (int)r;
    }
    long deadline = now_ms() + CASE_LIMIT_MS;
    int status = -3000;
    for (;;) {
        long left = deadline - now_ms();
        wsb_client_event ev;
        if (left <= 0 || wsb_client_poll(c, (int32_t)left, &ev) != WSB_RESULT_OK) {
            status = -4000; /* took too long: give up on this connection */
            break;
        }
        if (ev.kind == WSB_CLIENT_EVENT_TYPE_MESSAGE) {
            if (echo) {
                wsb_client_send(c, ev.data, ev.len, ev.is_text);
            } else if (first_text && first_text[0] == '\0' && ev.is_text) {
                snprintf(first_text, first_size, "%.*s", (int)ev.len, (const char *)ev.data);
            }
        } else if (ev.kind == WSB_CLIENT_EVENT_TYPE_CLOSED) {
            status = ev.close_status;
            break;
        } else if (ev.kind == WSB_CLIENT_EVENT_TYPE_ERROR) {
            status = -1000 - (int)ev.error;
            break;
        }
    }
    wsb_client_free(c);
    return status;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s BASE_URL AGENT\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *base = argv[1], *agent = argv[2];
    char url[1024], count[64] = "";
    snprintf(url, sizeof url, "%s/getCaseCount", base);
    int st = run(url, 0, count, sizeof count);
    int n = atoi(count);
    if (n <= 0) {
        fprintf(stderr, "autobahn_client: no case count from %s (status %d)\n", url, st);
        return 1;
    }
    printf("cases %d\n", n);
    for (int i = 1; i <= n; i++) {
        snprintf(url, sizeof url, "%s/runCase?case=%d&agent=%s", base, i, agent);
        st = run(url, 1, NULL, 0);
        if (st <= -1000 && st > -2000) {
            printf("case %d error %d\n", i, -1000 - st);
        } else {
            printf("case %d %d\n", i, st);
        }
    }
    snprintf(url, sizeof url, "%s/updateReports?agent=%s", base, agent);
    st = run(url, 0, NULL, 0);
    printf("reports %d\n", st);
    return 0;
}
