/*
 * A firmware-shaped C host of paywall-auth for Cortex-M (thumbv7em, hard
 * float), linked against the no_std static library: the machine and the
 * HTTP/1.1 response parser live in static memory, records in a RAM "flash"
 * (one slot per key tag), and the network is a canned exchange (the
 * emulator's answers, byte for byte, split into TCP-sized pieces) instead
 * of a socket. It signs in a guest, restarts over the stored records, and
 * refreshes: the same dance as tests/c/lifecycle.c, without a socket.
 *
 * Built by .ci/steps/60-ffi.sh with arm-none-eabi-gcc; its flash and RAM
 * are reported beside the Rust firmware's. `fw_result` is 1 on success,
 * a negative line number on the first failed check (read it with a
 * debugger; there is no console).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "paywall_auth.h"

volatile int32_t fw_result;

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fw_result = -__LINE__;                                            \
            return -1;                                                        \
        }                                                                     \
    } while (0)

/* ---- memory: all static, sized by the header's bounds ------------------- */

static uint8_t machine_mem[PAYWALL_AUTH_MACHINE_STORAGE]
    __attribute__((aligned(PAYWALL_AUTH_MAX_ALIGN)));
static uint8_t parser_mem[256] __attribute__((aligned(PAYWALL_AUTH_MAX_ALIGN)));
static uint8_t io_buf[4096]; /* the request, then the response */

struct slot {
    uint16_t len;
    uint8_t present;
    uint8_t bytes[3072];
};
static struct slot flash[2]; /* key tag 1: session, 2: anonymous token */

static uint64_t clock_ms = 1700000000000ull;

/* ---- the canned network -------------------------------------------------- */

#define TOKENS(rt)                                                            \
    "{\"access_token\":\"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.sig\","       \
    "\"refresh_token\":\"" rt "\",\"expires_in\":3600,\"expires_at\":null,"   \
    "\"token_type\":\"bearer\",\"user\":{\"id\":\"u-0001\",\"email\":null,"   \
    "\"is_anonymous\":true}}"

static const char SIGNIN_BODY[] = TOKENS("rt-1");
static const char REFRESH_BODY[] = TOKENS("rt-2");

/* Sends the request rendered in io_buf (here: checks its first line), then
 * "receives" `body` as a chunked 200 response in small pieces. */
static int exchange(paywall_auth_machine *m, uint32_t request_id, size_t len,
                    const char *expect_line, const char *body) {
    CHECK(len > strlen(expect_line) && memcmp(io_buf, expect_line, strlen(expect_line)) == 0);
    static char wire[1024];
    size_t n = (size_t)strlen(body);
    size_t at = 0;
    static const char head[] =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    memcpy(wire, head, sizeof head - 1);
    at = sizeof head - 1;
    /* one chunk: hex size, data, then the last chunk */
    static const char hex[] = "0123456789abcdef";
    wire[at++] = hex[(n >> 8) & 15];
    wire[at++] = hex[(n >> 4) & 15];
    wire[at++] = hex[n & 15];
    wire[at++] = '\r';
    wire[at++] = '\n';
    memcpy(wire + at, body, n);
    at += n;
    memcpy(wire + at, "\r\n0\r\n\r\n", 7);
    at += 7;

    paywall_auth_http_response *p = (paywall_auth_http_response *)parser_mem;
    CHECK(paywall_auth_http_response_size() <= sizeof parser_mem);
    CHECK(paywall_auth_http_response_init(parser_mem, sizeof parser_mem, io_buf, sizeof io_buf) ==
          PAYWALL_AUTH_STATUS_OK);
    paywall_auth_http_response_view view;
    paywall_auth_status s = PAYWALL_AUTH_STATUS_INCOMPLETE;
    for (size_t off = 0; off < at && s == PAYWALL_AUTH_STATUS_INCOMPLETE; off += 64) {
        size_t piece = at - off < 64 ? at - off : 64;
        s = paywall_auth_http_response_feed(p, (const uint8_t *)wire + off, piece, &view);
    }
    CHECK(s == PAYWALL_AUTH_STATUS_OK);
    CHECK(view.status == 200 && view.content_type_json);
    CHECK(paywall_auth_machine_handle_response(m, clock_ms, request_id, view.status,
                                               view.content_type_json, view.body.ptr,
                                               view.body.len, view.reason) ==
          PAYWALL_AUTH_STATUS_OK);
    return 0;
}

