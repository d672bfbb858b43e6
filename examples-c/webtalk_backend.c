/* webtalk_backend PORT USERS SECONDS: a back-end application driving webtalk
 * through the C API, without the admin socket.
 *
 * Creates USERS users and prints one line per user, "user ID!SALT", which a
 * browser sends to ws://127.0.0.1:PORT to log in. Creates channel 2 with every
 * user in it and stores "started" under "state". Checks that unknown ids get
 * WSB_RESULT_NOT_FOUND and channel 1 cannot be killed ("errors checked").
 * Then, once a second for SECONDS seconds (or until SIGINT/SIGTERM), whispers
 * "hello ID #N" to each user and shouts "tick N" to the channel; messages for
 * users not logged in wait in their offline queue.
 *
 * At the end: the last user leaves the channel and "after leave" is shouted
 * (the others get it, it does not), every user is whispered "bye", the state
 * is cleared (retrieve then gives NOT_FOUND), the channel is killed (a shout
 * to it gives NOT_FOUND) and the first user is killed: its browser is closed
 * with 4003 and a whisper to it gives NOT_FOUND. Each step prints a line.
 * Any result other than the one expected exits 1. */
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

/* Exits 1 unless `r` is `want`. */
static void expect(wsb_result r, wsb_result want, const char *what) {
    if (r != want) {
        char why[256];
        wsb_last_error(why, sizeof why, NULL);
        fprintf(stderr, "%s: %s, expected %s (%s)\n", what, wsb_result_str(r), wsb_result_str(want), why);
        exit(1);
    }
}

static void check(wsb_result r, const char *what) { expect(r, WSB_RESULT_OK, what); }

