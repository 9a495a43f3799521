/*
 * futex_pingpong.c — Linux futex hand-offs: two threads take turns on one
 * futex word through raw syscall(SYS_futex) FUTEX_WAIT_PRIVATE /
 * FUTEX_WAKE_PRIVATE, never spinning: a thread whose turn it is not sleeps
 * in FUTEX_WAIT, the other gives the turn over (stores the word) and wakes
 * it. One round trip is two hand-offs; ns_per_op is per hand-off (round
 * trip / 2): a wake-up plus the woken thread running.
 *
 * futex_pingpong_same_cpu: both threads pinned to the first host CPU (the
 *   woken thread runs once the waker sleeps: a wake + a switch).
 *   ↔ futexbench wake_same/futex-oneway.
 * futex_pingpong_cross_cpu: the threads pinned to the first two host CPUs
 *   (the sleeper's CPU idles between hand-offs: a wake-up across CPUs).
 *   ↔ futexbench wake_cross/futex-oneway. Needs 2 host CPUs.
 */
#include "anchor.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Round trips per sample: a cross-CPU hand-off wakes an idle CPU, which in
 * a virtual machine can take tens of microseconds. */
#define SAME_CPU_ROUNDS 5000ull
#define CROSS_CPU_ROUNDS 1000ull

static uint64_t rounds;

static uint32_t word; /* whose turn: 0 or 1 */
static pthread_barrier_t start;

static void futex_wait(uint32_t *addr, uint32_t expected)
{
	syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void futex_wake(uint32_t *addr)
{
	syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* Waits (sleeping) until it is `me`'s turn. */
static inline void wait_turn(uint32_t me)
{
	uint32_t v;
	while ((v = __atomic_load_n(&word, __ATOMIC_ACQUIRE)) != me)
		futex_wait(&word, v);
}

/* Waits for turn `me`, then hands the turn to the other thread. */
static inline void hand_off(uint32_t me)
{
	wait_turn(me);
	__atomic_store_n(&word, me ^ 1, __ATOMIC_RELEASE);
	futex_wake(&word);
}

struct side {
	int cpu;
	uint32_t me;
	struct anchor_samples *samples;
};

static void *side_main(void *arg)
{
	struct side *side = arg;
	anchor_pin(side->cpu);
	for (int i = 0; i <= ANCHOR_SAMPLES; i++) {
		pthread_barrier_wait(&start);
		uint64_t t0 = anchor_now_ns(), c0 = anchor_cycles();
		for (uint64_t k = 0; k < rounds; k++)
			hand_off(side->me);
		/*
		 * Thread 0 times the window: it closes once thread 1's last
		 * hand-off gave the turn back (2 * rounds hand-offs), which
		 * also leaves the word at 0 for the next sample.
		 */
		if (side->me == 0)
			wait_turn(0);
		uint64_t c1 = anchor_cycles(), t1 = anchor_now_ns();
		if (side->samples && i > 0)
			anchor_add(side->samples, t1 - t0, c1 - c0, 2 * rounds);
		pthread_barrier_wait(&start);
	}
	return NULL;
}

static void ping_pong(const char *name, int cpu0, int cpu1, uint64_t n)
{
	rounds = n;
	struct anchor_samples s = { 0 };
	struct side sides[2] = { { cpu0, 0, &s }, { cpu1, 1, NULL } };
	word = 0;
	anchor_run_pair(side_main, sides, sizeof(sides[0]), &start);
	char extra[64];
	snprintf(extra, sizeof(extra), "cpus=%d,%d rounds=%llu", cpu0, cpu1, (unsigned long long)rounds);
	anchor_report(name, &s, 2 * rounds, extra);
}

int main(int argc, char **argv)
{
	int cpus[2] = { 0, 0 };
	int ncpus = anchor_cpus(cpus, 2);
	if (anchor_wanted(argc, argv, "futex_pingpong_same_cpu"))
		ping_pong("futex_pingpong_same_cpu", cpus[0], cpus[0], SAME_CPU_ROUNDS);
	if (anchor_wanted(argc, argv, "futex_pingpong_cross_cpu")) {
		if (ncpus < 2) {
			char reason[96];
			snprintf(reason, sizeof(reason), "needs 2 host CPUs (this process may run on 1: CPU %d)",
				 cpus[0]);
			anchor_missing("futex_pingpong_cross_cpu", reason);
		} else {
			ping_pong("futex_pingpong_cross_cpu", cpus[0], cpus[1], CROSS_CPU_ROUNDS);
		}
	}
	return 0;
}