/* ---- the drive loop ------------------------------------------------------ */

struct seen {
    uint32_t request_id;
    size_t request_len;
    int requests;
    int completed;
    int ok;
    paywall_auth_event last_event;
    char user[64];
};

static int drain(paywall_auth_machine *m, struct seen *seen) {
    paywall_auth_output out;
    paywall_auth_status s;
    while ((s = paywall_auth_machine_poll_output(m, &out)) == PAYWALL_AUTH_STATUS_OK) {
        switch (out.kind) {
        case PAYWALL_AUTH_OUTPUT_KIND_SEND:
            seen->requests++;
            seen->request_id = out.send.request_id;
            CHECK(paywall_auth_http_write_request(
                      (paywall_auth_bytes){(const uint8_t *)"api.example.com", 15}, &out.send,
                      io_buf, sizeof io_buf, &seen->request_len) == PAYWALL_AUTH_STATUS_OK);
            break;
        case PAYWALL_AUTH_OUTPUT_KIND_STORE: {
            CHECK(out.store.key_tag == 1 || out.store.key_tag == 2);
            struct slot *sl = &flash[out.store.key_tag - 1];
            int ok = 1;
            if (out.store.remove) {
                sl->present = 0;
            } else if (out.store.value.len <= sizeof sl->bytes) {
                memcpy(sl->bytes, out.store.value.ptr, out.store.value.len);
                sl->len = (uint16_t)out.store.value.len;
                sl->present = 1;
            } else {
                ok = 0;
            }
            CHECK(paywall_auth_machine_handle_stored(m, clock_ms, out.store.store_id,
                                                     (uint8_t)ok) == PAYWALL_AUTH_STATUS_OK);
            break;
        }
        case PAYWALL_AUTH_OUTPUT_KIND_AUTH_CHANGE: {
            seen->last_event = out.auth_change.event;
            size_t n = out.auth_change.session.user_id.len;
            CHECK(n < sizeof seen->user);
            memcpy(seen->user, out.auth_change.session.user_id.ptr, n);
            seen->user[n] = 0;
            break;
        }
        case PAYWALL_AUTH_OUTPUT_KIND_COMPLETE:
            seen->completed++;
            seen->ok = out.complete.ok;
            break;
        case PAYWALL_AUTH_OUTPUT_KIND_NOTICE:
            break;
        }
    }
    CHECK(s == PAYWALL_AUTH_STATUS_EMPTY);
    return 0;
}

static int start(paywall_auth_machine **m, struct seen *seen) {
    CHECK(paywall_auth_machine_size() <= sizeof machine_mem);
    paywall_auth_config cfg;
    CHECK(paywall_auth_config_default(&cfg, (const uint8_t *)"pw_demo", 7) ==
          PAYWALL_AUTH_STATUS_OK);
    cfg.store_format = PAYWALL_AUTH_STORE_FORMAT_POSTCARD; /* a third of the JSON */
    CHECK(paywall_auth_machine_init(machine_mem, sizeof machine_mem, &cfg) ==
          PAYWALL_AUTH_STATUS_OK);
    *m = (paywall_auth_machine *)machine_mem;
    paywall_auth_bytes session = {flash[0].present ? flash[0].bytes : NULL,
                                  flash[0].present ? flash[0].len : 0};
    paywall_auth_bytes anon = {flash[1].present ? flash[1].bytes : NULL,
                               flash[1].present ? flash[1].len : 0};
    paywall_auth_bytes none = {NULL, 0};
    CHECK(paywall_auth_machine_handle_restored(*m, clock_ms, session, anon, none) ==
          PAYWALL_AUTH_STATUS_OK);
    memset(seen, 0, sizeof *seen);
    return drain(*m, seen);
}

static int command(paywall_auth_machine *m, struct seen *seen, paywall_auth_command_kind kind,
                   const char *expect_line, const char *body) {
    paywall_auth_command c;
    memset(&c, 0, sizeof c);
    c.kind = (uint32_t)kind;
    uint32_t id;
    seen->requests = 0;
    seen->completed = 0;
    CHECK(paywall_auth_machine_handle_command(m, clock_ms, &c, &id) == PAYWALL_AUTH_STATUS_OK);
    if (drain(m, seen)) return -1;
    CHECK(seen->requests == 1);
    if (exchange(m, seen->request_id, seen->request_len, expect_line, body)) return -1;
    if (drain(m, seen)) return -1;
    CHECK(seen->completed == 1 && seen->ok);
    return 0;
}

