/*
 * The C API from C: real handshakes over a BIO pair between an OpenSSL server whose
 * certificate callback calls the library and a client presenting leaf + intermediate.
 * Usage: test_api PKI_DIR (made by make-pki.sh). Exit status 0 only if every check holds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "check.h"
#include "tls.h"

static char *read_file(const char *name, size_t *len)
{
    FILE *f = fopen(path(name), "rb");
    char *data;
    long n;
    if (f == NULL) { perror(name); exit(2); }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    data = malloc((size_t)n + 1);
    if (data == NULL || fread(data, 1, (size_t)n, f) != (size_t)n) { exit(2); }
    data[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return data;
}

/* What the certificate callback does, like nginx's ssl_certificate_by_lua. */
struct server_plan {
    STACK_OF(X509) *ca;
    int disable_reuse;
    int rc_request, rc_disable;
    const void *tag; /* non-NULL: requested through the _for_server entry, with this tag */
};

static int plan_index;

static int cert_cb(SSL *ssl, void *arg)
{
    struct server_plan *plan = SSL_get_ex_data(ssl, plan_index);
    (void)arg;
    if (plan == NULL) return 1;
    plan->rc_request = plan->tag
        ? kong_client_tls_request_client_certificate_for_server(ssl, plan->ca, plan->tag, NULL)
        : kong_client_tls_request_client_certificate(ssl, plan->ca, NULL);
    if (plan->disable_reuse)
        plan->rc_disable = kong_client_tls_disable_session_reuse(ssl, NULL);
    return 1;
}

static SSL_CTX *server_ctx(int version)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL
        || SSL_CTX_use_certificate_file(ctx, path("server.pem"), SSL_FILETYPE_PEM) != 1
        || SSL_CTX_use_PrivateKey_file(ctx, path("server.key"), SSL_FILETYPE_PEM) != 1
        || SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"c-tests", 7) != 1
        || SSL_CTX_set_min_proto_version(ctx, version) != 1
        || SSL_CTX_set_max_proto_version(ctx, version) != 1) {
        ERR_print_errors_fp(stderr);
        exit(2);
    }
    SSL_CTX_set_cert_cb(ctx, cert_cb, NULL);
    return ctx;
}

static SSL_CTX *client_ctx(int version, int with_cert)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL
        || SSL_CTX_set_min_proto_version(ctx, version) != 1
        || SSL_CTX_set_max_proto_version(ctx, version) != 1) {
        exit(2);
    }
    if (with_cert
        && (SSL_CTX_use_certificate_file(ctx, path("leaf.pem"), SSL_FILETYPE_PEM) != 1
            || SSL_CTX_add_extra_chain_cert(ctx, load_cert("intermediate.pem")) != 1
            || SSL_CTX_use_PrivateKey_file(ctx, path("leaf.key"), SSL_FILETYPE_PEM) != 1)) {
        ERR_print_errors_fp(stderr);
        exit(2);
    }
    return ctx;
}

/* OpenSSL's own verdict on the client chain with `root` as the only trust anchor, depth 0
 * and a callback that never stops, as lua-nginx-module's verify_client sets it up. */
static long expected_verify_result(X509 *root)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    X509 *leaf = load_cert("leaf.pem"), *intermediate = load_cert("intermediate.pem");
    long result;

    sk_X509_push(untrusted, intermediate);
    X509_STORE_add_cert(store, root);
    X509_STORE_CTX_init(ctx, store, leaf, untrusted);
    X509_STORE_CTX_set_verify_cb(ctx, accept_all);
    X509_VERIFY_PARAM_set_depth(X509_STORE_CTX_get0_param(ctx), 0);
    X509_STORE_CTX_set_default(ctx, "ssl_client");
    X509_verify_cert(ctx);
    result = X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    sk_X509_pop_free(untrusted, X509_free);
    X509_free(leaf);
    return result;
}

