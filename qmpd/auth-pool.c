/*
 * Password checks off the event loop: a few worker threads (one per CPU
 * qmpd may run on) take yescrypt jobs from a bounded queue and hand each
 * verdict back to the loop through an eventfd. A worker touches nothing
 * but its own job; the loop only queues jobs and runs the callbacks, so a
 * login storm costs the loop a few microseconds per login, not a hash.
 */
#include <sys/eventfd.h>
#include <sys/resource.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "auth.h"
#include "compat.h"
#include "log.h"
#include "xmalloc.h"

/*
 * The workers' nice value: when the loop wakes (an admin's request, a QMP
 * event) it takes a CPU from a hash at once instead of queueing behind it.
 */
#define AUTH_POOL_NICE		10

struct auth_job {
	char			*password;
	char			*hash;		/* NULL: no such user */
	int			 ok;
	void			(*cb)(int, void *);
	void			*arg;
	TAILQ_ENTRY(auth_job)	 entry;
};
TAILQ_HEAD(auth_jobs, auth_job);

struct auth_pool {
	pthread_mutex_t		 lock;
	pthread_cond_t		 cond;
	struct auth_jobs	 todo;		/* under lock */
	struct auth_jobs	 done;		/* under lock */
	int			 stopping;	/* under lock */
	int			 queued;	/* loop only: todo, running, done */
	int			 queue_max;
	pthread_t		*threads;
	int			 nthreads;
	int			 efd;
	struct event		*ev;
};

static void
auth_pool_job_free(struct auth_job *job)
{
	if (job == NULL)
		return;
	if (job->password != NULL) {
		explicit_bzero(job->password, strlen(job->password));
		free(job->password);
	}
	free(job->hash);
	free(job);
}

/* A worker: hash the oldest job, post the verdict, wake the loop. */
static void *
auth_pool_worker(void *arg)
{
	struct auth_pool	*ap = arg;
	struct auth_job		*job;
	uint64_t		 one = 1;

	/* Linux: a thread's own nice value, by its thread id. */
	if (setpriority(PRIO_PROCESS, gettid(), AUTH_POOL_NICE) == -1)
		log_warn("password worker: setpriority");
	for (;;) {
		pthread_mutex_lock(&ap->lock);
		while (TAILQ_EMPTY(&ap->todo) && !ap->stopping)
			pthread_cond_wait(&ap->cond, &ap->lock);
		if (ap->stopping) {
			pthread_mutex_unlock(&ap->lock);
			return (NULL);
		}
		job = TAILQ_FIRST(&ap->todo);
		TAILQ_REMOVE(&ap->todo, job, entry);
		pthread_mutex_unlock(&ap->lock);

		job->ok = auth_verify(job->password, job->hash);
		explicit_bzero(job->password, strlen(job->password));

		pthread_mutex_lock(&ap->lock);
		TAILQ_INSERT_TAIL(&ap->done, job, entry);
		pthread_mutex_unlock(&ap->lock);
		/* A full counter (never, at 2^64-2) would only delay a wake. */
		while (write(ap->efd, &one, sizeof one) == -1 && errno == EINTR)
			;
	}
}

/* On the loop: run the callbacks of every finished job. */
static void
auth_pool_wake(evutil_socket_t fd, short events, void *arg)
{
	struct auth_pool	*ap = arg;
	struct auth_jobs	 done = TAILQ_HEAD_INITIALIZER(done);
	struct auth_job		*job;
	uint64_t		 n;

	while (read(ap->efd, &n, sizeof n) == -1 && errno == EINTR)
		;
	pthread_mutex_lock(&ap->lock);
	TAILQ_CONCAT(&done, &ap->done, entry);
	pthread_mutex_unlock(&ap->lock);
	while ((job = TAILQ_FIRST(&done)) != NULL) {
		TAILQ_REMOVE(&done, job, entry);
		ap->queued--;
		job->cb(job->ok, job->arg);
		auth_pool_job_free(job);
	}
}

