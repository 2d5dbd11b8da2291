/*
 * Session resumption and client certificates, the way a C server uses the API: real
 * handshakes over BIO pairs, on every resumption path (TLS 1.2 session IDs in the
 * internal cache and in a serialized external cache like nginx's `shared:`, TLS 1.2
 * tickets, TLS 1.3 tickets, TLS 1.3 stateful tickets in both caches).
 *
 * A session resumes only where a full handshake would give the same client-certificate
 * verdict: bound at ClientHello time it is kept for the same name and CA set and refused
 * across names (an nginx-like SNI switch, also after a HelloRetryRequest); from the
 * certificate callback, or after disable_session_reuse, it never resumes. Controls show
 * what plain OpenSSL does in the same setups, so every check here can fail.
 *
 * Usage: test_session_binding PKI_DIR (made by make-pki.sh). Exit status 0 only if every
 * check holds.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "check.h"
#include "tls.h"

/* src/client_cert.rs, REBIND */
static const char REBIND[] =
    "request_client_certificate already ran at ClientHello time with other ca_certs; resumed "
    "sessions skip this phase, so the CA set cannot change here";

/* The sessions' lifetime on every server here, in seconds. */
#define SESSION_TIMEOUT 600

static char scene[256];

/* A check that also names the path and case it failed in. */
#define EXPECT(cond)                                                             \
    do {                                                                         \
        int failures_before_ = failures;                                         \
        CHECK(cond);                                                             \
        if (failures != failures_before_) fprintf(stderr, "    in: %s\n", scene); \
    } while (0)

static void set_scene(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(scene, sizeof(scene), fmt, ap);
    va_end(ap);
}

/* The PKI: client_a is issued by ca_a; ca_b is unrelated. */
static X509 *ca_a, *ca_b, *client_a;
/* {A}, {A, A} (the same set in another stack), {B} */
static STACK_OF(X509) *set_a, *set_a_again, *set_b;
/* ca_a as a plain OpenSSL verify store, for the controls */
static X509_STORE *store_a;

/* ---------------------------------------------------------------------------------- */
/* Resumption paths */

struct path {
    const char *name;
    int version;
    int tickets;  /* 0: SSL_OP_NO_TICKET (TLS 1.2 session IDs, TLS 1.3 stateful tickets) */
    int external; /* the session cache is an external one holding i2d_SSL_SESSION bytes */
};

static const struct path PATHS[] = {
    { "TLS 1.2 session ID", TLS1_2_VERSION, 0, 0 },
    { "TLS 1.2 session ID, serialized cache", TLS1_2_VERSION, 0, 1 },
    { "TLS 1.2 ticket", TLS1_2_VERSION, 1, 0 },
    { "TLS 1.3 ticket", TLS1_3_VERSION, 1, 0 },
    { "TLS 1.3 stateful ticket", TLS1_3_VERSION, 0, 0 },
    { "TLS 1.3 stateful ticket, serialized cache", TLS1_3_VERSION, 0, 1 },
};
#define N_PATHS (sizeof(PATHS) / sizeof(PATHS[0]))

/* The external cache: DER bytes keyed by session ID, as nginx's shared cache keeps them
 * (nothing survives but what i2d_SSL_SESSION writes). */
#define EXT_SLOTS 64
static struct {
    unsigned char id[SSL_MAX_SSL_SESSION_ID_LENGTH];
    unsigned int id_len;
    unsigned char *der;
    int der_len;
} ext_cache[EXT_SLOTS];
static int ext_count;

static void ext_cache_clear(void)
{
    int i;
    for (i = 0; i < ext_count; i++) OPENSSL_free(ext_cache[i].der);
    ext_count = 0;
}

static int ext_new(SSL *ssl, SSL_SESSION *session)
{
    const unsigned char *id;
    unsigned int id_len;
    unsigned char *der = NULL;
    int der_len;
    (void)ssl;
    if (ext_count == EXT_SLOTS) { fprintf(stderr, "external cache full\n"); exit(2); }
    id = SSL_SESSION_get_id(session, &id_len);
    der_len = i2d_SSL_SESSION(session, &der);
    if (der_len <= 0) exit(2);
    memcpy(ext_cache[ext_count].id, id, id_len);
    ext_cache[ext_count].id_len = id_len;
    ext_cache[ext_count].der = der;
    ext_cache[ext_count].der_len = der_len;
    ext_count++;
    return 0; /* no reference kept */
}

