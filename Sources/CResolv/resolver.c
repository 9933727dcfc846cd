#include "CResolv.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>
#include <string.h>

int signet_dns_query(const char *server, int port, const char *name, int type, int timeout_seconds,
                     unsigned char *out, int out_length) {
    struct __res_state state;
    memset(&state, 0, sizeof state);
    if (res_ninit(&state) != 0) return -3;
    if (server != NULL) {
        struct sockaddr_in address;
        memset(&address, 0, sizeof address);
        address.sin_family = AF_INET;
        address.sin_port = htons((unsigned short)port);
        if (inet_pton(AF_INET, server, &address.sin_addr) != 1) {
            res_nclose(&state);
            return -4;
        }
        state.nsaddr_list[0] = address;
        state.nscount = 1;
    }
    state.retrans = timeout_seconds > 0 ? timeout_seconds : 5;
    state.retry = 2;
    /* The validated name is absolute: never try it under the machine's search domains. */
    state.options &= ~(RES_DNSRCH | RES_DEFNAMES);

    unsigned char answer[16384];
    int length = res_nquery(&state, name, ns_c_in, type, answer, sizeof answer);
    int failure = state.res_h_errno;
    res_nclose(&state);
    if (length < 0) return failure == HOST_NOT_FOUND ? -1 : failure == NO_DATA ? -2 : -3;

    ns_msg message;
    if (ns_initparse(answer, length, &message) < 0) return -3;
    int count = ns_msg_count(message, ns_s_an);
    int written = 0, records = 0;
    for (int index = 0; index < count; index++) {
        ns_rr record;
        if (ns_parserr(&message, ns_s_an, index, &record) < 0) return -3;
        int record_type = ns_rr_type(record);
        const unsigned char *data = ns_rr_rdata(record);
        int data_length = ns_rr_rdlen(record);
        char target[NS_MAXDNAME];
        if (record_type == ns_t_cname) {
            if (ns_name_uncompress(ns_msg_base(message), ns_msg_end(message), data, target, sizeof target) < 0) return -3;
            data = (const unsigned char *)target;
            data_length = (int)strlen(target);
        }
        if (written + 4 + data_length > out_length) break;
        out[written++] = (unsigned char)(record_type >> 8);
        out[written++] = (unsigned char)(record_type & 0xff);
        out[written++] = (unsigned char)(data_length >> 8);
        out[written++] = (unsigned char)(data_length & 0xff);
        memcpy(out + written, data, (size_t)data_length);
        written += data_length;
        records++;
    }
    return records;
}
