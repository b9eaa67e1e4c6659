/*
 * A C host of paywall-auth: drives the machine over a plain POSIX socket
 * with the library's own HTTP/1.1 codec, and keeps the records in files
 * (one file per key, written to a temporary file and renamed).
 *
 * Usage: lifecycle PORT PAYWALL_ID DIR PHASE
 *
 * Each run is a new process, so a new machine over the same files: a real
 * restart. PHASE is one step of the anonymous lifecycle (fresh, restart,
 * soft, hard, parallel, upgrade, confirm); every phase checks what it
 * sends (method, path, headers, body) and what it stores, and prints
 * `key=value` lines that the Rust test compares across phases and with the
 * emulator's view.
 *
 * Every phase records a trace of its machine (docs/protocol.md §14) through
 * a sink that appends each line to DIR/trace-PHASE.jsonl, and at the end
 * replays the file with paywall_auth_trace_replay, which must find the
 * machine identical; the Rust test reads the file too.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "paywall_auth.h"

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__,  \
                    #cond);                                                   \
            fprintf(stderr, __VA_ARGS__);                                     \
            fputc('\n', stderr);                                              \
            exit(1);                                                          \
        }                                                                     \
    } while (0)

#define OK(call)                                                              \
    do {                                                                      \
        paywall_auth_status s_ = (call);                                      \
        CHECK(s_ == PAYWALL_AUTH_STATUS_OK, "%s -> %d (%s)", #call, (int)s_,  \
              paywall_auth_status_str(s_));                                   \
    } while (0)

#define REQ_MAX 8192
#define OUTBOX 6

struct outgoing {
    uint32_t id;
    size_t len;
    char route[64];
    uint8_t bytes[REQ_MAX];
};

struct completion {
    uint32_t id;
    int ok;
    paywall_auth_outcome outcome;
    char user_id[96];
    char email[128];
    int is_anonymous;
    char code[64];
    paywall_auth_revocation revocation;
};

struct host {
    paywall_auth_machine *m;
    const char *pid;
    const char *dir;
    int port;
    struct outgoing outbox[OUTBOX];
    int outbox_n;
    struct completion done[16];
    int done_n;
    paywall_auth_event events[32];
    int events_n;
    char event_user[96]; /* user of the last auth change, "" for none */
    int sent;            /* requests sent by this process */
    char routes[512];    /* "signin,refresh,..." in order */
    const char *phase;
    char trace_path[512];
    FILE *trace;         /* the recording's sink writes here */
    size_t trace_lines;  /* lines the sink got */
};

static uint64_t now_ms(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000u + (uint64_t)(tv.tv_usec / 1000);
}

static paywall_auth_bytes str_bytes(const char *s) {
    paywall_auth_bytes b = {(const uint8_t *)s, s ? strlen(s) : 0};
    return b;
}

static void copy_str(char *dst, size_t cap, paywall_auth_bytes b) {
    size_t n = b.len < cap - 1 ? b.len : cap - 1;
    if (n) memcpy(dst, b.ptr, n);
    dst[n] = 0;
}

static int bytes_eq(paywall_auth_bytes b, const char *s) {
    return b.len == strlen(s) && memcmp(b.ptr, s, b.len) == 0;
}

static const paywall_auth_header *find_header(const paywall_auth_request *r,
                                              const char *name) {
    for (size_t i = 0; i < r->headers_len; i++)
        if (bytes_eq(r->headers[i].name, name)) return &r->headers[i];
    return NULL;
}

/* ---- storage: one file per key, tmp + rename ---------------------------- */

static void path_of(const struct host *h, const char *key, char *out, size_t cap) {
    snprintf(out, cap, "%s/%s", h->dir, key);
}

