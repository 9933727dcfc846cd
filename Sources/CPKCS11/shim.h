// The PKCS#11 (Cryptoki 2.40) declarations, from p11-kit's header. Only the types and constants are used:
// vendor modules are loaded at run time with dlopen, so nothing is linked here.
#include <p11-kit/pkcs11.h>
