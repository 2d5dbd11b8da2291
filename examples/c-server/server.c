/*
 * A small TLS server in C on kong-client-tls: copy it and change what you need.
 *
 *   server <port> <cert.pem> <key.pem> <client-ca.pem>
 *
 * Listens on 127.0.0.1:<port> and serves one connection at a time. By server name (SNI):
 *   mtls.example  asks for a client certificate verified against <client-ca.pem>
 *                 (kong_client_tls_request_client_certificate) and never resumes a
 *                 session (kong_client_tls_disable_session_reuse);
 *   noh2.example  never negotiates h2 (kong_client_tls_disable_http2_alpn);
 *   anything else plain TLS, ALPN h2 or http/1.1.
 * Both calls run in the client hello callback, where the name is known and nothing is
 * decided yet. ALPN goes through the library's select callback, which honours the h2
 * switch. Each connection prints its name, ALPN, verify result and the client's chain on
 * stdout, and an HTTP/1.1 request gets a one-line answer saying the same, unless its Host
 * names another server than the one the certificate was requested for: that request gets
 * 421 Misdirected Request (kong_client_tls_check_request), as nginx answers it.
 *
 * Build: cc -o server server.c $(pkg-config --cflags --libs kong_client_tls libssl libcrypto)
 * (examples/c-server/Makefile; README, "Using it from C"). Try it:
 *   ./server 8443 server.pem server.key client-ca.pem
 *   curl -k --resolve mtls.example:8443:127.0.0.1 --cert client.pem --key client.key \
 *        https://mtls.example:8443/
 *   openssl s_client -connect 127.0.0.1:8443 -servername noh2.example -alpn h2,http/1.1
 * (tests/packaging/c.sh runs these and more against it).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "kong_client_tls.h"

static STACK_OF(X509) *client_cas; /* the CA file, loaded once */

/* This server's one virtual server, by the address the library records for a certificate
   request and compares with the server a request is routed to (when SNI was absent). */
static const char mtls_server[] = "mtls.example";

/* The host name of the ClientHello's server_name extension, or "" (RFC 6066, 3). */
static void client_hello_name(SSL *ssl, char *name, size_t size)
{
    const unsigned char *p;
    size_t len, n;

    name[0] = '\0';
    if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) || len < 5)
        return;
    /* list length (2), name type (1) = host_name (0), name length (2), name */
    n = ((size_t)p[3] << 8) | p[4];
    if (p[2] != TLSEXT_NAMETYPE_host_name || n + 5 > len || n >= size)
        return;
    memcpy(name, p + 5, n);
    name[n] = '\0';
}

static int on_client_hello(SSL *ssl, int *alert, void *arg)
{
    const char *err = NULL;
    char name[256];

    (void)arg;
    client_hello_name(ssl, name, sizeof name);
    if (strcmp(name, "mtls.example") == 0) {
        /* Ask for a certificate (the handshake completes without one), verify it at
           depth 0 against client_cas, send their names as acceptable CAs. */
        if (kong_client_tls_request_client_certificate_for_server(ssl, client_cas, mtls_server,
                                                                  &err) != KONG_CLIENT_TLS_OK
            || kong_client_tls_disable_session_reuse(ssl, &err) != KONG_CLIENT_TLS_OK)
            goto fail;
    } else if (strcmp(name, "noh2.example") == 0) {
        /* Takes over the connection's message callback (SSL_set_msg_callback): do not
           set one of your own on this SSL. */
        if (kong_client_tls_disable_http2_alpn(ssl, &err) != KONG_CLIENT_TLS_OK)
            goto fail;
    }
    return SSL_CLIENT_HELLO_SUCCESS;
fail:
    fprintf(stderr, "client hello: %s\n", err);
    *alert = SSL_AD_INTERNAL_ERROR;
    return SSL_CLIENT_HELLO_ERROR;
}

/* The value of the request's Host header, or NULL (then *len is 0). */
static const char *request_host(const char *request, size_t *len)
{
    const char *p = request, *end;

    *len = 0;
    while ((p = strstr(p, "\r\n")) != NULL && p[2] != '\r') {
        p += 2;
        if (strncasecmp(p, "host:", 5) == 0) {
            p += 5;
            while (*p == ' ' || *p == '\t')
                p++;
            end = strstr(p, "\r\n");
            *len = end ? (size_t)(end - p) : strlen(p);
            return p;
        }
    }
    return NULL;
}