static int store_apply(const struct host *h, const paywall_auth_store_op *op) {
    char path[512], tmp[520];
    /* The key is NUL-terminated by contract. */
    CHECK(op->key.ptr[op->key.len] == 0, "key not NUL-terminated");
    path_of(h, (const char *)op->key.ptr, path, sizeof path);
    if (op->remove) {
        CHECK(op->value.ptr == NULL && op->value.len == 0, "remove with a value");
        return unlink(path) == 0 || errno == ENOENT;
    }
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return 0;
    int ok = fwrite(op->value.ptr, 1, op->value.len, f) == op->value.len;
    ok = (fflush(f) == 0) && ok;
    ok = (fsync(fileno(f)) == 0) && ok;
    ok = (fclose(f) == 0) && ok;
    return ok && rename(tmp, path) == 0;
}

/* Reads a whole file into a malloc'd buffer; NULL if absent. */
static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *buf = malloc(16384);
    CHECK(buf != NULL, "out of memory");
    *len = fread(buf, 1, 16384, f);
    fclose(f);
    return buf;
}

/* ---- traces --------------------------------------------------------------- */

/* The sink: each finished line (JSON, with its newline), header first. */
static void trace_sink(void *user, const uint8_t *line, size_t len) {
    struct host *h = user;
    CHECK(len > 0 && line[len - 1] == '\n' && memchr(line, '\n', len) == line + len - 1,
          "one line per call");
    static const char header[] = "{\"paywall_auth_trace\":1,";
    CHECK(h->trace_lines > 0 ||
              (len > strlen(header) && memcmp(line, header, strlen(header)) == 0),
          "the header comes first: %.*s", (int)len, (const char *)line);
    CHECK(fwrite(line, 1, len, h->trace) == len, "trace write");
    h->trace_lines++;
}

/* Reads a whole file of any size into a malloc'd buffer. */
static uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL, "open %s", path);
    CHECK(fseek(f, 0, SEEK_END) == 0, "seek");
    long size = ftell(f);
    CHECK(size >= 0 && fseek(f, 0, SEEK_SET) == 0, "size");
    uint8_t *buf = malloc((size_t)size + 1);
    CHECK(buf != NULL, "out of memory");
    *len = fread(buf, 1, (size_t)size, f);
    CHECK(*len == (size_t)size, "read %s", path);
    fclose(f);
    return buf;
}

/* Replays the finished trace file: the machine must be identical. */
static void replay_trace(struct host *h) {
    size_t len = 0;
    uint8_t *trace = slurp(h->trace_path, &len);
    paywall_auth_replay_report *report = malloc(sizeof *report);
    CHECK(report != NULL, "out of memory");
    paywall_auth_status s = paywall_auth_trace_replay(trace, len, report);
    CHECK(s == PAYWALL_AUTH_STATUS_OK,
          "replay -> %d (%s) at line %zu: %s\n  input:    %s\n  expected: %s\n  actual:   %s",
          (int)s, paywall_auth_status_str(s), report->line, report->what, report->input,
          report->expected, report->actual);
    CHECK(report->inputs + 1 == h->trace_lines, "%zu inputs replayed, %zu lines recorded",
          report->inputs, h->trace_lines);
    size_t inputs = report->inputs;
    /* Misuse and garbage get codes. */
    CHECK(paywall_auth_trace_replay(NULL, 1, report) == PAYWALL_AUTH_STATUS_NULL_POINTER,
          "NULL trace");
    /* Cut inside its last line ("...}\n" loses "}\n"): invalid, there. */
    s = paywall_auth_trace_replay(trace, len - 2, report);
    CHECK(s == PAYWALL_AUTH_STATUS_TRACE_INVALID && report->line == h->trace_lines,
          "cut trace -> %d at line %zu: %s", (int)s, report->line, report->what);
    printf("trace=%s\ntrace_inputs=%zu\n", h->trace_path, inputs);
    free(report);
    free(trace);
}

/* ---- the drive loop ------------------------------------------------------ */