static void test_version(int version, STACK_OF(X509) *ca, X509 *root)
{
    SSL_CTX *sctx = server_ctx(version), *cctx = client_ctx(version, 1);
    SSL *server = SSL_new(sctx), *client = SSL_new(cctx);
    struct server_plan plan = { ca, 1, 99, 99, NULL };
    const char *pem = NULL, *pem_again = NULL, *err = NULL;
    size_t len = 0, len_again = 0, need = 0, expected_len = 0;
    char *expected = read_file("chain.pem", &expected_len);
    char *buf;
    STACK_OF(X509_NAME) *names;
    SSL_SESSION *session;

    SSL_set_ex_data(server, plan_index, &plan);
    CHECK(handshake(server, client));
    CHECK(plan.rc_request == KONG_CLIENT_TLS_OK);
    CHECK(plan.rc_disable == KONG_CLIENT_TLS_OK);

    /* The client saw exactly the CA list we gave. */
    names = SSL_get_client_CA_list(client);
    CHECK(names != NULL && sk_X509_NAME_num(names) == 1);
    if (names != NULL && sk_X509_NAME_num(names) == 1)
        CHECK(X509_NAME_cmp(sk_X509_NAME_value(names, 0), X509_get_subject_name(root)) == 0);

    /* The verify result is what OpenSSL gives for ngx.ssl.verify_client(ca, 0): the
     * handshake went on, and the error is the one of a depth-0 verification. */
    CHECK(SSL_get_verify_result(server) == expected_verify_result(root));
    CHECK(SSL_get_verify_result(server) != X509_V_OK);

    /* The chain, zero-copy and cached... */
    CHECK(kong_client_tls_get0_full_client_certificate_chain(server, &pem, &len, &err) == KONG_CLIENT_TLS_OK);
    CHECK(len == expected_len && pem != NULL && memcmp(pem, expected, len) == 0 && pem[len] == '\0');
    CHECK(kong_client_tls_get0_full_client_certificate_chain(server, &pem_again, &len_again, &err) == KONG_CLIENT_TLS_OK);
    CHECK(pem_again == pem && len_again == len);
    /* ...and copied, with the size protocol. */
    CHECK(kong_client_tls_get_full_client_certificate_chain(server, NULL, &need, &err) == KONG_CLIENT_TLS_BUFFER_TOO_SMALL);
    CHECK(need == expected_len + 1);
    buf = malloc(need);
    len = need;
    CHECK(buf != NULL && kong_client_tls_get_full_client_certificate_chain(server, buf, &len, &err) == KONG_CLIENT_TLS_OK);
    CHECK(len == expected_len && memcmp(buf, expected, len) == 0 && buf[len] == '\0');
    free(buf);

    /* No resumable session came out of it. */
    session = SSL_get1_session(client);
    CHECK(session != NULL && !SSL_SESSION_is_resumable(session));
    SSL_SESSION_free(session);

    /* Too late for the hello-phase calls now. */
    CHECK_ERR(kong_client_tls_disable_session_reuse(server, &err_),
              "the handshake is past the ClientHello; call this from the client hello or certificate callback");

    SSL_free(server);
    SSL_free(client);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    free(expected);
}

static void test_no_client_certificate(void)
{
    SSL_CTX *sctx = server_ctx(TLS1_3_VERSION), *cctx = client_ctx(TLS1_3_VERSION, 0);
    SSL *server = SSL_new(sctx), *client = SSL_new(cctx);
    struct server_plan plan = { NULL, 0, 99, 99, NULL };
    const char *pem = "x", *err = NULL;
    size_t len = 5;

    SSL_set_ex_data(server, plan_index, &plan);
    CHECK(handshake(server, client));
    CHECK(plan.rc_request == KONG_CLIENT_TLS_OK);
    CHECK(kong_client_tls_get0_full_client_certificate_chain(server, &pem, &len, &err) == KONG_CLIENT_TLS_NO_CERTIFICATE);
    CHECK(pem == NULL && len == 0);
    CHECK(SSL_get_verify_result(server) == X509_V_OK);
    SSL_free(server);
    SSL_free(client);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
}

