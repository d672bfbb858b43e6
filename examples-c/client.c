/* client URL [MESSAGE...]: connects to a WebSocket server, sends each MESSAGE
 * as text, prints each reply on its own line, then closes.
 *
 * Uses queue mode: this thread asks for events with wsb_client_poll instead
 * of receiving callbacks. Exits 0 once every reply has arrived and the close
 * handshake is done; 1, with the library's message, if the connection fails
 * or the server closes first; 2 on bad usage. */
#include <stdio.h>
#include <string.h>

#include "wsbroker.h"

/* The longest wait for any one event (the connect timeout is 10 s). */
#define EVENT_TIMEOUT_MS 15000

static void print_reply(const wsb_client_event *ev) {
    if (ev->is_text) {
        printf("%.*s\n", (int)ev->len, (const char *)ev->data);
    } else {
        printf("(binary, %zu bytes)\n", ev->len);
    }
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s URL [MESSAGE...]\n", argv[0]);
        return 2;
    }
    int expected = argc - 2;
    char detail[512];

    wsb_client_config *cfg = wsb_client_config_new(argv[1]);
    if (cfg == NULL) {
        fprintf(stderr, "client: the URL is not valid UTF-8\n");
        return 2;
    }
    wsb_client *client = NULL;
    /* No callback: events queue up for wsb_client_poll. */
    wsb_result r = wsb_client_new(cfg, NULL, NULL, NULL, &client);
    wsb_client_config_free(cfg); /* the client keeps its own copy */
    if (r != WSB_RESULT_OK) {
        wsb_last_error(detail, sizeof detail, NULL);
        fprintf(stderr, "client: %s: %s\n", wsb_result_str(r), detail);
        return r == WSB_RESULT_INVALID_ARGUMENT ? 2 : 1;
    }

    int status = 1;
    int replies = 0;
    for (;;) {
        wsb_client_event ev;
        r = wsb_client_poll(client, EVENT_TIMEOUT_MS, &ev);
        if (r != WSB_RESULT_OK) {
            fprintf(stderr, "client: no event within %d ms: %s\n", EVENT_TIMEOUT_MS, wsb_result_str(r));
            break;
        }
        if (ev.kind == WSB_CLIENT_EVENT_TYPE_CONNECTED) {
            for (int i = 2; i < argc; i++) {
                r = wsb_client_send(client, (const uint8_t *)argv[i], strlen(argv[i]), true);
                /* BACKPRESSURE still means queued; anything else means not sent. */
                if (r != WSB_RESULT_OK && r != WSB_RESULT_BACKPRESSURE) {
                    fprintf(stderr, "client: send: %s\n", wsb_result_str(r));
                    break;
                }
            }
            if (expected == 0 || (r != WSB_RESULT_OK && r != WSB_RESULT_BACKPRESSURE)) {
                wsb_client_close(client, 1000, "done");
            }
        } else if (ev.kind == WSB_CLIENT_EVENT_TYPE_MESSAGE) {
            print_reply(&ev);
            if (++replies == expected) {
                wsb_client_close(client, 1000, "done");
            }
        } else if (ev.kind == WSB_CLIENT_EVENT_TYPE_CLOSED) {
            if (ev.closed_by_host && replies == expected) {
                status = 0;
            } else {
                fprintf(stderr, "client: connection closed (%d %.*s) after %d of %d replies\n", (int)ev.close_status,
                        (int)ev.len, (const char *)ev.data, replies, expected);
            }
            break;
        } else if (ev.kind == WSB_CLIENT_EVENT_TYPE_ERROR) {
            /* Without auto-reconnect a failed attempt is the end. */
            fprintf(stderr, "client: %s: %.*s\n", wsb_result_str(ev.error), (int)ev.len, (const char *)ev.data);
            break;
        }
    }
    wsb_client_free(client);
    return status;
}
