/* Shared by the echo examples: argument parsing and signal handling. */
#ifndef WSB_EXAMPLE_COMMON_H
#define WSB_EXAMPLE_COMMON_H

/* sigaction and nanosleep are POSIX, not C11. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wsbroker.h"

static volatile sig_atomic_t example_stop = 0;
/* --quiet: no line per connection (the benchmark opens thousands). */
static int example_quiet = 0;

static void example_on_signal(int sig) {
    (void)sig;
    example_stop = 1;
}

static void example_install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = example_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* Prints the library's detailed message for a failed call and exits. */
static void example_die(const char *what, wsb_result r) {
    char detail[256];
    wsb_last_error(detail, sizeof detail, NULL);
    fprintf(stderr, "%s: %s (%s)\n", what, wsb_result_str(r), detail);
    exit(1);
}

/* Parses `[--quiet] [--max-message BYTES] [--handshake-timeout MS] PORT` into a new configuration. */
static wsb_server_config *example_config(int argc, char **argv) {
    const char *usage = "usage: %s [--quiet] [--max-message BYTES] [--handshake-timeout MS] PORT\n";
    wsb_server_config *cfg = wsb_server_config_new();
    const char *port = NULL;
    wsb_result r = WSB_RESULT_OK;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quiet") == 0) {
            example_quiet = 1;
        } else if (strcmp(argv[i], "--max-message") == 0 && i + 1 < argc) {
            r = wsb_server_config_set_max_message_size(cfg, (size_t)strtoull(argv[++i], NULL, 10));
        } else if (strcmp(argv[i], "--handshake-timeout") == 0 && i + 1 < argc) {
            r = wsb_server_config_set_handshake_timeout_ms(cfg, (uint32_t)strtoul(argv[++i], NULL, 10));
        } else if (argv[i][0] != '-' && port == NULL) {
            port = argv[i];
        } else {
            fprintf(stderr, usage, argv[0]);
            exit(2);
        }
        if (r != WSB_RESULT_OK) {
            example_die(argv[i], r);
        }
    }
    if (port == NULL) {
        fprintf(stderr, usage, argv[0]);
        exit(2);
    }
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%s", port);
    r = wsb_server_config_set_bind(cfg, addr);
    if (r != WSB_RESULT_OK) {
        example_die("bind address", r);
    }
    return cfg;
}

/* If `data` is "/close CODE REASON", stores CODE and REASON (NUL-terminated,
 * copied into `reason`) and returns 1. */
static int example_close_command(const uint8_t *data, size_t len, int *code, char *reason, size_t reason_size) {
    if (len < 7 || memcmp(data, "/close ", 7) != 0) {
        return 0;
    }
    char *end = NULL;
    /* `data` is NUL-terminated by the library, so strtol cannot run past it. */
    *code = (int)strtol((const char *)data + 7, &end, 10);
    if (*end == ' ') {
        end++;
    }
    snprintf(reason, reason_size, "%s", end);
    return 1;
}

static void example_print_close(const wsb_event *ev) {
    if (example_quiet) {
        return;
    }
    printf("close %llu %d %s %.*s\n", (unsigned long long)ev->conn, (int)ev->close_status,
           ev->closed_by_host ? "host" : "peer", (int)ev->len, (const char *)ev->data);
    fflush(stdout);
}

static void example_print_open(const wsb_event *ev) {
    if (example_quiet) {
        return;
    }
    printf("open %llu %s %s\n", (unsigned long long)ev->conn, ev->remote_addr, ev->path);
    fflush(stdout);
}

#endif