static void check_request(const struct host *h, const paywall_auth_request *r) {
    char prefix[128];
    snprintf(prefix, sizeof prefix, "/api/v1/paywall/%s/auth/", h->pid);
    CHECK(bytes_eq(r->method, "POST"), "method %.*s", (int)r->method.len, r->method.ptr);
    CHECK(r->path.len > strlen(prefix) && memcmp(r->path.ptr, prefix, strlen(prefix)) == 0,
          "path %.*s", (int)r->path.len, r->path.ptr);
    const paywall_auth_header *accept = find_header(r, "Accept");
    CHECK(accept && bytes_eq(accept->value, "application/json"), "Accept");
    const paywall_auth_header *pid = find_header(r, "X-Paywall-Id");
    CHECK(pid && bytes_eq(pid->value, h->pid), "X-Paywall-Id");
    CHECK(find_header(r, "X-SDK-Version") != NULL, "X-SDK-Version");
    const paywall_auth_header *ct = find_header(r, "Content-Type");
    CHECK((ct != NULL) == (r->body.len > 0), "Content-Type iff a body");
    if (r->body.len) CHECK(r->body.ptr[0] == '{', "JSON body");
}

static void drain(struct host *h) {
    paywall_auth_output out;
    paywall_auth_status s;
    while ((s = paywall_auth_machine_poll_output(h->m, &out)) == PAYWALL_AUTH_STATUS_OK) {
        switch (out.kind) {
        case PAYWALL_AUTH_OUTPUT_KIND_SEND: {
            const paywall_auth_request *r = &out.send;
            check_request(h, r);
            CHECK(h->outbox_n < OUTBOX, "outbox full");
            struct outgoing *o = &h->outbox[h->outbox_n++];
            o->id = r->request_id;
            size_t skip = strlen("/api/v1/paywall/") + strlen(h->pid) + 1;
            paywall_auth_bytes route = {r->path.ptr + skip, r->path.len - skip};
            copy_str(o->route, sizeof o->route, route);
            char host[64];
            snprintf(host, sizeof host, "127.0.0.1:%d", h->port);
            /* Render now: the request's pointers die with the next call. */
            OK(paywall_auth_http_write_request(str_bytes(host), r, o->bytes, sizeof o->bytes,
                                               &o->len));
            break;
        }
        case PAYWALL_AUTH_OUTPUT_KIND_STORE: {
            int ok = store_apply(h, &out.store);
            printf("store=%s:%s\n", (const char *)out.store.key.ptr,
                   out.store.remove ? "remove" : "write");
            /* The only input accepted while a store is pending. */
            OK(paywall_auth_machine_handle_stored(h->m, now_ms(), out.store.store_id,
                                                  (uint8_t)ok));
            break;
        }
        case PAYWALL_AUTH_OUTPUT_KIND_AUTH_CHANGE:
            CHECK(h->events_n < 32, "too many events");
            h->events[h->events_n++] = out.auth_change.event;
            copy_str(h->event_user, sizeof h->event_user, out.auth_change.session.user_id);
            printf("event=%.*s:%s\n", (int)out.auth_change.event_name.len,
                   out.auth_change.event_name.ptr, h->event_user);
            break;
        case PAYWALL_AUTH_OUTPUT_KIND_COMPLETE: {
            CHECK(h->done_n < 16, "too many completions");
            struct completion *c = &h->done[h->done_n++];
            memset(c, 0, sizeof *c);
            c->id = out.complete.command_id;
            c->ok = out.complete.ok;
            c->revocation = out.complete.revocation;
            c->outcome = out.complete.outcome;
            copy_str(c->user_id, sizeof c->user_id, out.complete.session.user_id);
            copy_str(c->email, sizeof c->email, out.complete.ok ? out.complete.email
                                                                  : out.complete.error.message);
            c->is_anonymous = out.complete.session.is_anonymous;
            copy_str(c->code, sizeof c->code, out.complete.error.code);
            if (!c->ok)
                printf("error=%s:%s (HTTP %u)\n", c->code, out.complete.error.message.ptr,
                       out.complete.error.http_status);
            break;
        }
        case PAYWALL_AUTH_OUTPUT_KIND_NOTICE:
            printf("notice=%s\n", (const char *)out.notice.message.ptr);
            break;
        }
    }
    CHECK(s == PAYWALL_AUTH_STATUS_EMPTY, "poll_output -> %d (%s)", (int)s,
          paywall_auth_status_str(s));
}

