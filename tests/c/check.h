/* The checks of the C tests: count, report the failing line, never stop early. */
#ifndef KCT_TEST_CHECK_H
#define KCT_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

#include "kong_client_tls.h"

static int failures, checks;

#define CHECK(cond)                                                              \
    do {                                                                         \
        checks++;                                                                \
        if (!(cond)) {                                                           \
            failures++;                                                          \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                        \
    } while (0)

#define CHECK_ERR(call, text)                                                    \
    do {                                                                         \
        const char *err_ = NULL;                                                 \
        int rc_ = (call);                                                        \
        CHECK(rc_ == KONG_CLIENT_TLS_ERROR);                                     \
        CHECK(err_ != NULL && strcmp(err_, (text)) == 0);                        \
    } while (0)

#endif
