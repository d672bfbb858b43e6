/* probe [OPTIONS] URL: a wsb_client in queue mode driven line by line, for
 * the interop tests.
 *
 * Commands on stdin (one per line, run on a reader thread so that sends
 * come from a thread other than the poller's):
 *   text STRING          send STRING as text
 *   gen-text N           send N bytes of generated UTF-8 text (N rounded down to 8)
 *   gen-binary N SEED    send N bytes of generated binary data
 *   ping STRING          send a ping
 *   close CODE REASON    close
 *   complete             wsb_client_message_complete (manual flow control)
 *   quit                 stop (end of input does the same)
 * Each command prints "RESULT <verb> <code>".
 *
 * Events go to stdout, one line each:
 *   CONNECTED <protocol or ->
 *   MESSAGE text|binary <len> <crc32 hex> <preview>
 *   PONG <len> <payload>
 *   SENT | DRAIN
 *   CLOSED <status> <by_host 0|1> <elapsed ms> <reason>
 *   ERROR <wsb_result> <elapsed ms> <message>
 *   RECONNECTING <attempt> <delay ms>
 *   GAVE_UP <attempts>
 *   END <why>
 * Elapsed times count from wsb_client_new. Without --reconnect the probe ends
 * after the first CLOSED or ERROR. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wsbroker.h"

static pthread_mutex_t client_lock = PTHREAD_MUTEX_INITIALIZER;
static wsb_client *client; /* NULL once freed; guarded by client_lock */
static struct timespec started;

static long elapsed_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long)((now.tv_sec - started.tv_sec) * 1000 + (now.tv_nsec - started.tv_nsec) / 1000000);
}

static uint32_t crc32(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) {
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
        }
    }
    return ~c;
}

/* Printable preview: at most 60 bytes, with \xNN for anything else. */
static void print_preview(const uint8_t *p, size_t n) {
    size_t max = n < 60 ? n : 60;
    for (size_t i = 0; i < max; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7F && p[i] != '\\') {
            putchar(p[i]);
        } else {
            printf("\\x%02x", p[i]);
        }
    }
}

static void die_usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s [--ca FILE] [--no-system-roots] [--client-cert CERT KEY] [--insecure] [--timeout-ms N] [--proxy URL]\n"
            "          [--reconnect INITIAL_MS MAX_MS ATTEMPTS] [--max-message N] [--ping-ms N]\n"
            "          [--header NAME VALUE] [--protocol P] [--send-results] [--manual] URL\n",
            argv0);
    exit(2);
}

static void check(const char *what, wsb_result r) {
    if (r != WSB_RESULT_OK) {
        char detail[512];
        wsb_last_error(detail, sizeof detail, NULL);
        fprintf(stderr, "probe: %s: %s (%s)\n", what, wsb_result_str(r), detail);
        exit(2);
    }
}

/* Runs one command under client_lock, so it never races the free. */
static wsb_result run_command(char *line) {
    char *arg = strchr(line, ' ');
    if (arg) {
        *arg++ = '\0';
    } else {
        arg = line + strlen(line);
    }
    wsb_result r = WSB_RESULT_INVALID_ARGUMENT;
    pthread_mutex_lock(&client_lock);
    if (client == NULL) {
        r = WSB_RESULT_NOT_FOUND;
    } else if (strcmp(line, "text") == 0) {
        r = wsb_client_send(client, (const uint8_t *)arg, strlen(arg), true);
    } else if (strcmp(line, "gen-text") == 0 || strcmp(line, "gen-binary") == 0) {
        int text = line[4] == 't';
        char *end = NULL;
        size_t n = (size_t)strtoull(arg, &end, 10);
        unsigned seed = (unsigned)strtoul(end, NULL, 10);
        /* a, b, é, ✓, d: 8 bytes of valid UTF-8 with 1-, 2- and 3-byte characters */
        static const uint8_t unit[8] = {'a', 'b', 0xC3, 0xA9, 0xE2, 0x9C, 0x93, 'd'};
        if (text) {
            n -= n % 8;
        }
        uint8_t *buf = malloc(n ? n : 1);
        if (buf) {
            for (size_t i = 0; i < n; i++) {
                buf[i] = text ? unit[i % 8] : (uint8_t)(i * 131u + seed + (i >> 8));
            }
            r = wsb_client_send(client, buf, n, text);
            free(buf);
        }
    } else if (strcmp(line, "ping") == 0) {
        r = wsb_client_ping(client, (const uint8_t *)arg, strlen(arg));
    } else if (strcmp(line, "close") == 0) {
        char *end = NULL;
        int code = (int)strtol(arg, &end, 10);
        r = wsb_client_close(client, code, *end == ' ' ? end + 1 : end);
    } else if (strcmp(line, "complete") == 0) {
        r = wsb_client_message_complete(client);
    }
    pthread_mutex_unlock(&client_lock);
    return r;
}

