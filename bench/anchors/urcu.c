/*
 * urcu.c — liburcu peers of the RCU rows, one flavour per build:
 * -DANCHOR_QSBR (link -lurcu-qsbr) or -DANCHOR_MEMB (link -lurcu-memb).
 * _LGPL_SOURCE inlines the read-side fast paths, as ukrcu's are.
 *
 * urcu_<flavour>_read: one read-side section per op on a registered
 *   thread pinned to the first host CPU: read_lock, rcu_dereference of a
 *   global pointer, reading a field, read_unlock. ↔ rcubench read_cost/rcu.
 * urcu_<flavour>_sync: one synchronize_rcu latency per sample from the
 *   first host CPU while a registered reader thread on every other host CPU
 *   (at least one; it shares the CPU if there is only one) runs read-side
 *   sections back to back (qsbr: reporting a quiescent state after each).
 *   ↔ rcubench gp/sync-busy.
 */
#define _LGPL_SOURCE
#include "anchor.h"

#if defined(ANCHOR_QSBR)
#include <urcu/urcu-qsbr.h>
#define FLAVOUR "qsbr"
#define READ_LOCK urcu_qsbr_read_lock
#define READ_UNLOCK urcu_qsbr_read_unlock
#define REGISTER urcu_qsbr_register_thread
#define UNREGISTER urcu_qsbr_unregister_thread
#define SYNCHRONIZE urcu_qsbr_synchronize_rcu
#define QUIESCENT() urcu_qsbr_quiescent_state()
#elif defined(ANCHOR_MEMB)
#include <urcu/urcu-memb.h>
#define FLAVOUR "memb"
#define READ_LOCK urcu_memb_read_lock
#define READ_UNLOCK urcu_memb_read_unlock
#define REGISTER urcu_memb_register_thread
#define UNREGISTER urcu_memb_unregister_thread
#define SYNCHRONIZE urcu_memb_synchronize_rcu
#define QUIESCENT() ((void)0)
#else
#error "build with -DANCHOR_QSBR or -DANCHOR_MEMB"
#endif

#define READ_OPS 1000000ull
#define SYNC_WARMUP 5
#define SYNC_SAMPLES 51
#define MAX_READERS 64

struct value {
	unsigned long v;
};

static struct value the_value = { 42 };
static struct value *gp = &the_value;

static volatile int stop_readers;
static volatile int readers_ready;

struct reader {
	pthread_t thread;
	int cpu;
	unsigned long sections;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	unsigned long sink = 0, n = 0;
	anchor_pin(r->cpu);
	REGISTER();
	__atomic_fetch_add(&readers_ready, 1, __ATOMIC_SEQ_CST);
	while (!__atomic_load_n(&stop_readers, __ATOMIC_RELAXED)) {
		READ_LOCK();
		struct value *p = rcu_dereference(gp);
		sink += p->v;
		READ_UNLOCK();
		QUIESCENT();
		n++;
	}
	UNREGISTER();
	r->sections = n + (sink == 1);
	return NULL;
}

static void read_section(const int *cpus)
{
	struct anchor_samples s = { 0 };
	unsigned long sink = 0;
	anchor_pin(cpus[0]);
	REGISTER();
	ANCHOR_LOOP(&s, READ_OPS, {
		READ_LOCK();
		struct value *p = rcu_dereference(gp);
		sink += p->v;
		READ_UNLOCK();
	});
	UNREGISTER();
	if (sink == 1)
		printf("#\n");
	anchor_report("urcu_" FLAVOUR "_read", &s, READ_OPS, NULL);
}

static void sync_latency(const int *cpus, int ncpus)
{
	struct reader readers[MAX_READERS];
	int nreaders = ncpus > 1 ? ncpus - 1 : 1;
	if (nreaders > MAX_READERS)
		nreaders = MAX_READERS;
	anchor_pin(cpus[0]);
	stop_readers = 0;
	readers_ready = 0;
	for (int i = 0; i < nreaders; i++) {
		readers[i].cpu = ncpus > 1 ? cpus[1 + i] : cpus[0];
		int err = pthread_create(&readers[i].thread, NULL, reader_main, &readers[i]);
		if (err != 0)
			anchor_die("pthread_create", err);
	}
	while (__atomic_load_n(&readers_ready, __ATOMIC_SEQ_CST) < nreaders)
		sched_yield();

	struct anchor_samples s = { 0 };
	for (int i = 0; i < SYNC_WARMUP + SYNC_SAMPLES; i++) {
		uint64_t t0 = anchor_now_ns(), c0 = anchor_cycles();
		SYNCHRONIZE();
		uint64_t c1 = anchor_cycles(), t1 = anchor_now_ns();
		if (i >= SYNC_WARMUP)
			anchor_add(&s, t1 - t0, c1 - c0, 1);
	}

	__atomic_store_n(&stop_readers, 1, __ATOMIC_RELAXED);
	unsigned long sections = 0;
	for (int i = 0; i < nreaders; i++) {
		pthread_join(readers[i].thread, NULL);
		sections += readers[i].sections;
	}
	char extra[128];
	snprintf(extra, sizeof(extra), "readers=%d shared_cpu=%d reader_sections=%lu", nreaders, ncpus > 1 ? 0 : 1,
		 sections);
	anchor_report("urcu_" FLAVOUR "_sync", &s, 1, extra);
}

int main(int argc, char **argv)
{
	int cpus[MAX_READERS + 1] = { 0 };
	int ncpus = anchor_cpus(cpus, MAX_READERS + 1);
	if (anchor_wanted(argc, argv, "urcu_" FLAVOUR "_read"))
		read_section(cpus);
	if (anchor_wanted(argc, argv, "urcu_" FLAVOUR "_sync"))
		sync_latency(cpus, ncpus);
	return 0;
}