/* One exchange: connect, send, read the response with the incremental
 * parser until it is complete or the server closes. */
static void exchange(struct host *h, const struct outgoing *o) {
    static uint8_t rbuf[16384];
    static uint8_t chunk[333]; /* odd size: exercise many splits */
    uint8_t *pmem = aligned_alloc(paywall_auth_http_response_align(),
                                  ((paywall_auth_http_response_size() + 15) / 16) * 16);
    CHECK(pmem != NULL, "out of memory");
    paywall_auth_http_response *p = (paywall_auth_http_response *)pmem;
    OK(paywall_auth_http_response_init(pmem, paywall_auth_http_response_size(), rbuf,
                                       sizeof rbuf));

    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0, "socket");
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)h->port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        free(pmem);
        OK(paywall_auth_machine_handle_transport_error(h->m, now_ms(), o->id,
                                                       PAYWALL_AUTH_TRANSPORT_ERROR_CONNECT));
        return;
    }
    size_t off = 0;
    while (off < o->len) {
        ssize_t n = write(fd, o->bytes + off, o->len - off);
        CHECK(n > 0, "write");
        off += (size_t)n;
    }
    paywall_auth_http_response_view view;
    paywall_auth_status s = PAYWALL_AUTH_STATUS_INCOMPLETE;
    while (s == PAYWALL_AUTH_STATUS_INCOMPLETE) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        CHECK(n >= 0, "read");
        s = n == 0 ? paywall_auth_http_response_finish(p, &view)
                   : paywall_auth_http_response_feed(p, chunk, (size_t)n, &view);
    }
    close(fd);
    h->sent++;
    strncat(h->routes, o->route, sizeof h->routes - strlen(h->routes) - 2);
    strcat(h->routes, ",");
    if (s != PAYWALL_AUTH_STATUS_OK) {
        fprintf(stderr, "response unusable: %s\n", paywall_auth_status_str(s));
        OK(paywall_auth_machine_handle_transport_error(h->m, now_ms(), o->id,
                                                       PAYWALL_AUTH_TRANSPORT_ERROR_BAD_FRAMING));
    } else {
        OK(paywall_auth_machine_handle_response(h->m, now_ms(), o->id, view.status,
                                                view.content_type_json, view.body.ptr,
                                                view.body.len, view.reason));
    }
    free(pmem);
}

/* Drains, sends what is queued, feeds the answers, until nothing is left. */
static void run(struct host *h) {
    for (;;) {
        drain(h);
        if (h->outbox_n == 0) return;
        struct outgoing o = h->outbox[0];
        memmove(&h->outbox[0], &h->outbox[1], sizeof(struct outgoing) * (size_t)(h->outbox_n - 1));
        h->outbox_n--;
        exchange(h, &o);
    }
}

static const struct completion *completion_of(const struct host *h, uint32_t id) {
    for (int i = 0; i < h->done_n; i++)
        if (h->done[i].id == id) return &h->done[i];
    return NULL;
}

static uint32_t command(struct host *h, const paywall_auth_command *cmd) {
    uint32_t id = 0;
    OK(paywall_auth_machine_handle_command(h->m, now_ms(), cmd, &id));
    return id;
}

static const struct completion *run_command(struct host *h, const paywall_auth_command *cmd) {
    uint32_t id = command(h, cmd);
    run(h);
    const struct completion *c = completion_of(h, id);
    CHECK(c != NULL, "command %u got no completion", id);
    return c;
}

static paywall_auth_command cmd_of(paywall_auth_command_kind kind) {
    paywall_auth_command c;
    memset(&c, 0, sizeof c);
    c.kind = (uint32_t)kind;
    return c;
}

static const struct completion *sign_in(struct host *h) {
    paywall_auth_command c = cmd_of(PAYWALL_AUTH_COMMAND_KIND_SIGN_IN);
    const struct completion *done = run_command(h, &c);
    CHECK(done->ok && done->outcome == PAYWALL_AUTH_OUTCOME_SESSION, "sign-in failed: %s",
          done->code);
    CHECK(done->is_anonymous, "guest expected");
    printf("user=%s\n", done->user_id);
    return done;
}