static SSL_SESSION *ext_get(SSL *ssl, const unsigned char *id, int id_len, int *copy)
{
    int i;
    (void)ssl;
    *copy = 0;
    for (i = 0; i < ext_count; i++) {
        if ((int)ext_cache[i].id_len == id_len && memcmp(ext_cache[i].id, id, (size_t)id_len) == 0) {
            const unsigned char *p = ext_cache[i].der;
            return d2i_SSL_SESSION(NULL, &p, ext_cache[i].der_len);
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------- */
/* What the server does on each connection */

/*
 * Steps run in the client hello callback (on the first ClientHello only, as
 * lua-nginx-module runs its handler once per connection) and in the certificate callback,
 * one letter each:
 *   r  kong_client_tls_request_client_certificate (hello: with hello_ca, or by server
 *      name when by_name; certificate: with cert_ca)
 *   d  kong_client_tls_disable_session_reuse
 *   h  kong_client_tls_disable_http2_alpn (hello only)
 *   p  plain OpenSSL instead of the library: SSL_set_verify(PEER, accept all), depth 0,
 *      store {ca_a}, no session id context (hello only)
 */
#define MAX_STEPS 4
struct plan {
    const char *hello_steps;
    const STACK_OF(X509) *hello_ca;
    int by_name;
    const char *cert_steps;
    const STACK_OF(X509) *cert_ca;
    /* what happened */
    int hello_calls;
    int hello_rc[MAX_STEPS], cert_rc[MAX_STEPS];
    const char *hello_err[MAX_STEPS], *cert_err[MAX_STEPS];
};

static int plan_index;

static void run_steps(SSL *ssl, const char *steps, const STACK_OF(X509) *ca, int *rc, const char **err)
{
    int i;
    for (i = 0; steps != NULL && steps[i] != '\0' && i < MAX_STEPS; i++) {
        err[i] = NULL;
        switch (steps[i]) {
        case 'r': rc[i] = kong_client_tls_request_client_certificate(ssl, ca, &err[i]); break;
        case 'd': rc[i] = kong_client_tls_disable_session_reuse(ssl, &err[i]); break;
        case 'h': rc[i] = kong_client_tls_disable_http2_alpn(ssl, &err[i]); break;
        case 'p':
            SSL_set_verify(ssl, SSL_VERIFY_PEER, accept_all);
            SSL_set_verify_depth(ssl, 0);
            rc[i] = SSL_set1_verify_cert_store(ssl, store_a) == 1 ? KONG_CLIENT_TLS_OK : KONG_CLIENT_TLS_ERROR;
            break;
        default: fprintf(stderr, "unknown step %c\n", steps[i]); exit(2);
        }
    }
}

/* The host name of the ClientHello's server_name extension, or NULL. */
static const char *hello_server_name(SSL *ssl, char *buf, size_t size)
{
    const unsigned char *p;
    size_t len, n;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) != 1 || len < 5 || p[2] != 0)
        return NULL;
    n = ((size_t)p[3] << 8) | p[4];
    if (n + 5 > len || n >= size) return NULL;
    memcpy(buf, p + 5, n);
    buf[n] = '\0';
    return buf;
}

static const STACK_OF(X509) *ca_for_name(const char *name)
{
    if (name != NULL && strcmp(name, "a.test") == 0) return set_a;
    if (name != NULL && strcmp(name, "b.test") == 0) return set_b;
    return NULL;
}

static int on_client_hello(SSL *ssl, int *alert, void *arg)
{
    struct plan *plan = SSL_get_ex_data(ssl, plan_index);
    char name[256];
    (void)alert;
    (void)arg;
    if (plan == NULL || plan->hello_calls++ > 0) return SSL_CLIENT_HELLO_SUCCESS;
    run_steps(ssl, plan->hello_steps,
              plan->by_name ? ca_for_name(hello_server_name(ssl, name, sizeof(name))) : plan->hello_ca,
              plan->hello_rc, plan->hello_err);
    return SSL_CLIENT_HELLO_SUCCESS;
}

static int on_certificate(SSL *ssl, void *arg)
{
    struct plan *plan = SSL_get_ex_data(ssl, plan_index);
    (void)arg;
    if (plan != NULL) run_steps(ssl, plan->cert_steps, plan->cert_ca, plan->cert_rc, plan->cert_err);
    return 1;
}

/* ---------------------------------------------------------------------------------- */
/* Servers */

enum {
    SID_CTX = 1,       /* every context has its own session id context, as nginx sets one */
    VHOSTS = 2,        /* a.test and b.test have their own SSL_CTX, switched to by SNI */
    STATIC_VERIFY = 4, /* those contexts verify clients themselves (a.test: ca_a, b.test: ca_b) */
    ALPN = 8,          /* h2 and http/1.1, through kong_client_tls_alpn_select_cb */
    HRR = 16,          /* the server takes P-256 only: a client leading with X25519 gets a HRR */
};

struct server {
    const struct path *path;
    SSL_CTX *front, *a, *b;
};

static const unsigned char server_protocols[] = "\x02h2\x08http/1.1";
static const kong_client_tls_protocols protocols = { server_protocols, sizeof(server_protocols) - 1 };

/* What ngx_http_ssl_servername does: switch to the name's context, then reset verify
 * mode, verify depth and options from it. */
static int on_servername(SSL *ssl, int *alert, void *arg)
{
    struct server *srv = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    SSL_CTX *ctx = NULL;
    (void)alert;
    if (name != NULL && strcmp(name, "a.test") == 0) ctx = srv->a;
    if (name != NULL && strcmp(name, "b.test") == 0) ctx = srv->b;
    if (ctx == NULL) return SSL_TLSEXT_ERR_OK;
    if (SSL_set_SSL_CTX(ssl, ctx) == NULL) return SSL_TLSEXT_ERR_ALERT_FATAL;
    SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ctx), SSL_CTX_get_verify_callback(ctx));
    SSL_set_verify_depth(ssl, SSL_CTX_get_verify_depth(ctx));
    SSL_clear_options(ssl, SSL_get_options(ssl) & ~SSL_CTX_get_options(ctx));
    SSL_set_options(ssl, SSL_CTX_get_options(ctx));
    return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *server_ctx(const struct path *p, int flags, const char *sid_ctx, X509 *verify_ca)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL
        || SSL_CTX_use_certificate_file(ctx, path("server.pem"), SSL_FILETYPE_PEM) != 1
        || SSL_CTX_use_PrivateKey_file(ctx, path("server.key"), SSL_FILETYPE_PEM) != 1
        || SSL_CTX_set_min_proto_version(ctx, p->version) != 1
        || SSL_CTX_set_max_proto_version(ctx, p->version) != 1
        || ((flags & SID_CTX)
            && SSL_CTX_set_session_id_context(ctx, (const unsigned char *)sid_ctx, (unsigned int)strlen(sid_ctx)) != 1)
        || ((flags & HRR) && SSL_CTX_set1_groups_list(ctx, "P-256") != 1)) {
        ERR_print_errors_fp(stderr);
        exit(2);
    }
    if (!p->tickets) SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_timeout(ctx, SESSION_TIMEOUT);
    SSL_CTX_set_client_hello_cb(ctx, on_client_hello, NULL);
    SSL_CTX_set_cert_cb(ctx, on_certificate, NULL);
    if (flags & ALPN) SSL_CTX_set_alpn_select_cb(ctx, kong_client_tls_alpn_select_cb, (void *)&protocols);
    if (verify_ca != NULL) {
        STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_all);
        SSL_CTX_set_verify_depth(ctx, 0);
        if (names == NULL || X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), verify_ca) != 1
            || sk_X509_NAME_push(names, X509_NAME_dup(X509_get_subject_name(verify_ca))) <= 0) exit(2);
        SSL_CTX_set_client_CA_list(ctx, names);
    }
    return ctx;
}

