/* client_bench URL [--mode queue|callback] [--window N] [--size BYTES]
 *              [--secs S] [--warmup S]
 *
 * One wsbroker client, pipelined echo: keeps WINDOW text messages of SIZE
 * bytes in flight and sends a new one for each echo received. Counts echoes
 * over SECS seconds after WARMUP seconds, then prints one JSON line:
 *   {"scenario":"client_echo","mode":...,"messages":N,"msgs_per_sec":X,...}
 * or {"scenario":"client_echo","error":"..."} (exit 1). Bounded: gives up 15 s
 * after the measurement should have ended. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wsbroker.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

typedef struct bench {
    size_t size, window;
    double warm_at, end_at;
    uint8_t *payload;
    /* Written by the event thread (callback) or the main thread (queue). */
    unsigned long long counted, wrong, send_failed, in_flight;
    int connected, finished;
    char error[512];
    pthread_mutex_t lock;
    pthread_cond_t done;
} bench;

static void send_one(bench *b, wsb_client *c) {
    wsb_result r = wsb_client_send(c, b->payload, b->size, true);
    if (r != WSB_RESULT_OK && r != WSB_RESULT_BACKPRESSURE) {
        b->send_failed++;
    } else {
        b->in_flight++;
    }
}

/* Handles one event; returns 1 once the run is over. Same code for both modes. */
static int on_event(bench *b, wsb_client *c, const wsb_client_event *ev) {
    double t = now_s();
    switch (ev->kind) {
    case WSB_CLIENT_EVENT_TYPE_CONNECTED:
        b->connected = 1;
        b->warm_at += t; /* the clock starts at the connection */
        b->end_at += b->warm_at;
        for (size_t i = 0; i < b->window; i++) {
            send_one(b, c);
        }
        return 0;
    case WSB_CLIENT_EVENT_TYPE_MESSAGE:
        b->in_flight--;
        if (ev->len != b->size || !ev->is_text) {
            b->wrong++;
        }
        if (t >= b->warm_at && t < b->end_at) {
            b->counted++;
        }
        if (t < b->end_at) {
            send_one(b, c);
        } else if (b->in_flight == 0) {
            /* Every echo is back: the server is not left writing into a closed connection. */
            wsb_client_close(c, 1000, "done");
        }
        return 0;
    case WSB_CLIENT_EVENT_TYPE_CLOSED:
        if (!ev->closed_by_host) {
            snprintf(b->error, sizeof b->error, "server closed: %d %.*s", (int)ev->close_status, (int)ev->len,
                     (const char *)ev->data);
        }
        return 1;
    case WSB_CLIENT_EVENT_TYPE_ERROR:
        snprintf(b->error, sizeof b->error, "%s: %.*s", wsb_result_str(ev->error), (int)ev->len,
                 (const char *)ev->data);
        return 1;
    default:
        return 0;
    }
}

static void callback(void *userdata, wsb_client *c, const wsb_client_event *ev) {
    bench *b = userdata;
    if (on_event(b, c, ev)) {
        pthread_mutex_lock(&b->lock);
        b->finished = 1;
        pthread_cond_signal(&b->done);
        pthread_mutex_unlock(&b->lock);
    }
}

static void json_escape(const char *s) {
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') {
            putchar('\\');
        }
        putchar((unsigned char)*s < 0x20 ? ' ' : *s);
    }
}

int main(int argc, char **argv) {
    const char *url = NULL, *mode = "queue";
    double secs = 5, warmup = 1;
    bench b;
    memset(&b, 0, sizeof b);
    b.size = 20;
    b.window = 64;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc) {
            mode = argv[++i];
        } else if (strcmp(argv[i], "--window") == 0 && i + 1 < argc) {
            b.window = (size_t)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc) {
            b.size = (size_t)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--secs") == 0 && i + 1 < argc) {
            secs = atof(argv[++i]);
        } else if (strcmp(argv[i], "--warmup") == 0 && i + 1 < argc) {
            warmup = atof(argv[++i]);
        } else if (argv[i][0] != '-' && !url) {
            url = argv[i];
        } else {
            url = NULL;
            break;
        }
    }
    int queue = strcmp(mode, "queue") == 0;
    if (!url || (!queue && strcmp(mode, "callback") != 0) || b.window == 0 || secs <= 0) {
        fprintf(stderr, "usage: %s URL [--mode queue|callback] [--window N] [--size BYTES] [--secs S] [--warmup S]\n",
                argv[0]);
        return 2;
    }
    b.payload = malloc(b.size ? b.size : 1);
    if (!b.payload) {
        return 1;
    }
    memset(b.payload, 'x', b.size);
    b.warm_at = warmup; /* relative until CONNECTED */
    b.end_at = secs;
    pthread_mutex_init(&b.lock, NULL);
    pthread_cond_init(&b.done, NULL);

    wsb_client_config *cfg = wsb_client_config_new(url);
    wsb_client_config_set_connect_timeout_ms(cfg, 10000);
    wsb_client *c = NULL;
    wsb_result r = wsb_client_new(cfg, queue ? NULL : callback, &b, NULL, &c);
    wsb_client_config_free(cfg);
    if (r != WSB_RESULT_OK) {
        wsb_last_error(b.error, sizeof b.error, NULL);
    } else {
        /* Connect timeout + warm-up + measurement + the close, with margin. */
        double give_up = now_s() + 10 + warmup + secs + 15;
        if (queue) {
            for (;;) {
                wsb_client_event ev;
                int left_ms = (int)((give_up - now_s()) * 1000);
                if (left_ms <= 0 || wsb_client_poll(c, left_ms, &ev) != WSB_RESULT_OK) {
                    snprintf(b.error, sizeof b.error, "gave up waiting for events");
                    break;
                }
                if (on_event(&b, c, &ev)) {
                    break;
                }
            }
        } else {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += (time_t)(10 + warmup + secs + 15);
            pthread_mutex_lock(&b.lock);
            while (!b.finished) {
                if (pthread_cond_timedwait(&b.done, &b.lock, &until) != 0) {
                    snprintf(b.error, sizeof b.error, "gave up waiting for the end");
                    break;
                }
            }
            pthread_mutex_unlock(&b.lock);
        }
        /* Frees before reading the counters: no callback runs after this. */
        wsb_client_free(c);
    }
    printf("{\"scenario\":\"client_echo\",\"mode\":\"%s\",\"url\":\"", mode);
    json_escape(url);
    printf("\",\"window\":%zu,\"size\":%zu,\"secs\":%g,\"warmup\":%g", b.window, b.size, secs, warmup);
    if (b.error[0] || !b.connected) {
        printf(",\"error\":\"");
        json_escape(b.error[0] ? b.error : "never connected");
        printf("\"}\n");
        return 1;
    }
    printf(",\"messages\":%llu,\"msgs_per_sec\":%.1f,\"wrong\":%llu,\"send_failed\":%llu}\n", b.counted,
           (double)b.counted / secs, b.wrong, b.send_failed);
    free(b.payload);
    return b.wrong || b.send_failed ? 1 : 0;
}
