/* echo_poll PORT: echoes every message, in queue mode.
 *
 * The main thread polls events; a second thread does the writing (and the
 * closing), to show that wsb_server_write and wsb_server_close are safe from
 * any thread. A text message "/close CODE REASON" closes that connection.
 * Runs until SIGINT or SIGTERM. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>

#include "common.h"

/* One reply for the writer thread. */
typedef struct job {
    struct job *next;
    wsb_conn_id conn;
    int is_text;
    int close_code; /* > 0: close instead of write */
    size_t len;
    uint8_t data[]; /* the payload, or the close reason */
} job;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t ready;
    job *head, *tail;
    int done;
} jobs = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, 0};

static void push_job(job *j) {
    pthread_mutex_lock(&jobs.lock);
    j->next = NULL;
    if (jobs.tail) {
        jobs.tail->next = j;
    } else {
        jobs.head = j;
    }
    jobs.tail = j;
    pthread_cond_signal(&jobs.ready);
    pthread_mutex_unlock(&jobs.lock);
}

static void *writer(void *arg) {
    wsb_server *server = arg;
    for (;;) {
        pthread_mutex_lock(&jobs.lock);
        while (!jobs.head && !jobs.done) {
            pthread_cond_wait(&jobs.ready, &jobs.lock);
        }
        job *j = jobs.head;
        if (j) {
            jobs.head = j->next;
            if (!jobs.head) {
                jobs.tail = NULL;
            }
        }
        pthread_mutex_unlock(&jobs.lock);
        if (!j) {
            return NULL; /* done and drained */
        }
        wsb_result r;
        if (j->close_code > 0) {
            r = wsb_server_close(server, j->conn, j->close_code, (const char *)j->data);
        } else {
            r = wsb_server_write(server, j->conn, j->data, j->len, j->is_text);
        }
        if (r != WSB_RESULT_OK && r != WSB_RESULT_BACKPRESSURE && r != WSB_RESULT_CLOSED && r != WSB_RESULT_NOT_FOUND) {
            fprintf(stderr, "writer, connection %llu: %s\n", (unsigned long long)j->conn, wsb_result_str(r));
        }
        free(j);
    }
}

static job *new_job(wsb_conn_id conn, const uint8_t *data, size_t len) {
    /* One spare byte keeps a close reason NUL-terminated. */
    job *j = malloc(sizeof *j + len + 1);
    if (!j) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    j->conn = conn;
    j->is_text = 0;
    j->close_code = 0;
    j->len = len;
    if (len) {
        memcpy(j->data, data, len);
    }
    j->data[len] = 0;
    return j;
}

int main(int argc, char **argv) {
    wsb_server_config *cfg = example_config(argc, argv);
    wsb_server *server = NULL;
    wsb_result r = wsb_server_new(cfg, NULL, NULL, NULL, &server); /* no callback: queue mode */
    wsb_server_config_free(cfg);
    if (r != WSB_RESULT_OK) {
        example_die("wsb_server_new", r);
    }
    example_install_signals();
    pthread_t tid;
    if (pthread_create(&tid, NULL, writer, server) != 0) {
        fprintf(stderr, "cannot start the writer thread\n");
        return 1;
    }
    printf("listening on 127.0.0.1:%u\n", (unsigned)wsb_server_port(server));
    fflush(stdout);

    while (!example_stop) {
        wsb_event ev;
        r = wsb_server_poll(server, 100, &ev);
        if (r == WSB_RESULT_TIMEOUT || r == WSB_RESULT_INTERRUPTED) {
            continue;
        }
        if (r != WSB_RESULT_OK) {
            example_die("wsb_server_poll", r);
        }
        switch (ev.kind) {
        case WSB_EVENT_TYPE_OPEN:
            example_print_open(&ev);
            break;
        case WSB_EVENT_TYPE_MESSAGE: {
            /* ev.data is valid only until the next poll: the job copies it. */
            int code;
            char reason[128];
            job *j;
            if (ev.is_text && example_close_command(ev.data, ev.len, &code, reason, sizeof reason)) {
                j = new_job(ev.conn, (const uint8_t *)reason, strlen(reason));
                j->close_code = code > 0 ? code : 1000;
            } else {
                j = new_job(ev.conn, ev.data, ev.len);
                j->is_text = ev.is_text;
            }
            push_job(j);
            break;
        }
        case WSB_EVENT_TYPE_CLOSE:
            example_print_close(&ev);
            break;
        default:
            break;
        }
    }

    pthread_mutex_lock(&jobs.lock);
    jobs.done = 1;
    pthread_cond_signal(&jobs.ready);
    pthread_mutex_unlock(&jobs.lock);
    pthread_join(tid, NULL);
    r = wsb_server_free(server);
    return r == WSB_RESULT_OK ? 0 : 1;
}