/* nginx-like session id contexts: 20 bytes (a SHA-1), one per server block. */
#define NGINX_SID_LEN 20
static const char DEFAULT_SID[] = "default-server-sidct", A_SID[] = "a.test-server-sidctx",
                  B_SID[] = "b.test-server-sidctx";

static void server_start(struct server *srv, const struct path *p, int flags)
{
    memset(srv, 0, sizeof(*srv));
    srv->path = p;
    ext_cache_clear();
    srv->front = server_ctx(p, flags, DEFAULT_SID, NULL);
    if (p->external) {
        SSL_CTX_set_session_cache_mode(srv->front, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);
        SSL_CTX_sess_set_new_cb(srv->front, ext_new);
        SSL_CTX_sess_set_get_cb(srv->front, ext_get);
    }
    if (flags & VHOSTS) {
        srv->a = server_ctx(p, flags, A_SID, (flags & STATIC_VERIFY) ? ca_a : NULL);
        srv->b = server_ctx(p, flags, B_SID, (flags & STATIC_VERIFY) ? ca_b : NULL);
        SSL_CTX_set_tlsext_servername_callback(srv->front, on_servername);
        SSL_CTX_set_tlsext_servername_arg(srv->front, srv);
    }
}

static void server_stop(struct server *srv)
{
    SSL_CTX_free(srv->front);
    SSL_CTX_free(srv->a);
    SSL_CTX_free(srv->b);
    ext_cache_clear();
}

/* Sessions the server keeps for resumption by ID (TLS 1.2 IDs, TLS 1.3 stateful). */
static long cached_sessions(const struct server *srv)
{
    return SSL_CTX_sess_number(srv->front) + ext_count;
}

/* ---------------------------------------------------------------------------------- */
/* Connections */