static void whisper_all(wsb_broker *broker, const uint64_t *ids, int users, const char *msg) {
    for (int i = 0; i < users; i++) {
        check(wsb_broker_webtalk_whisper(broker, ids[i], (const uint8_t *)msg, strlen(msg)), "whisper");
    }
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s PORT USERS SECONDS\n", argv[0]);
        return 2;
    }
    int users = atoi(argv[2]);
    int seconds = atoi(argv[3]);
    if (users < 1 || users > 1000 || seconds < 1) {
        fprintf(stderr, "USERS must be 1..1000 and SECONDS positive\n");
        return 2;
    }
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%s", argv[1]);

    wsb_broker_config *cfg = wsb_broker_config_new();
    check(wsb_broker_config_set_listener(cfg, WSB_LISTENER_ACHEX, "off"), "achex off");
    check(wsb_broker_config_set_listener(cfg, WSB_LISTENER_WEBTALK, addr), "webtalk address");
    wsb_broker *broker = NULL;
    wsb_result r = wsb_broker_new(cfg, NULL, NULL, NULL, &broker);
    wsb_broker_config_free(cfg);
    check(r, "wsb_broker_new");

    uint64_t *ids = calloc((size_t)users, sizeof *ids);
    if (!ids) {
        return 1;
    }
    uint64_t channel = 0;
    check(wsb_broker_webtalk_create_channel(broker, &channel), "create channel");
    printf("webtalk listening on 127.0.0.1:%u\n", (unsigned)wsb_broker_port(broker, WSB_LISTENER_WEBTALK));
    for (int i = 0; i < users; i++) {
        char salt[32];
        check(wsb_broker_webtalk_create_user(broker, &ids[i], salt, sizeof salt), "create user");
        check(wsb_broker_webtalk_join(broker, channel, ids[i]), "join");
        printf("user %llu!%s\n", (unsigned long long)ids[i], salt);
    }
    printf("channel %llu\n", (unsigned long long)channel);
    fflush(stdout);
    const char *state = "started";
    check(wsb_broker_webtalk_store(broker, "state", (const uint8_t *)state, strlen(state)), "store");

    /* Error paths: ids nobody created, and the global channel. */
    const uint64_t nobody = 999999, no_channel = 888888;
    const uint8_t x = 'x';
    expect(wsb_broker_webtalk_whisper(broker, nobody, &x, 1), WSB_RESULT_NOT_FOUND, "whisper to nobody");
    expect(wsb_broker_webtalk_kill_user(broker, nobody), WSB_RESULT_NOT_FOUND, "kill nobody");
    expect(wsb_broker_webtalk_shout(broker, no_channel, &x, 1), WSB_RESULT_NOT_FOUND, "shout to no channel");
    expect(wsb_broker_webtalk_join(broker, no_channel, ids[0]), WSB_RESULT_NOT_FOUND, "join no channel");
    expect(wsb_broker_webtalk_join(broker, channel, nobody), WSB_RESULT_NOT_FOUND, "nobody joins");
    expect(wsb_broker_webtalk_leave(broker, channel, nobody), WSB_RESULT_NOT_FOUND, "nobody leaves");
    expect(wsb_broker_webtalk_kill_channel(broker, no_channel), WSB_RESULT_NOT_FOUND, "kill no channel");
    expect(wsb_broker_webtalk_kill_channel(broker, 1), WSB_RESULT_INVALID_ARGUMENT, "kill channel 1");
    printf("errors checked\n");
    fflush(stdout);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    for (int tick = 1; tick <= seconds && !stop; tick++) {
        char msg[64];
        for (int i = 0; i < users; i++) {
            int n = snprintf(msg, sizeof msg, "hello %llu #%d", (unsigned long long)ids[i], tick);
            r = wsb_broker_webtalk_whisper(broker, ids[i], (const uint8_t *)msg, (size_t)n);
            if (r != WSB_RESULT_OK) {
                fprintf(stderr, "whisper %llu: %s\n", (unsigned long long)ids[i], wsb_result_str(r));
            }
        }
        int n = snprintf(msg, sizeof msg, "tick %d", tick);
        r = wsb_broker_webtalk_shout(broker, channel, (const uint8_t *)msg, (size_t)n);
        if (r != WSB_RESULT_OK) {
            fprintf(stderr, "shout: %s\n", wsb_result_str(r));
        }
        for (int slept = 0; slept < 10 && !stop; slept++) {
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    char value[64];
    check(wsb_broker_webtalk_retrieve(broker, "state", value, sizeof value, NULL), "retrieve");
    fprintf(stderr, "state was %s\n", value);

    /* Leave: the last user no longer gets the channel's shouts. */
    uint64_t last = ids[users - 1];
    check(wsb_broker_webtalk_leave(broker, channel, last), "leave");
    check(wsb_broker_webtalk_leave(broker, channel, last), "leave again (not a member: fine)");
    const char *after = "after leave";
    check(wsb_broker_webtalk_shout(broker, channel, (const uint8_t *)after, strlen(after)), "shout after leave");
    whisper_all(broker, ids, users, "bye");
    printf("left %llu\n", (unsigned long long)last);

    /* Clear: the value is gone. */
    check(wsb_broker_webtalk_clear(broker, "state"), "clear");
    check(wsb_broker_webtalk_clear(broker, "state"), "clear again (absent: fine)");
    expect(wsb_broker_webtalk_retrieve(broker, "state", value, sizeof value, NULL), WSB_RESULT_NOT_FOUND,
           "retrieve after clear");
    printf("state cleared\n");

    /* Kill the channel: it is gone. */
    check(wsb_broker_webtalk_kill_channel(broker, channel), "kill channel");
    expect(wsb_broker_webtalk_shout(broker, channel, &x, 1), WSB_RESULT_NOT_FOUND, "shout to a killed channel");
    printf("killed channel %llu\n", (unsigned long long)channel);

    /* Kill the first user: its browser is closed with 4003, and it is forgotten. */
    check(wsb_broker_webtalk_kill_user(broker, ids[0]), "kill user");
    expect(wsb_broker_webtalk_whisper(broker, ids[0], &x, 1), WSB_RESULT_NOT_FOUND, "whisper to a killed user");
    printf("killed user %llu\n", (unsigned long long)ids[0]);
    fflush(stdout);
    /* A moment for the closes and last messages to leave before the broker stops. */
    struct timespec linger = {0, 300 * 1000 * 1000};
    nanosleep(&linger, NULL);
    free(ids);
    return wsb_broker_free(broker) == WSB_RESULT_OK ? 0 : 1;
}
