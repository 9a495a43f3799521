/*
 * pthread_locks.c — glibc lock peers, one thread pinned to the first host
 * CPU, nothing contending:
 *
 * pthread_mutex_pair: pthread_mutex_lock + increment + pthread_mutex_unlock
 *   per op (a default mutex: glibc's futex mutex, one atomic each way when
 *   uncontended). ↔ futexbench pair/uklock-mutex, futex-word.
 * pthread_rwlock_read: pthread_rwlock_rdlock + read + pthread_rwlock_unlock
 *   per op. ↔ rcubench read_tput/uklock-rw (one reader), the lock-based
 *   read side that RCU is compared with.
 *
 * The process is made multi-threaded first (a second thread that waits for
 * the end): glibc's x86 locks drop the `lock` prefix of their atomic
 * instructions while a process has one thread (`__libc_single_threaded`),
 * which no program that needs a mutex is, and which an image on several
 * CPUs cannot do either.
 */
#include "anchor.h"

#include <unistd.h>

#define OPS 1000000ull

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t rwlock = PTHREAD_RWLOCK_INITIALIZER;
static unsigned long counter;

/* The second thread: keeps the process multi-threaded until main returns. */
static void *idle_thread(void *arg)
{
	(void)arg;
	pause();
	return NULL;
}

int main(int argc, char **argv)
{
	int cpus[1] = { 0 };
	anchor_cpus(cpus, 1);
	anchor_pin(cpus[0]);
	pthread_t idle;
	if (pthread_create(&idle, NULL, idle_thread, NULL) != 0) {
		fprintf(stderr, "pthread_create failed\n");
		return 1;
	}

	if (anchor_wanted(argc, argv, "pthread_mutex_pair")) {
		struct anchor_samples s = { 0 };
		ANCHOR_LOOP(&s, OPS, {
			pthread_mutex_lock(&mutex);
			counter++;
			pthread_mutex_unlock(&mutex);
		});
		anchor_report("pthread_mutex_pair", &s, OPS, NULL);
	}
	if (anchor_wanted(argc, argv, "pthread_rwlock_read")) {
		struct anchor_samples s = { 0 };
		unsigned long sink = 0;
		ANCHOR_LOOP(&s, OPS, {
			pthread_rwlock_rdlock(&rwlock);
			sink += counter;
			pthread_rwlock_unlock(&rwlock);
		});
		if (sink == 1)
			printf("#\n");
		anchor_report("pthread_rwlock_read", &s, OPS, NULL);
	}
	return 0;
}
