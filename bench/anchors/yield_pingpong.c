/*
 * yield_pingpong.c — same-CPU thread switch: two threads pinned to the
 * first host CPU call sched_yield in a loop, each yield handing the CPU to
 * the other runnable thread. A shared word records which thread ran last;
 * a switch is counted whenever a thread finds the other one ran since its
 * own last iteration. ns_per_op = the window / the switches counted in it
 * (not the yields: a yield that did not switch is not a switch).
 *
 * yield_pingpong_same_cpu ↔ schedbench switch/same-cpu.
 */
#include "anchor.h"

#define YIELDS 5000ull

static pthread_barrier_t start;
static volatile int last_ran;
static volatile int done[2];

struct side {
	int cpu;
	int me;
	unsigned long switches;
	struct anchor_samples *samples;
	unsigned long total_switches;
};

static struct side sides[2];

static void *side_main(void *arg)
{
	struct side *side = arg;
	anchor_pin(side->cpu);
	for (int i = 0; i <= ANCHOR_SAMPLES; i++) {
		pthread_barrier_wait(&start);
		done[side->me] = 0;
		unsigned long switches = 0;
		uint64_t t0 = anchor_now_ns(), c0 = anchor_cycles();
		for (uint64_t k = 0; k < YIELDS; k++) {
			if (last_ran != side->me) {
				switches++;
				last_ran = side->me;
			}
			sched_yield();
		}
		done[side->me] = 1;
		/* Thread 0 closes the window once both are through. */
		while (side->me == 0 && !done[1]) {
			if (last_ran != side->me) {
				switches++;
				last_ran = side->me;
			}
			sched_yield();
		}
		uint64_t c1 = anchor_cycles(), t1 = anchor_now_ns();
		side->switches = switches;
		pthread_barrier_wait(&start);
		if (side->samples && i > 0) {
			unsigned long both = sides[0].switches + sides[1].switches;
			anchor_add(side->samples, t1 - t0, c1 - c0, both);
			side->total_switches += both;
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int cpus[1] = { 0 };
	anchor_cpus(cpus, 1);
	if (!anchor_wanted(argc, argv, "yield_pingpong_same_cpu"))
		return 0;
	struct anchor_samples s = { 0 };
	sides[0] = (struct side){ cpus[0], 0, 0, &s, 0 };
	sides[1] = (struct side){ cpus[0], 1, 0, NULL, 0 };
	anchor_run_pair(side_main, sides, sizeof(sides[0]), &start);
	char extra[96];
	snprintf(extra, sizeof(extra), "cpu=%d yields=%llu switches=%lu", cpus[0], 2 * YIELDS * ANCHOR_SAMPLES,
		 sides[0].total_switches);
	anchor_report("yield_pingpong_same_cpu", &s, 2 * YIELDS, extra);
	return 0;
}
