/* appws_client URL APP PASSWORD: logs in to an innovaphone AppWebsocket app service,
 * sends {"mt":"Hello","src":"c1","text":"hi"}, prints the reply, then encrypts,
 * decrypts and hashes a string with the session key, and closes.
 *
 * Queue mode: the program polls events on its own thread. Exits 0 when all went
 * well, 1 on a failed login or any other failure. Every wait is bounded (10 s). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wsbroker.h"

static int fail(const char *what, wsb_result r) {
    char detail[256];
    wsb_last_error(detail, sizeof detail, NULL);
    fprintf(stderr, "%s: %s (%s)\n", what, wsb_result_str(r), detail);
    return 1;
}

/* Polls until an event of `kind` (skipping SENT); 0 when it came, 1 otherwise. */
static int wait_for(wsb_appws_client *c, uint32_t kind, wsb_appws_client_event *ev) {
    for (;;) {
        wsb_result r = wsb_appws_client_poll(c, 10000, ev);
        if (r != WSB_RESULT_OK) return fail("poll", r);
        if (ev->kind == kind) return 0;
        if (ev->kind == WSB_APPWS_CLIENT_EVENT_TYPE_LOGIN_FAILED) {
            fprintf(stderr, "login failed: %s\n", ev->text);
            return 1;
        }
        if (ev->kind == WSB_APPWS_CLIENT_EVENT_TYPE_CLOSED) {
            fprintf(stderr, "closed (status %d): %s\n", ev->close_status, ev->text);
            return 1;
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s URL APP PASSWORD\n", argv[0]);
        return 2;
    }
    wsb_appws_client_config *cfg = wsb_appws_client_config_new(argv[1], argv[2], argv[3]);
    if (cfg == NULL) return fail("config", WSB_RESULT_INVALID_ARGUMENT);
    wsb_appws_client *c = NULL;
    wsb_result r = wsb_appws_client_new(cfg, NULL, NULL, NULL, &c);
    wsb_appws_client_config_free(cfg);
    if (r != WSB_RESULT_OK) return fail("wsb_appws_client_new", r);

    int status = 1;
    wsb_appws_client_event ev;
    if (wait_for(c, WSB_APPWS_CLIENT_EVENT_TYPE_CONNECTED, &ev) != 0) goto out;
    printf("connected\n");

    r = wsb_appws_client_send(c, "{\"mt\":\"Hello\",\"src\":\"c1\",\"text\":\"hi\"}");
    if (r != WSB_RESULT_OK) {
        fail("send", r);
        goto out;
    }
    if (wait_for(c, WSB_APPWS_CLIENT_EVENT_TYPE_MESSAGE, &ev) != 0) goto out;
    printf("reply mt=%s src=%s %s\n", ev.mt, ev.src, ev.json);

    /* §5.2: the buffers need one byte more than the vendor's 2x, 1/2 and 64, for the NUL. */
    const char *plain = "hello";
    char hex[2 * 5 + 1], back[5 + 1], hash[65];
    if ((r = wsb_appws_client_encrypt(c, "seed1", plain, hex, sizeof hex)) != WSB_RESULT_OK ||
        (r = wsb_appws_client_decrypt(c, "seed1", hex, back, sizeof back)) != WSB_RESULT_OK ||
        (r = wsb_appws_client_hash(c, "seed1", plain, hash, sizeof hash)) != WSB_RESULT_OK) {
        fail("crypto", r);
        goto out;
    }
    if (strcmp(back, plain) != 0) {
        fprintf(stderr, "decrypt gave %s\n", back);
        goto out;
    }
    /* One byte short: an error, and "" in the buffer. */
    char small[2 * 5];
    if (wsb_appws_client_encrypt(c, "seed1", plain, small, sizeof small) != WSB_RESULT_BUFFER_TOO_SMALL ||
        small[0] != '\0') {
        fprintf(stderr, "a short buffer was not refused\n");
        goto out;
    }
    printf("encrypt %s\nhash %s\n", hex, hash);

    r = wsb_appws_client_close(c);
    if (r != WSB_RESULT_OK) {
        fail("close", r);
        goto out;
    }
    if (wait_for(c, WSB_APPWS_CLIENT_EVENT_TYPE_CLOSED, &ev) != 0) goto out;
    printf("closed %d\n", ev.close_status);
    status = 0;
out:
    r = wsb_appws_client_free(c);
    if (r != WSB_RESULT_OK) return fail("free", r);
    return status;
}