struct outcome {
    int ok;            /* both handshakes finished */
    int uninitialized; /* the server failed with "session id context uninitialized" */
    int reused;        /* SSL_session_reused on the server */
    long verify;       /* SSL_get_verify_result on the server */
    int peer;          /* 1: client_a's certificate, 0: none, -1: another */
    int ca_list;       /* the CA list the client was sent: 'A', 'B', 0 (none), '?' */
    char alpn[16];
    SSL_SESSION *session;        /* the client's session afterwards (owned) */
    SSL_SESSION *server_session; /* the server's (owned) */
};

/* Whether the thread's error queue holds OpenSSL's "session id context uninitialized";
 * empties the queue. */
static int saw_uninitialized(void)
{
    unsigned long e;
    int seen = 0;
    while ((e = ERR_get_error()) != 0)
        if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_SESSION_ID_CONTEXT_UNINITIALIZED)
            seen = 1;
    return seen;
}

/* What client_a does on one connection. */
struct client {
    const char *sni;
    SSL_SESSION *offer;   /* the session it tries to resume, or NULL */
    const char *alpn;     /* wire format, or NULL */
    int hello_retry;      /* lead with an X25519 key share, which an HRR server refuses */
};

static struct outcome connect_to(struct server *srv, struct plan *plan, struct client c)
{
    struct outcome out;
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    SSL *client, *server;
    X509 *peer;
    STACK_OF(X509_NAME) *names;
    const unsigned char *selected = NULL;
    unsigned int selected_len = 0;

    memset(&out, 0, sizeof(out));
    if (cctx == NULL
        || SSL_CTX_set_min_proto_version(cctx, srv->path->version) != 1
        || SSL_CTX_set_max_proto_version(cctx, srv->path->version) != 1
        || SSL_CTX_use_certificate_file(cctx, path("client_a.pem"), SSL_FILETYPE_PEM) != 1
        || SSL_CTX_use_PrivateKey_file(cctx, path("client_a.key"), SSL_FILETYPE_PEM) != 1
        || SSL_CTX_set1_groups_list(cctx, c.hello_retry ? "X25519:P-256" : "P-256:X25519") != 1
        || (c.alpn != NULL && SSL_CTX_set_alpn_protos(cctx, (const unsigned char *)c.alpn, (unsigned int)strlen(c.alpn)) != 0)) {
        ERR_print_errors_fp(stderr);
        exit(2);
    }
    client = SSL_new(cctx);
    server = SSL_new(srv->front);
    SSL_CTX_free(cctx);
    if (client == NULL || server == NULL
        || (c.sni != NULL && SSL_set_tlsext_host_name(client, c.sni) != 1)
        || (c.offer != NULL && SSL_set_session(client, c.offer) != 1)
        || SSL_set_ex_data(server, plan_index, plan) != 1) exit(2);

    ERR_clear_error();
    out.ok = handshake(server, client);
    out.uninitialized = saw_uninitialized();
    if (out.ok) {
        out.reused = SSL_session_reused(server);
        out.verify = SSL_get_verify_result(server);
        peer = SSL_get0_peer_certificate(server);
        out.peer = peer == NULL ? 0 : X509_cmp(peer, client_a) == 0 ? 1 : -1;
        names = SSL_get_client_CA_list(client);
        if (names == NULL || sk_X509_NAME_num(names) == 0) out.ca_list = 0;
        else if (sk_X509_NAME_num(names) != 1) out.ca_list = '?';
        else if (X509_NAME_cmp(sk_X509_NAME_value(names, 0), X509_get_subject_name(ca_a)) == 0) out.ca_list = 'A';
        else if (X509_NAME_cmp(sk_X509_NAME_value(names, 0), X509_get_subject_name(ca_b)) == 0) out.ca_list = 'B';
        else out.ca_list = '?';
        SSL_get0_alpn_selected(client, &selected, &selected_len);
        if (selected != NULL && selected_len < sizeof(out.alpn)) memcpy(out.alpn, selected, selected_len);
        out.session = SSL_get1_session(client);
        out.server_session = SSL_get1_session(server);
        /* A clean close: SSL_free after an unclosed connection removes its session from
         * the cache and marks it not resumable. */
        SSL_set_quiet_shutdown(client, 1);
        SSL_set_quiet_shutdown(server, 1);
        if (SSL_shutdown(client) != 1 || SSL_shutdown(server) != 1) exit(2);
    }
    SSL_free(server);
    SSL_free(client);
    return out;
}

static int resumable(const struct outcome *o)
{
    return o->session != NULL && SSL_SESSION_is_resumable(o->session);
}

static void release(struct outcome *o)
{
    SSL_SESSION_free(o->session);
    SSL_SESSION_free(o->server_session);
    o->session = NULL;
    o->server_session = NULL;
}