int main(void) {
    paywall_auth_machine *m;
    struct seen seen;

    /* First boot: no records; a guest is created. */
    if (start(&m, &seen)) return 1;
    CHECK(seen.last_event == PAYWALL_AUTH_EVENT_INITIAL_SESSION && seen.user[0] == 0);
    if (command(m, &seen, PAYWALL_AUTH_COMMAND_KIND_SIGN_IN,
                "POST /api/v1/paywall/pw_demo/auth/anonymous/signin HTTP/1.1\r\n", SIGNIN_BODY))
        return 1;
    CHECK(seen.last_event == PAYWALL_AUTH_EVENT_SIGNED_IN && strcmp(seen.user, "u-0001") == 0);
    CHECK(flash[0].present && flash[1].present);
    CHECK(paywall_auth_machine_deinit(m) == PAYWALL_AUTH_STATUS_OK);

    /* Reboot: the same guest from the records, then a refresh. */
    clock_ms += 60000;
    if (start(&m, &seen)) return 1;
    CHECK(seen.last_event == PAYWALL_AUTH_EVENT_INITIAL_SESSION && strcmp(seen.user, "u-0001") == 0);
    if (command(m, &seen, PAYWALL_AUTH_COMMAND_KIND_REFRESH,
                "POST /api/v1/paywall/pw_demo/auth/refresh HTTP/1.1\r\n", REFRESH_BODY))
        return 1;
    CHECK(seen.last_event == PAYWALL_AUTH_EVENT_TOKEN_REFRESHED);
    CHECK(paywall_auth_machine_deinit(m) == PAYWALL_AUTH_STATUS_OK);
    fw_result = 1;
    return 0;
}

#ifdef PAYWALL_AUTH_FW_QEMU
/* Semihosting SYS_WRITE0: a NUL-terminated line on QEMU's stdout. */
static void host_print(const char *s) {
    register uint32_t r0 __asm("r0") = 0x04;
    register const char *r1 __asm("r1") = s;
    __asm volatile("bkpt 0xab" : : "r"(r0), "r"(r1) : "memory");
}

static void report(void) {
    static char line[96];
    static const char pre[] = "paywall_auth_machine_size() = ";
    size_t n = paywall_auth_machine_size(), at = sizeof pre - 1;
    char digits[12];
    int d = 0;
    memcpy(line, pre, at);
    do digits[d++] = (char)('0' + n % 10); while ((n /= 10) && d < 11);
    while (d) line[at++] = digits[--d];
    memcpy(line + at, fw_result == 1 ? " bytes; lifecycle ok\n" : " bytes; FAILED\n", 22);
    line[sizeof line - 1] = 0;
    host_print(line);
}
#endif

/* ---- minimal Cortex-M start-up -------------------------------------------- */

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;

void Reset_Handler(void) {
    uint32_t *src = &_sidata;
    for (uint32_t *dst = &_sdata; dst < &_edata;) *dst++ = *src++;
    for (uint32_t *dst = &_sbss; dst < &_ebss;) *dst++ = 0;
    /* Enable the FPU (CP10, CP11): the library is built for hard float. */
    *(volatile uint32_t *)0xE000ED88u |= (0xFu << 20);
    __asm volatile("dsb\n isb");
    (void)main();
#ifdef PAYWALL_AUTH_FW_QEMU
    report();
    /* Semihosting SYS_EXIT: QEMU exits 0 on ApplicationExit, 1 otherwise.
       (On a real part without a debugger this would fault: QEMU only.) */
    register uint32_t r0 __asm("r0") = 0x18;
    register uint32_t r1 __asm("r1") = fw_result == 1 ? 0x20026u : 0x20024u;
    __asm volatile("bkpt 0xab" : : "r"(r0), "r"(r1) : "memory");
#endif
    for (;;) __asm volatile("wfi");
}

static void Default_Handler(void) {
    for (;;) {
    }
}

__attribute__((section(".vector_table"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&_estack), Reset_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler, 0, 0, 0, 0, Default_Handler,
    Default_Handler, 0, Default_Handler, Default_Handler,
};