static void sign_out(struct host *h, int hard) {
    paywall_auth_command c = cmd_of(PAYWALL_AUTH_COMMAND_KIND_SIGN_OUT);
    c.hard = (uint8_t)hard;
    const struct completion *done = run_command(h, &c);
    CHECK(done->ok && done->outcome == PAYWALL_AUTH_OUTCOME_SIGNED_OUT, "sign-out failed");
    /* A hard sign-out of a guest completes once /auth/signout answered. */
    CHECK(done->revocation == (hard ? PAYWALL_AUTH_REVOCATION_REVOKED
                                    : PAYWALL_AUTH_REVOCATION_NOT_NEEDED),
          "revocation %d", (int)done->revocation);
    CHECK(h->events_n > 0 && h->events[h->events_n - 1] == PAYWALL_AUTH_EVENT_SIGNED_OUT,
          "SIGNED_OUT expected");
}

static int file_exists(const struct host *h, const char *suffix) {
    char key[160], path[512];
    snprintf(key, sizeof key, "pw-%s-%s", h->pid, suffix);
    path_of(h, key, path, sizeof path);
    return access(path, F_OK) == 0;
}

/* Starts a machine over the files in DIR. */
static void start(struct host *h) {
    size_t size = paywall_auth_machine_size(), align = paywall_auth_machine_align();
    CHECK(size <= PAYWALL_AUTH_MACHINE_STORAGE, "static bound %zu < %zu",
          (size_t)PAYWALL_AUTH_MACHINE_STORAGE, size);
    void *mem = aligned_alloc(align, (size + align - 1) / align * align);
    CHECK(mem != NULL, "out of memory");

    paywall_auth_config cfg;
    OK(paywall_auth_config_default(&cfg, (const uint8_t *)h->pid, strlen(h->pid)));
    /* Misuse is refused with typed codes, never a crash. */
    CHECK(paywall_auth_machine_init(mem, size - 1, &cfg) == PAYWALL_AUTH_STATUS_BUFFER_TOO_SMALL,
          "small memory");
    CHECK(paywall_auth_machine_init((uint8_t *)mem + 1, size, &cfg) ==
              PAYWALL_AUTH_STATUS_MISALIGNED,
          "misaligned memory");
    memset(mem, 0, size);
    paywall_auth_output probe;
    CHECK(paywall_auth_machine_poll_output((paywall_auth_machine *)mem, &probe) ==
              PAYWALL_AUTH_STATUS_NOT_INITIALIZED,
          "uninitialised memory refused");
    CHECK(paywall_auth_machine_poll_output(NULL, &probe) == PAYWALL_AUTH_STATUS_NULL_POINTER,
          "NULL handle refused");
    paywall_auth_config bad = cfg;
    bad.paywall_id = str_bytes("a/b");
    CHECK(paywall_auth_machine_init(mem, size, &bad) == PAYWALL_AUTH_STATUS_INVALID_CONFIG,
          "bad paywall id");
    OK(paywall_auth_machine_init(mem, size, &cfg));
    h->m = (paywall_auth_machine *)mem;

    /* Record from the start, so the trace replays from a fresh machine. */
    CHECK(paywall_auth_machine_record_trace(NULL, 0, trace_sink, h) ==
              PAYWALL_AUTH_STATUS_NULL_POINTER,
          "NULL handle refused");
    snprintf(h->trace_path, sizeof h->trace_path, "%s/trace-%s.jsonl", h->dir, h->phase);
    h->trace = fopen(h->trace_path, "wb");
    CHECK(h->trace != NULL, "open %s", h->trace_path);
    OK(paywall_auth_machine_record_trace(h->m, 0, trace_sink, h));
    CHECK(h->trace_lines == 1, "the header is written at once");

    char key[160], path[512];
    size_t slen = 0, alen = 0;
    snprintf(key, sizeof key, "pw-%s-auth-v1", h->pid);
    path_of(h, key, path, sizeof path);
    uint8_t *session = read_file(path, &slen);
    snprintf(key, sizeof key, "pw-%s-anon-rt-v1", h->pid);
    path_of(h, key, path, sizeof path);
    uint8_t *anon = read_file(path, &alen);
    paywall_auth_bytes sb = {session, session ? slen : 0}, ab = {anon, anon ? alen : 0};
    OK(paywall_auth_machine_handle_restored(h->m, now_ms(), sb, ab, str_bytes(NULL)));
    free(session);
    free(anon);
    run(h);
    CHECK(h->events_n == 1 && h->events[0] == PAYWALL_AUTH_EVENT_INITIAL_SESSION,
          "INITIAL_SESSION first");
    printf("initial=%s\n", h->event_user);

    /* An input while outputs are queued is refused and changes nothing. */
    paywall_auth_command c = cmd_of(PAYWALL_AUTH_COMMAND_KIND_ACCESS_TOKEN);
    uint32_t id = 0;
    OK(paywall_auth_machine_handle_command(h->m, now_ms(), &c, &id));
    CHECK(paywall_auth_machine_handle_timeout(h->m, now_ms()) == PAYWALL_AUTH_STATUS_NOT_DRAINED,
          "drain invariant");
    run(h);
    CHECK(completion_of(h, id) != NULL, "access token completes");
}