static void expect_steps_ok(const struct plan *plan)
{
    int i;
    for (i = 0; plan->hello_steps != NULL && plan->hello_steps[i] != '\0'; i++)
        EXPECT(plan->hello_rc[i] == KONG_CLIENT_TLS_OK);
    for (i = 0; plan->cert_steps != NULL && plan->cert_steps[i] != '\0'; i++)
        EXPECT(plan->cert_rc[i] == KONG_CLIENT_TLS_OK);
}

/* A fresh plan for the next connection: the same steps, nothing recorded. */
static struct plan again(const struct plan *p)
{
    struct plan q = { .hello_steps = p->hello_steps, .hello_ca = p->hello_ca, .by_name = p->by_name,
                      .cert_steps = p->cert_steps, .cert_ca = p->cert_ca };
    return q;
}

/* ---------------------------------------------------------------------------------- */
/* A context without a session id context: the library resumes; plain OpenSSL with
 * SSL_VERIFY_PEER set from the client hello callback fails the handshake on a ticket
 * ("session id context uninitialized") and caches nothing on the ID paths. */

static void test_no_sid_ctx(const struct path *p)
{
    struct server srv;
    struct plan lib = { .hello_steps = "r", .hello_ca = set_a }, plain = { .hello_steps = "p" }, next;
    struct outcome first, second;

    server_start(&srv, p, 0);

    set_scene("%s: no sid_ctx, request from the client hello callback, full", p->name);
    first = connect_to(&srv, &lib, (struct client){ .sni = "a.test" });
    EXPECT(first.ok && !first.reused && first.verify == X509_V_OK && first.peer == 1 && first.ca_list == 'A');
    EXPECT(resumable(&first));
    expect_steps_ok(&lib);

    set_scene("%s: no sid_ctx, request from the client hello callback, resumption", p->name);
    next = again(&lib);
    second = connect_to(&srv, &next, (struct client){ .sni = "a.test", .offer = first.session });
    EXPECT(second.ok && !second.uninitialized);
    EXPECT(second.reused && second.verify == X509_V_OK && second.peer == 1);
    expect_steps_ok(&next);
    release(&first);
    release(&second);
    server_stop(&srv);

    /* The control: the same server with plain OpenSSL. */
    server_start(&srv, p, 0);
    set_scene("%s: control, plain SSL_set_verify from the client hello callback, full", p->name);
    first = connect_to(&srv, &plain, (struct client){ .sni = "a.test" });
    EXPECT(first.ok && first.verify == X509_V_OK && first.peer == 1);
    /* ssl_update_cache keeps no session with SSL_VERIFY_PEER and no id context */
    if (!p->tickets) EXPECT(cached_sessions(&srv) == 0);
    set_scene("%s: control, plain SSL_set_verify from the client hello callback, resumption", p->name);
    next = again(&plain);
    second = connect_to(&srv, &next, (struct client){ .sni = "a.test", .offer = first.session });
    if (p->tickets) {
        EXPECT(!second.ok && second.uninitialized);
    } else {
        EXPECT(second.ok && !second.reused && second.verify == X509_V_OK);
    }
    release(&first);
    release(&second);
    server_stop(&srv);
}

/* ---------------------------------------------------------------------------------- */
/* Two names on one port, nginx-like SNI switch: a session bound on a.test (CA A) is
 * refused on b.test (CA B), which verifies as a fresh full handshake does; the same name
 * resumes. The control is nginx's own static verification per server block, whose
 * sessions carry the default server's id context and cross names.
 * With HRR, every connection but the first gets a HelloRetryRequest: OpenSSL then looks
 * for the session again on the second ClientHello, after the SNI switch, and the client
 * hello callback does not run again (as with lua-nginx-module), so the connection's id
 * context must have survived SSL_set_SSL_CTX. */

static unsigned int sid_ctx_len(const SSL_SESSION *s)
{
    unsigned int len = 0;
    if (s != NULL) SSL_SESSION_get0_id_context(s, &len);
    return len;
}