int
auth_pool_cpus(void)
{
	cpu_set_t	set;
	int		n;

	if (sched_getaffinity(0, sizeof set, &set) == 0 &&
	    (n = CPU_COUNT(&set)) > 0)
		return (n);
	if ((n = (int)sysconf(_SC_NPROCESSORS_ONLN)) > 0)
		return (n);
	return (1);
}

struct auth_pool *
auth_pool_create(struct event_base *base, int nthreads, int queue_max,
    char **cause)
{
	struct auth_pool	*ap;
	sigset_t		 all, old;
	int			 rc;

	ap = xcalloc(1, sizeof *ap);
	pthread_mutex_init(&ap->lock, NULL);
	pthread_cond_init(&ap->cond, NULL);
	TAILQ_INIT(&ap->todo);
	TAILQ_INIT(&ap->done);
	ap->queue_max = queue_max < 1 ? 1 : queue_max;
	ap->efd = -1;
	if ((ap->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1) {
		xasprintf(cause, "eventfd: %s", strerror(errno));
		goto fail;
	}
	ap->ev = event_new(base, ap->efd, EV_READ | EV_PERSIST,
	    auth_pool_wake, ap);
	if (ap->ev == NULL || event_add(ap->ev, NULL) != 0) {
		xasprintf(cause, "cannot watch the password workers' eventfd");
		goto fail;
	}
	ap->threads = xcalloc(nthreads < 1 ? 1 : nthreads,
	    sizeof *ap->threads);
	/* Signals stay the loop's: the workers block them all. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (ap->nthreads = 0; ap->nthreads < (nthreads < 1 ? 1 : nthreads);
	    ap->nthreads++) {
		rc = pthread_create(&ap->threads[ap->nthreads], NULL,
		    auth_pool_worker, ap);
		if (rc != 0) {
			pthread_sigmask(SIG_SETMASK, &old, NULL);
			xasprintf(cause, "cannot start a password worker: %s",
			    strerror(rc));
			goto fail;
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return (ap);
fail:
	auth_pool_free(ap);
	return (NULL);
}

void
auth_pool_free(struct auth_pool *ap)
{
	struct auth_job	*job;
	int		 i;

	if (ap == NULL)
		return;
	pthread_mutex_lock(&ap->lock);
	ap->stopping = 1;
	pthread_cond_broadcast(&ap->cond);
	pthread_mutex_unlock(&ap->lock);
	for (i = 0; i < ap->nthreads; i++)
		pthread_join(ap->threads[i], NULL);
	/* Callers of the jobs never answered are going away with us. */
	while ((job = TAILQ_FIRST(&ap->todo)) != NULL) {
		TAILQ_REMOVE(&ap->todo, job, entry);
		auth_pool_job_free(job);
	}
	while ((job = TAILQ_FIRST(&ap->done)) != NULL) {
		TAILQ_REMOVE(&ap->done, job, entry);
		auth_pool_job_free(job);
	}
	if (ap->ev != NULL)
		event_free(ap->ev);
	if (ap->efd != -1)
		close(ap->efd);
	free(ap->threads);
	pthread_cond_destroy(&ap->cond);
	pthread_mutex_destroy(&ap->lock);
	free(ap);
}

int
auth_pool_verify(struct auth_pool *ap, const char *password,
    const char *hash, void (*cb)(int, void *), void *arg, char **cause)
{
	struct auth_job	*job;

	if (ap->queued >= ap->queue_max) {
		xasprintf(cause, "%d password checks are under way, the "
		    "most qmpd queues", ap->queued);
		return (-1);
	}
	job = xcalloc(1, sizeof *job);
	job->password = xstrdup(password);
	job->hash = hash != NULL ? xstrdup(hash) : NULL;
	job->cb = cb;
	job->arg = arg;
	ap->queued++;
	pthread_mutex_lock(&ap->lock);
	TAILQ_INSERT_TAIL(&ap->todo, job, entry);
	pthread_cond_signal(&ap->cond);
	pthread_mutex_unlock(&ap->lock);
	return (0);
}

int
auth_pool_queued(struct auth_pool *ap)
{
	return (ap->queued);
}
