/* The header must stand alone in C89, C99 and C++ (compiled both ways by `make test-c`). */
#include "kong_client_tls.h"

int kong_client_tls_header_check(void);

int kong_client_tls_header_check(void)
{
    const char *err = NULL;
    size_t len = 0;
    return kong_client_tls_get_full_client_certificate_chain(NULL, NULL, &len, &err)
           == KONG_CLIENT_TLS_ERROR;
}