/* Which requests may see the verdict: the SNI name against the request's host, or without
 * SNI the tag of the requesting server against the request's. */
static void test_misdirected(int version, STACK_OF(X509) *ca, const char *sni)
{
    static const char tenant_a[] = "a", tenant_b[] = "b";
    SSL_CTX *sctx = server_ctx(version), *cctx = client_ctx(version, 1);
    SSL *server = SSL_new(sctx), *client = SSL_new(cctx);
    struct server_plan plan = { NULL, 0, 99, 99, NULL };
    const char *name = "x", *err = NULL;
    size_t len = 7;

    plan.ca = ca;
    plan.tag = tenant_a;
    if (sni != NULL)
        CHECK(SSL_set_tlsext_host_name(client, sni) == 1);
    SSL_set_ex_data(server, plan_index, &plan);
    CHECK(handshake(server, client));
    CHECK(plan.rc_request == KONG_CLIENT_TLS_OK);
    CHECK(kong_client_tls_get0_request_server_name(server, &name, &len, &err) == KONG_CLIENT_TLS_OK);
    /* No host: the tags decide. */
    CHECK(kong_client_tls_check_request(server, NULL, 0, tenant_a, &err) == KONG_CLIENT_TLS_OK);
    CHECK(kong_client_tls_check_request(server, NULL, 0, tenant_b, &err) == KONG_CLIENT_TLS_MISDIRECTED);
    if (sni != NULL) {
        CHECK(name != NULL && len == 6 && strcmp(name, "a.test") == 0);
        CHECK(kong_client_tls_check_request(server, "a.test:443", 10, tenant_b, &err) == KONG_CLIENT_TLS_OK);
        CHECK(kong_client_tls_check_request(server, "b.test", 6, tenant_a, &err) == KONG_CLIENT_TLS_MISDIRECTED);
    } else {
        CHECK(name == NULL && len == 0);
        CHECK(kong_client_tls_check_request(server, "b.test", 6, tenant_a, &err) == KONG_CLIENT_TLS_OK);
        CHECK(kong_client_tls_check_request(server, "a.test", 6, tenant_b, &err) == KONG_CLIENT_TLS_MISDIRECTED);
        CHECK(kong_client_tls_check_request(server, "a.test", 6, NULL, &err) == KONG_CLIENT_TLS_MISDIRECTED);
    }
    CHECK_ERR(kong_client_tls_check_request(client, "a.test", 6, NULL, &err_),
              "ssl is a client-side connection; a server-side SSL is required");
    SSL_free(server);
    SSL_free(client);

    /* No certificate requested: every request passes, and there is no name. */
    server = SSL_new(sctx);
    client = SSL_new(cctx);
    CHECK(handshake(server, client));
    name = "untouched";
    CHECK(kong_client_tls_get0_request_server_name(server, &name, &len, &err) == KONG_CLIENT_TLS_NOT_REQUESTED);
    CHECK(strcmp(name, "untouched") == 0);
    CHECK(kong_client_tls_check_request(server, "b.test", 6, NULL, &err) == KONG_CLIENT_TLS_OK);
    SSL_free(server);
    SSL_free(client);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
}

static const unsigned char server_protocols[] = "\x02h2\x08http/1.1";
static const kong_client_tls_protocols protocols = { server_protocols, sizeof(server_protocols) - 1 };

