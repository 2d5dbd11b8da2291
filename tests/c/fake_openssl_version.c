/*
 * LD_PRELOAD shim for test_unverified_openssl: OpenSSL_version_num() answers the value of
 * KCT_FAKE_OPENSSL_VERSION_NUM (hex), so the library meets a release line it was never
 * verified on while everything else is the real libcrypto.
 */
#include <stdlib.h>

unsigned long OpenSSL_version_num(void);

unsigned long OpenSSL_version_num(void)
{
    const char *fake = getenv("KCT_FAKE_OPENSSL_VERSION_NUM");
    return fake != NULL ? strtoul(fake, NULL, 16) : 0;
}
