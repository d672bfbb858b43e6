/* echo_server PORT: echoes every message, in callback mode.
 *
 * Events arrive on the library's I/O thread; the callback answers at once.
 * A text message "/close CODE REASON" makes the server close that connection.
 * Runs until SIGINT or SIGTERM. */
#include "common.h"

#include <time.h>

static void on_event(void *userdata, wsb_server *server, const wsb_event *ev) {
    (void)userdata;
    switch (ev->kind) {
    case WSB_EVENT_TYPE_OPEN:
        example_print_open(ev);
        break;
    case WSB_EVENT_TYPE_MESSAGE: {
        int code;
        char reason[128];
        if (ev->is_text && example_close_command(ev->data, ev->len, &code, reason, sizeof reason)) {
            wsb_server_close(server, ev->conn, code, reason);
            break;
        }
        wsb_result r = wsb_server_write(server, ev->conn, ev->data, ev->len, ev->is_text);
        /* Backpressure still means "queued"; anything else is worth a line. */
        if (r != WSB_RESULT_OK && r != WSB_RESULT_BACKPRESSURE) {
            fprintf(stderr, "write to %llu: %s\n", (unsigned long long)ev->conn, wsb_result_str(r));
        }
        break;
    }
    case WSB_EVENT_TYPE_CLOSE:
        example_print_close(ev);
        break;
    default:
        break;
    }
}

int main(int argc, char **argv) {
    wsb_server_config *cfg = example_config(argc, argv);
    wsb_server *server = NULL;
    wsb_result r = wsb_server_new(cfg, on_event, NULL, NULL, &server);
    wsb_server_config_free(cfg);
    if (r != WSB_RESULT_OK) {
        example_die("wsb_server_new", r);
    }
    example_install_signals();
    printf("listening on 127.0.0.1:%u\n", (unsigned)wsb_server_port(server));
    fflush(stdout);

    while (!example_stop) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }

    wsb_stats st;
    if (wsb_server_stats(server, &st) == WSB_RESULT_OK) {
        fprintf(stderr, "connections %llu, messages in %llu, out %llu\n", (unsigned long long)st.connections_total,
                (unsigned long long)st.messages_in, (unsigned long long)st.messages_out);
    }
    r = wsb_server_free(server);
    return r == WSB_RESULT_OK ? 0 : 1;
}