static void serve(SSL *ssl)
{
    const unsigned char *alpn = NULL;
    unsigned int alpn_len = 0;
    const char *name, *err = NULL;
    char *pem = NULL, reply[256], request[4096];
    size_t pem_len = 0, host_len;
    const char *host;
    int n;
    long verify = SSL_get_verify_result(ssl);
    int rc, certs = 0;

    SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
    name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    printf("connection: name=%s alpn=%.*s resumed=%d\n", name ? name : "-", (int)alpn_len,
           alpn_len ? (const char *)alpn : "-", SSL_session_reused(ssl));

    /* Ask for the size, then copy the chain (leaf first) into a buffer of that size. */
    rc = kong_client_tls_get_full_client_certificate_chain(ssl, NULL, &pem_len, &err);
    if (rc == KONG_CLIENT_TLS_BUFFER_TOO_SMALL && (pem = malloc(pem_len)) != NULL)
        rc = kong_client_tls_get_full_client_certificate_chain(ssl, pem, &pem_len, &err);
    if (rc == KONG_CLIENT_TLS_OK) {
        const char *p;
        for (p = pem; (p = strstr(p, "-----BEGIN CERTIFICATE-----")) != NULL; p++)
            certs++;
        /* At depth 0 a leaf + intermediate chain verifies as 20 (unable to get issuer
           certificate locally) unless the intermediate itself is in the CA file. */
        printf("client chain: %d certificate(s), verify %ld (%s)\n%s", certs, verify,
               X509_verify_cert_error_string(verify), pem);
    } else if (rc == KONG_CLIENT_TLS_NO_CERTIFICATE) {
        printf("client chain: none\n");
    } else {
        printf("client chain: error: %s\n", err);
    }
    free(pem);
    fflush(stdout);

    if (alpn_len == 2 && memcmp(alpn, "h2", 2) == 0) {
        printf("h2 negotiated: this example speaks HTTP/1.1 only, closing\n");
        fflush(stdout);
        return;
    }
    if ((n = SSL_read(ssl, request, sizeof request - 1)) <= 0)
        return;
    request[n] = '\0';
    /* Before anything reads the verdict for this request: does it name the server the
       certificate was requested for? (This server has one; a server with several passes
       the one the request is routed to.) */
    host = request_host(request, &host_len);
    rc = kong_client_tls_check_request(ssl, host, host_len, mtls_server, &err);
    if (rc != KONG_CLIENT_TLS_OK) {
        printf("request: %s\n", rc == KONG_CLIENT_TLS_MISDIRECTED ? "misdirected" : err);
        fflush(stdout);
        strcpy(request, rc == KONG_CLIENT_TLS_MISDIRECTED
                            ? "HTTP/1.1 421 Misdirected Request\r\nContent-Length: 0\r\n"
                              "Connection: close\r\n\r\n"
                            : "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                              "Connection: close\r\n\r\n");
        SSL_write(ssl, request, (int)strlen(request));
        return;
    }
    rc = snprintf(reply, sizeof reply, "name=%s alpn=%.*s certs=%d verify=%ld\n",
                  name ? name : "-", (int)alpn_len, alpn_len ? (const char *)alpn : "-",
                  certs, verify);
    snprintf(request, sizeof request,
             "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", rc, reply);
    SSL_write(ssl, request, (int)strlen(request));
}

int main(int argc, char **argv)
{
    /* h2 first: server preference, as nginx does. Must outlive the SSL_CTX. */
    static kong_client_tls_protocols protocols = {
        (const unsigned char *)"\x02h2\x08http/1.1", 12
    };
    struct sockaddr_in addr;
    const char *err = NULL;
    SSL_CTX *ctx;
    X509 *cert;
    BIO *bio;
    int fd, one = 1;

    if (argc != 5) {
        fprintf(stderr, "usage: %s <port> <cert.pem> <key.pem> <client-ca.pem>\n", argv[0]);
        return 2;
    }
    /* Once, at start: the process and the library use one libssl of a verified line. */
    if (kong_client_tls_check_libssl(&err) != KONG_CLIENT_TLS_OK) {
        fprintf(stderr, "kong_client_tls: %s\n", err);
        return 1;
    }
    ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, argv[2]) != 1
        || SSL_CTX_use_PrivateKey_file(ctx, argv[3], SSL_FILETYPE_PEM) != 1) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    /* OpenSSL refuses to resume a session on a connection that verifies its peer when
       the context has no session id context: the handshake fails with an internal_error
       alert ("session id context uninitialized"). The library sets its own per
       connection where it asks for a certificate at client hello time, so this server
       would work without it; set one anyway, as any OpenSSL server that may verify
       clients must (a certificate callback, another verify setup), and so that this
       server's sessions are its own. */
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"kct-c-server", 12);
    SSL_CTX_set_client_hello_cb(ctx, on_client_hello, NULL);
    SSL_CTX_set_alpn_select_cb(ctx, kong_client_tls_alpn_select_cb, &protocols);

    client_cas = sk_X509_new_null();
    bio = BIO_new_file(argv[4], "r");
    while (bio && (cert = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
        sk_X509_push(client_cas, cert);
    BIO_free(bio);
    if (sk_X509_num(client_cas) == 0) {
        fprintf(stderr, "no certificate in %s\n", argv[4]);
        return 1;
    }

    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(argv[1]));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 16) != 0) {
        perror("listen");
        return 1;
    }
    printf("listening on 127.0.0.1:%s (kong_client_tls %s)\n", argv[1], kong_client_tls_version());
    fflush(stdout);

    for (;;) {
        int conn = accept(fd, NULL, NULL);
        SSL *ssl;
        if (conn < 0)
            continue;
        ssl = SSL_new(ctx);
        SSL_set_fd(ssl, conn);
        if (SSL_accept(ssl) == 1) {
            serve(ssl);
            SSL_shutdown(ssl);
        } else {
            printf("handshake failed\n");
            ERR_print_errors_fp(stdout);
            fflush(stdout);
        }
        SSL_free(ssl);
        close(conn);
    }
}