static void test_two_names(const struct path *p, int flags)
{
    struct server srv;
    int control = (flags & STATIC_VERIFY) != 0, hrr = (flags & HRR) != 0;
    struct plan lib = { .hello_steps = "r", .by_name = 1 }, none = { .hello_steps = NULL };
    struct plan *plan = control ? &none : &lib, next;
    struct outcome on_a, fresh_b, cross, same;
    const char *what = control ? "control, static verify per name" : hrr ? "library, HRR" : "library";
    const unsigned char *sid;
    unsigned int sid_len;

    server_start(&srv, p, SID_CTX | VHOSTS | flags);

    set_scene("%s: %s: a.test full", p->name, what);
    on_a = connect_to(&srv, plan, (struct client){ .sni = "a.test" });
    EXPECT(on_a.ok && !on_a.reused && on_a.verify == X509_V_OK && on_a.peer == 1 && on_a.ca_list == 'A');
    EXPECT(resumable(&on_a));
    expect_steps_ok(plan);
    if (control) {
        sid = on_a.server_session == NULL ? NULL : SSL_SESSION_get0_id_context(on_a.server_session, &sid_len);
        EXPECT(sid != NULL && sid_len == NGINX_SID_LEN && memcmp(sid, DEFAULT_SID, NGINX_SID_LEN) == 0);
    } else {
        EXPECT(sid_ctx_len(on_a.server_session) == SSL_MAX_SID_CTX_LENGTH);
    }

    set_scene("%s: %s: b.test fresh", p->name, what);
    next = again(plan);
    fresh_b = connect_to(&srv, &next, (struct client){ .sni = "b.test", .hello_retry = hrr });
    EXPECT(fresh_b.ok && !fresh_b.reused && fresh_b.peer == 1 && fresh_b.ca_list == 'B');
    EXPECT(fresh_b.verify == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE);
    if (hrr) EXPECT(next.hello_calls == 2);

    set_scene("%s: %s: a.test session offered to b.test", p->name, what);
    next = again(plan);
    cross = connect_to(&srv, &next, (struct client){ .sni = "b.test", .offer = on_a.session, .hello_retry = hrr });
    EXPECT(cross.ok);
    if (control) {
        /* what the library exists to prevent: a.test's verdict on b.test */
        EXPECT(cross.reused && cross.verify == X509_V_OK);
    } else {
        EXPECT(!cross.reused && cross.verify == fresh_b.verify && cross.peer == fresh_b.peer);
        EXPECT(cross.ca_list == 'B');
        /* born after the switch to b.test's context, bound all the same */
        EXPECT(sid_ctx_len(cross.server_session) == SSL_MAX_SID_CTX_LENGTH);
        expect_steps_ok(&next);
    }

    set_scene("%s: %s: a.test session offered to a.test", p->name, what);
    next = again(plan);
    same = connect_to(&srv, &next, (struct client){ .sni = "a.test", .offer = on_a.session, .hello_retry = hrr });
    EXPECT(same.ok && same.reused && same.verify == X509_V_OK && same.peer == 1);
    if (hrr) EXPECT(next.hello_calls == 2);
    expect_steps_ok(&next);

    release(&on_a);
    release(&fresh_b);
    release(&cross);
    release(&same);
    server_stop(&srv);
}

/* ---------------------------------------------------------------------------------- */
/* Connects twice, the second time offering the first session, and checks that nothing
 * resumable came out and the second connection verified again with the same verdict. */

static void expect_never_resumed(const struct path *p, const char *what, const struct plan *model,
                                 long verdict)
{
    struct server srv;
    struct plan plan = again(model), next;
    struct outcome first, second;

    server_start(&srv, p, SID_CTX);
    set_scene("%s: %s: full", p->name, what);
    first = connect_to(&srv, &plan, (struct client){ .sni = "a.test" });
    EXPECT(first.ok && !first.reused && first.verify == verdict && first.peer == 1);
    EXPECT(!resumable(&first));
    if (!p->tickets) EXPECT(cached_sessions(&srv) == 0);
    expect_steps_ok(&plan);

    set_scene("%s: %s: the session offered again", p->name, what);
    next = again(model);
    second = connect_to(&srv, &next, (struct client){ .sni = "a.test", .offer = first.session });
    EXPECT(second.ok && !second.reused && second.verify == verdict && second.peer == 1);
    EXPECT(!resumable(&second));
    expect_steps_ok(&next);
    release(&first);
    release(&second);
    server_stop(&srv);
}

/* The certificate-callback form, and ca_certs NULL: never resumable. */
static void test_certificate_form(const struct path *p)
{
    struct plan cert = { .cert_steps = "r", .cert_ca = set_a }, hello_null = { .hello_steps = "r" };
    expect_never_resumed(p, "request from the certificate callback", &cert, X509_V_OK);
    /* The context's (empty) store verifies: the verdict is a failure, the same twice. */
    expect_never_resumed(p, "request with ca_certs NULL from the client hello callback", &hello_null,
                         X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE);
}

/* disable_session_reuse on a bound connection, before or after the request, or from
 * the certificate callback. */
static void test_disable_on_bound(const struct path *p)
{
    static const char *const orders[] = { "rd", "dr" };
    struct plan plan = { .hello_ca = set_a };
    char what[64];
    size_t i;
    for (i = 0; i < 2; i++) {
        plan.hello_steps = orders[i];
        snprintf(what, sizeof(what), "client hello steps %s", orders[i]);
        expect_never_resumed(p, what, &plan, X509_V_OK);
    }
    plan.hello_steps = "r";
    plan.cert_steps = "d";
    expect_never_resumed(p, "bound at client hello, disabled from the certificate callback", &plan, X509_V_OK);
}

