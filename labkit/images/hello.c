/*
 * hello — the program inside labkit's hello-world image.
 *
 * It follows Docker's hello-world (https://github.com/docker-library/hello-world): a tiny
 * static binary whose only job is to prove that every layer of the engine worked, by
 * explaining what each one did to get it running. Built at lab set-up with
 *     gcc -static -Os -s -o hello hello.c
 * so the image needs nothing else: no shell, no libc on disk, one file in one layer.
 */
#include <string.h>
#include <unistd.h>

static const char message[] =
	"\n"
	"Hello from labkit!\n"
	"This message shows that your installation appears to be working correctly.\n"
	"(It follows Docker's hello-world image, retold for labkit's layers.)\n"
	"\n"
	"To generate this message, labkit took the following steps:\n"
	" 1. The labkit CLI (or the docker CLI) contacted labkit-dockerd over the\n"
	"    Docker Engine API on its unix socket.\n"
	" 2. labkit-dockerd asked labkit-containerd (gRPC) for the \"hello-world\" image,\n"
	"    which pulled it from labkit-registry, the lab's local mirror of Docker Hub.\n"
	" 3. labkit-containerd verified every blob's digest and unpacked the layer\n"
	"    into an overlayfs snapshot.\n"
	" 4. labkit-containerd started a labkit-shim for the container; the shim ran\n"
	"    labkit-runc, which created the namespaces, pivot_root'ed into the snapshot\n"
	"    and exec'd this program (/hello).\n"
	" 5. labkit-dockerd streamed this output back to your client, which sent it\n"
	"    to your terminal.\n"
	"\n"
	"To try something more ambitious, you can run a busybox container with:\n"
	" $ labkit run -it busybox sh\n"
	"\n"
	"Each step is a chapter of the lab: the notebooks build these layers one by one.\n"
	"\n";

int main(void)
{
	/* write(2) directly: the whole message leaves in one system call, unbuffered */
	ssize_t n = write(STDOUT_FILENO, message, sizeof(message) - 1);
	return n == (ssize_t)(sizeof(message) - 1) ? 0 : 1;
}
