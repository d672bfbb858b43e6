/* echo_poll PORT: echoes every message, in queue mode.
 *
 * The main thread polls events and echoes each message itself; a second
 * thread also writes to the same connections, to show that wsb_server_write
 * and wsb_server_close are safe from any thread at the same time. A text
 * message "/burst N" makes the second thread send N text messages
 * "burst 1/N" … "burst N/N" (N ≤ 100000) while echoes go on; "/close CODE
 * REASON" makes it close that connection. Runs until SIGINT or SIGTERM. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>

#include "common.h"

/* One task for the writer thread: a burst or a close. */
typedef struct job {
    struct job *next;
    wsb_conn_id conn;
    int close_code; /* > 0: close with `reason` */
    long burst;     /* > 0: send this many messages */
    char reason[128];
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
        wsb_result r = WSB_RESULT_OK;
        if (j->close_code > 0) {
            r = wsb_server_close(server, j->conn, j->close_code, j->reason);
        }
        for (long i = 1; i <= j->burst && (r == WSB_RESULT_OK || r == WSB_RESULT_BACKPRESSURE); i++) {
            char msg[64];
            int n = snprintf(msg, sizeof msg, "burst %ld/%ld", i, j->burst);
            /* Backpressure still means "queued"; a real sender would wait for DRAIN. */
            r = wsb_server_write(server, j->conn, (const uint8_t *)msg, (size_t)n, 1);
        }
        if (r != WSB_RESULT_OK && r != WSB_RESULT_BACKPRESSURE && r != WSB_RESULT_CLOSED && r != WSB_RESULT_NOT_FOUND) {
            fprintf(stderr, "writer, connection %llu: %s\n", (unsigned long long)j->conn, wsb_result_str(r));
        }
        free(j);
    }
}

static job *new_job(wsb_conn_id conn) {
    job *j = calloc(1, sizeof *j);
    if (!j) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    j->conn = conn;
    return j;
}

/* If `data` is "/burst N" with 0 < N ≤ 100000, returns N; else 0. */
static long burst_command(const uint8_t *data, size_t len) {
    if (len < 8 || memcmp(data, "/burst ", 7) != 0) {
        return 0;
    }
    char *end = NULL;
    /* `data` is NUL-terminated by the library, so strtol cannot run past it. */
    long n = strtol((const char *)data + 7, &end, 10);
    return (*end == 0 && n > 0 && n <= 100000) ? n : 0;
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
            /* ev.data is valid only until the next poll: a job copies what it needs. */
            int code;
            long burst;
            job *j = new_job(ev.conn);
            if (ev.is_text && example_close_command(ev.data, ev.len, &code, j->reason, sizeof j->reason)) {
                j->close_code = code > 0 ? code : 1000;
                push_job(j);
            } else if (ev.is_text && (burst = burst_command(ev.data, ev.len)) > 0) {
                j->burst = burst;
                push_job(j);
            } else {
                free(j);
                /* The echo: written from this (the polling) thread. */
                r = wsb_server_write(server, ev.conn, ev.data, ev.len, ev.is_text);
                if (r != WSB_RESULT_OK && r != WSB_RESULT_BACKPRESSURE) {
                    fprintf(stderr, "write to %llu: %s\n", (unsigned long long)ev.conn, wsb_result_str(r));
                }
            }
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
