/* bench/floor.c — the least a UDP DNS server can do per query on this kernel.
 *
 * Not a DNS server: it turns every query straight back as a response of about
 * the peers' size (the question kept, one fixed record of the asked type
 * appended: an SOA for SOA, else an A; EDNS dropped), with blocking
 * recvmmsg/sendmmsg in batches of 32, no readiness polling and no lookup. Its CPU per query under bench/auth.sh's load is the kernel's share
 * of answering a query through the socket API (receive, send, and the
 * loopback delivery to dnsperf that the send pays for): the floor under
 * every socket-based server's CPU per query, ours and the peers'.
 *
 * Usage: floor PORT   (binds 127.0.0.1:PORT; built and run by bench/floor.sh)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define BATCH 32
#define SIZE 4096

/* An SOA whose names point at the question's (offset 12), and an A. */
static const unsigned char SOA[] = {0xc0, 12, 0, 6, 0, 1, 0, 0, 0x0e, 0x10, 0, 24, 0xc0, 12, 0xc0, 12,
                                    0, 0, 0, 1, 0, 0, 0x0e, 0x10, 0, 0, 0x03, 0x84, 0, 0, 0x0e, 0x10,
                                    0, 0, 0x0e, 0x10};
static const unsigned char A[] = {0xc0, 12, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 198, 18, 0, 1};

/* The length of the header and question, or 0 if the name runs past len. */
static unsigned question_end(const unsigned char *m, unsigned len) {
    unsigned at = 12;
    while (at < len && m[at] != 0) {
        if (m[at] & 0xc0)
            return 0;
        at += m[at] + 1;
    }
    at += 1 + 4;
    return at <= len ? at : 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: floor PORT\n");
        return 2;
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        perror("floor: bind");
        return 1;
    }
    static char buffers[BATCH][SIZE];
    static struct sockaddr_in peers[BATCH];
    static struct iovec iov[BATCH];
    static struct mmsghdr msgs[BATCH];
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            iov[i] = (struct iovec){.iov_base = buffers[i], .iov_len = SIZE};
            msgs[i].msg_hdr = (struct msghdr){.msg_name = &peers[i], .msg_namelen = sizeof peers[i],
                                              .msg_iov = &iov[i], .msg_iovlen = 1};
        }
        /* Blocks for the first datagram, then takes what else is waiting. */
        int n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
        if (n <= 0)
            continue;
        int out = 0;
        for (int i = 0; i < n; i++) {
            unsigned char *m = (unsigned char *)buffers[i];
            unsigned len = msgs[i].msg_len < 12 ? 0 : question_end(m, msgs[i].msg_len);
            if (len == 0)
                continue;
            int soa = m[len - 4] == 0 && m[len - 3] == 6;
            const unsigned char *record = soa ? SOA : A;
            unsigned size = soa ? sizeof SOA : sizeof A;
            memcpy(m + len, record, size);
            m[2] = (m[2] | 0x84) & 0xfd; /* QR, AA; TC clear */
            m[3] = 0;                     /* RA, AD, CD clear; RCODE NOERROR */
            m[6] = 0, m[7] = 1;          /* ANCOUNT 1 */
            m[8] = m[9] = m[10] = m[11] = 0;
            iov[i].iov_len = len + size;
            msgs[out++] = msgs[i];
        }
        if (out > 0)
            sendmmsg(fd, msgs, out, 0);
    }
}