static void *reader(void *arg) {
    (void)arg;
    static char line[1 << 16];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (strcmp(line, "quit") == 0) {
            break;
        }
        char verb[32];
        snprintf(verb, sizeof verb, "%.*s", (int)strcspn(line, " "), line);
        wsb_result r = run_command(line);
        printf("RESULT %s %u\n", verb, (unsigned)r);
    }
    pthread_mutex_lock(&client_lock);
    if (client) {
        wsb_client_interrupt(client);
    }
    pthread_mutex_unlock(&client_lock);
    return NULL;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* The URL comes last, so option values may look like anything. */
    if (argc < 2 || argv[argc - 1][0] == '-') {
        die_usage(argv[0]);
    }
    const char *url = argv[argc - 1];
    int reconnect = 0;
    wsb_client_config *cfg = wsb_client_config_new(url);
    if (!cfg) {
        die_usage(argv[0]);
    }
    for (int i = 1; i < argc - 1; i++) {
        const char *o = argv[i];
        int left = argc - i - 2;
        if (strcmp(o, "--ca") == 0 && left >= 1) {
            check(o, wsb_client_config_set_ca_file(cfg, argv[++i]));
        } else if (strcmp(o, "--no-system-roots") == 0) {
            check(o, wsb_client_config_set_system_roots(cfg, false));
        } else if (strcmp(o, "--client-cert") == 0 && left >= 2) {
            check(o, wsb_client_config_set_client_cert(cfg, argv[i + 1], argv[i + 2]));
            i += 2;
        } else if (strcmp(o, "--insecure") == 0) {
            check(o, wsb_client_config_set_insecure(cfg, true));
        } else if (strcmp(o, "--timeout-ms") == 0 && left >= 1) {
            check(o, wsb_client_config_set_connect_timeout_ms(cfg, (uint32_t)strtoul(argv[++i], NULL, 10)));
        } else if (strcmp(o, "--proxy") == 0 && left >= 1) {
            check(o, wsb_client_config_set_proxy(cfg, argv[++i]));
        } else if (strcmp(o, "--reconnect") == 0 && left >= 3) {
            uint32_t a = (uint32_t)strtoul(argv[i + 1], NULL, 10);
            uint32_t b = (uint32_t)strtoul(argv[i + 2], NULL, 10);
            uint32_t c = (uint32_t)strtoul(argv[i + 3], NULL, 10);
            check(o, wsb_client_config_set_reconnect(cfg, true, a, b, c));
            reconnect = 1;
            i += 3;
        } else if (strcmp(o, "--max-message") == 0 && left >= 1) {
            check(o, wsb_client_config_set_max_message_size(cfg, (size_t)strtoull(argv[++i], NULL, 10)));
        } else if (strcmp(o, "--ping-ms") == 0 && left >= 1) {
            check(o, wsb_client_config_set_ping_interval_ms(cfg, (uint32_t)strtoul(argv[++i], NULL, 10)));
        } else if (strcmp(o, "--header") == 0 && left >= 2) {
            check(o, wsb_client_config_add_header(cfg, argv[i + 1], argv[i + 2]));
            i += 2;
        } else if (strcmp(o, "--protocol") == 0 && left >= 1) {
            check(o, wsb_client_config_add_subprotocol(cfg, argv[++i]));
        } else if (strcmp(o, "--send-results") == 0) {
            check(o, wsb_client_config_set_send_results(cfg, true));
        } else if (strcmp(o, "--manual") == 0) {
            check(o, wsb_client_config_set_manual_complete(cfg, true));
        } else {
            die_usage(argv[0]);
        }
    }

    clock_gettime(CLOCK_MONOTONIC, &started);
    wsb_client *c = NULL;
    wsb_result r = wsb_client_new(cfg, NULL, NULL, NULL, &c);
    wsb_client_config_free(cfg);
    if (r != WSB_RESULT_OK) {
        char detail[512];
        wsb_last_error(detail, sizeof detail, NULL);
        printf("NEW-FAILED %u %s\n", (unsigned)r, detail);
        return 1;
    }
    client = c;
    pthread_t rt;
    if (pthread_create(&rt, NULL, reader, NULL) != 0) {
        fprintf(stderr, "probe: cannot start the reader thread\n");
        return 1;
    }
    pthread_detach(rt);

    const char *why = "?";
    for (;;) {
        wsb_client_event ev;
        r = wsb_client_poll(c, -1, &ev);
        if (r == WSB_RESULT_INTERRUPTED) {
            why = "quit";
            break;
        } else if (r != WSB_RESULT_OK) {
            printf("POLL-FAILED %u\n", (unsigned)r);
            why = "poll";
            break;
        }
        flockfile(stdout); /* one whole line, never interleaved with RESULT lines */
        switch (ev.kind) {
        case WSB_CLIENT_EVENT_TYPE_CONNECTED:
            printf("CONNECTED %s\n", ev.protocol[0] ? ev.protocol : "-");
            break;
        case WSB_CLIENT_EVENT_TYPE_MESSAGE:
            printf("MESSAGE %s %zu %08x ", ev.is_text ? "text" : "binary", ev.len, crc32(ev.data, ev.len));
            print_preview(ev.data, ev.len);
            putchar('\n');
            break;
        case WSB_CLIENT_EVENT_TYPE_PONG:
            printf("PONG %zu ", ev.len);
            print_preview(ev.data, ev.len);
            putchar('\n');
            break;
        case WSB_CLIENT_EVENT_TYPE_SENT:
            printf("SENT\n");
            break;
        case WSB_CLIENT_EVENT_TYPE_DRAIN:
            printf("DRAIN\n");
            break;
        case WSB_CLIENT_EVENT_TYPE_CLOSED:
            printf("CLOSED %d %d %ld %.*s\n", (int)ev.close_status, ev.closed_by_host ? 1 : 0, elapsed_ms(),
                   (int)ev.len, (const char *)ev.data);
            break;
        case WSB_CLIENT_EVENT_TYPE_ERROR:
            printf("ERROR %u %ld %.*s\n", (unsigned)ev.error, elapsed_ms(), (int)ev.len, (const char *)ev.data);
            break;
        case WSB_CLIENT_EVENT_TYPE_RECONNECTING:
            printf("RECONNECTING %u %u\n", (unsigned)ev.attempt, (unsigned)ev.delay_ms);
            break;
        case WSB_CLIENT_EVENT_TYPE_GAVE_UP:
            printf("GAVE_UP %u\n", (unsigned)ev.attempt);
            break;
        default:
            printf("UNKNOWN %u\n", (unsigned)ev.kind);
            break;
        }
        funlockfile(stdout);
        if (!reconnect && (ev.kind == WSB_CLIENT_EVENT_TYPE_CLOSED || ev.kind == WSB_CLIENT_EVENT_TYPE_ERROR)) {
            why = "ended";
            break;
        }
    }
    pthread_mutex_lock(&client_lock);
    client = NULL;
    r = wsb_client_free(c);
    pthread_mutex_unlock(&client_lock);
    printf("END %s %u\n", why, (unsigned)r);
    return r == WSB_RESULT_OK ? 0 : 1;
}
