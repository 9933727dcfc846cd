#ifndef SIGNET_CRESOLV_H
#define SIGNET_CRESOLV_H

/// Asks one DNS server (an IPv4 address and port; NULL for the system's resolv.conf) for records of `type` at
/// `name`, through the C library's resolver (res_nquery). The answer section is written to `out` as a sequence of
/// [type: u16 big-endian][length: u16 big-endian][data]; a CNAME's data is its target name, uncompressed, as text.
/// Returns the number of records written, or:
///  -1 the name does not exist (NXDOMAIN), -2 it exists without records of that type, -3 the query failed
///  (timeout, SERVFAIL, an unparseable answer), -4 `server` is not an IPv4 address.
int signet_dns_query(const char *server, int port, const char *name, int type, int timeout_seconds,
                     unsigned char *out, int out_length);

#endif