/* A C server with its own ALPN callback: h2 unless the connection switched it off. */
static void test_alpn(int version, int disable)
{
    SSL_CTX *sctx = server_ctx(version), *cctx = client_ctx(version, 0);
    SSL *server, *client;
    const unsigned char *alpn = NULL;
    unsigned int alpn_len = 0;
    const char *expected = disable ? "http/1.1" : "h2";

    SSL_CTX_set_alpn_select_cb(sctx, kong_client_tls_alpn_select_cb, (void *)&protocols);
    CHECK(SSL_CTX_set_alpn_protos(cctx, server_protocols, sizeof(server_protocols) - 1) == 0);
    server = SSL_new(sctx);
    client = SSL_new(cctx);
    SSL_set_accept_state(server);
    if (disable)
        CHECK(kong_client_tls_disable_http2_alpn(server, NULL) == KONG_CLIENT_TLS_OK);
    CHECK(handshake(server, client));
    SSL_get0_alpn_selected(client, &alpn, &alpn_len);
    CHECK(alpn_len == strlen(expected) && memcmp(alpn, expected, alpn_len) == 0);
    SSL_free(server);
    SSL_free(client);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
}

static void test_bad_input(X509 *root)
{
    SSL_CTX *sctx = server_ctx(TLS1_3_VERSION), *cctx = client_ctx(TLS1_3_VERSION, 0);
    SSL *server = SSL_new(sctx), *client = SSL_new(cctx);
    STACK_OF(X509) *empty = sk_X509_new_null(), *with_null = sk_X509_new_null();
    size_t len = 0;

    sk_X509_push(with_null, root);
    sk_X509_push(with_null, NULL);
    CHECK_ERR(kong_client_tls_request_client_certificate(NULL, NULL, &err_), "ssl is NULL");
    CHECK_ERR(kong_client_tls_disable_session_reuse(NULL, &err_), "ssl is NULL");
    CHECK_ERR(kong_client_tls_get_full_client_certificate_chain(NULL, NULL, &len, &err_), "ssl is NULL");
    CHECK_ERR(kong_client_tls_request_client_certificate(client, NULL, &err_),
              "ssl is a client-side connection; a server-side SSL is required");
    CHECK_ERR(kong_client_tls_request_client_certificate(server, empty, &err_),
              "ca_certs is an empty certificate stack");
    CHECK_ERR(kong_client_tls_request_client_certificate(server, with_null, &err_),
              "ca_certs contains a NULL certificate");
    CHECK(kong_client_tls_request_client_certificate(NULL, NULL, NULL) == KONG_CLIENT_TLS_ERROR);
    CHECK(SSL_get_verify_mode(server) == SSL_VERIFY_NONE);

    sk_X509_free(empty);
    sk_X509_free(with_null);
    SSL_free(server);
    SSL_free(client);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
}

int main(int argc, char **argv)
{
    X509 *root;
    STACK_OF(X509) *ca;
    const char *err = NULL;

    if (argc != 2) { fprintf(stderr, "usage: %s PKI_DIR\n", argv[0]); return 2; }
    pki_dir = argv[1];
    plan_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    root = load_cert("root.pem");
    ca = sk_X509_new_null();
    sk_X509_push(ca, root);

    CHECK(kong_client_tls_check_libssl(&err) == KONG_CLIENT_TLS_OK);
    CHECK(kong_client_tls_openssl_version_num() == OpenSSL_version_num());
    CHECK(strlen(kong_client_tls_version()) > 0);

    test_version(TLS1_2_VERSION, ca, root);
    test_version(TLS1_3_VERSION, ca, root);
    test_no_client_certificate();
    test_misdirected(TLS1_2_VERSION, ca, "A.Test");
    test_misdirected(TLS1_3_VERSION, ca, "A.Test");
    test_misdirected(TLS1_3_VERSION, ca, NULL);
    test_alpn(TLS1_2_VERSION, 0);
    test_alpn(TLS1_2_VERSION, 1);
    test_alpn(TLS1_3_VERSION, 0);
    test_alpn(TLS1_3_VERSION, 1);
    test_bad_input(root);

    sk_X509_pop_free(ca, X509_free);
    printf("test_api: %d checks, %d failed\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
