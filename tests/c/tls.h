/* What the C tests share: the PKI directory made by make-pki.sh, and an in-memory
 * handshake over a BIO pair. Header-only, like check.h. */
#ifndef KCT_TEST_TLS_H
#define KCT_TEST_TLS_H

#include <stdio.h>
#include <stdlib.h>

#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* The PKI directory, from the test's first argument. */
static const char *pki_dir;

static char *path(const char *name)
{
    static char buf[4096];
    snprintf(buf, sizeof(buf), "%s/%s", pki_dir, name);
    return buf;
}

static X509 *load_cert(const char *name)
{
    FILE *f = fopen(path(name), "r");
    X509 *x;
    if (f == NULL) { perror(name); exit(2); }
    x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (x == NULL) { fprintf(stderr, "bad PEM %s\n", name); exit(2); }
    return x;
}

/* Drives both ends over a BIO pair until both finish; the server then sends one byte so
 * that TLS 1.3 tickets reach the client. Returns 1 when both handshakes succeeded. */
static int handshake(SSL *server, SSL *client)
{
    BIO *a, *b;
    int done_s = 0, done_c = 0, i;
    char byte = '!';
    if (BIO_new_bio_pair(&a, 0, &b, 0) != 1) exit(2);
    SSL_set_bio(client, a, a);
    SSL_set_bio(server, b, b);
    SSL_set_connect_state(client);
    SSL_set_accept_state(server);
    for (i = 0; i < 64 && !(done_s && done_c); i++) {
        if (!done_c) {
            int rc = SSL_do_handshake(client);
            if (rc == 1) done_c = 1;
            else if (SSL_get_error(client, rc) != SSL_ERROR_WANT_READ) return 0;
        }
        if (!done_s) {
            int rc = SSL_do_handshake(server);
            if (rc == 1) done_s = 1;
            else if (SSL_get_error(server, rc) != SSL_ERROR_WANT_READ) return 0;
        }
    }
    if (!(done_s && done_c) || SSL_write(server, &byte, 1) != 1 || SSL_read(client, &byte, 1) != 1)
        return 0;
    return 1;
}

/* A verify callback that never fails the handshake, like nginx's optional_no_ca. */
static int accept_all(int ok, X509_STORE_CTX *ctx)
{
    (void)ok;
    (void)ctx;
    return 1;
}

#endif