/* ---------------------------------------------------------------------------------- */
/* A certificate-callback call after a client-hello call: the same CA set (another
 * stack, a duplicate inside) is accepted and keeps the session resumable; another set,
 * or NULL, is refused with REBIND and changes nothing. */

static void test_rebind(const struct path *p)
{
    const STACK_OF(X509) *second_sets[] = { set_a_again, set_b, NULL };
    const char *names[] = { "{A, A}", "{B}", "NULL" };
    size_t i;

    for (i = 0; i < 3; i++) {
        struct server srv;
        struct plan plan = { .hello_steps = "r", .hello_ca = set_a, .cert_steps = "r", .cert_ca = second_sets[i] }, next;
        struct outcome first, second;
        int same_set = second_sets[i] == set_a_again;

        server_start(&srv, p, SID_CTX);
        set_scene("%s: client hello {A}, then certificate callback %s", p->name, names[i]);
        first = connect_to(&srv, &plan, (struct client){ .sni = "a.test" });
        EXPECT(plan.hello_rc[0] == KONG_CLIENT_TLS_OK);
        if (same_set) {
            EXPECT(plan.cert_rc[0] == KONG_CLIENT_TLS_OK && plan.cert_err[0] == NULL);
        } else {
            EXPECT(plan.cert_rc[0] == KONG_CLIENT_TLS_ERROR);
            EXPECT(plan.cert_err[0] != NULL && strcmp(plan.cert_err[0], REBIND) == 0);
        }
        /* unchanged: CA A asked for and verified against */
        EXPECT(first.ok && first.verify == X509_V_OK && first.peer == 1 && first.ca_list == 'A');
        EXPECT(resumable(&first));

        set_scene("%s: client hello {A}, then certificate callback %s: resumption", p->name, names[i]);
        next = again(&plan);
        second = connect_to(&srv, &next, (struct client){ .sni = "a.test", .offer = first.session });
        EXPECT(second.ok && second.reused && second.verify == X509_V_OK && second.peer == 1);
        release(&first);
        release(&second);
        server_stop(&srv);
    }
}

/* ---------------------------------------------------------------------------------- */
/* disable_http2_alpn and a bound request on one connection share the message
 * callback: h2 stays hidden, the verdict holds, resumption is kept (in TLS 1.3 only when
 * the resuming client does not offer h2: the binder covers the ALPN bytes). */

static const char H2_AND_HTTP11[] = "\x02h2\x08http/1.1";
static const char HTTP11[] = "\x08http/1.1";

static void test_with_http2_disabled(const struct path *p)
{
    static const char *const orders[] = { "hr", "rh" };
    size_t i;

    for (i = 0; i < 2; i++) {
        struct server srv;
        struct plan plan = { .hello_steps = orders[i], .hello_ca = set_a }, next;
        struct outcome first, with_h2, without_h2;

        server_start(&srv, p, SID_CTX | ALPN);
        set_scene("%s: client hello steps %s, full", p->name, orders[i]);
        first = connect_to(&srv, &plan, (struct client){ .sni = "a.test", .alpn = H2_AND_HTTP11 });
        EXPECT(first.ok && strcmp(first.alpn, "http/1.1") == 0);
        EXPECT(first.verify == X509_V_OK && first.peer == 1 && first.ca_list == 'A');
        EXPECT(resumable(&first));
        expect_steps_ok(&plan);

        set_scene("%s: client hello steps %s, resumption offering h2", p->name, orders[i]);
        next = again(&plan);
        with_h2 = connect_to(&srv, &next, (struct client){ .sni = "a.test", .offer = first.session, .alpn = H2_AND_HTTP11 });
        EXPECT(with_h2.ok && strcmp(with_h2.alpn, "http/1.1") == 0);
        EXPECT(with_h2.verify == X509_V_OK && with_h2.peer == 1);
        EXPECT(with_h2.reused == (p->version == TLS1_2_VERSION));
        EXPECT(with_h2.ca_list == (with_h2.reused ? 0 : 'A'));
        expect_steps_ok(&next);

        set_scene("%s: client hello steps %s, resumption offering http/1.1 only", p->name, orders[i]);
        next = again(&plan);
        without_h2 = connect_to(&srv, &next, (struct client){ .sni = "a.test", .offer = first.session, .alpn = HTTP11 });
        EXPECT(without_h2.ok && without_h2.reused && strcmp(without_h2.alpn, "http/1.1") == 0);
        EXPECT(without_h2.verify == X509_V_OK && without_h2.peer == 1);
        expect_steps_ok(&next);

        release(&first);
        release(&with_h2);
        release(&without_h2);
        server_stop(&srv);
    }
}

