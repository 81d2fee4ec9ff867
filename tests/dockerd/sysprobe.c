/* sysprobe: make the named system calls and print how each ended, one line per call:
 *     keyctl EPERM        (the filter refused it)
 *     socket_inet OK
 * A probe program in the container, as crun's tests use: what the kernel answers is the
 * fact under test. Every call is harmless when it succeeds: keyctl only reads (an id, no
 * key is created), no module name exists and no image is given, the new user namespace
 * dies with the probe. Built static by the tests:
 *     gcc -static -Os -o sysprobe sysprobe.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static long probe(const char *name)
{
    long fd;
    if (!strcmp(name, "keyctl"))             /* KEYCTL_GET_KEYRING_ID of the session keyring */
        return syscall(SYS_keyctl, 0, -3, 0);
    if (!strcmp(name, "init_module"))        /* an empty image: ENOEXEC if it got that far */
        return syscall(SYS_init_module, NULL, 0, "");
    if (!strcmp(name, "finit_module"))       /* no file: EBADF if it got that far */
        return syscall(SYS_finit_module, -1, "", 0);
    if (!strcmp(name, "delete_module"))
        return syscall(SYS_delete_module, "labkit_no_such_module", O_NONBLOCK);
    if (!strcmp(name, "unshare_user"))
        return syscall(SYS_unshare, CLONE_NEWUSER);
    if (!strcmp(name, "clone3"))             /* no arguments: EINVAL if it got that far */
        return syscall(SYS_clone3, NULL, 0);
    if (!strcmp(name, "personality_query"))
        return syscall(SYS_personality, 0xffffffffUL);
    if (!strcmp(name, "socket_inet") || !strcmp(name, "socket_vsock")) {
        fd = syscall(SYS_socket, name[7] == 'i' ? AF_INET : 40 /* AF_VSOCK */, SOCK_DGRAM, 0);
        if (fd >= 0)
            close(fd);
        return fd < 0 ? -1 : 0;
    }
    errno = EINVAL;
    return -2;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        errno = 0;
        long r = probe(argv[i]);
        printf("%s %s\n", argv[i], r == -2 ? "UNKNOWN-PROBE" : r < 0 ? strerrorname_np(errno) : "OK");
    }
    return 0;
}
