/*
 * An OpenSSL release line the library was never verified on is refused, at load and at
 * every call that relies on OpenSSL's handshake internals, with one clear message, and
 * nothing is changed on the connection. The same calls succeed on the real line first.
 *
 * Usage: test_unverified_openssl PKI_DIR. It re-runs itself under LD_PRELOAD with
 * fake_openssl_version.so (built next to it by `make test-c`) for each faked version.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "check.h"

static const char UNVERIFIED[] =
    "the running OpenSSL release line is not verified for kong_client_tls (verified: 3.0, "
    "3.1, 3.2, 3.3, 3.4, 3.5, 3.6, 4.0); its handshake internals may differ, so "
    "kong_client_tls refuses to run on it";

/* 1.1.1w, a future 3.7, a future 4.1, a 5.0 */
static const char *const FAKES[] = {"1010117f", "30700000", "40100000", "50000000"};

/* Every hello-phase call on a fresh server SSL: all succeed on a verified line, all are
 * refused with UNVERIFIED otherwise. */
static void hello_phase_calls(int verified)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    SSL *ssl = SSL_new(ctx);
    const char *pem = NULL;
    size_t len = 1;

    if (verified) {
        const char *err = NULL;
        CHECK(kong_client_tls_request_client_certificate(ssl, NULL, &err) == KONG_CLIENT_TLS_OK);
        CHECK(kong_client_tls_disable_session_reuse(ssl, &err) == KONG_CLIENT_TLS_OK);
        CHECK(kong_client_tls_disable_http2_alpn(ssl, &err) == KONG_CLIENT_TLS_OK);
        CHECK(SSL_get_verify_mode(ssl) == SSL_VERIFY_PEER);
        CHECK(SSL_get_num_tickets(ssl) == 0);
    } else {
        CHECK_ERR(kong_client_tls_request_client_certificate(ssl, NULL, &err_), UNVERIFIED);
        CHECK_ERR(kong_client_tls_disable_session_reuse(ssl, &err_), UNVERIFIED);
        CHECK_ERR(kong_client_tls_disable_http2_alpn(ssl, &err_), UNVERIFIED);
        /* refused means untouched */
        CHECK(SSL_get_verify_mode(ssl) == SSL_VERIFY_NONE);
        CHECK(SSL_get_num_tickets(ssl) == SSL_CTX_get_num_tickets(ctx));
    }
    /* Public API only: works on any line. */
    CHECK(kong_client_tls_get0_full_client_certificate_chain(ssl, &pem, &len, NULL)
          == KONG_CLIENT_TLS_NO_CERTIFICATE);
    CHECK(pem == NULL && len == 0);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
}

static int faked(const char *fake)
{
    const char *err = NULL;
    CHECK(OpenSSL_version_num() == strtoul(fake, NULL, 16)); /* the shim is in place */
    CHECK(kong_client_tls_openssl_version_num() == strtoul(fake, NULL, 16));
    CHECK(kong_client_tls_check_libssl(&err) == KONG_CLIENT_TLS_ERROR);
    CHECK(err != NULL && strcmp(err, UNVERIFIED) == 0);
    hello_phase_calls(0);
    printf("test_unverified_openssl: faked %s: %d checks, %d failed\n", fake, checks, failures);
    return failures == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *fake = getenv("KCT_FAKE_OPENSSL_VERSION_NUM");
    char shim[4096];
    const char *slash;
    const char *err = NULL;
    size_t i;

    if (argc != 2) { fprintf(stderr, "usage: %s PKI_DIR\n", argv[0]); return 2; }
    if (fake != NULL)
        return faked(fake);

    /* The real line: verified, and the calls work. */
    CHECK(kong_client_tls_check_libssl(&err) == KONG_CLIENT_TLS_OK);
    hello_phase_calls(1);

    slash = strrchr(argv[0], '/');
    snprintf(shim, sizeof(shim), "%.*sfake_openssl_version.so",
             slash ? (int)(slash - argv[0] + 1) : 0, argv[0]);
    for (i = 0; i < sizeof(FAKES) / sizeof(FAKES[0]); i++) {
        pid_t pid = fork();
        int status = 0;
        if (pid == 0) {
            setenv("LD_PRELOAD", shim, 1);
            setenv("KCT_FAKE_OPENSSL_VERSION_NUM", FAKES[i], 1);
            execv(argv[0], argv);
            perror("execv");
            _exit(127);
        }
        CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    printf("test_unverified_openssl: %d checks, %d failed\n", checks, failures);
    return failures == 0 ? 0 : 1;
}