static void stop(struct host *h) {
    /* deinit frees the recorder (ASan's leak check would see it). */
    OK(paywall_auth_machine_deinit(h->m));
    CHECK(fclose(h->trace) == 0, "close the trace");
    h->trace = NULL;
    replay_trace(h);
    CHECK(paywall_auth_machine_handle_timeout(h->m, now_ms()) ==
              PAYWALL_AUTH_STATUS_NOT_INITIALIZED,
          "deinit handle refused");
    free(h->m);
    printf("sent=%d\nroutes=%s\n", h->sent, h->routes);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s PORT PAYWALL_ID DIR PHASE\n", argv[0]);
        return 2;
    }
    static struct host host;
    struct host *h = &host;
    h->port = atoi(argv[1]);
    h->pid = argv[2];
    h->dir = argv[3];
    const char *phase = argv[4];
    h->phase = phase;
    setvbuf(stdout, NULL, _IOLBF, 0);
    start(h);

    if (strcmp(phase, "fresh") == 0) {
        CHECK(h->event_user[0] == 0, "no session at first start");
        sign_in(h);
        CHECK(h->sent == 1 && strcmp(h->routes, "auth/anonymous/signin,") == 0, "routes %s",
              h->routes);
        CHECK(file_exists(h, "auth-v1") && file_exists(h, "anon-rt-v1"), "records written");
    } else if (strcmp(phase, "restart") == 0) {
        CHECK(h->event_user[0] != 0, "the stored session is restored");
        /* Already a guest: signing in again is answered without a request. */
        sign_in(h);
        CHECK(h->sent == 0, "no request for a signed-in guest");
        paywall_auth_command c = cmd_of(PAYWALL_AUTH_COMMAND_KIND_REFRESH);
        const struct completion *done = run_command(h, &c);
        CHECK(done->ok && done->outcome == PAYWALL_AUTH_OUTCOME_SESSION, "refresh");
        CHECK(strcmp(h->routes, "auth/refresh,") == 0, "routes %s", h->routes);
        CHECK(h->events[h->events_n - 1] == PAYWALL_AUTH_EVENT_TOKEN_REFRESHED,
              "TOKEN_REFRESHED");
        printf("user=%s\n", done->user_id);
    } else if (strcmp(phase, "soft") == 0) {
        sign_out(h, 0);
        CHECK(!file_exists(h, "auth-v1") && file_exists(h, "anon-rt-v1"),
              "soft sign-out keeps the guest token");
        CHECK(h->sent == 0, "a soft sign-out of a guest sends nothing");
        sign_in(h);
        CHECK(strcmp(h->routes, "auth/refresh,") == 0, "resume uses refresh: %s", h->routes);
        CHECK(file_exists(h, "auth-v1"), "session written");
    } else if (strcmp(phase, "hard") == 0) {
        sign_out(h, 1);
        CHECK(!file_exists(h, "auth-v1") && !file_exists(h, "anon-rt-v1"),
              "hard sign-out removes both records");
        CHECK(strcmp(h->routes, "auth/signout,") == 0, "revoked on the server: %s", h->routes);
        sign_in(h);
        CHECK(strcmp(h->routes, "auth/signout,auth/anonymous/signin,") == 0, "routes %s",
              h->routes);
    } else if (strcmp(phase, "parallel") == 0) {
        sign_out(h, 1);
        int before = h->sent;
        paywall_auth_command c = cmd_of(PAYWALL_AUTH_COMMAND_KIND_SIGN_IN);
        uint32_t a = command(h, &c);
        drain(h);
        CHECK(h->outbox_n == 1, "one request for the first sign-in");
        uint32_t b = command(h, &c);
        drain(h);
        CHECK(a == b, "parallel sign-ins share the command id (%u, %u)", a, b);
        CHECK(h->outbox_n == 1, "still one request");
        run(h);
        CHECK(h->sent == before + 1, "one request for two sign-ins");
        const struct completion *done = completion_of(h, a);
        CHECK(done && done->ok, "sign-in completes");
        int completions = 0;
        for (int i = 0; i < h->done_n; i++) completions += h->done[i].id == a;
        CHECK(completions == 1, "one completion, fanned out by the host");
        printf("user=%s\ncommand_ids=%u,%u\n", done->user_id, a, b);
    } else if (strcmp(phase, "upgrade") == 0 || strcmp(phase, "confirm") == 0) {
        int confirm = strcmp(phase, "confirm") == 0;
        if (confirm) {
            paywall_auth_command f = cmd_of(PAYWALL_AUTH_COMMAND_KIND_SIGN_IN);
            f.force_new = 1;
            const struct completion *d = run_command(h, &f);
            CHECK(d->ok, "forced sign-in");
            printf("user=%s\n", d->user_id);
        }
        paywall_auth_command c = cmd_of(PAYWALL_AUTH_COMMAND_KIND_UPGRADE);
        const char *email = confirm ? "c-guest@example.com" : "guest@example.com";
        c.email = str_bytes(email);
        c.password = str_bytes("correct horse battery");
        c.idempotency_key = str_bytes(confirm ? "idem-c" : "idem-u");
        paywall_auth_meta_entry meta[1] = {{str_bytes("source"), str_bytes("c-host")}};
        c.user_meta = meta;
        c.user_meta_len = 1;
        const struct completion *done = run_command(h, &c);
        CHECK(done->ok, "upgrade failed: %s", done->code);
        if (confirm) {
            CHECK(done->outcome == PAYWALL_AUTH_OUTCOME_CONFIRMATION_REQUIRED, "outcome %d",
                  (int)done->outcome);
            CHECK(strcmp(done->email, email) == 0, "email %s", done->email);
            printf("outcome=confirmation_required\n");
        } else {
            CHECK(done->outcome == PAYWALL_AUTH_OUTCOME_UPGRADED, "outcome %d",
                  (int)done->outcome);
            CHECK(!done->is_anonymous, "named after the upgrade");
            CHECK(h->events[h->events_n - 1] == PAYWALL_AUTH_EVENT_USER_UPDATED, "USER_UPDATED");
            printf("outcome=updated\nuser=%s\n", done->user_id);
            /* A named account cannot sign in as a guest: a typed error. */
            paywall_auth_command s = cmd_of(PAYWALL_AUTH_COMMAND_KIND_SIGN_IN);
            const struct completion *e = run_command(h, &s);
            CHECK(!e->ok && strcmp(e->code, "not_anonymous") == 0, "code %s", e->code);
            CHECK(strcmp((const char *)paywall_auth_error_code_str(
                             PAYWALL_AUTH_ERROR_KIND_NOT_ANONYMOUS),
                         "not_anonymous") == 0,
                  "error_code_str");
        }
    } else {
        fprintf(stderr, "unknown phase %s\n", phase);
        return 2;
    }
    stop(h);
    return 0;
}