/* A resumed TLS 1.3 connection re-issues tickets; OpenSSL restarts the session's clock
 * for them (control: a plain server's ticket after resuming a session aged AGE seconds
 * lives the full SESSION_TIMEOUT again). On a bound connection the message callback keeps
 * the first session's end, also when disable_http2_alpn shares that callback. The aging
 * is done on the server's cached session (stateful tickets), without sleeping. */
#define AGE 100

static void age_session(SSL_SESSION *s)
{
#if OPENSSL_VERSION_NUMBER >= 0x30300000L
    if (SSL_SESSION_set_time_ex(s, SSL_SESSION_get_time_ex(s) - AGE) == 0) exit(2);
#else
    if (SSL_SESSION_set_time(s, SSL_SESSION_get_time(s) - AGE) == 0) exit(2);
#endif
}

static void test_ticket_keeps_end(const char *steps)
{
    static const struct path stateful = { "TLS 1.3 stateful ticket", TLS1_3_VERSION, 0, 0 };
    struct server srv;
    struct plan plan = { .hello_steps = steps, .hello_ca = set_a }, next;
    struct outcome first, second;
    const unsigned char *ticket, *id;
    size_t ticket_len;
    unsigned int id_len;
    unsigned long hint;

    server_start(&srv, &stateful, SID_CTX | ALPN);
    set_scene("TLS 1.3 stateful ticket: the end of a session, client hello steps \"%s\"",
              steps == NULL ? "" : steps);
    first = connect_to(&srv, &plan, (struct client){ .sni = "a.test", .alpn = HTTP11 });
    EXPECT(first.ok && resumable(&first) && first.server_session != NULL);
    if (!first.ok || first.session == NULL || first.server_session == NULL) goto out;
    EXPECT(SSL_SESSION_get_ticket_lifetime_hint(first.session) == SESSION_TIMEOUT);
    /* A stateful ticket is the session ID of the server's cached session. */
    SSL_SESSION_get0_ticket(first.session, &ticket, &ticket_len);
    id = SSL_SESSION_get_id(first.server_session, &id_len);
    EXPECT(ticket_len == id_len && memcmp(ticket, id, id_len) == 0);
    age_session(first.server_session);

    next = again(&plan);
    second = connect_to(&srv, &next, (struct client){ .sni = "a.test", .offer = first.session, .alpn = HTTP11 });
    EXPECT(second.ok && second.reused && second.verify == first.verify && second.session != NULL);
    expect_steps_ok(&next);
    if (second.session != NULL) {
        hint = SSL_SESSION_get_ticket_lifetime_hint(second.session);
        if (steps == NULL) {
            EXPECT(hint == SESSION_TIMEOUT);
        } else {
            /* AGE seconds gone, and at most a few more while the handshake ran */
            EXPECT(hint <= SESSION_TIMEOUT - AGE && hint >= SESSION_TIMEOUT - AGE - 5);
        }
    }
    release(&second);
out:
    release(&first);
    server_stop(&srv);
}

int main(int argc, char **argv)
{
    const char *err = NULL;
    size_t i;

    if (argc != 2) { fprintf(stderr, "usage: %s PKI_DIR\n", argv[0]); return 2; }
    pki_dir = argv[1];
    plan_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    ca_a = load_cert("ca_a.pem");
    ca_b = load_cert("ca_b.pem");
    client_a = load_cert("client_a.pem");
    set_a = sk_X509_new_null();
    set_a_again = sk_X509_new_null();
    set_b = sk_X509_new_null();
    store_a = X509_STORE_new();
    if (set_a == NULL || set_a_again == NULL || set_b == NULL || store_a == NULL
        || sk_X509_push(set_a, ca_a) <= 0 || sk_X509_push(set_a_again, ca_a) <= 0
        || sk_X509_push(set_a_again, ca_a) <= 0 || sk_X509_push(set_b, ca_b) <= 0
        || X509_STORE_add_cert(store_a, ca_a) != 1) return 2;

    CHECK(kong_client_tls_check_libssl(&err) == KONG_CLIENT_TLS_OK);

    for (i = 0; i < N_PATHS; i++) {
        const struct path *p = &PATHS[i];
        test_no_sid_ctx(p);
        test_two_names(p, 0);
        test_two_names(p, STATIC_VERIFY);
        if (p->version == TLS1_3_VERSION) test_two_names(p, HRR);
        test_certificate_form(p);
        test_rebind(p);
        test_disable_on_bound(p);
        test_with_http2_disabled(p);
    }
    test_ticket_keeps_end(NULL);
    test_ticket_keeps_end("r");
    test_ticket_keeps_end("hr");

    sk_X509_free(set_a);
    sk_X509_free(set_a_again);
    sk_X509_free(set_b);
    X509_STORE_free(store_a);
    X509_free(ca_a);
    X509_free(ca_b);
    X509_free(client_a);
    printf("test_session_binding: %d checks, %d failed\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
