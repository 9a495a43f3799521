/*
 * anchor.h — what every native peer (anchor) shares: the clock, the TSC,
 * host-CPU pinning, medians and the one output line per measurement.
 *
 * Each program prints, per anchor it measures,
 *
 *   anchor: name=NAME ns_per_op=F cycles_per_op=F samples=N ops=N min_ns=F max_ns=F [key=value...]
 *
 * or, when this host cannot run it,
 *
 *   anchor: name=NAME missing="REASON"
 *
 * `ns_per_op` is the median over `samples` timed samples (after one
 * untimed warm-up), each `ops` operations long; `min_ns`/`max_ns` the
 * fastest and slowest sample per op. Times come from
 * clock_gettime(CLOCK_MONOTONIC); cycles from rdtsc (x86_64 only).
 *
 * Arguments: the names of the anchors to run (default: all of the
 * program's). Environment: ANCHOR_MAX_CPUS (see anchor_cpus).
 */
#ifndef ANCHOR_H
#define ANCHOR_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__)
#include <x86intrin.h>
#endif

/* Timed samples per measurement (after one warm-up sample). */
#define ANCHOR_SAMPLES 11
/* The largest number of samples any anchor takes. */
#define ANCHOR_MAX_SAMPLES 101

static inline uint64_t anchor_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t anchor_cycles(void)
{
#if defined(__x86_64__)
	return __rdtsc();
#else
	return 0;
#endif
}

static inline int anchor_has_cycles(void)
{
#if defined(__x86_64__)
	return 1;
#else
	return 0;
#endif
}

static inline void anchor_die(const char *what, int err)
{
	fprintf(stderr, "anchor: %s failed: %s\n", what, strerror(err));
	exit(1);
}

/*
 * The host CPUs this process may run on, in order; returns how many. With
 * ANCHOR_MAX_CPUS=N in the environment, only the first N of them (at least
 * one): xtask sets it to an image's CPU count so that a peer that uses
 * "every other CPU" (liburcu's busy readers) uses as many as the image.
 */
static inline int anchor_cpus(int *cpus, int max)
{
	cpu_set_t set;
	int n = 0;
	const char *limit = getenv("ANCHOR_MAX_CPUS");
	if (limit && atoi(limit) > 0 && atoi(limit) < max)
		max = atoi(limit);
	CPU_ZERO(&set);
	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		anchor_die("sched_getaffinity", errno);
	for (int cpu = 0; cpu < CPU_SETSIZE && n < max; cpu++)
		if (CPU_ISSET(cpu, &set))
			cpus[n++] = cpu;
	if (n == 0)
		anchor_die("sched_getaffinity (no CPU)", EINVAL);
	return n;
}

/* Pins the calling thread to host CPU `cpu`. */
static inline void anchor_pin(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	int err = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	if (err != 0)
		anchor_die("pthread_setaffinity_np", err);
}

/* Whether `name` was asked for (no arguments: every anchor). */
/* Runs `side(&sides[0])` and `side(&sides[1])` on two threads, with
 * `*start` a barrier for the two of them, and waits for both to end. */
static inline void anchor_run_pair(void *(*side)(void *), void *sides, size_t size, pthread_barrier_t *start)
{
	pthread_t threads[2];
	pthread_barrier_init(start, NULL, 2);
	for (int i = 0; i < 2; i++) {
		int err = pthread_create(&threads[i], NULL, side, (char *)sides + i * size);
		if (err != 0)
			anchor_die("pthread_create", err);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(threads[i], NULL);
	pthread_barrier_destroy(start);
}

static inline int anchor_wanted(int argc, char **argv, const char *name)
{
	if (argc <= 1)
		return 1;
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return 1;
	return 0;
}

static inline int anchor_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Per-op samples of one measurement. */
struct anchor_samples {
	int n;
	double ns[ANCHOR_MAX_SAMPLES];
	double cycles[ANCHOR_MAX_SAMPLES];
};

static inline void anchor_add(struct anchor_samples *s, uint64_t ns, uint64_t cycles, uint64_t ops)
{
	if (s->n >= ANCHOR_MAX_SAMPLES || ops == 0)
		return;
	s->ns[s->n] = (double)ns / (double)ops;
	s->cycles[s->n] = (double)cycles / (double)ops;
	s->n++;
}

/* Median of `v[0..n]` (sorts it; the lower middle for even n). */
static inline double anchor_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), anchor_cmp_double);
	return v[(n - 1) / 2];
}

/* Prints the line of one measurement; `extra` ("key=value ...") may be NULL. */
static inline void anchor_report(const char *name, struct anchor_samples *s, uint64_t ops, const char *extra)
{
	if (s->n == 0) {
		printf("anchor: name=%s missing=\"no samples taken\"\n", name);
		return;
	}
	double ns = anchor_median(s->ns, s->n);
	double cycles = anchor_median(s->cycles, s->n);
	printf("anchor: name=%s ns_per_op=%.3f", name, ns);
	if (anchor_has_cycles())
		printf(" cycles_per_op=%.2f", cycles);
	printf(" samples=%d ops=%llu min_ns=%.3f max_ns=%.3f", s->n, (unsigned long long)ops, s->ns[0],
	       s->ns[s->n - 1]);
	if (extra && *extra)
		printf(" %s", extra);
	printf("\n");
	fflush(stdout);
}

/* Prints that `name` cannot run here, and why (no double quotes in `reason`). */
static inline void anchor_missing(const char *name, const char *reason)
{
	printf("anchor: name=%s missing=\"%s\"\n", name, reason);
	fflush(stdout);
}

/*
 * Times `ops` calls of `body` per sample: one warm-up, then ANCHOR_SAMPLES
 * samples. `body` runs the loop itself (one call per sample) so that the
 * loop is compiled around the inlined operation.
 */
#define ANCHOR_LOOP(samples, ops, body)                                        \
	do {                                                                   \
		for (int anchor_i_ = 0; anchor_i_ <= ANCHOR_SAMPLES; anchor_i_++) { \
			uint64_t anchor_t0_ = anchor_now_ns();                 \
			uint64_t anchor_c0_ = anchor_cycles();                 \
			for (uint64_t anchor_k_ = 0; anchor_k_ < (ops); anchor_k_++) { \
				body;                                          \
			}                                                      \
			uint64_t anchor_c1_ = anchor_cycles();                 \
			uint64_t anchor_t1_ = anchor_now_ns();                 \
			if (anchor_i_ > 0)                                     \
				anchor_add((samples), anchor_t1_ - anchor_t0_, \
					   anchor_c1_ - anchor_c0_, (ops));    \
		}                                                              \
	} while (0)

#endif
