/* runlock.h: one writer per run folder.
 *
 * pg-train holds an exclusive flock(2) on <run_dir>/.pg-train.lock for as long as it runs, so a
 * second pg-train pointed at the same folder refuses to start instead of interleaving its
 * checkpoints and metrics with the first's. The lock belongs to the open file, so the kernel
 * releases it however the holder ends (kill -9 included); the file itself stays, holding the
 * holder's pid for the message, and a stale one blocks nothing.
 */
#ifndef PG_RUNLOCK_H
#define PG_RUNLOCK_H

#define PG_RUNLOCK_NAME ".pg-train.lock"

/* Creates (if missing) and locks dir's lock file without waiting; *fd holds the lock.
 * @return 0, or PG_E_IO: the folder is in use (the message names it, the lock file and the
 * holder's pid) or the file cannot be created. */
int pg_run_lock(const char *dir, int *fd);

/* With the lock held: removes the temporaries of pg-train's own outputs (.ckpt_*.tmp.*,
 * .model.safetensors.tmp.*) that a pg-train killed by SIGKILL left in dir, which no live process
 * can be writing. *removed gets their count. @return 0, or PG_E_IO. */
int pg_run_clean_temps(const char *dir, int *removed);

/* Releases the lock (closes fd). Safe with fd < 0. */
void pg_run_unlock(int fd);

#endif
